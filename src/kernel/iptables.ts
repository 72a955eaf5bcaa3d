// flannel's iptables rules (spec §9): masquerade (--ip-masq) in nat
// FLANNEL-POSTRTG and FORWARD accepts (--iptables-forward-rules) in filter
// FLANNEL-FWD, byte-for-byte the rule specs flannel installs.
//
// There is no netlink API for xtables; like flannel (go-iptables) we drive the
// iptables binaries. Each chain is rebuilt atomically with one
// `iptables-restore --noflush` (declaring a chain flushes it), and the jump
// from POSTROUTING/FORWARD is appended once. A periodic check (every
// --iptables-resync seconds) rebuilds whatever went missing. Rules are left in
// place on shutdown, as in flannel.

import { execFile } from 'node:child_process';
import { formatIPv4Net, type IPv4Net } from '../lease/ip.js';
import type { Logger } from '../log/log.js';

export const MASQ_COMMENT = 'flanneld masq';
export const FWD_COMMENT = 'flanneld forward';

export interface RuleSet {
  table: 'nat' | 'filter';
  /** the built-in chain that jumps to ours */
  parent: 'POSTROUTING' | 'FORWARD';
  chain: string;
  jump: string[];
  rules: string[][];
}

export function masqRules(network: IPv4Net, subnet: IPv4Net, randomFully: boolean): RuleSet {
  const N = formatIPv4Net(network);
  const S = formatIPv4Net(subnet);
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
      ['-s', N, '!', '-d', '224.0.0.0/4', ...c, '-j', 'MASQUERADE', ...rf],
      ['!', '-s', N, '-d', N, ...c, '-j', 'MASQUERADE', ...rf],
    ],
  };
}

export function forwardRules(network: IPv4Net): RuleSet {
  const N = formatIPv4Net(network);
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

function exec(cmd: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 127) : 0;
      resolve({ code, stdout, stderr: stderr || (err && code === 127 ? err.message : '') });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

export class IptablesManager {
  private sets: RuleSet[] = [];
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  repairs = 0;

  constructor(
    private readonly log: Logger,
    private readonly resyncSeconds: number,
  ) {}

  /** Install (or rebuild) the rule sets, then keep them in place. */
  async setup(sets: RuleSet[]): Promise<void> {
    this.sets = sets;
    for (const s of sets) await this.ensure(s);
    if (this.resyncSeconds > 0) {
      this.timer = setInterval(() => void this.check(), this.resyncSeconds * 1000);
      this.timer.unref();
    }
  }

  private async ensure(s: RuleSet): Promise<void> {
    const restore = await exec('iptables-restore', ['--noflush', '--wait'], restorePayload(s));
    if (restore.code !== 0) throw new Error(`iptables-restore (${s.table} ${s.chain}) failed: ${restore.stderr.trim()}`);
    const has = await exec('iptables', ['-w', '-t', s.table, '-C', s.parent, ...s.jump]);
    if (has.code !== 0) {
      const add = await exec('iptables', ['-w', '-t', s.table, '-A', s.parent, ...s.jump]);
      if (add.code !== 0) throw new Error(`iptables -t ${s.table} -A ${s.parent} failed: ${add.stderr.trim()}`);
    }
  }

  private async intact(s: RuleSet): Promise<boolean> {
    const list = await exec('iptables', ['-w', '-t', s.table, '-S', s.chain]);
    if (list.code !== 0) return false;
    const lines = list.stdout.trim().split('\n');
    if (lines.join('\n') !== expectedListing(s).join('\n')) return false;
    return (await exec('iptables', ['-w', '-t', s.table, '-C', s.parent, ...s.jump])).code === 0;
  }

  /** The periodic resync: rebuild any chain that is not exactly as installed. */
  async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (const s of this.sets) {
        if (await this.intact(s)) continue;
        this.log.warn(`some iptables rules in ${s.table} ${s.chain} are missing; recreating them`);
        await this.ensure(s);
        this.repairs++;
      }
    } catch (e) {
      this.log.warn((e as Error).message);
    } finally {
      this.busy = false;
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
