// Unit tests for flannel's iptables rules (no root): the rule text, the
// iptables-restore payloads, and the cleanup nftables mode does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIPv4Net, parseIPv6Net } from '../lease/ip.js';
import { cleanupPayload, expectedListing, forwardRules, forwardRules6, masqRules, masqRules6, restorePayload } from './iptables.js';

const N = parseIPv4Net('10.244.0.0/16');
const S = parseIPv4Net('10.244.3.0/24');

test('masquerade: flannel\'s golden FLANNEL-POSTRTG rules, as iptables -S prints them', () => {
  const r = masqRules(N, S, true);
  assert.deepEqual([r.table, r.parent, r.chain], ['nat', 'POSTROUTING', 'FLANNEL-POSTRTG']);
  assert.deepEqual(expectedListing(r), [
    '-N FLANNEL-POSTRTG',
    '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
    '-A FLANNEL-POSTRTG -s 10.244.3.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN',
    '-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.3.0/24 -m comment --comment "flanneld masq" -j RETURN',
    '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.3.0/24 -m comment --comment "flanneld masq" -j RETURN',
    '-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
    '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
  ]);
  assert.deepEqual(r.jump, ['-m', 'comment', '--comment', 'flanneld masq', '-j', 'FLANNEL-POSTRTG']);
  assert.ok(!expectedListing(masqRules(N, S, false)).join('\n').includes('random-fully'));
});

test('forward: flannel\'s golden FLANNEL-FWD rules', () => {
  const r = forwardRules(N);
  assert.deepEqual([r.table, r.parent, r.chain], ['filter', 'FORWARD', 'FLANNEL-FWD']);
  assert.deepEqual(expectedListing(r), [
    '-N FLANNEL-FWD',
    '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
    '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
  ]);
});

test('the restore payload declares (flushes) the chain and appends every rule in one COMMIT', () => {
  assert.equal(
    restorePayload(forwardRules(N)),
    [
      '*filter',
      ':FLANNEL-FWD - [0:0]',
      '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
      '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
      'COMMIT',
      '',
    ].join('\n'),
  );
});

test('cleanup payload: every jump to the chain goes, then the chain, in one COMMIT', () => {
  const listing = [
    '-P PREROUTING ACCEPT',
    '-P POSTROUTING ACCEPT',
    '-N FLANNEL-POSTRTG',
    '-N FLANNEL-POSTRTG-X',
    '-N MINE',
    '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
    '-A POSTROUTING -j FLANNEL-POSTRTG-X',
    '-A POSTROUTING -s 10.0.0.0/8 -j MASQUERADE',
    '-A MINE -g FLANNEL-POSTRTG',
    '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
    '',
  ].join('\n');
  assert.equal(
    cleanupPayload('nat', 'FLANNEL-POSTRTG', listing),
    [
      '*nat',
      '-D POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
      '-D MINE -g FLANNEL-POSTRTG',
      '-F FLANNEL-POSTRTG',
      '-X FLANNEL-POSTRTG',
      'COMMIT',
      '',
    ].join('\n'),
  );
  assert.equal(cleanupPayload('filter', 'FLANNEL-FWD', listing), null, 'no chain, nothing to do');
});

test('IPv6 (EnableIPv6): the same chains for ip6tables, with IPv6Network, our v6 subnet and multicast ff00::/8', () => {
  const r = masqRules6(parseIPv6Net('fd00:10:244::/56'), parseIPv6Net('fd00:10:244:1c::/64'), true);
  assert.equal(r.bin, 'ip6tables');
  assert.equal(masqRules(N, S, true).bin, undefined, 'IPv4 sets stay iptables');
  assert.deepEqual(expectedListing(r), [
    '-N FLANNEL-POSTRTG',
    '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
    '-A FLANNEL-POSTRTG -s fd00:10:244:1c::/64 -d fd00:10:244::/56 -m comment --comment "flanneld masq" -j RETURN',
    '-A FLANNEL-POSTRTG -s fd00:10:244::/56 -d fd00:10:244:1c::/64 -m comment --comment "flanneld masq" -j RETURN',
    '-A FLANNEL-POSTRTG ! -s fd00:10:244::/56 -d fd00:10:244:1c::/64 -m comment --comment "flanneld masq" -j RETURN',
    '-A FLANNEL-POSTRTG -s fd00:10:244::/56 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
    '-A FLANNEL-POSTRTG ! -s fd00:10:244::/56 -d fd00:10:244::/56 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
  ]);
  const f = forwardRules6(parseIPv6Net('fd00:10:244::/56'));
  assert.equal(f.bin, 'ip6tables');
  assert.deepEqual(expectedListing(f).slice(1), [
    '-A FLANNEL-FWD -s fd00:10:244::/56 -m comment --comment "flanneld forward" -j ACCEPT',
    '-A FLANNEL-FWD -d fd00:10:244::/56 -m comment --comment "flanneld forward" -j ACCEPT',
  ]);
});
