// Privileged test of the traffic managers against the real `nft` and
// `iptables` binaries, confined to a fresh network namespace: every command
// the managers run is prefixed with `ip netns exec <ns>`, so the root
// namespace's firewall is never read or written. The namespace is deleted in
// `after`, which node:test runs even when a test fails.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { parseIPv4Net } from '../../src/lease/ip.js';
import { MemoryLogger } from '../../src/testing/memory-logger.js';
import { privilegedSkip } from '../../src/testing/privileged.js';
import { cleanupIptables, forwardRules, IptablesManager, masqRules } from '../../src/kernel/iptables.js';
import { cleanupNftables, nftForwardChain, nftMasqChain, NftablesManager, nftTableV4, parseListedTable } from '../../src/kernel/nftables.js';

const skip = privilegedSkip('creates a network namespace', ['ip', 'nft', 'iptables', 'iptables-restore']);
const NS = `ftsnft-${process.pid}-${randomBytes(2).toString('hex')}`;
const prefix = ['ip', 'netns', 'exec', NS];
const N = parseIPv4Net('10.244.0.0/16');
const S = parseIPv4Net('10.244.3.0/24');
const want = nftTableV4([nftMasqChain(N, S, true), nftForwardChain(N)]);

const inNs = (...cmd: string[]): string => execFileSync('ip', ['netns', 'exec', NS, ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const listed = () => parseListedTable(inNs('nft', '-j', 'list', 'table', 'ip', 'flannel-ipv4'));
const tables = () => inNs('nft', 'list', 'tables').trim().split('\n').filter(Boolean);
const flannelIptables = () =>
  ['nat', 'filter'].flatMap((t) => inNs('iptables-save', '-t', t).split('\n').filter((l) => /FLANNEL/.test(l)));

/** handle of the rule at `index` in `chain` (from `nft -a -j`). */
function ruleHandle(chain: string, index: number): number {
  const doc = JSON.parse(inNs('nft', '-a', '-j', 'list', 'chain', 'ip', 'flannel-ipv4', chain)) as { nftables: Array<{ rule?: { handle: number } }> };
  return doc.nftables.filter((x) => x.rule).map((x) => x.rule!.handle)[index]!;
}

before(() => {
  if (skip) return;
  execFileSync('ip', ['netns', 'add', NS]);
});

after(() => {
  if (skip) return;
  execFileSync('ip', ['netns', 'del', NS]);
});

test('nftables: installed rule for rule, and every kind of drift is repaired by check()', { skip }, async () => {
  const log = new MemoryLogger();
  const m = new NftablesManager(log, 0, { prefix });
  await m.setup([want]);
  assert.deepEqual(listed().map((c) => [c.name, c.rules]), want.chains.map((c) => [c.name, c.rules]));
  assert.deepEqual(await m.drift(want), []);
  await m.check();
  assert.equal(m.repairs, 0, 'an intact table is left alone');

  const breakages: Array<[string, () => void]> = [
    ['a deleted rule', () => inNs('nft', 'delete', 'rule', 'ip', 'flannel-ipv4', 'postrtg', 'handle', String(ruleHandle('postrtg', 3)))],
    ['a changed rule', () => inNs('nft', 'replace', 'rule', 'ip', 'flannel-ipv4', 'forward', 'handle', String(ruleHandle('forward', 1)), 'ip', 'daddr', '10.244.0.0/16', 'drop')],
    ['an added rule', () => inNs('nft', 'add', 'rule', 'ip', 'flannel-ipv4', 'postrtg', 'counter')],
    ['a deleted chain', () => inNs('nft', 'delete', 'chain', 'ip', 'flannel-ipv4', 'forward')],
    ['a deleted table', () => inNs('nft', 'delete', 'table', 'ip', 'flannel-ipv4')],
  ];
  for (const [what, breakIt] of breakages) {
    breakIt();
    assert.notDeepEqual(await m.drift(want), [], `${what} is seen`);
    const repairsBefore: number = m.repairs;
    await m.check();
    assert.equal(m.repairs, repairsBefore + 1, `${what} is repaired`);
    assert.deepEqual(await m.drift(want), [], `${what}: intact again`);
    assert.deepEqual(listed().map((c) => c.rules), want.chains.map((c) => c.rules));
  }
  assert.ok(log.lines.some((l) => l.level === 'warn' && /missing or changed/.test(l.msg)));
  m.close();
});

test('nftables: the resync timer repairs on its own; setup again replaces an old subnet\'s rules', { skip }, async () => {
  const m = new NftablesManager(new MemoryLogger(), 1, { prefix });
  const old = nftTableV4([nftMasqChain(N, parseIPv4Net('10.244.9.0/24'), true)]);
  await m.setup([old]);
  await m.setup([want]);
  assert.deepEqual(listed().map((c) => c.rules), want.chains.map((c) => c.rules), 'nothing of the old subnet survives');
  inNs('nft', 'flush', 'chain', 'ip', 'flannel-ipv4', 'postrtg');
  const t0 = Date.now();
  while ((await m.drift(want)).length > 0) {
    assert.ok(Date.now() - t0 < 2500, 'repaired within the 1 s resync period');
    await new Promise((r) => setTimeout(r, 50));
  }
  m.close();
});

test('switching modes: each cleanup removes exactly the other mode\'s rules', { skip }, async () => {
  const log = new MemoryLogger();
  // iptables mode, with an extra jump to FLANNEL-FWD from a chain of someone else's
  const ipt = new IptablesManager(log, 0, { prefix });
  await ipt.setup([masqRules(N, S, true), forwardRules(N)]);
  inNs('iptables', '-t', 'filter', '-N', 'MINE');
  inNs('iptables', '-t', 'filter', '-A', 'MINE', '-j', 'FLANNEL-FWD');
  inNs('iptables', '-t', 'filter', '-A', 'FORWARD', '-s', '192.0.2.0/24', '-j', 'ACCEPT');
  assert.equal(flannelIptables().length, 2 + 3 + 6 + 2); // 2 chains, 3 jumps, 6 + 2 rules
  ipt.close();

  // -> nftables mode
  assert.deepEqual(await cleanupIptables(log, { prefix }), ['iptables nat FLANNEL-POSTRTG', 'iptables filter FLANNEL-FWD']);
  assert.deepEqual(flannelIptables(), []);
  assert.deepEqual(inNs('iptables', '-S', 'FORWARD').trim().split('\n'), ['-P FORWARD ACCEPT', '-A FORWARD -s 192.0.2.0/24 -j ACCEPT'], 'other rules stay');
  assert.deepEqual(inNs('iptables', '-S', 'MINE').trim().split('\n'), ['-N MINE']);
  assert.deepEqual(await cleanupIptables(log, { prefix }), [], 'a second cleanup has nothing to do');
  const nft = new NftablesManager(log, 0, { prefix });
  await nft.setup([want]);
  inNs('nft', 'add', 'table', 'ip6', 'flannel-ipv6'); // as real flannel leaves it
  inNs('nft', 'add', 'table', 'ip', 'other');
  nft.close();

  // -> iptables mode
  assert.deepEqual(await cleanupNftables(log, { prefix }), ['ip flannel-ipv4', 'ip6 flannel-ipv6']);
  assert.ok(!tables().some((t) => /flannel/.test(t)), tables().join(', '));
  assert.ok(tables().includes('table ip other'), 'other tables stay');
  assert.deepEqual(await cleanupNftables(log, { prefix }), []);

  // iptables mode without --ip-masq drops a FLANNEL-POSTRTG left by an earlier run, keeps FLANNEL-FWD
  await ipt.setup([masqRules(N, S, true), forwardRules(N)]);
  ipt.close();
  assert.deepEqual(await cleanupIptables(log, { prefix, families: ['iptables'], keep: ['FLANNEL-FWD'] }), ['iptables nat FLANNEL-POSTRTG']);
  assert.deepEqual(flannelIptables().filter((l) => /POSTRTG/.test(l)), []);
  assert.equal(flannelIptables().length, 1 + 1 + 2); // the chain, its jump, its 2 rules
});
