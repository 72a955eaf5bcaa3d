// FakeKernel: an in-memory KernelNet for fast unit tests of backends. It keeps
// links, addresses, routes, neighbours and FDB entries with the same
// idempotency rules as the real one (delete of an absent entry succeeds,
// replace overwrites) and counts every mutating call, so tests can assert
// "a second reconcile makes zero changes". Faults can be injected per
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

const EEXIST = 17;
const ENOENT = 2;
const EBUSY = 16;
const EINVAL = 22;

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

  addLink(l: Partial<Link> & { name: string }): Link {
    const link: Link = { family: 0, index: this.nextIndex++, type: 1, flags: 0, up: true, lowerUp: true, operState: 'up', mtu: 1500, ...l } as Link;
    this.links.set(link.index, link);
    return link;
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
    const ex = await this.getLinkByName(s.name);
    if (ex) {
      const v = ex.vxlan;
      if (ex.kind !== 'vxlan' || !v || v.vni !== s.vni || (v.port || 8472) !== (s.port || 8472) || v.local !== s.local || v.linkIndex !== s.linkIndex) {
        throw new NetlinkError({ errno: EEXIST, op: `create vxlan ${s.name}`, detail: 'existing device differs' });
      }
      return ex;
    }
    this.mutations++;
    return this.addLink({
      name: s.name,
      kind: 'vxlan',
      up: false,
      mtu: s.mtu ?? 1450,
      mac: s.mac ?? '02:00:00:00:00:aa',
      vxlan: { vni: s.vni, port: s.port || 8472, local: s.local, linkIndex: s.linkIndex, learning: !!s.learning, gbp: !!s.gbp, l2miss: false, l3miss: false } as Link['vxlan'] & object,
    });
  }
  async deleteLink(index: number): Promise<void> {
    this.mutations++;
    this.links.delete(index);
    this.addrs = this.addrs.filter((a) => a.index !== index);
    this.routes = this.routes.filter((r) => r.oif !== index);
    this.neighs = this.neighs.filter((n) => n.ifindex !== index);
    this.fdb = this.fdb.filter((f) => f.ifindex !== index);
  }
  async setLinkUp(index: number): Promise<void> {
    this.mutations++;
    const l = this.links.get(index);
    if (l) this.links.set(index, { ...l, up: true });
  }
  async setLinkDown(index: number): Promise<void> {
    this.mutations++;
    const l = this.links.get(index);
    if (l) this.links.set(index, { ...l, up: false });
  }
  async setMtu(index: number, mtu: number): Promise<void> {
    this.mutations++;
    const l = this.links.get(index);
    if (l) this.links.set(index, { ...l, mtu });
  }
  async setLinkAddress(index: number, mac: string): Promise<void> {
    this.mutations++;
    const l = this.links.get(index);
    if (l) this.links.set(index, { ...l, mac });
  }
  async listAddrs(index?: number, filter: AddrFilter = {}): Promise<Addr[]> {
    const fam = filter.family ?? 4;
    const ok = (a: Addr) => fam === 'all' || a.family === (fam === 6 ? 10 : 2);
    return this.addrs.filter((a) => (index === undefined || a.index === index) && ok(a));
  }
  async addAddr(index: number, cidr: string): Promise<void> {
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
    return this.routes.filter((r) => (f.oif === undefined || r.oif === f.oif) && r.family === want(f.family));
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
    this.mutations++;
    switch (op.op) {
      case 'replaceNeigh': {
        const n = op.neigh;
        this.neighs = this.neighs.filter((x) => !(x.ifindex === n.ifindex && x.ip === n.ip));
        const permanent = n.permanent ?? true;
        this.neighs.push({ family: afOf(n.ip), ifindex: n.ifindex, ip: n.ip, mac: n.mac, state: permanent ? 0x80 : 0x02, flags: 0, permanent });
        return;
      }
      case 'delNeigh':
        this.neighs = this.neighs.filter((x) => !(x.ifindex === op.neigh.ifindex && x.ip === op.neigh.ip));
        return;
      case 'replaceFdb':
      case 'appendFdb': {
        const f = op.fdb;
        if (op.op === 'replaceFdb') this.fdb = this.fdb.filter((x) => !(x.ifindex === f.ifindex && x.mac === f.mac));
        else this.fdb = this.fdb.filter((x) => !(x.ifindex === f.ifindex && x.mac === f.mac && x.dst === f.dst));
        const permanent = f.permanent ?? true;
        this.fdb.push({ family: 7, ifindex: f.ifindex, mac: f.mac, dst: f.dst, state: permanent ? 0x80 : 0x02, flags: 2, self: f.self ?? true, master: false, permanent });
        return;
      }
      case 'delFdb':
        this.fdb = this.fdb.filter((x) => !(x.ifindex === op.fdb.ifindex && x.mac === op.fdb.mac && x.dst === op.fdb.dst));
        return;
      case 'replaceRoute': {
        const r = op.route;
        this.routes = this.routes.filter((x) => x.dst !== r.dst);
        this.routes.push({ family: afOf(r.dst), dst: r.dst, dstLen: Number(r.dst.split('/')[1]), gateway: r.gw, oif: r.oif, table: 254, protocol: 3, scope: 0, type: 1, flags: r.onlink ? 4 : 0, onlink: !!r.onlink } as Route);
        return;
      }
      case 'delRoute':
        this.routes = this.routes.filter((x) => !(x.dst === op.route.dst && (op.route.oif === undefined || x.oif === op.route.oif)));
        return;
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
