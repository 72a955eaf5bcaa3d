// External interface and public IP selection (spec §1.4).
//
// Reads the host's interfaces through a small HostView port so the policy is
// testable without root. The real view (kernelHostView) asks the kernel port:
// an rtnetlink link dump, address dump and main-table route dump, all of
// them answered for the network namespace of the socket (never /sys, which
// follows the mount namespace, nor os.networkInterfaces()).

import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '../lease/ip.js';
import type { ExternalInterface } from '../backend/backend.js';
import type { Addr, KernelNet, Route } from '../kernel/types.js';
import { FlannelError } from '../errors.js';

export type { ExternalInterface };

export class IfaceError extends FlannelError {
  static override readonly defaultCode: string = 'IFACE';
  override name = 'IfaceError';
}

export interface HostInterface {
  readonly name: string;
  readonly index: number;
  readonly mtu: number;
  /** administratively up (IFF_UP); interfaces that are down are never chosen. Absent: up. */
  readonly up?: boolean;
  /** IPv4 addresses, global ones first */
  readonly ipv4: readonly string[];
  /** IPv6 addresses without link-local ones (and without deprecated ones), permanent ones first */
  readonly ipv6: readonly string[];
}

/** Either answer may be immediate (test views) or come from the kernel. */
export interface HostView {
  interfaces(): HostInterface[] | Promise<HostInterface[]>;
  /** name of the interface carrying the IPv4 default route, if any */
  defaultRouteInterface(): string | null | Promise<string | null>;
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

export async function selectExternalInterface(host: HostView, o: IfaceOptions): Promise<ExternalInterface> {
  const all = (await host.interfaces()).filter((i) => i.up !== false);
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
      const name = await host.defaultRouteInterface();
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

// ------------------------------------------------------- the real host

const RT_TABLE_MAIN = 254;
const RTN_UNICAST = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const RT_SCOPE_UNIVERSE = 0;
const RT_SCOPE_LINK = 253;
const IFA_F_TEMPORARY = 0x01;
const IFA_F_DADFAILED = 0x08;
const IFA_F_DEPRECATED = 0x20;
const IFA_F_PERMANENT = 0x80;

const addrText = (a: Addr) => a.local ?? a.address ?? a.cidr.split('/')[0]!;

/** IPv4 addresses of one interface, in kernel order but universe-scope ones first. */
export function ipv4Addresses(addrs: readonly Addr[]): string[] {
  return addrs
    .filter((a) => a.family === AF_INET)
    .map((a, i) => ({ a, i }))
    .sort((x, y) => Number(x.a.scope !== RT_SCOPE_UNIVERSE) - Number(y.a.scope !== RT_SCOPE_UNIVERSE) || x.i - y.i)
    .map(({ a }) => addrText(a));
}

/**
 * IPv6 addresses of one interface as flannel ranks them (spec §1.4): no
 * link-local (scope link, fe80::/10), no deprecated or DAD-failed ones;
 * permanent before dynamic, non-temporary before temporary.
 */
export function ipv6Addresses(addrs: readonly Addr[]): string[] {
  const rank = (a: Addr) => Number((a.flags & IFA_F_PERMANENT) === 0) * 2 + Number((a.flags & IFA_F_TEMPORARY) !== 0);
  return addrs
    .filter((a) => a.family === AF_INET6 && a.scope !== RT_SCOPE_LINK && !/^fe[89ab]/i.test(addrText(a)))
    .filter((a) => (a.flags & (IFA_F_DEPRECATED | IFA_F_DADFAILED)) === 0)
    .map((a, i) => ({ a, i }))
    .sort((x, y) => rank(x.a) - rank(y.a) || x.i - y.i)
    .map(({ a }) => addrText(a));
}

/**
 * The ifindex of the IPv4 default route in the main table (dst 0.0.0.0/0,
 * unicast, with an output interface); the lowest metric wins, as in the
 * kernel's lookup. Multipath defaults (no single oif) do not count.
 */
export function defaultRouteIndex(routes: readonly Route[]): number | null {
  let best: Route | undefined;
  for (const r of routes) {
    if (r.family !== AF_INET || r.dstLen !== 0 || r.table !== RT_TABLE_MAIN || r.type !== RTN_UNICAST || !r.oif) continue;
    if (!best || (r.priority ?? 0) < (best.priority ?? 0)) best = r;
  }
  return best?.oif ?? null;
}

/** The host as the kernel port sees it: this socket's network namespace. */
export function kernelHostView(k: KernelNet): HostView {
  return {
    async interfaces(): Promise<HostInterface[]> {
      const [links, addrs] = await Promise.all([k.listLinks(), k.listAddrs(undefined, { family: 'all' })]);
      return links.map((l) => {
        const own = addrs.filter((a) => a.index === l.index);
        return { name: l.name, index: l.index, mtu: l.mtu ?? 0, up: l.up, ipv4: ipv4Addresses(own), ipv6: ipv6Addresses(own) };
      });
    },
    async defaultRouteInterface(): Promise<string | null> {
      const index = defaultRouteIndex(await k.listRoutes({ table: RT_TABLE_MAIN }));
      if (index === null) return null;
      return (await k.getLinkByIndex(index))?.name ?? null;
    },
  };
}

export function describeIface(e: ExternalInterface): string {
  const v6 = e.publicIPv6 === undefined ? '' : `, IPv6 address ${e.ifaceAddr6 === undefined ? 'none' : formatIPv6(e.ifaceAddr6)}, public IPv6 ${formatIPv6(e.publicIPv6)}`;
  return `${e.name} (index ${e.index}, MTU ${e.mtu}, address ${formatIPv4(e.ifaceAddr)}, public IP ${formatIPv4(e.publicIP)}${v6})`;
}
