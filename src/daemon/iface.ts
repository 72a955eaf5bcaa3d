// External interface and public IP selection (spec §1.4).
//
// Reads the host's interfaces through a small HostView port so the policy is
// testable without root; the real view reads os.networkInterfaces(),
// /proc/net/route and /sys/class/net (all of them per network namespace).

import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '../lease/ip.js';
import type { ExternalInterface } from '../backend/backend.js';

export type { ExternalInterface };

export class IfaceError extends Error {
  override name = 'IfaceError';
}

export interface HostInterface {
  readonly name: string;
  readonly index: number;
  readonly mtu: number;
  /** IPv4 addresses, global ones first */
  readonly ipv4: readonly string[];
  readonly ipv6: readonly string[];
}

export interface HostView {
  interfaces(): HostInterface[];
  /** name of the interface carrying the IPv4 default route, if any */
  defaultRouteInterface(): string | null;
}

export interface IfaceOptions {
  iface: readonly string[];
  ifaceRegex: readonly string[];
  publicIP?: string;
  /** --public-ipv6 */
  publicIPv6?: string;
  /** EnableIPv6: the interface must also give us an IPv6 address (or --public-ipv6 does) */
  ipv6?: boolean;
}

function isLinkLocal4(a: string): boolean {
  return a.startsWith('169.254.');
}

/** An IPv6 address as a number; null for text that is not one (a zone suffix is dropped). */
function v6(a: string): bigint | null {
  try {
    return parseIPv6(a.replace(/%.*$/, ''));
  } catch {
    return null;
  }
}

/**
 * A usable public IPv6 address: global scope only. Link-local (fe80::/10),
 * loopback, unspecified and multicast addresses can't be a VXLAN endpoint
 * that peers on other links reach.
 */
function globalIPv6(a: bigint | null): a is bigint {
  if (a === null || a === 0n || a === 1n) return false;
  const top10 = Number(a >> 118n);
  return top10 !== 0x3fa && a >> 120n !== 0xffn;
}

export function selectExternalInterface(host: HostView, o: IfaceOptions): ExternalInterface {
  const all = host.interfaces();
  let chosen: HostInterface | undefined;
  let chosenAddr: string | undefined;
  let chosenAddr6: bigint | undefined;
  const ownsV6 = (i: HostInterface, ip: string) => {
    const want = v6(ip);
    return want !== null && i.ipv6.some((a) => v6(a) === want);
  };
  const byIP = (ip: string) => all.find((i) => i.ipv4.includes(ip) || ownsV6(i, ip));

  if (o.iface.length === 0 && o.ifaceRegex.length === 0) {
    if (o.publicIP) {
      chosen = byIP(o.publicIP);
      if (!chosen) {
        // flannel looks for the interface owning --public-ip; behind NAT the
        // public IP is not local, so fall back to the default route below.
      } else chosenAddr = o.publicIP;
    }
    if (!chosen && o.ipv6 && o.publicIPv6) {
      // flannel: else the interface owning --public-ipv6 (spec §1.4)
      chosen = all.find((i) => ownsV6(i, o.publicIPv6!));
      if (chosen) chosenAddr6 = v6(o.publicIPv6)!;
    }
    if (!chosen) {
      const name = host.defaultRouteInterface();
      if (!name) throw new IfaceError('no default route found; use --iface, --iface-regex or --public-ip to choose the interface');
      chosen = all.find((i) => i.name === name);
      if (!chosen) throw new IfaceError(`default route interface ${name} not found`);
    }
  } else {
    for (const want of o.iface) {
      chosen = byIP(want) ?? all.find((i) => i.name === want);
      if (chosen) {
        if (chosen.ipv4.includes(want)) chosenAddr = want;
        else if (ownsV6(chosen, want)) chosenAddr6 = v6(want)!;
        break;
      }
    }
    if (!chosen) {
      outer: for (const src of o.ifaceRegex) {
        let re: RegExp;
        try {
          re = new RegExp(src);
        } catch (e) {
          throw new IfaceError(`--iface-regex: "${src}" is not a valid regular expression`);
        }
        for (const i of all) {
          const a = i.ipv4.find((x) => re.test(x));
          if (a) {
            chosen = i;
            chosenAddr = a;
            break outer;
          }
        }
        for (const i of all) {
          if (re.test(i.name)) {
            chosen = i;
            break outer;
          }
        }
      }
    }
    if (!chosen) {
      throw new IfaceError(`no interface matches --iface ${JSON.stringify(o.iface)} / --iface-regex ${JSON.stringify(o.ifaceRegex)}`);
    }
  }

  const addr = chosenAddr ?? [...chosen.ipv4].sort((a, b) => Number(isLinkLocal4(a)) - Number(isLinkLocal4(b)))[0];
  if (!addr) throw new IfaceError(`interface ${chosen.name} has no IPv4 address`);
  if (!chosen.mtu) throw new IfaceError(`interface ${chosen.name} reports MTU 0`);
  let publicIP = parseIPv4(addr);
  if (o.publicIP) {
    try {
      publicIP = parseIPv4(o.publicIP);
    } catch {
      throw new IfaceError(`--public-ip: "${o.publicIP}" is not an IPv4 address`);
    }
  }
  const ext = { name: chosen.name, index: chosen.index, mtu: chosen.mtu, ifaceAddr: parseIPv4(addr), publicIP };
  if (!o.ipv6) return ext;
  // IPv6: the address --iface named, else the interface's first global one.
  const addr6 = chosenAddr6 ?? chosen.ipv6.map(v6).find(globalIPv6);
  let publicIPv6 = addr6;
  if (o.publicIPv6) {
    const p6 = v6(o.publicIPv6);
    if (!globalIPv6(p6) || o.publicIPv6.includes('%')) throw new IfaceError(`--public-ipv6: "${o.publicIPv6}" is not a global IPv6 address`);
    publicIPv6 = p6;
  }
  if (publicIPv6 === undefined) {
    throw new IfaceError(`interface ${chosen.name} has no global IPv6 address, which EnableIPv6 needs; add one or give --public-ipv6`);
  }
  return { ...ext, publicIPv6, ...(addr6 !== undefined ? { ifaceAddr6: addr6 } : {}) };
}

/** The real host, as seen from this process's network namespace. */
export const realHost: HostView = {
  interfaces(): HostInterface[] {
    const out: HostInterface[] = [];
    for (const [name, addrs] of Object.entries(networkInterfaces())) {
      const read = (f: string) => {
        try {
          return Number(readFileSync(`/sys/class/net/${name}/${f}`, 'utf8').trim());
        } catch {
          return 0;
        }
      };
      out.push({
        name,
        index: read('ifindex'),
        mtu: read('mtu'),
        ipv4: (addrs ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address),
        ipv6: (addrs ?? []).filter((a) => a.family === 'IPv6').map((a) => a.address),
      });
    }
    return out;
  },
  defaultRouteInterface(): string | null {
    let text: string;
    try {
      text = readFileSync('/proc/net/route', 'utf8');
    } catch {
      return null;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 8 && f[1] === '00000000' && f[7] === '00000000') return f[0]!;
    }
    return null;
  },
};

export function describeIface(e: ExternalInterface): string {
  const v6 = e.publicIPv6 === undefined ? '' : `, IPv6 address ${e.ifaceAddr6 === undefined ? 'none' : formatIPv6(e.ifaceAddr6)}, public IPv6 ${formatIPv6(e.publicIPv6)}`;
  return `${e.name} (index ${e.index}, MTU ${e.mtu}, address ${formatIPv4(e.ifaceAddr)}, public IP ${formatIPv4(e.publicIP)}${v6})`;
}
