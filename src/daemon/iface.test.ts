import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIPv4 } from '../lease/ip.js';
import { IfaceError, selectExternalInterface, type HostView } from './iface.js';

const host: HostView = {
  interfaces: () => [
    { name: 'lo', index: 1, mtu: 65536, ipv4: ['127.0.0.1'], ipv6: [] },
    { name: 'eth0', index: 2, mtu: 1500, ipv4: ['10.0.2.15'], ipv6: [] },
    { name: 'eth1', index: 3, mtu: 9000, ipv4: ['192.168.56.11', '169.254.1.1'], ipv6: [] },
  ],
  defaultRouteInterface: () => 'eth0',
};

test('default route interface when nothing is given', () => {
  const e = selectExternalInterface(host, { iface: [], ifaceRegex: [] });
  assert.equal(e.name, 'eth0');
  assert.equal(formatIPv4(e.publicIP), '10.0.2.15');
  assert.equal(e.mtu, 1500);
});

test('--iface by name or IP, first match wins; --iface-regex on IPs then names', () => {
  assert.equal(selectExternalInterface(host, { iface: ['nope', 'eth1'], ifaceRegex: [] }).name, 'eth1');
  assert.equal(formatIPv4(selectExternalInterface(host, { iface: ['192.168.56.11'], ifaceRegex: [] }).ifaceAddr), '192.168.56.11');
  assert.equal(selectExternalInterface(host, { iface: [], ifaceRegex: ['^192\\.168\\.'] }).name, 'eth1');
  assert.equal(selectExternalInterface(host, { iface: [], ifaceRegex: ['^eth1$'] }).name, 'eth1');
  assert.throws(() => selectExternalInterface(host, { iface: ['wlan0'], ifaceRegex: [] }), IfaceError);
  assert.throws(() => selectExternalInterface(host, { iface: [], ifaceRegex: ['('] }), /not a valid regular expression/);
});

test('--public-ip picks its interface, or overrides the advertised address behind NAT', () => {
  assert.equal(selectExternalInterface(host, { iface: [], ifaceRegex: [], publicIP: '192.168.56.11' }).name, 'eth1');
  const nat = selectExternalInterface(host, { iface: [], ifaceRegex: [], publicIP: '203.0.113.7' });
  assert.equal(nat.name, 'eth0');
  assert.equal(formatIPv4(nat.publicIP), '203.0.113.7');
  assert.equal(formatIPv4(nat.ifaceAddr), '10.0.2.15');
});
