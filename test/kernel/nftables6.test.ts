// Privileged test of the dual-stack firewall work against the real `nft`,
// `iptables` and `ip6tables` binaries, each test in its own fresh network
// namespace (every command the managers run is prefixed with
// `ip netns exec <ns>`; the root namespace's firewall is never read or
// written). The namespaces are deleted in `after`, which node:test runs even
// when a test fails.
//
//   - flannel-ipv4 and flannel-ipv6 go in one nft transaction (a bad v6 table
//     leaves no v4 table either) and the v6 table is repaired like the v4 one;
//   - switching modes, both directions and both families: the other mode's
//     state is set up, then shown gone with exact `nft list ruleset`,
//     `iptables-save` and `ip6tables-save` output.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { parseIPv4Net, parseIPv6Net } from '../../src/lease/ip.js';
import { MemoryLogger } from '../../src/testing/memory-logger.js';
import { privilegedSkip } from '../../src/testing/privileged.js';
import { cleanupIptables, forwardRules, forwardRules6, IptablesManager, masqRules, masqRules6 } from '../../src/kernel/iptables.js';
import {
  cleanupNftables,
  nftForwardChain,
  nftForwardChain6,
  nftMasqChain,
  nftMasqChain6,
  NftablesManager,
  nftTableV4,
  nftTableV6,
  parseListedTable,
} from '../../src/kernel/nftables.js';

const skip = privilegedSkip('creates network namespaces', ['ip', 'nft', 'iptables', 'iptables-restore', 'iptables-save', 'ip6tables', 'ip6tables-restore', 'ip6tables-save']);
const TAG = `${process.pid}-${randomBytes(2).toString('hex')}`;
const NS_TX = `ftsnft6t-${TAG}`;
const NS_SW = `ftsnft6s-${TAG}`;
const N = parseIPv4Net('10.244.0.0/16');
const S = parseIPv4Net('10.244.3.0/24');
const N6 = parseIPv6Net('fd00:10:244::/56');
const S6 = parseIPv6Net('fd00:10:244:1c::/64');
const v4 = nftTableV4([nftMasqChain(N, S, true), nftForwardChain(N)]);
const v6 = nftTableV6([nftMasqChain6(N6, S6, true), nftForwardChain6(N6)]);

const inNs = (ns: string, ...cmd: string[]): string => execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const tables = (ns: string) => inNs(ns, 'nft', 'list', 'tables').trim().split('\n').filter(Boolean);
/** `iptables-save -t <table>` (or ip6tables-save) without its "# Generated/Completed" comment lines (they carry timestamps). */
const save = (ns: string, bin: 'iptables-save' | 'ip6tables-save', table: 'nat' | 'filter') =>
  inNs(ns, bin, '-t', table).split('\n').filter((l) => l && !l.startsWith('#'));

before(() => {
  if (skip) return;
  execFileSync('ip', ['netns', 'add', NS_TX]);
  execFileSync('ip', ['netns', 'add', NS_SW]);
});

after(() => {
  if (skip) return;
  for (const ns of [NS_TX, NS_SW]) {
    try {
      execFileSync('ip', ['netns', 'del', ns]);
    } catch {
      // already gone
    }
  }
});

test('flannel-ipv4 and flannel-ipv6 in one nft transaction: all or nothing; the v6 table is re-checked and repaired', { skip }, async () => {
  const log = new MemoryLogger();
  const m = new NftablesManager(log, 0, { prefix: ['ip', 'netns', 'exec', NS_TX] });

  // a v6 table nft refuses (a v4 address in an ip6 rule): the v4 table is not installed either
  const bad = nftTableV6([{ ...nftForwardChain6(N6), rules: ['ip6 saddr 10.244.0.0/16 accept'] }]);
  await assert.rejects(m.setup([v4, bad]), /nft -f \(table ip flannel-ipv4, table ip6 flannel-ipv6\) failed/);
  m.close();
  assert.deepEqual(tables(NS_TX), [], 'nothing of the failed transaction is left');

  await m.setup([v4, v6]);
  assert.deepEqual(tables(NS_TX), ['table ip flannel-ipv4', 'table ip6 flannel-ipv6']);
  const listed6 = () => parseListedTable(inNs(NS_TX, 'nft', '-j', 'list', 'table', 'ip6', 'flannel-ipv6'));
  assert.deepEqual(listed6().map((c) => [c.name, c.rules]), v6.chains.map((c) => [c.name, c.rules]));
  // `nft list` prints flannel's rule text back unchanged
  const text = inNs(NS_TX, 'nft', 'list', 'table', 'ip6', 'flannel-ipv6');
  for (const c of v6.chains) for (const r of c.rules) assert.ok(text.includes(`\t\t${r}\n`), `${r} in:\n${text}`);
  assert.match(text, /^table ip6 flannel-ipv6 \{\n\tcomment "rules for flannel-ipv6"\n/);
  await m.check();
  assert.equal(m.repairs, 0);

  const handle = (chain: string, i: number) =>
    String((JSON.parse(inNs(NS_TX, 'nft', '-a', '-j', 'list', 'chain', 'ip6', 'flannel-ipv6', chain)) as { nftables: Array<{ rule?: { handle: number } }> }).nftables.filter((x) => x.rule)[i]!.rule!.handle);
  const breakages: Array<[string, () => void]> = [
    ['a deleted v6 masquerade rule', () => inNs(NS_TX, 'nft', 'delete', 'rule', 'ip6', 'flannel-ipv6', 'postrtg', 'handle', handle('postrtg', 4))],
    ['a changed v6 forward rule', () => inNs(NS_TX, 'nft', 'replace', 'rule', 'ip6', 'flannel-ipv6', 'forward', 'handle', handle('forward', 0), 'ip6', 'saddr', 'fd00:10:244::/56', 'drop')],
    ['the v6 table deleted', () => inNs(NS_TX, 'nft', 'delete', 'table', 'ip6', 'flannel-ipv6')],
  ];
  const v4Before = inNs(NS_TX, 'nft', '-a', 'list', 'table', 'ip', 'flannel-ipv4');
  for (const [what, breakIt] of breakages) {
    breakIt();
    assert.notDeepEqual(await m.drift(v6), [], `${what} is seen`);
    const n: number = m.repairs;
    await m.check();
    assert.equal(m.repairs, n + 1, `${what} is repaired (one table)`);
    assert.deepEqual(await m.drift(v6), [], `${what}: intact again`);
  }
  assert.equal(inNs(NS_TX, 'nft', '-a', 'list', 'table', 'ip', 'flannel-ipv4'), v4Before, 'the intact v4 table was not touched (same handles)');
  assert.equal(log.lines.filter((l) => /nftables rules of ip6 flannel-ipv6 are missing or changed/.test(l.msg)).length, 3);
  m.close();
});

test('switching modes cleans up the other mode, both directions, both families (exact ruleset listings)', { skip }, async () => {
  const log = new MemoryLogger();
  const prefix = ['ip', 'netns', 'exec', NS_SW];

  // A dual-stack nftables-mode run, plus a table of someone else's.
  const nft = new NftablesManager(log, 0, { prefix });
  await nft.setup([v4, v6]);
  inNs(NS_SW, 'nft', 'add', 'table', 'inet', 'other');
  nft.close();
  assert.deepEqual(tables(NS_SW), ['table ip flannel-ipv4', 'table ip6 flannel-ipv6', 'table inet other']);

  // -> iptables mode: both flannel tables go, the other stays
  assert.deepEqual(await cleanupNftables(log, { prefix }), ['ip flannel-ipv4', 'ip6 flannel-ipv6']);
  assert.equal(inNs(NS_SW, 'nft', 'list', 'ruleset'), 'table inet other {\n}\n');
  assert.deepEqual(await cleanupNftables(log, { prefix }), [], 'nothing left to do');

  // A dual-stack iptables-mode run, plus foreign rules in both families.
  inNs(NS_SW, 'nft', 'delete', 'table', 'inet', 'other');
  const ipt = new IptablesManager(log, 0, { prefix });
  await ipt.setup([masqRules(N, S, true), forwardRules(N), masqRules6(N6, S6, true), forwardRules6(N6)]);
  ipt.close();
  inNs(NS_SW, 'iptables', '-A', 'FORWARD', '-s', '192.0.2.0/24', '-j', 'ACCEPT');
  inNs(NS_SW, 'ip6tables', '-A', 'FORWARD', '-s', '2001:db8::/64', '-j', 'ACCEPT');
  inNs(NS_SW, 'ip6tables', '-t', 'nat', '-A', 'POSTROUTING', '-s', '2001:db8::/64', '-j', 'RETURN');
  const flannelLines = (bin: 'iptables-save' | 'ip6tables-save') => [...save(NS_SW, bin, 'nat'), ...save(NS_SW, bin, 'filter')].filter((l) => /FLANNEL|flanneld/.test(l));
  assert.equal(flannelLines('iptables-save').length, 2 + 2 + 6 + 2, 'v4: 2 chains, 2 jumps, 6 + 2 rules');
  assert.equal(flannelLines('ip6tables-save').length, 2 + 2 + 6 + 2, 'v6: 2 chains, 2 jumps, 6 + 2 rules');
  assert.ok(flannelLines('ip6tables-save').includes('-A FLANNEL-POSTRTG -s fd00:10:244::/56 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully'));

  // -> nftables mode: every FLANNEL chain and jump is gone in both families, the foreign rules stay
  assert.deepEqual(await cleanupIptables(log, { prefix }), [
    'iptables nat FLANNEL-POSTRTG',
    'iptables filter FLANNEL-FWD',
    'ip6tables nat FLANNEL-POSTRTG',
    'ip6tables filter FLANNEL-FWD',
  ]);
  assert.deepEqual(save(NS_SW, 'iptables-save', 'nat'), [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    'COMMIT',
  ]);
  assert.deepEqual(save(NS_SW, 'iptables-save', 'filter'), [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    '-A FORWARD -s 192.0.2.0/24 -j ACCEPT',
    'COMMIT',
  ]);
  assert.deepEqual(save(NS_SW, 'ip6tables-save', 'nat'), [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    '-A POSTROUTING -s 2001:db8::/64 -j RETURN',
    'COMMIT',
  ]);
  assert.deepEqual(save(NS_SW, 'ip6tables-save', 'filter'), [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    '-A FORWARD -s 2001:db8::/64 -j ACCEPT',
    'COMMIT',
  ]);
  assert.doesNotMatch(inNs(NS_SW, 'nft', 'list', 'ruleset'), /FLANNEL|flannel/i, 'nor in the nf_tables view of iptables-nft');
  assert.deepEqual(await cleanupIptables(log, { prefix }), [], 'nothing left to do');
});
