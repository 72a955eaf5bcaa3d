// flannel's iptables rules (spec §9): masquerade (--ip-masq) in nat
// FLANNEL-POSTRTG and FORWARD accepts (--iptables-forward-rules) in filter
// FLANNEL-FWD, byte-for-byte the rule specs flannel installs.
//
// There is no netlink API for xtables; like flannel (go-iptables) we drive the
// iptables binaries. Each chain is rebuilt atomically with one
// `iptables-restore --noflush` (declaring a chain flushes it), and the jump
// from POSTROUTING/FORWARD is appended once. A periodic check (every
// --iptables-resync seconds) rebuilds whatever went missing. Rules are left in
// place on shutdown, as in flannel. cleanupIptables() removes our chains and
// every jump to them, for nftables mode (src/kernel/nftables.ts) and for
// chains a run no longer wants.

import { execFile } from 'node:child_process';
import { formatIPv4Net, formatIPv6Net, type IPv4Net, type IPv6Net } from '../lease/ip.js';
import type { Logger } from '../log/log.js';
import { Resync } from './resync.js';

export const MASQ_COMMENT = 'flanneld masq';
export const FWD_COMMENT = 'flanneld forward';

export interface RuleSet {
  table: 'nat' | 'filter';
  /** the built-in chain that jumps to ours */
  parent: 'POSTROUTING' | 'FORWARD';
  chain: string;
  jump: string[];
  rules: string[][];
  /** ip6tables for the IPv6 rules (EnableIPv6); default iptables */
  bin?: 'iptables' | 'ip6tables';
  /** insert the jump at the top of the parent (before FLANNEL-FWD's accepts) instead of appending it */
  first?: boolean;
}

export function masqRules(network: IPv4Net, subnet: IPv4Net, randomFully: boolean): RuleSet {
  return masqRuleSet(formatIPv4Net(network), formatIPv4Net(subnet), '224.0.0.0/4', randomFully);
}

/** The same with ip6tables for IPv6Network and our v6 subnet (multicast ff00::/8), spec §9. */
export function masqRules6(network: IPv6Net, subnet: IPv6Net, randomFully: boolean): RuleSet {
  return { ...masqRuleSet(formatIPv6Net(network), formatIPv6Net(subnet), 'ff00::/8', randomFully), bin: 'ip6tables' };
}

function masqRuleSet(N: string, S: string, multicast: string, randomFully: boolean): RuleSet {
  const c = ['-m', 'comment', '--comment', MASQ_COMMENT];
  const rf = randomFully ? ['--random-fully'] : [];
  return {
    table: 'nat',
    parent: 'POSTROUTING',
    chain: 'FLANNEL-POSTRTG',
    jump: [...c, '-j', 'FLANNEL-POSTRTG'],
    rules: [
      ['-m', 'mark', '--mark', '0x4000/0x4000', ...c, '-j', 'RETURN'],
      ['-s', S, '-d', N, ...c, '-j', 'RETURN'],
      ['-s', N, '-d', S, ...c, '-j', 'RETURN'],
      ['!', '-s', N, '-d', S, ...c, '-j', 'RETURN'],
      ['-s', N, '!', '-d', multicast, ...c, '-j', 'MASQUERADE', ...rf],
      ['!', '-s', N, '-d', N, ...c, '-j', 'MASQUERADE', ...rf],
    ],
  };
}

export const EDGE_MASQ_COMMENT = 'flanneld edge masq';

/**
 * --edge-masq (issue 12, src/backend/vxlan/edge.ts): pod traffic leaving
 * through an edge segment's interface to that segment takes the interface's
 * address, so hosts on the segment need no route back to the pod Network.
 */
export function edgeMasqRules(network: IPv4Net, segments: ReadonlyArray<{ net: IPv4Net; iface: string }>): RuleSet {
  const c = ['-m', 'comment', '--comment', EDGE_MASQ_COMMENT];
  return {
    table: 'nat',
    parent: 'POSTROUTING',
    chain: 'FLANNEL-EDGE-MASQ',
    jump: [...c, '-j', 'FLANNEL-EDGE-MASQ'],
    rules: segments.map((s) => ['-s', formatIPv4Net(network), '-d', formatIPv4Net(s.net), '-o', s.iface, ...c, '-j', 'MASQUERADE']),
  };
}

export const EDGE_FWD_COMMENT = 'flanneld edge';

/**
 * --edge-allow (issue 12): only the allowed pod CIDRs may reach an edge
 * segment through its interface, or be reached from it; the rest of the pod
 * Network is dropped there. Its jump goes first in FORWARD, ahead of
 * FLANNEL-FWD's accepts. Rules are in `iptables -S` order (-s -d -i/-o).
 */
export function edgeForwardRules(network: IPv4Net, segments: ReadonlyArray<{ net: IPv4Net; iface: string }>, allow: readonly IPv4Net[]): RuleSet {
  const c = ['-m', 'comment', '--comment', EDGE_FWD_COMMENT];
  const N = formatIPv4Net(network);
  const rules: string[][] = [];
  for (const s of segments) {
    const E = formatIPv4Net(s.net);
    for (const a of allow) rules.push(['-s', formatIPv4Net(a), '-d', E, '-o', s.iface, ...c, '-j', 'ACCEPT']);
    rules.push(['-s', N, '-d', E, '-o', s.iface, ...c, '-j', 'DROP']);
    for (const a of allow) rules.push(['-s', E, '-d', formatIPv4Net(a), '-i', s.iface, ...c, '-j', 'ACCEPT']);
    rules.push(['-s', E, '-d', N, '-i', s.iface, ...c, '-j', 'DROP']);
  }
  return { table: 'filter', parent: 'FORWARD', chain: 'FLANNEL-EDGE', jump: [...c, '-j', 'FLANNEL-EDGE'], rules, first: true };
}

export function forwardRules(network: IPv4Net): RuleSet {
  return forwardRuleSet(formatIPv4Net(network));
}

export function forwardRules6(network: IPv6Net): RuleSet {
  return { ...forwardRuleSet(formatIPv6Net(network)), bin: 'ip6tables' };
}

function forwardRuleSet(N: string): RuleSet {
  const c = ['-m', 'comment', '--comment', FWD_COMMENT];
  return {
    table: 'filter',
    parent: 'FORWARD',
    chain: 'FLANNEL-FWD',
    jump: [...c, '-j', 'FLANNEL-FWD'],
    rules: [
      ['-s', N, ...c, '-j', 'ACCEPT'],
      ['-d', N, ...c, '-j', 'ACCEPT'],
    ],
  };
}

const quote = (a: string) => (/^[\w./:!-]+$/.test(a) ? a : `"${a}"`);

/** The iptables-restore payload that (re)builds our chain. */
export function restorePayload(r: RuleSet): string {
  return [`*${r.table}`, `:${r.chain} - [0:0]`, ...r.rules.map((x) => `-A ${r.chain} ${x.map(quote).join(' ')}`), 'COMMIT', ''].join('\n');
}

/** What `iptables -S <chain>` prints when our chain is intact. */
export function expectedListing(r: RuleSet): string[] {
  return [`-N ${r.chain}`, ...r.rules.map((x) => `-A ${r.chain} ${x.map(quote).join(' ')}`)];
}

export interface CmdResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * How the traffic managers run their commands. `prefix` is prepended to every
 * command line (tests use ['ip', 'netns', 'exec', <ns>] to confine a manager
 * to a namespace); the daemon runs them as they are.
 */
export interface CmdOptions {
  prefix?: readonly string[];
}

/** Runs cmd (never throws); code 127 when the binary cannot be started. */
export function runCmd(cmd: string, args: readonly string[], input?: string, o: CmdOptions = {}): Promise<CmdResult> {
  const argv = [...(o.prefix ?? []), cmd, ...args];
  return new Promise((resolve) => {
    const child = execFile(argv[0]!, argv.slice(1), { timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 127) : 0;
      resolve({ code, stdout, stderr: stderr || (err && code === 127 ? err.message : '') });
    });
    child.stdin?.on('error', () => undefined); // the child may exit before reading its input
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

export class IptablesManager {
  private readonly resync: Resync<RuleSet>;

  constructor(
    log: Logger,
    resyncSeconds: number,
    private readonly cmd: CmdOptions = {},
  ) {
    this.resync = new Resync(
      {
        problems: async (s) => ((await this.intact(s)) ? [] : ['missing']),
        install: (s) => this.ensure(s),
        describe: (s) => `some ${s.bin ?? 'iptables'} rules in ${s.table} ${s.chain} are missing; recreating them`,
      },
      log,
      resyncSeconds,
    );
  }

  /** chains put back by the periodic check */
  get repairs(): number {
    return this.resync.repairs;
  }

  private exec(bin: string, args: string[], input?: string): Promise<CmdResult> {
    return runCmd(bin, args, input, this.cmd);
  }

  /** Install (or rebuild) the rule sets, then keep them in place. */
  async setup(sets: RuleSet[]): Promise<void> {
    this.close();
    this.resync.items = sets;
    for (const s of sets) await this.ensure(s);
    this.resync.start();
  }

  private async ensure(s: RuleSet): Promise<void> {
    const bin = s.bin ?? 'iptables';
    const restore = await this.exec(`${bin}-restore`, ['--noflush', '--wait'], restorePayload(s));
    if (restore.code !== 0) throw new Error(`${bin}-restore (${s.table} ${s.chain}) failed: ${restore.stderr.trim()}`);
    const has = await this.exec(bin, ['-w', '-t', s.table, '-C', s.parent, ...s.jump]);
    if (has.code !== 0) {
      const where = s.first ? ['-I', s.parent, '1'] : ['-A', s.parent];
      const add = await this.exec(bin, ['-w', '-t', s.table, ...where, ...s.jump]);
      if (add.code !== 0) throw new Error(`${bin} -t ${s.table} ${where.join(' ')} failed: ${add.stderr.trim()}`);
    }
  }

  private async intact(s: RuleSet): Promise<boolean> {
    const bin = s.bin ?? 'iptables';
    const list = await this.exec(bin, ['-w', '-t', s.table, '-S', s.chain]);
    if (list.code !== 0) return false;
    const lines = list.stdout.trim().split('\n');
    if (lines.join('\n') !== expectedListing(s).join('\n')) return false;
    return (await this.exec(bin, ['-w', '-t', s.table, '-C', s.parent, ...s.jump])).code === 0;
  }

  /** The periodic resync: rebuild any chain that is not exactly as installed. */
  check(): Promise<void> {
    return this.resync.check();
  }

  close(): void {
    this.resync.stop();
  }
}

/** flannel's own iptables chains, by table: what nftables mode removes (spec §9.4). */
export const FLANNEL_IPTABLES_CHAINS: ReadonlyArray<{ table: 'nat' | 'filter'; chain: string }> = [
  { table: 'nat', chain: 'FLANNEL-POSTRTG' },
  { table: 'filter', chain: 'FLANNEL-FWD' },
  // flannel-ts's own (issue 12), removed the same way when a run does not want it
  { table: 'nat', chain: 'FLANNEL-EDGE-MASQ' },
  { table: 'filter', chain: 'FLANNEL-EDGE' },
];

/**
 * The iptables-restore payload that removes `chain` from one table, given that
 * table's `iptables -S` listing: every rule elsewhere that jumps (or goes) to
 * it is deleted, then the chain is flushed and deleted, all in one COMMIT.
 * null when the chain does not exist (nothing to do). The listing's lines are
 * already in iptables-restore syntax, so a `-A` line becomes its `-D` line.
 */
export function cleanupPayload(table: string, chain: string, listing: string): string | null {
  const lines = listing.split('\n').map((l) => l.trim());
  if (!lines.includes(`-N ${chain}`)) return null;
  const target = new RegExp(`\\s-[jg] ${chain.replace(/[-.]/g, '\\$&')}(\\s|$)`);
  const jumps = lines.filter((l) => l.startsWith('-A ') && !l.startsWith(`-A ${chain} `) && target.test(l)).map((l) => `-D ${l.slice(3)}`);
  return [`*${table}`, ...jumps, `-F ${chain}`, `-X ${chain}`, 'COMMIT', ''].join('\n');
}

export interface IptablesCleanupOptions extends CmdOptions {
  /** which binaries (address families) to clean; default both */
  families?: ReadonlyArray<'iptables' | 'ip6tables'>;
  /** chains to leave alone (the ones this run installs) */
  keep?: readonly string[];
}

/**
 * Removes flannel's iptables chains and the jumps to them, for IPv4 and IPv6:
 * what flanneld does when it starts in nftables mode (spec §9.4). Iptables
 * mode uses it too, with `keep`, so that a chain this run does not want (say
 * FLANNEL-POSTRTG after a restart without --ip-masq) stops applying; flannel
 * leaves such a chain in place. Returns what it removed, e.g.
 * ['iptables nat FLANNEL-POSTRTG']. It only reads (`iptables -S`) unless one
 * of flannel's chains is there.
 *
 * Unlike flannel, FLANNEL-FWD is looked for in `filter`, where it lives
 * (flannel looks in `nat`, ⚠ spec §9.4, and so never removes it). A missing
 * iptables binary is not an error here: a host without iptables has nothing
 * to clean up (flannel fails in that case).
 */
export async function cleanupIptables(log: Logger, o: IptablesCleanupOptions = {}): Promise<string[]> {
  const removed: string[] = [];
  for (const bin of o.families ?? ['iptables', 'ip6tables']) {
    for (const { table, chain } of FLANNEL_IPTABLES_CHAINS) {
      if (o.keep?.includes(chain)) continue;
      const list = await runCmd(bin, ['-w', '-t', table, '-S'], undefined, o);
      if (list.code === 127) {
        log.debug(`${bin} not available (${list.stderr.trim()}); no ${bin} rules to clean up`);
        break;
      }
      // A table that cannot be listed has nothing of ours in it.
      if (list.code !== 0) continue;
      const payload = cleanupPayload(table, chain, list.stdout);
      if (!payload) continue;
      const r = await runCmd(`${bin}-restore`, ['--noflush', '--wait'], payload, o);
      if (r.code !== 0) {
        log.warn(`could not remove ${bin} chain ${table} ${chain}: ${r.stderr.trim()}`);
        continue;
      }
      removed.push(`${bin} ${table} ${chain}`);
    }
  }
  if (removed.length) log.info(`removed flannel iptables rules: ${removed.join(', ')}`);
  return removed;
}
