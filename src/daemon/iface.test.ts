import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIPv4, formatIPv6 } from '../lease/ip.js';
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

test('IPv6 (EnableIPv6): the chosen interface\'s first global address, never link-local; --public-ipv6 overrides and can pick the interface; bad input names the flag', () => {
  const h6: HostView = {
    interfaces: () => [
      { name: 'lo', index: 1, mtu: 65536, ipv4: ['127.0.0.1'], ipv6: ['::1'] },
      { name: 'eth0', index: 2, mtu: 1500, ipv4: ['10.0.2.15'], ipv6: ['fe80::5054:ff:fe12:3456%eth0', '2001:db8::15'] },
      { name: 'eth1', index: 3, mtu: 9000, ipv4: ['192.168.56.11'], ipv6: ['fe80::1%eth1', 'fd00:56::11'] },
    ],
    defaultRouteInterface: () => 'eth0',
  };
  const e = selectExternalInterface(h6, { iface: [], ifaceRegex: [], ipv6: true });
  assert.equal(formatIPv6(e.publicIPv6!), '2001:db8::15');
  assert.equal(formatIPv6(e.ifaceAddr6!), '2001:db8::15');
  // without EnableIPv6 nothing about v6 is reported
  assert.equal(selectExternalInterface(h6, { iface: [], ifaceRegex: [] }).publicIPv6, undefined);
  // --iface with an IPv6 address picks the interface owning it, and that address
  const byAddr = selectExternalInterface(h6, { iface: ['fd00:56::11'], ifaceRegex: [], ipv6: true });
  assert.equal(byAddr.name, 'eth1');
  assert.equal(formatIPv6(byAddr.ifaceAddr6!), 'fd00:56::11');
  // --public-ipv6 alone: the interface owning it (flannel's order: --public-ip, then --public-ipv6, then the default route)
  const byPub = selectExternalInterface(h6, { iface: [], ifaceRegex: [], publicIPv6: 'fd00:56::11', ipv6: true });
  assert.equal(byPub.name, 'eth1');
  // behind NAT: a --public-ipv6 nobody owns is published as given
  const nat = selectExternalInterface(h6, { iface: [], ifaceRegex: [], publicIPv6: '2001:db8:ffff::1', ipv6: true });
  assert.equal(nat.name, 'eth0');
  assert.equal(formatIPv6(nat.publicIPv6!), '2001:db8:ffff::1');
  assert.equal(formatIPv6(nat.ifaceAddr6!), '2001:db8::15');
  assert.throws(() => selectExternalInterface(h6, { iface: [], ifaceRegex: [], publicIPv6: 'fe80::1', ipv6: true }), (err: unknown) => err instanceof IfaceError && /^--public-ipv6: "fe80::1" is not a global IPv6 address$/.test(err.message));
  assert.throws(() => selectExternalInterface(h6, { iface: [], ifaceRegex: [], publicIPv6: '10.0.0.1', ipv6: true }), /^IfaceError: --public-ipv6: "10.0.0.1"/);
  const onlyLinkLocal: HostView = { interfaces: () => [{ name: 'eth0', index: 2, mtu: 1500, ipv4: ['10.0.2.15'], ipv6: ['fe80::1'] }], defaultRouteInterface: () => 'eth0' };
  assert.throws(() => selectExternalInterface(onlyLinkLocal, { iface: [], ifaceRegex: [], ipv6: true }), /interface eth0 has no global IPv6 address/);
});
