// `flannelctl trace <src pod IP> <dst pod IP>`: the path of one packet,
// layer by layer, from the live state — the route that matches on the source
// host, the neighbour entry that gives the inner destination MAC, the FDB
// entry that gives the outer destination IP, the outer headers, and the
// receiving host. It stops at the first step that is missing and says what
// is missing and how to put it back.
//
// It runs on the source host (inside its network namespace). The receiving
// host's expected state comes from the store; its actual kernel state is
// checked too when a snapshot of it is available (--dst-netns in the lab, or
// whatever the caller passes). Nothing is sent and nothing is changed.

import { formatIPv4, formatIPv4Net, ipv4NetContains, parseIPv4 } from '../lease/ip.js';
import type { Link } from '../kernel/types.js';
import { VXLAN_DEFAULT_PORT, VXLAN_OVERHEAD, findSelf, leaseFor, vxlanSettings, type ClusterView, type LeaseInfo, type SubnetFile, type VxlanSettings } from './cluster.js';
import { rulesDroppingUdpPort, type Firewall, type FirewallRule, type VxlanTraffic } from './host.js';
import { addrIP, addrsOf, describeRoute, linkByIndex, linkByName, localIPs, lookupRoute, neighState, neighUsable, type KernelSnapshot } from './kernel-view.js';
import { FlannelError } from '../errors.js';

/** One host's state as trace reads it; JSON-serialisable so another namespace can hand it over. */
export interface NodeSnapshot {
  readonly kernel: KernelSnapshot;
  readonly firewall: Firewall;
  /** /proc/sys/net/ipv4/ip_forward */
  readonly ipForward: string | null;
}

export type TraceComponent = 'Pod' | 'Forwarding' | 'Routing' | 'Neighbour' | 'FDB' | 'Encap' | 'Underlay' | 'Firewall' | 'Decap' | 'Delivery' | 'Reply';

export interface TraceStep {
  readonly host: 'source' | 'destination';
  readonly component: TraceComponent;
  /** true: present and right; false: missing or wrong (the trace stops here); null: not verified */
  readonly ok: boolean | null;
  readonly summary: string;
  readonly details?: string[];
}

export type TracePhase = 'Delivered' | 'Dropped' | 'ReplyDropped' | 'LeavesOverlay';

export interface TraceHeaders {
  readonly outer: { srcMac: string; dstMac: string; srcIP: string; dstIP: string; proto: 'UDP'; srcPort: string; dstPort: number; vni: number };
  readonly inner: { srcMac: string; dstMac: string; srcIP: string; dstIP: string };
}

export interface TraceReport {
  readonly apiVersion: 'flannel-ts/v1';
  readonly kind: 'TraceReport';
  readonly src: string;
  readonly dst: string;
  readonly backend: string;
  readonly phase: TracePhase;
  /** NSX/Antrea-style drop reason: NoRoute, WrongRoute, NoNeighbour, WrongNeighbour, NoFdb, WrongFdb, VtepMissing, VtepDown, FirewallRule, ... */
  readonly reason?: string;
  /** what is missing, in one line */
  readonly missing?: string;
  readonly fix?: string;
  readonly steps: TraceStep[];
  readonly headers?: TraceHeaders;
  /** whether the receiving host's kernel was read (else it was taken from the store only) */
  readonly destinationVerified: boolean;
}

export class TraceRefused extends FlannelError {
  static override readonly defaultCode: string = 'TRACE_REFUSED';
  override name = 'TraceRefused';
}

interface Ctx {
  readonly src: string;
  readonly dst: string;
  readonly cluster: ClusterView;
  readonly here: NodeSnapshot;
  readonly there: NodeSnapshot | null;
  readonly subnetFile: SubnetFile | null;
}

class Path {
  readonly steps: TraceStep[] = [];
  stopped: { phase: TracePhase; reason: string; missing: string; fix?: string } | null = null;
  headers?: TraceHeaders;
  ok(host: TraceStep['host'], component: TraceComponent, summary: string, details?: string[]): void {
    this.steps.push({ host, component, ok: true, summary, ...(details?.length ? { details } : {}) });
  }
  unverified(host: TraceStep['host'], component: TraceComponent, summary: string, details?: string[]): void {
    this.steps.push({ host, component, ok: null, summary, ...(details?.length ? { details } : {}) });
  }
  /** records the failing step and stops the trace */
  fail(host: TraceStep['host'], component: TraceComponent, reason: string, missing: string, fix?: string, phase: TracePhase = 'Dropped'): false {
    this.steps.push({ host, component, ok: false, summary: missing, ...(fix ? { details: [`fix: ${fix}`] } : {}) });
    this.stopped = { phase, reason, missing, ...(fix ? { fix } : {}) };
    return false;
  }
}

function dropRule(fw: Firewall, port: number, hooks: readonly string[], traffic: VxlanTraffic): FirewallRule | undefined {
  const hookOf = new Map(fw.policies.map((p) => [`${p.table} ${p.chain}`, p.hook]));
  return rulesDroppingUdpPort(fw, port, traffic).find((r) => {
    const hook = r.source === 'iptables' ? r.chain.toLowerCase() : hookOf.get(`${r.table} ${r.chain}`);
    return hook !== undefined && hooks.includes(hook);
  });
}

function fwDelete(r: FirewallRule): string {
  if (r.source === 'iptables') return `iptables -t ${r.table} -D ${r.text.replace(/^-A\s+/, '')}`;
  return r.handle !== undefined ? `nft delete rule ${r.table} ${r.chain} handle ${r.handle}` : `nft delete rule ${r.table} ${r.chain} handle <handle>`;
}

/** The pod side of a host: cni0 up with the gateway address, forwarding on. */
function podSide(path: Path, host: TraceStep['host'], s: NodeSnapshot, lease: LeaseInfo, podIP: string, role: 'sends' | 'receives'): boolean {
  const k = s.kernel;
  const cni0 = linkByName(k, 'cni0');
  if (!cni0) return path.fail(host, 'Pod', 'NoBridge', `${host} host has no cni0 bridge, so ${podIP} is not attached to it`, 'recreate the pod (the flannel CNI plugin creates cni0)');
  if (!cni0.up) return path.fail(host, 'Pod', 'BridgeDown', `cni0 on the ${host} host is down`, 'ip link set cni0 up');
  const gw = addrsOf(k, cni0.index).map((a) => a.cidr);
  const n = k.neighs.find((x) => x.ifindex === cni0.index && x.ip === podIP);
  const details = [`cni0: ${gw.join(', ') || 'no address'}, mtu ${cni0.mtu}`];
  details.push(n?.mac ? `pod MAC ${n.mac} (${neighState(n)} in cni0's neighbour table)` : `pod MAC not in cni0's neighbour table yet (the host ARPs for it when needed)`);
  path.ok(host, 'Pod', role === 'sends' ? `${podIP} sends to its gateway ${formatIPv4(lease.net.ip + 1)} on cni0 (subnet ${lease.subnet})` : `${podIP} is on cni0 (subnet ${lease.subnet})`, details);
  if (s.ipForward !== null && s.ipForward !== '1') {
    return path.fail(host, 'Forwarding', 'ForwardingDisabled', `net.ipv4.ip_forward is ${s.ipForward} on the ${host} host: it does not forward between cni0 and the tunnel`, 'sysctl -w net.ipv4.ip_forward=1');
  }
  return true;
}

function traceVxlan(c: Ctx, vx: VxlanSettings, srcLease: LeaseInfo, dstLease: LeaseInfo, path: Path): void {
  const k = c.here.kernel;
  // 1. leaving the pod
  if (!podSide(path, 'source', c.here, srcLease, c.src, 'sends')) return;

  // 2. the route on the source host
  const vtep = linkByName(k, vx.device);
  if (!vtep) return void path.fail('source', 'Routing', 'VtepMissing', `${vx.device} does not exist on the source host`, 'restart flanneld (it recreates the device)');
  const r = lookupRoute(k, c.dst);
  const wantRoute = `${dstLease.subnet} via ${dstLease.gw} dev ${vx.device} onlink`;
  if (r === undefined) return void path.fail('source', 'Routing', 'NoRoute', `no route matches ${c.dst}; expected "${wantRoute}"`, `ip route replace ${wantRoute}`);
  if (r === 'local') return void path.fail('source', 'Routing', 'WrongRoute', `${c.dst} is an address of the source host itself`);
  const rDesc = describeRoute(k, r);
  if (r.oif !== vtep.index && r.dstLen < dstLease.net.prefix) {
    return void path.fail('source', 'Routing', 'NoRoute', `no route for ${dstLease.subnet}: ${c.dst} falls to "${rDesc}" and leaves without the tunnel; expected "${wantRoute}"`, `ip route replace ${wantRoute}`);
  }
  if (r.oif !== vtep.index) {
    return void path.fail('source', 'Routing', 'WrongRoute', `${c.dst} matches "${rDesc}", which does not go through ${vx.device}; expected "${wantRoute}"`, `ip route replace ${wantRoute}`);
  }
  if (r.gateway !== dstLease.gw || !r.onlink) {
    return void path.fail('source', 'Routing', 'WrongRoute', `${c.dst} matches "${rDesc}"; expected "${wantRoute}"`, `ip route replace ${wantRoute}`);
  }
  if (!vtep.up) return void path.fail('source', 'Routing', 'VtepDown', `${vx.device} is down`, `ip link set ${vx.device} up`);
  path.ok('source', 'Routing', `${c.dst} matches "${rDesc}" (table main): next hop ${r.gateway} on ${vx.device}`);

  // 3. the neighbour entry: the inner destination MAC
  const n = k.neighs.find((x) => x.ifindex === vtep.index && x.ip === r.gateway);
  const peerMac = dstLease.vtepMac;
  if (!n || !neighUsable(n)) {
    return void path.fail(
      'source',
      'Neighbour',
      'NoNeighbour',
      `no neighbour entry for ${r.gateway} on ${vx.device}${n ? ` (only ${neighState(n)})` : ''}: the inner destination MAC is unknown and flannel's VTEP does not ARP`,
      peerMac ? `ip neigh replace ${r.gateway} lladdr ${peerMac} dev ${vx.device} nud permanent` : undefined,
    );
  }
  if (peerMac && n.mac !== peerMac) {
    return void path.fail('source', 'Neighbour', 'WrongNeighbour', `${r.gateway} on ${vx.device} is ${n.mac}, but the lease of ${dstLease.publicIP} publishes VtepMAC ${peerMac}`, `ip neigh replace ${r.gateway} lladdr ${peerMac} dev ${vx.device} nud permanent`);
  }
  path.ok('source', 'Neighbour', `${r.gateway} lladdr ${n.mac} ${neighState(n)} on ${vx.device}: inner destination MAC = VtepMAC of lease ${dstLease.subnet}`);

  // 4. the FDB entry: the outer destination IP
  const fdbs = k.fdb.filter((x) => x.ifindex === vtep.index && x.mac === n.mac && x.dst !== undefined);
  if (fdbs.length === 0) {
    return void path.fail(
      'source',
      'FDB',
      'NoFdb',
      `no FDB entry for ${n.mac} on ${vx.device}: the kernel does not know which host to send the frame to`,
      `bridge fdb append ${n.mac} dev ${vx.device} dst ${dstLease.publicIP} self permanent`,
    );
  }
  const fdb = fdbs.find((x) => x.dst === dstLease.publicIP);
  if (!fdb) {
    return void path.fail(
      'source',
      'FDB',
      'WrongFdb',
      `FDB sends ${n.mac} to ${fdbs.map((x) => x.dst).join(', ')}, but the lease ${dstLease.subnet} is on ${dstLease.publicIP}`,
      `bridge fdb del ${n.mac} dev ${vx.device} dst ${fdbs[0]!.dst} self; bridge fdb append ${n.mac} dev ${vx.device} dst ${dstLease.publicIP} self permanent`,
    );
  }
  if (fdbs.length > 1) path.ok('source', 'FDB', `${n.mac} dst ${fdb.dst} (and ${fdbs.length - 1} more dst: the frame is sent to each)`);
  else path.ok('source', 'FDB', `${n.mac} dst ${fdb.dst} ${fdb.self ? 'self ' : ''}${fdb.permanent ? 'permanent' : ''}`.trim() + ` on ${vx.device}: outer destination IP = PublicIP of lease ${dstLease.subnet}`);

  // 5. encapsulation and the underlay
  const vxi = vtep.vxlan!;
  const port = fdb.port || vxi.port || VXLAN_DEFAULT_PORT;
  const vni = fdb.vni ?? vxi.vni;
  const u = lookupRoute(k, fdb.dst!);
  if (u === undefined || u === 'local') {
    return void path.fail('source', 'Underlay', 'NoUnderlayRoute', u === 'local' ? `${fdb.dst} is an address of the source host` : `no route to ${fdb.dst} on the underlay`, undefined);
  }
  const out = linkByIndex(k, u.oif);
  if (!out || out.index === vtep.index) return void path.fail('source', 'Underlay', 'NoUnderlayRoute', `the route to ${fdb.dst} is "${describeRoute(k, u)}", through the tunnel itself`, `ip route del ${u.dst} dev ${vx.device}`);
  if (!out.up) return void path.fail('source', 'Underlay', 'UnderlayDown', `${out.name} (towards ${fdb.dst}) is down`, `ip link set ${out.name} up`);
  const nextHop = u.gateway ?? fdb.dst!;
  const un = k.neighs.find((x) => x.ifindex === out.index && x.ip === nextHop);
  const srcIP = vxi.local ?? u.prefsrc ?? addrsOf(k, out.index).map(addrIP)[0] ?? '?';
  const outerDstMac = un?.mac && neighUsable(un) ? un.mac : `(ARP for ${nextHop} on ${out.name})`;
  path.headers = {
    outer: { srcMac: out.mac ?? '?', dstMac: outerDstMac, srcIP, dstIP: fdb.dst!, proto: 'UDP', srcPort: 'hash of the inner flow', dstPort: port, vni },
    inner: { srcMac: vtep.mac ?? '?', dstMac: n.mac!, srcIP: c.src, dstIP: c.dst },
  };
  const mtuLine =
    out.mtu !== undefined && vtep.mtu !== undefined
      ? vtep.mtu + VXLAN_OVERHEAD <= out.mtu
        ? `size: inner up to ${vtep.mtu} (${vx.device} mtu) + ${VXLAN_OVERHEAD} = ${vtep.mtu + VXLAN_OVERHEAD} <= ${out.name} mtu ${out.mtu}`
        : `size: inner up to ${vtep.mtu} + ${VXLAN_OVERHEAD} = ${vtep.mtu + VXLAN_OVERHEAD} > ${out.name} mtu ${out.mtu}: full-size packets do not fit (fix: ip link set ${vx.device} mtu ${out.mtu - VXLAN_OVERHEAD})`
      : 'size: unknown';
  path.ok('source', 'Encap', `${vx.device} (VNI ${vxi.vni}, local ${vxi.local ?? '-'}, dstport ${vxi.port || VXLAN_DEFAULT_PORT}) wraps the frame`, [
    `outer Ethernet  ${path.headers.outer.srcMac} (${out.name}) -> ${outerDstMac}`,
    `outer IPv4      ${srcIP} -> ${fdb.dst} (UDP)`,
    `outer UDP       sport <hash of the inner flow> -> dport ${port}`,
    `VXLAN           flags I, VNI ${vni}`,
    `inner Ethernet  ${vtep.mac} (${vx.device}) -> ${n.mac}`,
    `inner IPv4      ${c.src} -> ${c.dst}`,
    mtuLine,
  ]);
  const traffic: VxlanTraffic = { peers: [fdb.dst!], self: srcIP, underlay: out.name };
  const outRule = dropRule(c.here.firewall, port, ['output', 'postrouting'], traffic);
  if (outRule) return void path.fail('source', 'Firewall', 'FirewallRule', `${outRule.source} ${outRule.table} ${outRule.chain} drops udp/${port} on the way out: ${outRule.text}`, fwDelete(outRule));
  path.ok('source', 'Underlay', `${srcIP} -> ${fdb.dst} leaves via "${describeRoute(k, u)}"${un?.mac ? `, next hop ${nextHop} is ${un.mac} (${neighState(un)})` : ''}`);

  // 6. the receiving host
  const d = c.there;
  if (!d) {
    path.unverified('destination', 'Decap', `${dstLease.publicIP} should accept udp/${port} on its ${vx.device} (VNI ${vx.vni}, MAC ${dstLease.vtepMac ?? '?'}), route ${c.dst} to cni0 and deliver it`, [
      'not verified: the receiving host\u2019s kernel was not read (run trace with --dst-netns in the lab, or `flannelctl diagnose` on that node)',
    ]);
    return;
  }
  const dk = d.kernel;
  if (!localIPs(dk).has(fdb.dst!)) return void path.fail('destination', 'Decap', 'NotReceivedByPeer', `${fdb.dst} is not an address of the receiving host`, undefined);
  const dIn = dk.addrs.find((x) => addrIP(x) === fdb.dst);
  const inRule = dropRule(d.firewall, port, ['input', 'prerouting'], { peers: [srcIP], self: fdb.dst!, underlay: dIn ? (linkByIndex(dk, dIn.index)?.name ?? null) : null });
  if (inRule) return void path.fail('destination', 'Firewall', 'FirewallRule', `${inRule.source} ${inRule.table} ${inRule.chain} on the receiving host drops udp/${port}: ${inRule.text}`, fwDelete(inRule));
  const dv: Link | undefined = dk.links.find((l) => l.kind === 'vxlan' && (l.vxlan?.port || VXLAN_DEFAULT_PORT) === port && l.vxlan?.vni === vni);
  if (!dv) return void path.fail('destination', 'Decap', 'NoVtep', `the receiving host has no VXLAN device for VNI ${vni} on port ${port}: the packet is dropped (or answered with ICMP port unreachable)`, 'restart flanneld on the receiving host');
  if (!dv.up) return void path.fail('destination', 'Decap', 'VtepDown', `${dv.name} on the receiving host is down`, `ip link set ${dv.name} up   (on the receiving host)`);
  if (dv.mac !== n.mac) return void path.fail('destination', 'Decap', 'WrongVtepMac', `${dv.name} on the receiving host has MAC ${dv.mac}, the frame is addressed to ${n.mac}: it is dropped`, `ip link set ${dv.name} address ${n.mac}   (on the receiving host), or restart flanneld there`);
  path.ok('destination', 'Decap', `${fdb.dst}:${port} -> ${dv.name} (VNI ${vni}, MAC ${dv.mac}): inner frame for ${c.dst}`);
  if (d.ipForward !== null && d.ipForward !== '1') {
    return void path.fail('destination', 'Forwarding', 'ForwardingDisabled', `net.ipv4.ip_forward is ${d.ipForward} on the receiving host: it does not forward from ${dv.name} to cni0`, 'sysctl -w net.ipv4.ip_forward=1   (on the receiving host)');
  }
  const dr = lookupRoute(dk, c.dst);
  const dcni = linkByName(dk, 'cni0');
  if (dr === undefined || dr === 'local' || !dcni || dr.oif !== dcni.index) {
    return void path.fail('destination', 'Routing', 'NoRoute', `on the receiving host ${c.dst} ${dr === undefined ? 'matches no route' : dr === 'local' ? 'is a local address' : `matches "${describeRoute(dk, dr)}"`}, not cni0`, `recreate the pod's network on the receiving host`);
  }
  path.ok('destination', 'Routing', `${c.dst} matches "${describeRoute(dk, dr)}"`);
  if (!podSide(path, 'destination', d, dstLease, c.dst, 'receives')) return;
  path.ok('destination', 'Delivery', `delivered to ${c.dst} through cni0`);

  // 7. the way back (the reply needs the mirror-image entries)
  const br = lookupRoute(dk, c.src);
  const wantBack = `${srcLease.subnet} via ${srcLease.gw} dev ${dv.name} onlink`;
  if (br === undefined || br === 'local' || br.oif !== dv.index || br.gateway !== srcLease.gw) {
    return void path.fail('destination', 'Reply', 'NoRoute', `the reply: on the receiving host ${c.src} ${br === undefined ? 'matches no route' : br === 'local' ? 'is local' : `matches "${describeRoute(dk, br)}"`}; expected "${wantBack}"`, `ip route replace ${wantBack}   (on the receiving host)`, 'ReplyDropped');
  }
  const bn = dk.neighs.find((x) => x.ifindex === dv.index && x.ip === srcLease.gw);
  if (!bn || !neighUsable(bn) || (srcLease.vtepMac && bn.mac !== srcLease.vtepMac)) {
    return void path.fail('destination', 'Reply', bn ? 'WrongNeighbour' : 'NoNeighbour', `the reply: neighbour ${srcLease.gw} on ${dv.name} is ${bn ? `${bn.mac ?? 'without MAC'} ${neighState(bn)}` : 'missing'}; expected ${srcLease.vtepMac}`, `ip neigh replace ${srcLease.gw} lladdr ${srcLease.vtepMac} dev ${dv.name} nud permanent   (on the receiving host)`, 'ReplyDropped');
  }
  const bf = dk.fdb.filter((x) => x.ifindex === dv.index && x.mac === bn.mac && x.dst !== undefined);
  if (!bf.some((x) => x.dst === srcLease.publicIP)) {
    return void path.fail('destination', 'Reply', bf.length ? 'WrongFdb' : 'NoFdb', `the reply: FDB for ${bn.mac} on ${dv.name} is ${bf.length ? `dst ${bf.map((x) => x.dst).join(', ')}` : 'missing'}; expected dst ${srcLease.publicIP}`, `bridge fdb append ${bn.mac} dev ${dv.name} dst ${srcLease.publicIP} self permanent   (on the receiving host)`, 'ReplyDropped');
  }
  path.ok('destination', 'Reply', `back to ${c.src}: "${describeRoute(dk, br)}", ${srcLease.gw} lladdr ${bn.mac}, fdb dst ${srcLease.publicIP}`);
}

function traceHostGw(c: Ctx, srcLease: LeaseInfo, dstLease: LeaseInfo, path: Path): void {
  const k = c.here.kernel;
  if (!podSide(path, 'source', c.here, srcLease, c.src, 'sends')) return;
  const want = `${dstLease.subnet} via ${dstLease.publicIP}`;
  const r = lookupRoute(k, c.dst);
  if (r === undefined || r === 'local') return void path.fail('source', 'Routing', 'NoRoute', `no route matches ${c.dst}; expected "${want}"`, `ip route replace ${want}`);
  if (r.gateway !== dstLease.publicIP && r.dstLen < dstLease.net.prefix) {
    return void path.fail('source', 'Routing', 'NoRoute', `no route for ${dstLease.subnet}: ${c.dst} falls to "${describeRoute(k, r)}"; expected "${want}"`, `ip route replace ${want}`);
  }
  if (r.gateway !== dstLease.publicIP) return void path.fail('source', 'Routing', 'WrongRoute', `${c.dst} matches "${describeRoute(k, r)}"; expected "${want}"`, `ip route replace ${want}`);
  path.ok('source', 'Routing', `${c.dst} matches "${describeRoute(k, r)}": sent unencapsulated to ${dstLease.publicIP}`);
  const out = linkByIndex(k, r.oif);
  const un = out ? k.neighs.find((x) => x.ifindex === out.index && x.ip === dstLease.publicIP) : undefined;
  path.ok('source', 'Underlay', `Ethernet ${out?.mac ?? '?'} (${out?.name ?? '?'}) -> ${un?.mac && neighUsable(un) ? un.mac : `(ARP for ${dstLease.publicIP})`}, IPv4 ${c.src} -> ${c.dst}`);
  const d = c.there;
  if (!d) {
    path.unverified('destination', 'Delivery', `${dstLease.publicIP} should route ${c.dst} to cni0`, ['not verified: the receiving host\u2019s kernel was not read (--dst-netns)']);
    return;
  }
  if (!localIPs(d.kernel).has(dstLease.publicIP)) return void path.fail('destination', 'Routing', 'NotReceivedByPeer', `${dstLease.publicIP} is not an address of the receiving host`);
  const dr = lookupRoute(d.kernel, c.dst);
  const dcni = linkByName(d.kernel, 'cni0');
  if (dr === undefined || dr === 'local' || !dcni || dr.oif !== dcni.index) return void path.fail('destination', 'Routing', 'NoRoute', `on the receiving host ${c.dst} does not route to cni0`);
  if (!podSide(path, 'destination', d, dstLease, c.dst, 'receives')) return;
  path.ok('destination', 'Delivery', `delivered to ${c.dst} through cni0`);
  const br = lookupRoute(d.kernel, c.src);
  if (br === undefined || br === 'local' || br.gateway !== srcLease.publicIP) {
    return void path.fail('destination', 'Reply', 'NoRoute', `the reply: on the receiving host ${c.src} does not route via ${srcLease.publicIP}`, `ip route replace ${srcLease.subnet} via ${srcLease.publicIP}   (on the receiving host)`, 'ReplyDropped');
  }
  path.ok('destination', 'Reply', `back to ${c.src}: "${describeRoute(d.kernel, br)}"`);
}

export interface TraceInputs {
  readonly src: string;
  readonly dst: string;
  readonly cluster: ClusterView;
  readonly here: NodeSnapshot;
  readonly there: NodeSnapshot | null;
  readonly subnetFile: SubnetFile | null;
}

/** Pure: the path of one packet from src to dst. Throws TraceRefused for requests it cannot answer. */
export function trace(i: TraceInputs): TraceReport {
  for (const [name, ip] of [['source', i.src], ['destination', i.dst]] as const) {
    try {
      parseIPv4(ip);
    } catch {
      throw new TraceRefused(`${name} "${ip}" is not an IPv4 address`);
    }
  }
  const cfg = i.cluster.config;
  if (!cfg) throw new TraceRefused(`the store has no usable network config: ${i.cluster.configError}`);
  const backend = cfg.backend.type;
  if (backend !== 'vxlan' && backend !== 'host-gw') throw new TraceRefused(`trace supports the vxlan and host-gw backends; this network uses ${backend}`);
  const leases = i.cluster.leases;
  const srcLease = leaseFor(leases, i.src);
  if (!srcLease) throw new TraceRefused(`${i.src} is in no node's subnet (leases: ${leases.map((l) => l.subnet).join(', ') || 'none'})`);
  const vtep = backend === 'vxlan' ? linkByName(i.here.kernel, vxlanSettings(cfg)?.device ?? 'flannel.1') : undefined;
  const self = findSelf(leases, { subnetFile: i.subnetFile, localIPs: localIPs(i.here.kernel), vtepIPs: new Set(vtep ? addrsOf(i.here.kernel, vtep.index).map(addrIP) : []) });
  if (self?.lease !== srcLease) {
    throw new TraceRefused(`${i.src} is in ${srcLease.subnet}, which is node ${srcLease.publicIP}'s; run trace on that node${self ? ` (this one is ${self.lease.publicIP}, ${self.lease.subnet})` : ''}`);
  }
  const path = new Path();
  const ctx: Ctx = { src: i.src, dst: i.dst, cluster: i.cluster, here: i.here, there: i.there, subnetFile: i.subnetFile };
  const dstLease = leaseFor(leases, i.dst);
  const net = cfg.network;
  const inNetwork = net !== null && ipv4NetContains(net, parseIPv4(i.dst));
  let phase: TracePhase;
  if (dstLease === srcLease) {
    if (podSide(path, 'source', i.here, srcLease, i.src, 'sends')) {
      const r = lookupRoute(i.here.kernel, i.dst);
      const cni0 = linkByName(i.here.kernel, 'cni0');
      if (r && r !== 'local' && cni0 && r.oif === cni0.index) path.ok('source', 'Delivery', `${i.dst} is on the same node: "${describeRoute(i.here.kernel, r)}", bridged on cni0, no tunnel`);
      else path.fail('source', 'Routing', 'NoRoute', `${i.dst} is in this node's subnet but does not route to cni0`);
    }
  } else if (!dstLease) {
    if (inNetwork) {
      podSide(path, 'source', i.here, srcLease, i.src, 'sends') &&
        path.fail('source', 'Routing', 'NoLease', `${i.dst} is inside the network ${formatIPv4Net(net!)} but no node holds its subnet; ${describeLookup(i.here.kernel, i.dst)}`);
    } else if (podSide(path, 'source', i.here, srcLease, i.src, 'sends')) {
      path.ok('source', 'Routing', `${i.dst} is outside the overlay: ${describeLookup(i.here.kernel, i.dst)}`);
    }
  } else if (backend === 'vxlan') {
    const vx = vxlanSettings(cfg);
    if (!vx) throw new TraceRefused('the vxlan backend options in the network config are invalid');
    traceVxlan(ctx, vx, srcLease, dstLease, path);
  } else traceHostGw(ctx, srcLease, dstLease, path);

  if (path.stopped) phase = path.stopped.phase;
  else if (!dstLease && !inNetwork) phase = 'LeavesOverlay';
  else phase = 'Delivered';
  return {
    apiVersion: 'flannel-ts/v1',
    kind: 'TraceReport',
    src: i.src,
    dst: i.dst,
    backend,
    phase,
    ...(path.stopped ? { reason: path.stopped.reason, missing: path.stopped.missing, ...(path.stopped.fix ? { fix: path.stopped.fix } : {}) } : {}),
    steps: path.steps,
    ...(path.headers ? { headers: path.headers } : {}),
    destinationVerified: i.there !== null,
  };
}

function describeLookup(k: KernelSnapshot, ip: string): string {
  const r = lookupRoute(k, ip);
  return r === undefined ? 'no route matches it' : r === 'local' ? 'it is local' : `it matches "${describeRoute(k, r)}"`;
}

export function renderTrace(r: TraceReport): string {
  const lines: string[] = [`trace ${r.src} -> ${r.dst} (${r.backend})`];
  let host = '';
  let n = 0;
  for (const s of r.steps) {
    if (s.host !== host) {
      host = s.host;
      lines.push(host === 'source' ? 'on the source host:' : `on the receiving host${r.destinationVerified ? '' : ' (from the store only)'}:`);
    }
    n++;
    const mark = s.ok === true ? 'ok  ' : s.ok === false ? 'FAIL' : '??  ';
    lines.push(`  ${String(n).padStart(2)} ${mark} ${s.component.padEnd(10)} ${s.summary}`);
    for (const d of s.details ?? []) lines.push(`${' '.repeat(21)}${d}`);
  }
  lines.push('');
  if (r.phase === 'Delivered') lines.push(`result: Delivered${r.destinationVerified ? '' : ' as far as the source host can tell'}: every step is in place`);
  else if (r.phase === 'LeavesOverlay') lines.push('result: LeavesOverlay: the packet leaves the flannel network');
  else {
    lines.push(`result: ${r.phase} (${r.reason}): ${r.missing}`);
    if (r.fix) lines.push(`fix:    ${r.fix}`);
  }
  return lines.join('\n') + '\n';
}

/** 0 when the path is complete (or leaves the overlay as routed); 1 when a step is missing. */
export function traceExitCode(r: TraceReport): number {
  return r.phase === 'Delivered' || r.phase === 'LeavesOverlay' ? 0 : 1;
}
