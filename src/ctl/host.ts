// Host facts outside rtnetlink that diagnose reads: sysctls (/proc/sys),
// firewall rules (iptables-save / nft list ruleset, read only), checksum
// offload (ethtool -k, read only, when installed) and the kernel release.
// Every external command runs with a short timeout; a missing tool is
// reported as "not checked", never as a problem.

import { execFile } from 'node:child_process';
import { readFeature } from './ethtool.js';
import { readSysctl as readProcSysctl } from '../kernel/sysctl.js';

export interface CmdResult {
  readonly ok: boolean;
  readonly stdout: string;
  /** why it could not run (not installed, timed out, exit status) */
  readonly error?: string;
}

export function runCmd(file: string, args: string[], timeoutMs = 3000): Promise<CmdResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 32 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve({ ok: true, stdout });
      const e = err as NodeJS.ErrnoException & { killed?: boolean };
      if (e.code === 'ENOENT') return resolve({ ok: false, stdout: '', error: `${file} is not installed` });
      if (e.killed) return resolve({ ok: false, stdout: '', error: `${file} did not finish within ${timeoutMs} ms` });
      resolve({ ok: false, stdout, error: `${file} ${args.join(' ')}: ${(stderr || e.message).trim().split('\n')[0]}` });
    });
  });
}

// ------------------------------------------------------------ sysctls

/** Reads /proc/sys/<path with dots as slashes>; null when absent. Device names keep their dots. */
export function readSysctl(key: string): string | null {
  try {
    return readProcSysctl(key);
  } catch {
    return null; // not a valid key (e.g. an empty device name)
  }
}

export interface Sysctls {
  readonly ipForward: string | null;
  /** effective rp_filter per device: max(conf/all, conf/<dev>), as the kernel applies it */
  readonly rpFilter: ReadonlyMap<string, number>;
}

export function readSysctls(devices: readonly string[]): Sysctls {
  const all = Number(readSysctl('net/ipv4/conf/all/rp_filter') ?? 0);
  const rp = new Map<string, number>();
  for (const d of devices) {
    const v = readSysctl(`net/ipv4/conf/${d}/rp_filter`);
    if (v !== null) rp.set(d, Math.max(all, Number(v)));
  }
  return { ipForward: readSysctl('net/ipv4/ip_forward'), rpFilter: rp };
}

// ------------------------------------------------------------ firewall

export interface FirewallRule {
  /** 'iptables' or 'nft' */
  readonly source: 'iptables' | 'nft';
  /** iptables: table name; nft: "family name" */
  readonly table: string;
  readonly chain: string;
  /** the rule as printed ("-A INPUT -p udp ... -j DROP" / nft statement) */
  readonly text: string;
  readonly verdict: 'drop' | 'reject' | 'accept' | 'other';
  /** UDP destination ports the rule matches; null = it does not match on the UDP destination port */
  readonly udpDports: Array<[number, number]> | null;
  /** true when the rule matches UDP at all (-p udp / udp dport / l4proto udp) */
  readonly udp: boolean;
  /** source and destination prefixes it matches, if any */
  readonly src?: string;
  readonly dst?: string;
  /** nft rule handle (from `nft -a`), to delete it */
  readonly handle?: number;
  /** input / output interface the rule is limited to */
  readonly inIface?: string;
  readonly outIface?: string;
}

export interface ChainPolicy {
  readonly source: 'iptables' | 'nft';
  readonly table: string;
  readonly chain: string;
  /** netfilter hook: 'input', 'forward', 'output', ... */
  readonly hook: string;
  /** upper case: 'ACCEPT', 'DROP' */
  readonly policy: string;
}

export interface Firewall {
  readonly rules: FirewallRule[];
  readonly policies: ChainPolicy[];
  /** what could not be read, e.g. "iptables-save is not installed" */
  readonly notes: string[];
}

function portRanges(spec: string): Array<[number, number]> {
  return spec
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p): [number, number] => {
      const m = /^(\d+)\s*[:-]\s*(\d+)$/.exec(p);
      if (m) return [Number(m[1]), Number(m[2])];
      return [Number(p), Number(p)];
    })
    .filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b));
}

/** Parses iptables-save output into rules with their UDP destination ports. */
export function parseIptablesSave(text: string): { rules: FirewallRule[]; policies: ChainPolicy[] } {
  const rules: FirewallRule[] = [];
  const policies: ChainPolicy[] = [];
  let table = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) table = line.slice(1);
    else if (line.startsWith(':')) {
      const [chain, policy] = line.slice(1).split(/\s+/);
      if (chain && policy && policy !== '-') policies.push({ source: 'iptables', table, chain, hook: chain.toLowerCase(), policy });
    } else if (line.startsWith('-A ')) {
      const tok = line.split(/\s+/);
      const chain = tok[1]!;
      let udp = false;
      let dports: Array<[number, number]> | null = null;
      let verdict: FirewallRule['verdict'] = 'other';
      let src: string | undefined;
      let dst: string | undefined;
      let inIface: string | undefined;
      let outIface: string | undefined;
      for (let i = 2; i < tok.length; i++) {
        const negated = tok[i - 1] === '!';
        const t = tok[i]!;
        const next = tok[i + 1] ?? '';
        if ((t === '-p' || t === '--protocol') && !negated) udp = next === 'udp' || next === '17';
        else if ((t === '--dport' || t === '--destination-port' || t === '--dports' || t === '--destination-ports') && !negated) dports = portRanges(next);
        else if (t === '-s' || t === '--source' || t === '-d' || t === '--destination' || t === '-i' || t === '--in-interface' || t === '-o' || t === '--out-interface') {
          // a negated limit ("! -s 10.0.0.0/8") is kept as no limit: the rule may still match
          if (negated) continue;
          if (t === '-s' || t === '--source') src = next;
          else if (t === '-d' || t === '--destination') dst = next;
          else if (t === '-i' || t === '--in-interface') inIface = next;
          else outIface = next;
        }
        else if (t === '-j' || t === '--jump') {
          verdict = next === 'DROP' ? 'drop' : next === 'REJECT' ? 'reject' : next === 'ACCEPT' ? 'accept' : 'other';
        }
      }
      rules.push({
        source: 'iptables',
        table,
        chain,
        text: line,
        verdict,
        udpDports: dports,
        udp,
        ...(src ? { src } : {}),
        ...(dst ? { dst } : {}),
        ...(inIface ? { inIface } : {}),
        ...(outIface ? { outIface } : {}),
      });
    }
  }
  return { rules, policies };
}

/** Parses `nft list ruleset` text: one rule per statement line inside a chain. */
export function parseNftRuleset(text: string): { rules: FirewallRule[]; policies: ChainPolicy[] } {
  const rules: FirewallRule[] = [];
  const policies: ChainPolicy[] = [];
  let table = '';
  let chain = '';
  let depth = 0;
  for (const raw of text.split('\n')) {
    const h = /\s*# handle (\d+)\s*$/.exec(raw);
    const handle = h ? Number(h[1]) : undefined;
    const line = (h ? raw.slice(0, h.index) : raw).trim();
    if (!line || line.startsWith('#')) continue;
    let m: RegExpExecArray | null;
    if ((m = /^table\s+(\S+)\s+(\S+)\s*\{$/.exec(line))) {
      table = `${m[1]} ${m[2]}`;
      depth = 1;
      continue;
    }
    if ((m = /^chain\s+(\S+)\s*\{$/.exec(line)) && depth === 1) {
      chain = m[1]!;
      depth = 2;
      continue;
    }
    if (/^(set|map|flowtable|ct|counter|quota|limit|secmark|synproxy)\s+\S+.*\{$/.test(line)) {
      depth++;
      continue;
    }
    if (line === '}') {
      depth = Math.max(0, depth - 1);
      if (depth <= 1) chain = '';
      continue;
    }
    if (depth !== 2 || !chain) continue;
    if ((m = /^type\s+\w+\s+hook\s+(\w+).*\bpolicy\s+(\w+);/.exec(line))) {
      policies.push({ source: 'nft', table, chain, hook: m[1]!, policy: m[2]!.toUpperCase() });
      continue;
    }
    if (/^type\s+/.test(line)) continue;
    const verdict: FirewallRule['verdict'] = /\bdrop\b/.test(line) ? 'drop' : /\breject\b/.test(line) ? 'reject' : /\baccept\b/.test(line) ? 'accept' : 'other';
    const udp = /\budp\b/.test(line) || /l4proto\s+(udp|17)\b/.test(line);
    let dports: Array<[number, number]> | null = null;
    const d = /\budp\s+dport\s+(!=\s*)?(\{[^}]*\}|\S+)/.exec(line);
    if (d && !d[1]) dports = portRanges(d[2]!.replace(/[{}]/g, ''));
    const s = /\bip\s+saddr\s+(\d[\d./]*)/.exec(line);
    const t = /\bip\s+daddr\s+(\d[\d./]*)/.exec(line);
    const ii = /\biifname\s+"?([\w.@-]+)"?/.exec(line);
    const oi = /\boifname\s+"?([\w.@-]+)"?/.exec(line);
    rules.push({
      source: 'nft',
      table,
      chain,
      text: line,
      verdict,
      udpDports: dports,
      udp,
      ...(s ? { src: s[1]! } : {}),
      ...(t ? { dst: t[1]! } : {}),
      ...(ii ? { inIface: ii[1]! } : {}),
      ...(oi ? { outIface: oi[1]! } : {}),
      ...(handle !== undefined ? { handle } : {}),
    });
  }
  return { rules, policies };
}

/** Tables that iptables-nft manages; when iptables-save worked they are already covered. */
const IPTABLES_NFT_TABLES = /^(ip|ip6) (filter|nat|mangle|raw|security)$/;

export async function readFirewall(): Promise<Firewall> {
  const notes: string[] = [];
  const rules: FirewallRule[] = [];
  const policies: ChainPolicy[] = [];
  const [ipt, nft] = await Promise.all([runCmd('iptables-save', []), runCmd('nft', ['-a', 'list', 'ruleset'])]);
  if (ipt.ok) {
    const p = parseIptablesSave(ipt.stdout);
    rules.push(...p.rules);
    policies.push(...p.policies);
  } else notes.push(`iptables rules not checked: ${ipt.error}`);
  if (nft.ok) {
    const p = parseNftRuleset(nft.stdout);
    const skip = (t: string) => ipt.ok && IPTABLES_NFT_TABLES.test(t);
    rules.push(...p.rules.filter((r) => !skip(r.table)));
    policies.push(...p.policies.filter((r) => !skip(r.table)));
  } else if (!ipt.ok) notes.push(`nftables rules not checked: ${nft.error}`);
  return { rules, policies, notes };
}

export function matchesPort(r: FirewallRule, port: number): boolean {
  return r.udpDports !== null && r.udpDports.some(([a, b]) => port >= a && port <= b);
}

/** Who the VXLAN traffic is between, to tell rules that hit it from rules that only look similar. */
export interface VxlanTraffic {
  /** peers' public IPs (sources of inbound, destinations of outbound VXLAN) */
  readonly peers: readonly string[];
  /** this node's public IP */
  readonly self: string | null;
  /** the interface VXLAN packets use */
  readonly underlay: string | null;
}

function inCidr(ip: string, cidr: string): boolean {
  const [a, l] = cidr.split('/');
  const len = l === undefined ? 32 : Number(l);
  const toInt = (x: string) => x.split('.').reduce((n, o) => (n << 8) + Number(o), 0) >>> 0;
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(a ?? '') || !Number.isInteger(len)) return true; // unknown syntax: assume it matches
  const mask = len === 0 ? 0 : (~0 << (32 - len)) >>> 0;
  return ((toInt(ip) & mask) >>> 0) === ((toInt(a!) & mask) >>> 0);
}

/**
 * DROP/REJECT rules that match UDP traffic to port. With `t`, rules limited
 * to addresses or interfaces the VXLAN traffic never uses are left out.
 */
export function rulesDroppingUdpPort(fw: Firewall, port: number, t?: VxlanTraffic): FirewallRule[] {
  return fw.rules.filter((r) => {
    if ((r.verdict !== 'drop' && r.verdict !== 'reject') || !matchesPort(r, port)) return false;
    if (!t) return true;
    const ifaceOk = (i: string | undefined) => i === undefined || t.underlay === null || i === t.underlay || i.endsWith('+') || i.endsWith('*') || i === 'any';
    if (!ifaceOk(r.inIface) || !ifaceOk(r.outIface)) return false;
    // a source limit must cover a peer (inbound) or us (outbound); likewise the destination
    const ends = [...t.peers, ...(t.self ? [t.self] : [])];
    if (r.src && ends.length && !ends.some((ip) => inCidr(ip, r.src!))) return false;
    if (r.dst && ends.length && !ends.some((ip) => inCidr(ip, r.dst!))) return false;
    return true;
  });
}

/** The command that deletes a rule, as the operator would type it. */
export function deleteCommand(r: FirewallRule): string {
  if (r.source === 'iptables') return `iptables -t ${r.table} -D ${r.text.replace(/^-A\s+/, '')}`;
  if (r.handle !== undefined) return `nft delete rule ${r.table} ${r.chain} handle ${r.handle}`;
  return `nft -a list chain ${r.table} ${r.chain}, then nft delete rule ${r.table} ${r.chain} handle <the handle of "${r.text}">`;
}

// ------------------------------------------------------------ offload

export interface OffloadState {
  /** tx-checksum-ip-generic: 'on' | 'off' | ...; null when not checked */
  readonly txChecksumIpGeneric: string | null;
  readonly note?: string;
}

export async function readOffload(dev: string): Promise<OffloadState> {
  let ioctlError: string;
  try {
    return { txChecksumIpGeneric: readFeature(dev, 'tx-checksum-ip-generic') };
  } catch (e) {
    ioctlError = (e as Error).message;
  }
  const r = await runCmd('ethtool', ['-k', dev], 2000);
  if (!r.ok) return { txChecksumIpGeneric: null, note: `checksum offload on ${dev} not checked: ${ioctlError}; ${r.error}` };
  const m = /^\s*tx-checksum-ip-generic:\s*(\S+)/m.exec(r.stdout);
  return m ? { txChecksumIpGeneric: m[1]! } : { txChecksumIpGeneric: null, note: `ethtool -k ${dev} does not list tx-checksum-ip-generic` };
}

/**
 * Kernels that re-NAT the outer VXLAN packet and send it with a bad UDP
 * checksum when checksum offload is on (flannel #1279, #1268; fixed by
 * kernel commit ea64d8d6c675 in 5.6.13, 5.4.41, 4.19.123, 4.14.181).
 * Distribution kernels backport, so this is "may be affected".
 */
export function kernelHasVxlanCsumBug(release: string): boolean {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release);
  if (!m) return false;
  const [maj, min, patch] = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
  const v = maj * 1000 + min;
  if (v >= 5007) return false;
  const fixedIn: Record<number, number> = { 5006: 13, 5004: 41, 4019: 123, 4014: 181 };
  const f = fixedIn[v];
  if (f !== undefined) return patch < f;
  return true;
}
