// Unit tests for flannel's nftables rules (no root): the rule text, the
// transaction nft gets, and reading a table back from `nft -j` to spot drift.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIPv4Net, parseIPv6Net } from '../lease/ip.js';
import {
  nftForwardChain,
  nftForwardChain6,
  nftMasqChain,
  nftMasqChain6,
  nftPayload,
  nftTableV4,
  nftTableV6,
  nftTransaction,
  parseListedTable,
  renderStatement,
  tableDrift,
  type ListedChain,
} from './nftables.js';

const N = parseIPv4Net('10.244.0.0/16');
const S = parseIPv4Net('10.244.3.0/24');

// `nft -j list table ip flannel-ipv4` (nft 1.0.6) after flanneld installed
// masq + forward for N=10.244.0.0/16, S=10.244.3.0/24.
const LISTED = JSON.stringify({
  nftables: [
    {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
    {"table": {"family": "ip", "name": "flannel-ipv4", "handle": 5}},
    {"chain": {"family": "ip", "table": "flannel-ipv4", "name": "postrtg", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
    {"chain": {"family": "ip", "table": "flannel-ipv4", "name": "forward", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
    {"rule": {"family": "ip", "table": "flannel-ipv4", "chain": "postrtg", "handle": 3, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 16384}}, {"return": null}]}},
    {"rule": {"family": "ip", "table": "flannel-ipv4", "chain": "postrtg", "handle": 4, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.244.3.0", "len": 24}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}}, {"return": null}]}},
    {"rule": {"family": "ip", "table": "flannel-ipv4", "chain": "postrtg", "handle": 5, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.244.3.0", "len": 24}}}}, {"return": null}]}},
    {"rule": {"family": "ip", "table": "flannel-ipv4", "chain": "postrtg", "handle": 6, "expr": [{"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.244.3.0", "len": 24}}}}, {"return": null}]}},
    {"rule": {"family": "ip", "table": "flannel-ipv4", "chain": "postrtg", "handle": 7, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "224.0.0.0", "len": 4}}}}, {"masquerade": {"flags": "fully-random"}}]}},
    {"rule": {"family": "ip", "table": "flannel-ipv4", "chain": "postrtg", "handle": 8, "expr": [{"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}}, {"masquerade": {"flags": "fully-random"}}]}},
    {"rule": {"family": "ip", "table": "flannel-ipv4", "chain": "forward", "handle": 9, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}}, {"accept": null}]}},
    {"rule": {"family": "ip", "table": "flannel-ipv4", "chain": "forward", "handle": 10, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}}, {"accept": null}]}},
  ],
});

test('postrtg: flannel\'s six rules in order, rule 4 with the iptables meaning, fully-random', () => {
  const c = nftMasqChain(N, S, true);
  assert.equal(c.name, 'postrtg');
  assert.deepEqual([c.type, c.hook, c.priority], ['nat', 'postrouting', 'srcnat']);
  assert.equal(c.comment, 'chain to manage traffic masquerading by flannel');
  assert.deepEqual(c.rules, [
    'meta mark 0x00004000 return',
    'ip saddr 10.244.3.0/24 ip daddr 10.244.0.0/16 return',
    'ip saddr 10.244.0.0/16 ip daddr 10.244.3.0/24 return',
    // flannel writes `ip saddr != 10.244.3.0/24 ip daddr 10.244.0.0/16 return` (rule 6 unreachable)
    'ip saddr != 10.244.0.0/16 ip daddr 10.244.3.0/24 return',
    'ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random',
    'ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random',
  ]);
});

test('postrtg without fully-random (--ip-masq-fully-random-disable)', () => {
  const r = nftMasqChain(N, S, false).rules;
  assert.equal(r[4], 'ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade');
  assert.equal(r[5], 'ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade');
  assert.ok(!r.join('\n').includes('fully-random'));
});

test('forward: accept from and to the pod network', () => {
  const c = nftForwardChain(N);
  assert.deepEqual([c.name, c.type, c.hook, c.priority, c.comment], ['forward', 'filter', 'forward', 'filter', 'chain to accept flannel traffic']);
  assert.deepEqual(c.rules, ['ip saddr 10.244.0.0/16 accept', 'ip daddr 10.244.0.0/16 accept']);
});

test('the nft -f payload declares, deletes and recreates the table in one file', () => {
  const p = nftPayload(nftTableV4([nftMasqChain(N, S, true), nftForwardChain(N)]));
  assert.equal(
    p,
    [
      'add table ip flannel-ipv4',
      'delete table ip flannel-ipv4',
      'table ip flannel-ipv4 {',
      '\tcomment "rules for flannel-ipv4"',
      '\tchain postrtg {',
      '\t\tcomment "chain to manage traffic masquerading by flannel"',
      '\t\ttype nat hook postrouting priority srcnat; policy accept;',
      '\t\tmeta mark 0x00004000 return',
      '\t\tip saddr 10.244.3.0/24 ip daddr 10.244.0.0/16 return',
      '\t\tip saddr 10.244.0.0/16 ip daddr 10.244.3.0/24 return',
      '\t\tip saddr != 10.244.0.0/16 ip daddr 10.244.3.0/24 return',
      '\t\tip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random',
      '\t\tip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random',
      '\t}',
      '\tchain forward {',
      '\t\tcomment "chain to accept flannel traffic"',
      '\t\ttype filter hook forward priority filter; policy accept;',
      '\t\tip saddr 10.244.0.0/16 accept',
      '\t\tip daddr 10.244.0.0/16 accept',
      '\t}',
      '}',
      '',
    ].join('\n'),
  );
  // a table with no chain is still a valid file
  assert.match(nftPayload(nftTableV4([])), /^add table ip flannel-ipv4\ndelete table ip flannel-ipv4\ntable ip flannel-ipv4 \{\n\tcomment "rules for flannel-ipv4"\n\}\n$/);
});

test('nft -j output reads back as exactly the wanted chains and rules', () => {
  const want = nftTableV4([nftMasqChain(N, S, true), nftForwardChain(N)]);
  const listed = parseListedTable(LISTED);
  assert.deepEqual(
    listed.map((c) => [c.name, c.type, c.hook, c.prio, c.policy]),
    [
      ['postrtg', 'nat', 'postrouting', 100, 'accept'],
      ['forward', 'filter', 'forward', 0, 'accept'],
    ],
  );
  assert.deepEqual(listed[0]!.rules, want.chains[0]!.rules);
  assert.deepEqual(listed[1]!.rules, want.chains[1]!.rules);
  assert.deepEqual(tableDrift(want, listed), []);
});

test('statements: masquerade variants, exact marks, anything unknown stays distinct', () => {
  assert.equal(renderStatement({ masquerade: null }), 'masquerade');
  assert.equal(renderStatement({ masquerade: { flags: 'fully-random' } }), 'masquerade fully-random');
  assert.equal(renderStatement({ masquerade: { flags: ['random', 'persistent'] } }), 'masquerade random persistent');
  assert.equal(renderStatement({ match: { op: '==', left: { meta: { key: 'mark' } }, right: 16384 } }), 'meta mark 0x00004000');
  assert.equal(renderStatement({ match: { op: '!=', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '10.1.2.3' } }), 'ip saddr != 10.1.2.3');
  assert.equal(renderStatement({ counter: { packets: 0, bytes: 0 } }), '{"counter":{"packets":0,"bytes":0}}');
  assert.equal(renderStatement({ match: { op: 'in', left: { meta: { key: 'mark' } }, right: 1 } }), '{"match":{"op":"in","left":{"meta":{"key":"mark"}},"right":1}}');
});

test('drift: a missing, changed, extra or re-hooked piece is reported', () => {
  const want = nftTableV4([nftMasqChain(N, S, true), nftForwardChain(N)]);
  const good = (): ListedChain[] => parseListedTable(LISTED);

  const deleted = good();
  deleted[0]!.rules.splice(0, 1);
  assert.match(tableDrift(want, deleted).join(), /chain postrtg has rules/);

  const changed = good();
  changed[1]!.rules[1] = 'ip daddr 10.244.0.0/16 drop';
  assert.match(tableDrift(want, changed).join(), /chain forward has rules/);

  const noChain = good().slice(0, 1);
  assert.deepEqual(tableDrift(want, noChain), ['chain forward is missing']);

  const extra = [...good(), { name: 'mine', rules: [] }];
  assert.deepEqual(tableDrift(want, extra), ['unexpected chain mine']);

  const rehooked = good();
  rehooked[0]!.prio = 0;
  assert.match(tableDrift(want, rehooked).join(), /chain postrtg is not "type nat hook postrouting priority srcnat/);

  // only the forward chain wanted (no --ip-masq): the masq chain is drift
  assert.deepEqual(tableDrift(nftTableV4([nftForwardChain(N)]), good()), ['unexpected chain postrtg']);

  // a set added to our table counts as drift too
  const doc = JSON.parse(LISTED) as { nftables: unknown[] };
  doc.nftables.push({ set: { family: 'ip', name: 'x', table: 'flannel-ipv4', type: 'ipv4_addr', handle: 9 } });
  assert.deepEqual(tableDrift(want, parseListedTable(JSON.stringify(doc))), ['foreign objects in the table']);
});

// --- flannel-ipv6 (EnableIPv6) ----------------------------------------------

const N6 = parseIPv6Net('fd00:10:244::/56');
const S6 = parseIPv6Net('fd00:10:244:1c::/64');

// `nft -j list table ip6 flannel-ipv6` (nft 1.0.6) after installing masq +
// forward for N6, S6: the rules as the kernel holds them.
const LISTED6 = JSON.stringify({
  nftables: [
    {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
    {"table": {"family": "ip6", "name": "flannel-ipv6", "handle": 2}},
    {"chain": {"family": "ip6", "table": "flannel-ipv6", "name": "postrtg", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
    {"chain": {"family": "ip6", "table": "flannel-ipv6", "name": "forward", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
    {"rule": {"family": "ip6", "table": "flannel-ipv6", "chain": "postrtg", "handle": 3, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 16384}}, {"return": null}]}},
    {"rule": {"family": "ip6", "table": "flannel-ipv6", "chain": "postrtg", "handle": 4, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": {"prefix": {"addr": "fd00:10:244:1c::", "len": 64}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": {"prefix": {"addr": "fd00:10:244::", "len": 56}}}}, {"return": null}]}},
    {"rule": {"family": "ip6", "table": "flannel-ipv6", "chain": "postrtg", "handle": 5, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": {"prefix": {"addr": "fd00:10:244::", "len": 56}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": {"prefix": {"addr": "fd00:10:244:1c::", "len": 64}}}}, {"return": null}]}},
    {"rule": {"family": "ip6", "table": "flannel-ipv6", "chain": "postrtg", "handle": 6, "expr": [{"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": {"prefix": {"addr": "fd00:10:244::", "len": 56}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": {"prefix": {"addr": "fd00:10:244:1c::", "len": 64}}}}, {"return": null}]}},
    {"rule": {"family": "ip6", "table": "flannel-ipv6", "chain": "postrtg", "handle": 7, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": {"prefix": {"addr": "fd00:10:244::", "len": 56}}}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": {"prefix": {"addr": "ff00::", "len": 8}}}}, {"masquerade": {"flags": "fully-random"}}]}},
    {"rule": {"family": "ip6", "table": "flannel-ipv6", "chain": "postrtg", "handle": 8, "expr": [{"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": {"prefix": {"addr": "fd00:10:244::", "len": 56}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": {"prefix": {"addr": "fd00:10:244::", "len": 56}}}}, {"masquerade": {"flags": "fully-random"}}]}},
    {"rule": {"family": "ip6", "table": "flannel-ipv6", "chain": "forward", "handle": 9, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": {"prefix": {"addr": "fd00:10:244::", "len": 56}}}}, {"accept": null}]}},
    {"rule": {"family": "ip6", "table": "flannel-ipv6", "chain": "forward", "handle": 10, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": {"prefix": {"addr": "fd00:10:244::", "len": 56}}}}, {"accept": null}]}},
  ],
});

/**
 * flannel's v6 postrtg, as its traffic manager writes it (observed-flannel.md
 * nftables mode with S, N and M = ff00::/8; spec §9.5 "ip6 … ff00::/8").
 */
const FLANNEL_V6_POSTRTG = [
  'meta mark 0x00004000 return',
  'ip6 saddr fd00:10:244:1c::/64 ip6 daddr fd00:10:244::/56 return',
  'ip6 saddr fd00:10:244::/56 ip6 daddr fd00:10:244:1c::/64 return',
  'ip6 saddr != fd00:10:244:1c::/64 ip6 daddr fd00:10:244::/56 return',
  'ip6 saddr fd00:10:244::/56 ip6 daddr != ff00::/8 masquerade fully-random',
  'ip6 saddr != fd00:10:244::/56 ip6 daddr fd00:10:244::/56 masquerade fully-random',
];

test('flannel-ipv6 postrtg: flannel\'s rules for ip6 rule for rule, except rule 4 (the iptables meaning, as in flannel-ipv4)', () => {
  const c = nftMasqChain6(N6, S6, true);
  assert.deepEqual([c.name, c.type, c.hook, c.priority, c.comment], ['postrtg', 'nat', 'postrouting', 'srcnat', 'chain to manage traffic masquerading by flannel']);
  assert.deepEqual(c.rules, [
    'meta mark 0x00004000 return',
    'ip6 saddr fd00:10:244:1c::/64 ip6 daddr fd00:10:244::/56 return',
    'ip6 saddr fd00:10:244::/56 ip6 daddr fd00:10:244:1c::/64 return',
    'ip6 saddr != fd00:10:244::/56 ip6 daddr fd00:10:244:1c::/64 return',
    'ip6 saddr fd00:10:244::/56 ip6 daddr != ff00::/8 masquerade fully-random',
    'ip6 saddr != fd00:10:244::/56 ip6 daddr fd00:10:244::/56 masquerade fully-random',
  ]);
  // rule for rule against flannel's: only rule 4 differs, and only by swapping S and N
  c.rules.forEach((r, i) => (i === 3 ? assert.notEqual(r, FLANNEL_V6_POSTRTG[i]) : assert.equal(r, FLANNEL_V6_POSTRTG[i], `rule ${i + 1}`)));
  assert.equal(c.rules[3], FLANNEL_V6_POSTRTG[3]!.replace('!= fd00:10:244:1c::/64', '!= fd00:10:244::/56').replace(/daddr fd00:10:244::\/56/, 'daddr fd00:10:244:1c::/64'));
  // and the same shape as the v4 chain
  assert.deepEqual(c.rules.map((r) => r.replace(/ip6 /g, 'ip ').replace(/fd00:10:244:1c::\/64/g, 'S').replace(/fd00:10:244::\/56/g, 'N').replace('ff00::/8', 'M')),
    nftMasqChain(N, S, true).rules.map((r) => r.replace(/10\.244\.3\.0\/24/g, 'S').replace(/10\.244\.0\.0\/16/g, 'N').replace('224.0.0.0/4', 'M')));
  const plain = nftMasqChain6(N6, S6, false).rules;
  assert.deepEqual(plain.slice(4), ['ip6 saddr fd00:10:244::/56 ip6 daddr != ff00::/8 masquerade', 'ip6 saddr != fd00:10:244::/56 ip6 daddr fd00:10:244::/56 masquerade']);
});

test('flannel-ipv6 forward: flannel\'s two accepts for ip6', () => {
  const c = nftForwardChain6(N6);
  assert.deepEqual([c.name, c.type, c.hook, c.priority, c.comment], ['forward', 'filter', 'forward', 'filter', 'chain to accept flannel traffic']);
  assert.deepEqual(c.rules, ['ip6 saddr fd00:10:244::/56 accept', 'ip6 daddr fd00:10:244::/56 accept']);
});

test('both tables go to nft in one file (one transaction), v4 first, each declared, deleted and recreated', () => {
  const v4 = nftTableV4([nftMasqChain(N, S, true), nftForwardChain(N)]);
  const v6 = nftTableV6([nftMasqChain6(N6, S6, true), nftForwardChain6(N6)]);
  const p = nftTransaction([v4, v6]);
  assert.equal(p, nftPayload(v4) + nftPayload(v6));
  assert.equal(
    nftPayload(v6),
    [
      'add table ip6 flannel-ipv6',
      'delete table ip6 flannel-ipv6',
      'table ip6 flannel-ipv6 {',
      '\tcomment "rules for flannel-ipv6"',
      '\tchain postrtg {',
      '\t\tcomment "chain to manage traffic masquerading by flannel"',
      '\t\ttype nat hook postrouting priority srcnat; policy accept;',
      '\t\tmeta mark 0x00004000 return',
      '\t\tip6 saddr fd00:10:244:1c::/64 ip6 daddr fd00:10:244::/56 return',
      '\t\tip6 saddr fd00:10:244::/56 ip6 daddr fd00:10:244:1c::/64 return',
      '\t\tip6 saddr != fd00:10:244::/56 ip6 daddr fd00:10:244:1c::/64 return',
      '\t\tip6 saddr fd00:10:244::/56 ip6 daddr != ff00::/8 masquerade fully-random',
      '\t\tip6 saddr != fd00:10:244::/56 ip6 daddr fd00:10:244::/56 masquerade fully-random',
      '\t}',
      '\tchain forward {',
      '\t\tcomment "chain to accept flannel traffic"',
      '\t\ttype filter hook forward priority filter; policy accept;',
      '\t\tip6 saddr fd00:10:244::/56 accept',
      '\t\tip6 daddr fd00:10:244::/56 accept',
      '\t}',
      '}',
      '',
    ].join('\n'),
  );
  assert.equal((p.match(/^delete table /gm) ?? []).length, 2);
});

test('flannel-ipv6 read back from nft -j: exactly the wanted rules; drift seen as for v4', () => {
  const want = nftTableV6([nftMasqChain6(N6, S6, true), nftForwardChain6(N6)]);
  const listed = parseListedTable(LISTED6);
  assert.deepEqual(listed.map((c) => [c.name, c.rules]), want.chains.map((c) => [c.name, c.rules]));
  assert.deepEqual(tableDrift(want, listed), []);
  // the v4 rules are not the v6 ones (a family mix-up is drift)
  assert.notDeepEqual(tableDrift(nftTableV4([nftMasqChain(N, S, true), nftForwardChain(N)]), listed), []);
  const changed = parseListedTable(LISTED6);
  changed[0]!.rules[4] = 'ip6 saddr fd00:10:244::/56 ip6 daddr != ff00::/8 masquerade';
  assert.match(tableDrift(want, changed).join(), /chain postrtg has rules/);
});
