// subnet.env (spec §8): written once at startup, atomically, mode 0644, in
// flannel's exact variable order; read back on the next start to prefer the
// previous subnet. The CNI plugin reads it too.

import { mkdirSync, readFileSync, renameSync, writeFileSync, openSync, fsyncSync, closeSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { formatIPv4, formatIPv4Net, formatIPv6, formatIPv6Net, parseIPv4Net, parseIPv6Net, type IPv4Net, type IPv6Net } from '../lease/ip.js';

export const DEFAULT_SUBNET_FILE = '/run/flannel/subnet.env';

export interface SubnetEnv {
  network: IPv4Net | null;
  subnet: IPv4Net | null;
  ipv6Network: IPv6Net | null;
  ipv6Subnet: IPv6Net | null;
  mtu: number;
  ipMasq: boolean;
}

/** The file's text, byte for byte as flanneld writes it. */
export function renderSubnetEnv(e: SubnetEnv): string {
  let s = '';
  if (e.network && e.subnet) {
    s += `FLANNEL_NETWORK=${formatIPv4Net(e.network)}\n`;
    s += `FLANNEL_SUBNET=${formatIPv4(e.subnet.ip + 1)}/${e.subnet.prefix}\n`;
  }
  if (e.ipv6Network && e.ipv6Subnet) {
    s += `FLANNEL_IPV6_NETWORK=${formatIPv6Net(e.ipv6Network)}\n`;
    s += `FLANNEL_IPV6_SUBNET=${formatIPv6(e.ipv6Subnet.ip + 1n)}/${e.ipv6Subnet.prefix}\n`;
  }
  s += `FLANNEL_MTU=${e.mtu}\n`;
  s += `FLANNEL_IPMASQ=${e.ipMasq}\n`;
  return s;
}

/** temp file + fsync + rename, so readers never see half a file. */
export function writeFileAtomic(file: string, text: string, mode = 0o644): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode });
  chmodSync(tmp, mode); // regardless of umask, as flannel does
  const fd = openSync(tmp, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

export function writeSubnetEnv(file: string, e: SubnetEnv): void {
  writeFileAtomic(file, renderSubnetEnv(e));
}

/** dotenv-ish parse: KEY=value lines; quotes and "export " tolerated. */
export function parseEnvText(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim().replace(/^export\s+/, '');
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    let v = line.slice(eq + 1).trim();
    if (v.length >= 2 && (v[0] === '"' || v[0] === "'") && v[v.length - 1] === v[0]) v = v.slice(1, -1);
    m.set(line.slice(0, eq).trim(), v);
  }
  return m;
}

/**
 * The single valid CIDR in a comma-separated value, masked; null when there
 * are none or several (flannel's "previous subnet" rule, §8).
 */
function singleCidr<T>(v: string | undefined, parse: (s: string) => T): T | null {
  if (!v) return null;
  const ok: T[] = [];
  for (const part of v.split(',')) {
    try {
      ok.push(parse(part.trim()));
    } catch {
      /* invalid entries are skipped */
    }
  }
  return ok.length === 1 ? ok[0]! : null;
}

/** The previous run's subnets; a missing or unreadable file means none. */
export function readPreviousSubnets(file: string): { subnet: IPv4Net | null; subnet6: IPv6Net | null } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { subnet: null, subnet6: null };
  }
  const env = parseEnvText(text);
  return {
    subnet: singleCidr(env.get('FLANNEL_SUBNET'), parseIPv4Net),
    subnet6: singleCidr(env.get('FLANNEL_IPV6_SUBNET'), parseIPv6Net),
  };
}
