// FakeKernel: an in-memory KernelNet for fast unit tests of backends. It keeps
// links, addresses, routes, neighbours and FDB entries with the rules the
// real one follows (checked by the shared contract in kernel-contract.ts,
// which runs against both): deleting an absent entry succeeds, replace
// overwrites, an entry on a missing device is ENODEV, a route whose dst has
// host bits set is EINVAL, routes we add carry RTPROT_FLANNEL, and an
// existing VXLAN device is reused only with the same parameters (MTU and
// MAC brought in line). It counts mutating calls, so tests can assert "a
// second reconcile makes zero changes", and faults can be injected per
// operation. It is also the host port: sysctl writes are recorded, and TUN
// devices are links of kind 'tun' with a fake fd (never a real descriptor).
// The real-kernel tests under test/ remain the proof.

import type {
  AddrFilter,
  BatchResult,
  FdbSpec,
  HostPort,
  IpFamily,
  KernelNet,
  KernelOp,
  Link,
  NeighKey,
  NeighSpec,
  RouteFilter,
  RouteSpec,
  TunDevice,
  TunSpec,
  VxlanCreateSpec,
} from '../kernel/types.js';
import type { Addr, FdbEntry, Neigh, Route } from '../netlink/rtnl.js';
import { NetlinkError } from '../netlink/errors.js';
import { SyscallError } from '../netlink/libc.js';
import * as C from '../netlink/constants.js';
import { parseCidr } from '../netlink/addr.js';
import { parseIPv6 } from '../lease/ip.js';
import { vxlanMismatches, VXLAN_DEFAULT_PORT } from '../kernel/idempotency.js';

const EINVAL = 22;
const EEXIST = 17;
const ENOENT = 2;
const EBUSY = 16;
const ENODEV = 19;
const EOPNOTSUPP = 95;
const ENETDOWN = 100;

function ipToInt(ip: string): number {
  const p = ip.split('.').map(Number);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

/** The kernel refuses a route whose destination has bits set past its prefix (EINVAL). */
function hostBitsSet(ip: string, prefixLen: number): boolean {
  if (ip.includes(':')) {
    const v = parseIPv6(ip);
    const hostBits = 128n - BigInt(prefixLen);
    return hostBits > 0n && (v & ((1n << hostBits) - 1n)) !== 0n;
  }
  const mask = prefixLen === 0 ? 0 : (~0 << (32 - prefixLen)) >>> 0;
  return (ipToInt(ip) & ~mask) >>> 0 !== 0;
}

/** Unicast = the I/G bit of the first octet is clear, and not all-zero (the kernel's rule for replace/append). */
function unicastMac(mac: string): boolean {
  return (parseInt(mac.slice(0, 2), 16) & 1) === 0 && mac !== '00:00:00:00:00:00';
}

/** AF_INET (2) or AF_INET6 (10), by the address text. */
const afOf = (ip: string): 2 | 10 => (ip.includes(':') ? 10 : 2);
const want = (family: IpFamily | undefined): 2 | 10 => (family === 6 ? 10 : 2);

export class FakeKernel implements KernelNet, HostPort {
  links = new Map<number, Link>();
  addrs: Addr[] = [];
  routes: Route[] = [];
  neighs: Neigh[] = [];
  fdb: FdbEntry[] = [];
  /** number of mutating operations performed */
  mutations = 0;
  /** ops whose description matches get an injected error (errno) */
  failWhen: ((op: KernelOp) => number | null) | null = null;
  private nextIndex = 10;
  /** sysctl values by key ('net/ipv4/ip_forward'); a write to an absent key fails unless `sysctlsAutoCreate` */
  sysctls = new Map<string, string>();
  /** every setSysctl call, in order */
  sysctlWrites: Array<{ key: string; value: string }> = [];
  /** setSysctl creates missing keys (default true: a fake host has every sysctl) */
  sysctlsAutoCreate = true;
  /** every openTun call and whether its device was closed since */
  tuns: Array<{ spec: TunSpec; name: string; closed: boolean }> = [];
  /** openTun fails with this errno (e.g. EBUSY, EPERM) when it returns one */
  failTun: ((spec: TunSpec) => number | null) | null = null;
  private macCounter = 0xaa;

  addLink(l: Partial<Link> & { name: string }): Link {
    const link: Link = { family: 0, index: this.nextIndex++, type: 1, flags: 0, up: true, lowerUp: true, operState: 'up', mtu: 1500, ...l } as Link;
    this.links.set(link.index, link);
    return link;
  }

  private fail(errno: number, op: string, detail?: string): never {
    throw new NetlinkError({ errno, op, ...(detail !== undefined ? { detail } : {}) });
  }

  private needLink(index: number, op: string): Link {
    const l = this.links.get(index);
    if (!l) this.fail(ENODEV, op);
    return l;
  }

  async listLinks(): Promise<Link[]> {
    return [...this.links.values()];
  }
  async getLinkByName(name: string): Promise<Link | undefined> {
    return [...this.links.values()].find((l) => l.name === name);
  }
  async getLinkByIndex(index: number): Promise<Link | undefined> {
    return this.links.get(index);
  }
  async createVxlan(s: VxlanCreateSpec): Promise<Link> {
    const op = `create vxlan ${s.name} (vni ${s.vni})`;
    const ex = await this.getLinkByName(s.name);
    if (ex) {
      const diff = vxlanMismatches(ex, s);
      if (diff.length > 0) this.fail(EEXIST, op, `existing ${s.name} (#${ex.index}) differs: ${diff.join(', ')}`);
      let now = ex;
      if (s.mtu !== undefined && ex.mtu !== s.mtu) now = { ...now, mtu: s.mtu };
      if (s.mac !== undefined && ex.mac !== s.mac.toLowerCase()) now = { ...now, mac: s.mac.toLowerCase() };
      if (now !== ex) {
        this.mutations++;
        this.links.set(ex.index, now);
      }
      return now;
    }
    if (s.vni >= 1 << 24) this.fail(34, op, 'VXLAN ID must be lower than 16777216');
    let underMtu: number | undefined;
    if (s.linkIndex !== undefined) underMtu = this.needLink(s.linkIndex, op).mtu;
    this.mutations++;
    const vxlan = { vni: s.vni, port: s.port || VXLAN_DEFAULT_PORT, learning: !!s.learning, gbp: !!s.gbp, l2miss: false, l3miss: false } as NonNullable<Link['vxlan']>;
    if (s.local !== undefined) vxlan.local = s.local;
    if (s.linkIndex !== undefined) vxlan.linkIndex = s.linkIndex;
    return this.addLink({
      name: s.name,
      kind: 'vxlan',
      up: false,
      lowerUp: false,
      operState: 'down',
      // the kernel's default: the underlay's MTU minus the VXLAN overhead, else 1450
      mtu: s.mtu ?? (underMtu !== undefined ? underMtu - 50 : 1450),
      mac: s.mac?.toLowerCase() ?? `02:00:00:00:00:${(this.macCounter++ & 255).toString(16).padStart(2, '0')}`,
      vxlan,
    });
  }
  async deleteLink(index: number): Promise<void> {
    if (!this.links.has(index)) return; // ENODEV on delete is success
    this.mutations++;
    this.links.delete(index);
    this.addrs = this.addrs.filter((a) => a.index !== index);
    this.routes = this.routes.filter((r) => r.oif !== index);
    this.neighs = this.neighs.filter((n) => n.ifindex !== index);
    this.fdb = this.fdb.filter((f) => f.ifindex !== index);
  }
  private setLink(index: number, op: string, change: Partial<Link>): void {
    const l = this.needLink(index, op);
    this.mutations++;
    this.links.set(index, { ...l, ...change });
  }
  async setLinkUp(index: number): Promise<void> {
    this.setLink(index, `set link #${index} up`, { up: true, lowerUp: true, operState: 'unknown' });
  }
  async setLinkDown(index: number): Promise<void> {
    this.setLink(index, `set link #${index} down`, { up: false, lowerUp: false, operState: 'down' });
  }
  async setMtu(index: number, mtu: number): Promise<void> {
    this.setLink(index, `set link #${index} mtu ${mtu}`, { mtu });
  }
  async setLinkAddress(index: number, mac: string): Promise<void> {
    this.setLink(index, `set link #${index} address ${mac}`, { mac: mac.toLowerCase() });
  }
  async listAddrs(index?: number, filter: AddrFilter = {}): Promise<Addr[]> {
    const fam = filter.family ?? 4;
    const ok = (a: Addr) => fam === 'all' || a.family === (fam === 6 ? 10 : 2);
    return this.addrs.filter((a) => (index === undefined || a.index === index) && ok(a));
  }
  async addAddr(index: number, cidr: string): Promise<void> {
    this.needLink(index, `add address ${cidr} dev #${index}`);
    if (this.addrs.some((a) => a.index === index && a.cidr === cidr)) return;
    this.mutations++;
    const [ip, len] = cidr.split('/');
    this.addrs.push({ family: afOf(ip!), index, prefixLen: Number(len), flags: 0, scope: 0, local: ip!, address: ip!, cidr });
  }
  async delAddr(index: number, cidr: string): Promise<void> {
    this.mutations++;
    this.addrs = this.addrs.filter((a) => !(a.index === index && a.cidr === cidr));
  }
  async listRoutes(f: RouteFilter = {}): Promise<Route[]> {
    const table = f.table ?? C.RT_TABLE_MAIN;
    return this.routes.filter(
      (r) => (table === 'all' || r.table === table) && (f.oif === undefined || r.oif === f.oif) && r.family === want(f.family) && (f.protocol === undefined || r.protocol === f.protocol),
    );
  }
  async replaceRoute(s: RouteSpec): Promise<void> {
    this.apply({ op: 'replaceRoute', route: s });
  }
  async delRoute(s: RouteSpec): Promise<void> {
    this.apply({ op: 'delRoute', route: s });
  }
  async listNeighs(index?: number, family?: IpFamily): Promise<Neigh[]> {
    return this.neighs.filter((n) => (index === undefined || n.ifindex === index) && n.family === want(family));
  }
  async replaceNeigh(n: NeighSpec): Promise<void> {
    this.apply({ op: 'replaceNeigh', neigh: n });
  }
  async delNeigh(n: NeighKey): Promise<void> {
    this.apply({ op: 'delNeigh', neigh: n });
  }
  async listFdb(index?: number): Promise<FdbEntry[]> {
    return this.fdb.filter((f) => index === undefined || f.ifindex === index);
  }
  async replaceFdb(f: FdbSpec): Promise<void> {
    this.apply({ op: 'replaceFdb', fdb: f });
  }
  async appendFdb(f: FdbSpec): Promise<void> {
    this.apply({ op: 'appendFdb', fdb: f });
  }
  async delFdb(f: FdbSpec): Promise<void> {
    this.apply({ op: 'delFdb', fdb: f });
  }

  async applyBatch(ops: readonly KernelOp[]): Promise<BatchResult> {
    const failures: BatchResult['failures'] = [];
    ops.forEach((op, index) => {
      try {
        this.apply(op);
      } catch (e) {
        failures.push({ index, op, error: e as NetlinkError });
      }
    });
    return { total: ops.length, succeeded: ops.length - failures.length, failures, durationMs: 0 };
  }

  private apply(op: KernelOp): void {
    const errno = this.failWhen?.(op) ?? null;
    if (errno !== null) throw new NetlinkError({ errno, op: `fake ${op.op}` });
    switch (op.op) {
      case 'replaceNeigh': {
        const n = op.neigh;
        this.needLink(n.ifindex, `replace neigh ${n.ip} dev #${n.ifindex}`);
        this.mutations++;
        this.neighs = this.neighs.filter((x) => !(x.ifindex === n.ifindex && x.ip === n.ip));
        const permanent = n.permanent ?? true;
        this.neighs.push({ family: afOf(n.ip), ifindex: n.ifindex, ip: n.ip, mac: n.mac.toLowerCase(), state: permanent ? C.NUD_PERMANENT : C.NUD_REACHABLE, flags: 0, permanent });
        return;
      }
      case 'delNeigh':
        this.mutations++;
        this.neighs = this.neighs.filter((x) => !(x.ifindex === op.neigh.ifindex && x.ip === op.neigh.ip));
        return;
      case 'replaceFdb':
      case 'appendFdb': {
        // The vxlan driver's rules (vxlan_fdb_update_existing): replace
        // rewrites the first remote of a unicast MAC and is refused for
        // all-zero/multicast MACs; append adds a remote only for those, and
        // is a no-op on an existing unicast entry.
        const f = op.fdb;
        const mac = f.mac.toLowerCase();
        const desc = `${op.op === 'replaceFdb' ? 'replace' : 'append'} fdb ${mac} dst ${f.dst} dev #${f.ifindex}`;
        this.needLink(f.ifindex, desc);
        const permanent = f.permanent ?? true;
        const state = permanent ? C.NUD_PERMANENT : C.NUD_REACHABLE;
        const i = this.fdb.findIndex((x) => x.ifindex === f.ifindex && x.mac === mac);
        const entry: FdbEntry = { family: 7, ifindex: f.ifindex, mac, dst: f.dst, state, flags: C.NTF_SELF, self: f.self ?? true, master: false, permanent };
        this.mutations++;
        if (i < 0) {
          this.fdb.push(entry);
        } else if (op.op === 'replaceFdb') {
          if (!unicastMac(mac)) this.fail(EOPNOTSUPP, desc, 'Cannot replace non-unicast fdb entries');
          this.fdb[i] = entry;
        } else if (!unicastMac(mac) && !this.fdb.some((x) => x.ifindex === f.ifindex && x.mac === mac && x.dst === f.dst)) {
          this.fdb.push(entry);
        }
        return;
      }
      case 'delFdb':
        this.mutations++;
        this.fdb = this.fdb.filter((x) => !(x.ifindex === op.fdb.ifindex && x.mac === op.fdb.mac.toLowerCase() && x.dst === op.fdb.dst));
        return;
      case 'replaceRoute': {
        const r = op.route;
        const desc = `replace route ${r.dst}`;
        const { ip, prefixLen } = parseCidr(r.dst);
        if (hostBitsSet(ip, prefixLen)) this.fail(EINVAL, desc, 'Invalid prefix for given prefix length');
        if (r.oif !== undefined) {
          const dev = this.needLink(r.oif, desc);
          if (r.onlink && !dev.up) this.fail(ENETDOWN, desc, 'Nexthop device is not up');
        }
        const table = r.table ?? C.RT_TABLE_MAIN;
        const priority = r.priority ?? 0;
        this.mutations++;
        this.routes = this.routes.filter((x) => !(x.table === table && x.dst === r.dst && (x.priority ?? 0) === priority));
        const blackhole = r.type === 'blackhole';
        const route: Route = {
          family: afOf(r.dst),
          dst: r.dst,
          dstLen: prefixLen,
          table,
          protocol: r.protocol ?? C.RTPROT_FLANNEL,
          scope: blackhole || r.gw !== undefined ? C.RT_SCOPE_UNIVERSE : C.RT_SCOPE_LINK,
          type: blackhole ? C.RTN_BLACKHOLE : C.RTN_UNICAST,
          flags: r.onlink ? C.RTNH_F_ONLINK : 0,
          onlink: !!r.onlink,
        };
        if (r.gw !== undefined) route.gateway = r.gw;
        if (r.oif !== undefined) route.oif = r.oif;
        if (r.priority !== undefined) route.priority = r.priority;
        this.routes.push(route);
        return;
      }
      case 'delRoute': {
        // Like fib_table_delete: dst and table always; gw, oif, protocol and type only when given.
        const r = op.route;
        const table = r.table ?? C.RT_TABLE_MAIN;
        const i = this.routes.findIndex(
          (x) =>
            x.table === table &&
            x.dst === r.dst &&
            (r.gw === undefined || x.gateway === r.gw) &&
            (r.oif === undefined || x.oif === r.oif) &&
            (r.protocol === undefined || r.protocol === 0 || x.protocol === r.protocol) &&
            (r.priority === undefined || (x.priority ?? 0) === r.priority) &&
            (r.type === undefined || x.type === (r.type === 'blackhole' ? C.RTN_BLACKHOLE : C.RTN_UNICAST)),
        );
        this.mutations++;
        if (i >= 0) this.routes.splice(i, 1);
        return;
      }
    }
  }

  // ---------------------------------------------------------- host port

  async getSysctl(key: string): Promise<string | null> {
    return this.sysctls.get(key) ?? null;
  }

  async setSysctl(key: string, value: string): Promise<void> {
    if (!this.sysctls.has(key) && !this.sysctlsAutoCreate) {
      throw Object.assign(new Error(`ENOENT: no such file or directory, open '/proc/sys/${key}'`), { code: 'ENOENT', errno: -ENOENT });
    }
    this.sysctlWrites.push({ key, value });
    this.sysctls.set(key, value);
  }

  /**
   * Like TUNSETIFF: a template ('flannel%d') takes the first free number; an
   * existing TUN link is attached to unless another fake fd holds it (EBUSY).
   */
  async openTun(spec: TunSpec): Promise<TunDevice> {
    const errno = this.failTun?.(spec) ?? null;
    if (errno !== null) throw new SyscallError(`TUNSETIFF ${spec.name}`, errno, 'injected');
    let name = spec.name;
    if (name.includes('%d')) {
      for (let i = 0; ; i++) {
        name = spec.name.replace('%d', String(i));
        if (!(await this.getLinkByName(name))) break;
      }
    }
    const existing = await this.getLinkByName(name);
    if (existing && existing.kind !== 'tun') throw new SyscallError(`TUNSETIFF ${name}`, EINVAL, 'Invalid argument');
    if (existing && this.tuns.some((t) => t.name === name && !t.closed)) {
      throw new SyscallError(`TUNSETIFF ${name}`, EBUSY, 'Device or resource busy');
    }
    this.mutations++;
    const link = existing ?? this.addLink({ name, kind: 'tun', up: false, mtu: 1500, type: 65534 });
    const rec = { spec, name, closed: false };
    this.tuns.push(rec);
    return {
      fd: -1000 - link.index,
      name,
      tso: spec.offload,
      close: () => {
        if (rec.closed) return;
        rec.closed = true;
        // a non-persistent TUN goes away with its fd
        if (!existing) void this.deleteLink(link.index);
      },
    };
  }
}
