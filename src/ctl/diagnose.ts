// `flannelctl diagnose`: what the store says this node and its peers should
// have, against what the kernel of this network namespace has, plus the host
// around it (sysctls, firewall, MTU chain, offload) and active probes through
// the overlay. It never asks flanneld anything, so it works when the daemon
// is stopped or hung, and it changes nothing.
//
// Shape: gather (I/O, bounded in time) -> analyse (pure, unit-tested) ->
// render. Findings carry a stable code; the text output is rendered from the
// same objects as --json.

import os from 'node:os';
import { formatIPv4Net, ipv4NetContains, parseIPv4, parseIPv4Net, type IPv4Net } from '../lease/ip.js';
import { desiredEntries, type PeerEntries } from '../backend/vxlan/desired.js';
import type { KernelNet, Link } from '../kernel/types.js';
import type { LeaseStore } from '../store/store.js';
import {
  StoreUnreachable,
  VXLAN_DEFAULT_PORT,
  VXLAN_OVERHEAD,
  findSelf,
  readCluster,
  readSubnetFile,
  vxlanSettings,
  type ClusterView,
  type LeaseInfo,
  type SubnetFile,
  type VxlanSettings,
} from './cluster.js';
import {
  deleteCommand,
  kernelHasVxlanCsumBug,
  matchesPort,
  readFirewall,
  readOffload,
  readSysctls,
  rulesDroppingUdpPort,
  type Firewall,
  type OffloadState,
  type Sysctls,
} from './host.js';
import { addrIP, addrsOf, describeRoute, linkByIndex, linkByName, localIPs, lookupRoute, neighState, neighUsable, readKernel, type KernelSnapshot } from './kernel-view.js';
import { pingAll, ProbeUnavailable, type ProbeResult } from './probe.js';
import { renderTable } from './leases.js';

export type Severity = 'error' | 'warning';

export interface Finding {
  /** stable, SCREAMING_SNAKE; scripts match on it */
  readonly code: string;
  readonly severity: Severity;
  /** the concrete thing: "route 10.244.2.0/24 on flannel.1", "sysctl net.ipv4.ip_forward" */
  readonly object: string;
  /** what was found, against what was expected */
  readonly problem: string;
  /** why it matters */
  readonly why: string;
  /** how to fix it, for a person: commands and advice */
  readonly fix: string;
  /** when the fix is a set of commands run on this node, exactly those, in order (scripts may run them) */
  readonly commands?: string[];
  /** the peer's public IP, when the finding is about one peer */
  readonly peer?: string;
}

export type CheckStatus = 'ok' | 'fail' | 'warn' | 'skipped';

export interface Check {
  readonly name: string;
  readonly status: CheckStatus;
  readonly detail: string;
}

export interface DiagnoseReport {
  readonly apiVersion: 'flannel-ts/v1';
  readonly kind: 'DiagnoseReport';
  readonly node: { hostname: string; publicIP: string | null; subnet: string | null; recognisedBy: string | null };
  readonly store: string;
  readonly generatedAt: string;
  readonly elapsedMs: number;
  readonly summary: { errors: number; warnings: number; peers: number };
  readonly findings: Finding[];
  readonly checks: Check[];
}

export type ProbeOutcome = { skipped: string } | { results: ReadonlyMap<string, ProbeResult> };

export interface DiagnoseInputs {
  readonly cluster: ClusterView | StoreUnreachable;
  readonly subnetFilePath: string;
  readonly subnetFile: SubnetFile | null;
  readonly kernel: KernelSnapshot;
  readonly sysctls: Sysctls;
  readonly firewall: Firewall;
  readonly offload: OffloadState | null;
  readonly kernelRelease: string;
  readonly probes: ProbeOutcome;
  readonly hostname?: string;
}

// ----------------------------------------------------------------- plan

/**
 * What this node is supposed to be, derived from the store (or, when the
 * store is unreachable, from subnet.env and the kernel alone).
 */
export interface Plan {
  cluster: ClusterView | null;
  network: IPv4Net | null;
  self: { lease: LeaseInfo; by: string } | null;
  peers: LeaseInfo[];
  vx: VxlanSettings | null;
  /** flannel.<VNI> (from the config, or the one found in the kernel) */
  vtepName: string | null;
  vtep: Link | undefined;
  underlay: Link | undefined;
  desired: PeerEntries[];
}

function plan(i: DiagnoseInputs): Plan {
  const cluster = i.cluster instanceof StoreUnreachable ? null : i.cluster;
  const k = i.kernel;
  const config = cluster?.config ?? null;
  const network = config?.network ?? i.subnetFile?.network ?? null;
  const vx = config ? vxlanSettings(config) : null;
  // Without a config, look for a flannel VTEP in the kernel.
  const vtepName = vx?.device ?? (config ? null : (k.links.find((l) => l.kind === 'vxlan' && /^flannel\.\d+$/.test(l.name))?.name ?? null));
  const vtep = vtepName ? linkByName(k, vtepName) : undefined;
  const vtepIPs = vtep ? new Set(addrsOf(k, vtep.index).map(addrIP)) : new Set<string>();
  const self = cluster ? findSelf(cluster.leases, { subnetFile: i.subnetFile, localIPs: localIPs(k), vtepIPs }) : null;
  const peers = cluster ? cluster.leases.filter((l) => l !== self?.lease && !(self === null && localIPs(k).has(l.publicIP))) : [];
  let underlay = vtep?.vxlan?.linkIndex !== undefined ? linkByIndex(k, vtep.vxlan.linkIndex) : undefined;
  if (!underlay && self) {
    const r = lookupRoute(k, self.lease.publicIP);
    // our public IP is local: find the link that carries it
    const a = k.addrs.find((x) => addrIP(x) === self.lease.publicIP);
    underlay = a ? linkByIndex(k, a.index) : r && r !== 'local' ? linkByIndex(k, r.oif) : undefined;
  }
  let desired: PeerEntries[] = [];
  if (vx) {
    const directNets = vx.directRouting && underlay ? addrsOf(k, underlay.index).map((a) => parseIPv4Net(a.cidr)) : null;
    desired = desiredEntries(
      peers.filter((p) => p.backend === 'vxlan').map((p) => p.lease),
      directNets,
    ).peers;
  }
  return { cluster, network, self, peers, vx, vtepName, vtep, underlay, desired };
}

// ----------------------------------------------------------------- analyse

/** Pure: every finding and check for the gathered inputs. */
export function analyse(i: DiagnoseInputs): { findings: Finding[]; checks: Check[]; plan: Plan } {
  const p = plan(i);
  const f: Finding[] = [];
  const checks: Check[] = [];
  const add = (x: Finding) => f.push(x);
  const check = (name: string, codes: readonly Finding[], okDetail: string, skipped?: string) => {
    if (skipped !== undefined) return checks.push({ name, status: 'skipped', detail: skipped });
    const status: CheckStatus = codes.some((x) => x.severity === 'error') ? 'fail' : codes.length ? 'warn' : 'ok';
    checks.push({ name, status, detail: status === 'ok' ? okDetail : `${codes.length} finding${codes.length > 1 ? 's' : ''}: ${[...new Set(codes.map((x) => x.code))].join(', ')}` });
  };
  const since = () => f.length;
  const from = (n: number) => f.slice(n);

  // --- store and config
  let n0 = since();
  storeFindings(i, p, add);
  check('store', from(n0), p.cluster ? `${p.cluster.leases.length} leases, ${p.cluster.config ? `backend ${p.cluster.config.backend.type}` : 'no config'} (${p.cluster.elapsedMs} ms, ${p.cluster.store})` : '');

  // --- this node: lease, public IP, subnet.env, cni0
  n0 = since();
  selfFindings(i, p, add);
  check('node', from(n0), p.self ? `lease ${p.self.lease.subnet}, public IP ${p.self.lease.publicIP} (${p.self.by})` : 'no lease known', p.cluster ? undefined : 'store unreachable');

  const port = p.vx?.udpPort ?? (p.vtep?.vxlan?.port || VXLAN_DEFAULT_PORT);
  const isVxlan = p.vx !== null || (p.cluster === null && p.vtepName !== null);

  // --- VTEP
  n0 = since();
  if (isVxlan) vtepFindings(i, p, add);
  check(
    'vtep',
    from(n0),
    p.vtep ? `${p.vtep.name} up, ${addrsOf(i.kernel, p.vtep.index).map((a) => a.cidr).join(', ')}, MAC ${p.vtep.mac}, VNI ${p.vtep.vxlan?.vni}, port ${p.vtep.vxlan?.port || VXLAN_DEFAULT_PORT}` : '',
    isVxlan ? undefined : p.cluster?.config ? `backend ${p.cluster.config.backend.type}: no VTEP` : 'no VXLAN device and no config',
  );

  // --- peers: routes, neighbours, FDB; stale entries
  n0 = since();
  if (p.cluster) peerFindings(i, p, add);
  check(
    'peers',
    from(n0),
    `${p.peers.length} peer${p.peers.length === 1 ? '' : 's'}: ${p.vx ? 'route, neighbour and FDB entries match the store; no stale entries' : p.cluster?.config?.backend.type === 'host-gw' ? 'routes match the store' : 'underlay routes present'}`,
    p.cluster ? undefined : 'store unreachable',
  );

  // --- MTU chain
  n0 = since();
  const mtuDetail = mtuFindings(i, p, add);
  check('mtu', from(n0), mtuDetail ?? '', p.vtep && isVxlan ? undefined : 'no VTEP');

  // --- sysctls
  n0 = since();
  sysctlFindings(i, p, add);
  check('sysctls', from(n0), `ip_forward=${i.sysctls.ipForward}, rp_filter ${[...i.sysctls.rpFilter].map(([d, v]) => `${d}=${v}`).join(' ') || 'n/a'}`);

  // --- firewall
  n0 = since();
  firewallFindings(i, p, port, add);
  check(
    'firewall',
    from(n0),
    `${isVxlan ? `no DROP/REJECT for udp/${port}` : 'no FORWARD policy dropping pod traffic'}${i.firewall.notes.length ? ` (${i.firewall.notes.join('; ')})` : ''}`,
    i.firewall.notes.length === 2 ? i.firewall.notes.join('; ') : undefined,
  );

  // --- checksum offload
  n0 = since();
  const offloadSkip = offloadFindings(i, p, add);
  check('offload', from(n0), offloadSkip.ok, offloadSkip.skipped);

  // --- probes
  n0 = since();
  const probeDetail = probeFindings(i, p, f, add);
  check('probes', from(n0), probeDetail.ok, probeDetail.skipped);

  return { findings: f, checks, plan: p };
}

type Add = (x: Finding) => void;

/** fix + commands for a finding whose fix is a list of commands run on this node. */
function cmds(commands: string[], note?: string): { fix: string; commands: string[] } {
  return { fix: commands.join('; ') + (note ? `   (${note})` : ''), commands };
}

function storeFindings(i: DiagnoseInputs, p: Plan, add: Add): void {
  if (i.cluster instanceof StoreUnreachable) {
    add({
      code: 'STORE_UNREACHABLE',
      severity: 'error',
      object: `store ${i.cluster.store}`,
      problem: `no answer: ${i.cluster.reason} (gave up after ${(i.cluster.elapsedMs / 1000).toFixed(1)} s)`,
      why: 'flanneld cannot renew its lease or learn about new and removed nodes; the kernel keeps the last state, and the store-vs-kernel checks below were skipped',
      fix: i.cluster.store.startsWith('etcd ')
        ? `check that etcd is running and reachable from this host: ETCDCTL_API=3 etcdctl --endpoints ${i.cluster.store.split(' ')[1]} endpoint health`
        : 'check the store path and permissions given with --store',
    });
    return;
  }
  const c = i.cluster;
  if (c.configError) {
    add({
      code: c.configText === null ? 'CONFIG_MISSING' : 'CONFIG_INVALID',
      severity: 'error',
      object: 'network config <prefix>/config',
      problem: c.configError,
      why: 'flanneld cannot start without a valid network config',
      fix: `ETCDCTL_API=3 etcdctl put <prefix>/config '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}'`,
    });
  }
  for (const bad of c.invalid) {
    add({
      code: 'LEASE_INVALID',
      severity: 'warning',
      object: `lease ${bad.key}`,
      problem: bad.reason,
      why: 'flanneld skips this lease, so no node routes to its subnet',
      fix: `inspect it: ETCDCTL_API=3 etcdctl get <prefix>/subnets/${bad.key}; delete it if no node owns it`,
    });
  }
  // duplicates among leases
  const dup = <K>(key: (l: LeaseInfo) => K | null) => {
    const m = new Map<K, LeaseInfo[]>();
    for (const l of c.leases) {
      const k = key(l);
      if (k !== null) m.set(k, [...(m.get(k) ?? []), l]);
    }
    return [...m].filter(([, ls]) => ls.length > 1);
  };
  for (const [ip, ls] of dup((l) => l.publicIP)) {
    add({
      code: 'DUPLICATE_PUBLIC_IP',
      severity: 'error',
      object: `public IP ${ip}`,
      problem: `${ls.length} leases claim it: ${ls.map((l) => l.subnet).join(', ')}`,
      why: 'peers send the traffic of all these subnets to one host; typical when every VM has the same NAT address (Vagrant 10.0.2.15)',
      fix: `on each node, start flanneld with --iface=<underlay interface> or --public-ip=<its own address>, then delete the stale lease: ETCDCTL_API=3 etcdctl del <prefix>/subnets/<subnet>`,
    });
  }
  for (const [mac, ls] of dup((l) => (l.backend === 'vxlan' ? l.vtepMac : null))) {
    add({
      code: 'DUPLICATE_VTEP_MAC',
      severity: 'error',
      object: `VTEP MAC ${mac}`,
      problem: `${ls.length} leases publish it: ${ls.map((l) => `${l.subnet} (${l.publicIP})`).join(', ')}`,
      why: 'a peer has one FDB entry per MAC, so it sends both nodes\u2019 traffic to the same host',
      fix: `on one of those nodes: ip link delete ${p.vtepName ?? 'flannel.1'} and restart flanneld (it creates a device with a fresh MAC and republishes it)`,
    });
  }
  const type = c.config?.backend.type;
  if (type) {
    for (const l of c.leases) {
      if (l.backend === type || l === p.self?.lease) continue;
      add({
        code: 'PEER_BACKEND_MISMATCH',
        severity: 'error',
        object: `lease ${l.subnet} (${l.publicIP})`,
        problem: `backend "${l.backend || '(none: udp/alloc)'}", but the network config says "${type}"`,
        why: `this node's ${type} backend ignores that lease, so pods here cannot reach ${l.subnet}`,
        fix: `restart flanneld on ${l.publicIP} with the same network config as the others`,
        peer: l.publicIP,
      });
    }
  }
}

function selfFindings(i: DiagnoseInputs, p: Plan, add: Add): void {
  const k = i.kernel;
  const sf = i.subnetFile;
  if (!sf) {
    add({
      code: 'SUBNET_ENV_MISSING',
      severity: 'error',
      object: `file ${i.subnetFilePath}`,
      problem: 'does not exist',
      why: 'the flannel CNI plugin reads it to give pods their addresses and MTU; without it no pod can start on this node',
      fix: `start flanneld (it writes the file once it holds a lease), or pass --subnet-file if it lives elsewhere`,
    });
  }
  const c = p.cluster;
  if (c) {
    if (!p.self) {
      add({
        code: 'NO_LEASE',
        severity: 'error',
        object: sf?.subnet ? `subnet ${formatIPv4Net(sf.subnet)} (from ${sf.path})` : 'this node',
        problem: sf?.subnet ? `the store has no lease for ${formatIPv4Net(sf.subnet)}, nor one whose public IP is an address of this host` : 'no lease in the store has a public IP of this host',
        why: 'peers have no route, neighbour or FDB entry towards this node, so its pods are unreachable',
        fix: 'restart flanneld on this node; it takes a lease again (preferring the subnet in subnet.env)',
      });
    } else {
      const me = p.self.lease;
      if (!localIPs(k).has(me.publicIP)) {
        add({
          code: 'PUBLIC_IP_NOT_LOCAL',
          severity: 'error',
          object: `lease ${me.subnet}, public IP ${me.publicIP}`,
          problem: `${me.publicIP} is not an address of this host (found: ${[...localIPs(k)].filter((a) => !a.startsWith('127.')).join(', ') || 'none'})`,
          why: 'peers send this node\u2019s VXLAN traffic to that address, so it never arrives here',
          fix: 'restart flanneld with --iface=<underlay interface> or --public-ip=<an address of this host>',
        });
      }
      if (sf?.subnet && (sf.subnet.ip !== me.net.ip || sf.subnet.prefix !== me.net.prefix)) {
        add({
          code: 'SUBNET_ENV_STALE',
          severity: 'error',
          object: `file ${sf.path}`,
          problem: `FLANNEL_SUBNET=${sf.subnetRaw}, but this node's lease is ${me.subnet}`,
          why: 'new pods get addresses that peers route to another node',
          fix: `restart flanneld (it rewrites ${sf.path}), then: ip link delete cni0, and recreate the pods on this node`,
        });
      }
    }
    if (sf?.network && c.config?.network && formatIPv4Net(sf.network) !== formatIPv4Net(c.config.network)) {
      add({
        code: 'SUBNET_ENV_STALE',
        severity: 'error',
        object: `file ${sf.path}`,
        problem: `FLANNEL_NETWORK=${formatIPv4Net(sf.network)}, but the network config says ${formatIPv4Net(c.config.network)}`,
        why: 'the file is left from another network; pods get addresses outside the overlay',
        fix: `restart flanneld (it rewrites ${sf.path}), then: ip link delete cni0, and recreate the pods on this node`,
      });
    }
  }
  // cni0 against subnet.env
  const cni0 = linkByName(k, 'cni0');
  if (cni0 && sf?.subnetRaw && sf.subnet) {
    const mine = addrsOf(k, cni0.index);
    const want = sf.subnetRaw.split(',')[0]!.trim();
    const wrong = mine.filter((a) => a.cidr !== want);
    if (mine.length > 0 && !mine.some((a) => a.cidr === want)) {
      add({
        code: 'CNI0_ADDRESS_MISMATCH',
        severity: 'error',
        object: `cni0 ${wrong.map((a) => a.cidr).join(', ')}`,
        problem: `cni0 has ${wrong.map((a) => a.cidr).join(', ')}, but ${sf.path} says FLANNEL_SUBNET=${want}`,
        why: 'the bridge plugin fails with "cni0 already has an IP address different from ...", so no new pod starts here',
        fix: `ip link delete cni0   (the next pod recreates it with ${want}; pods on this node lose connectivity until recreated)`,
        commands: ['ip link delete cni0'],
      });
    }
  }
}

function vtepFindings(i: DiagnoseInputs, p: Plan, add: Add): void {
  const k = i.kernel;
  const name = p.vtepName ?? 'flannel.1';
  const dev = p.vtep;
  const restart = `ip link delete ${name}; then restart flanneld (it recreates ${name} and its entries)`;
  if (!dev) {
    add({
      code: 'VTEP_MISSING',
      severity: 'error',
      object: `device ${name}`,
      problem: 'does not exist',
      why: 'all traffic to pods on other nodes is lost: there is no tunnel endpoint',
      fix: 'restart flanneld (it creates the device, keeping the MAC published in its lease when it can)',
    });
    return;
  }
  if (dev.kind !== 'vxlan') {
    add({ code: 'VTEP_NOT_VXLAN', severity: 'error', object: `device ${name}`, problem: `is a ${dev.kind ?? 'plain'} device, not vxlan`, why: 'flanneld cannot use it as the tunnel endpoint', fix: restart });
    return;
  }
  if (!dev.up) {
    add({
      code: 'VTEP_DOWN',
      severity: 'error',
      object: `device ${name}`,
      problem: 'is down',
      why: 'nothing is sent through the tunnel and routes via it are unusable: pods cannot reach other nodes',
      fix: `ip link set ${name} up   (the kernel flushed the routes and neighbours through it: restart flanneld, or apply the fixes below)`,
      commands: [`ip link set ${name} up`],
    });
  }
  const vxi = dev.vxlan!;
  if (p.vx) {
    if (vxi.vni !== p.vx.vni) {
      add({ code: 'VTEP_VNI_MISMATCH', severity: 'error', object: `device ${name}`, problem: `VNI ${vxi.vni}, the network config says ${p.vx.vni}`, why: 'peers drop frames with a VNI they do not use, and this node drops theirs', fix: restart });
    }
    const port = vxi.port || VXLAN_DEFAULT_PORT;
    if (port !== p.vx.udpPort) {
      add({ code: 'VTEP_PORT_MISMATCH', severity: 'error', object: `device ${name}`, problem: `UDP port ${port}, the network config says ${p.vx.udpPort}`, why: 'peers send to and listen on another port, so the tunnel carries nothing', fix: restart });
    }
  }
  const self = p.self?.lease;
  if (self) {
    if (vxi.local && vxi.local !== self.publicIP) {
      add({
        code: 'VTEP_LOCAL_MISMATCH',
        severity: 'error',
        object: `device ${name}`,
        problem: `local ${vxi.local}, but this node's lease publishes ${self.publicIP}`,
        why: 'packets leave with a source address peers do not expect (and that may not be routable back)',
        fix: restart,
      });
    }
    if (self.vtepMac && dev.mac && dev.mac !== self.vtepMac) {
      add({
        code: 'VTEP_MAC_MISMATCH',
        severity: 'error',
        object: `device ${name} MAC ${dev.mac}`,
        problem: `the lease ${self.subnet} publishes VtepMAC ${self.vtepMac}`,
        why: 'peers address their frames to the published MAC; this device drops them, so nothing from other nodes arrives',
        fix: `ip link set ${name} address ${self.vtepMac}   (or restart flanneld to republish the device's MAC)`,
        commands: [`ip link set ${name} address ${self.vtepMac}`],
      });
    }
    const want = `${self.gw}/32`;
    const have = addrsOf(k, dev.index);
    const extra = have.filter((a) => a.cidr !== want && p.network && ipv4NetContains(p.network, parseIPv4(addrIP(a))));
    if (!have.some((a) => a.cidr === want) || extra.length) {
      add({
        code: 'VTEP_ADDRESS',
        severity: 'error',
        object: `device ${name} address`,
        problem: `has ${have.map((a) => a.cidr).join(', ') || 'no address'}; expected ${want} (the network address of this node's subnet)`,
        why: 'peers\u2019 replies and probes are addressed to it, and it is the source address of traffic this node sends through the tunnel',
        ...cmds([...(have.some((a) => a.cidr === want) ? [] : [`ip addr add ${want} dev ${name}`]), ...extra.map((a) => `ip addr del ${a.cidr} dev ${name}`)]),
      });
    }
  }
  if (p.underlay && !p.underlay.up) {
    add({
      code: 'UNDERLAY_DOWN',
      severity: 'error',
      object: `device ${p.underlay.name}`,
      problem: `the interface ${name} sends through is down`,
      why: 'no VXLAN packet can leave or arrive',
      ...cmds([`ip link set ${p.underlay.name} up`]),
    });
  }
}

function peerFindings(i: DiagnoseInputs, p: Plan, add: Add): void {
  const k = i.kernel;
  const dev = p.vtep;
  const name = p.vtepName ?? 'flannel.1';
  const peerByIP = new Map(p.peers.map((l) => [l.publicIP, l]));
  // bad VtepMACs
  for (const l of p.peers) {
    if (l.backend === 'vxlan' && p.vx && !p.desired.some((d) => d.publicIP === l.publicIP && d.gw === l.gw)) {
      add({
        code: 'PEER_VTEP_MAC_INVALID',
        severity: 'error',
        object: `lease ${l.subnet} (${l.publicIP})`,
        problem: `BackendData ${JSON.stringify(l.lease.attrs.backendData)} has no usable VtepMAC`,
        why: 'no node can program a neighbour or FDB entry for it, so its pods are unreachable',
        fix: `restart flanneld on ${l.publicIP} (it republishes its lease)`,
        peer: l.publicIP,
      });
    }
  }
  // underlay path to each peer's public IP
  for (const l of p.peers) {
    const r = lookupRoute(k, l.publicIP);
    if (r === undefined) {
      add({
        code: 'UNDERLAY_NO_ROUTE',
        severity: 'error',
        object: `peer ${l.publicIP} (${l.subnet})`,
        problem: `no route to ${l.publicIP}`,
        why: 'encapsulated packets for that node cannot leave this host',
        fix: `add a route to ${l.publicIP} through the underlay, e.g. ip route add ${l.publicIP} via <gateway> dev ${p.underlay?.name ?? '<underlay>'}`,
        peer: l.publicIP,
      });
    } else if (r !== 'local' && dev && r.oif === dev.index) {
      add({
        code: 'UNDERLAY_NO_ROUTE',
        severity: 'error',
        object: `peer ${l.publicIP} (${l.subnet})`,
        problem: `the route to ${l.publicIP} is "${describeRoute(k, r)}", through the tunnel itself`,
        why: 'encapsulated packets would be encapsulated again; the kernel drops them',
        ...cmds([`ip route del ${r.dst} dev ${name}`]),
        peer: l.publicIP,
      });
    }
  }
  if (!p.vx || !dev || dev.kind !== 'vxlan') {
    if (p.cluster?.config?.backend.type === 'host-gw') hostGwFindings(i, p, add);
    return;
  }
  const ext = p.underlay;
  const neighs = k.neighs.filter((n) => n.ifindex === dev.index);
  const fdbs = k.fdb.filter((x) => x.ifindex === dev.index && x.dst !== undefined);
  const okFdbMacs = new Set<string>();
  for (const d of p.desired) {
    const peer = `peer ${d.publicIP} (${d.dst})`;
    const routeCmd = d.direct ? `ip route replace ${d.dst} via ${d.publicIP} dev ${ext?.name ?? '<underlay>'}` : `ip route replace ${d.dst} via ${d.gw} dev ${name} onlink`;
    const want = d.direct ? `${d.dst} via ${d.publicIP} dev ${ext?.name ?? '?'}` : `${d.dst} via ${d.gw} dev ${name} onlink`;
    const exact = k.routes.filter((r) => r.dst === d.dst);
    const good = exact.find((r) => (d.direct ? r.oif === ext?.index && r.gateway === d.publicIP : r.oif === dev.index && r.gateway === d.gw && r.onlink));
    if (!good) {
      add({
        code: exact.length ? 'ROUTE_WRONG' : 'ROUTE_MISSING',
        severity: 'error',
        object: `route ${d.dst}`,
        problem: exact.length ? `found "${exact.map((r) => describeRoute(k, r)).join('", "')}"; expected "${want}"` : `no route for ${d.dst}; expected "${want}"`,
        why: `pods here cannot reach pods on ${d.publicIP}: their packets ${exact.length ? 'take the wrong path' : 'follow the default route instead of the tunnel'}`,
        ...cmds([routeCmd]),
        peer: d.publicIP,
      });
    }
    if (d.direct) continue;
    const n = neighs.find((x) => x.ip === d.gw);
    if (!n || !neighUsable(n)) {
      add({
        code: 'NEIGH_MISSING',
        severity: 'error',
        object: `neighbour ${d.gw} on ${name}`,
        problem: n ? `entry is ${neighState(n)} without a usable MAC; expected ${d.mac} PERMANENT` : `no entry; expected "${d.gw} lladdr ${d.mac} PERMANENT"`,
        why: `the kernel cannot fill in the inner destination MAC for ${peer}; flannel runs without ARP on the tunnel, so the packets are dropped`,
        ...cmds([`ip neigh replace ${d.gw} lladdr ${d.mac} dev ${name} nud permanent`]),
        peer: d.publicIP,
      });
    } else if (n.mac !== d.mac) {
      add({
        code: 'NEIGH_WRONG_MAC',
        severity: 'error',
        object: `neighbour ${d.gw} on ${name}`,
        problem: `lladdr ${n.mac}, but the lease of ${d.publicIP} publishes VtepMAC ${d.mac}`,
        why: `frames go to a MAC the peer no longer has (typical after the peer rebooted with a new VTEP MAC); it drops them`,
        ...cmds([`ip neigh replace ${d.gw} lladdr ${d.mac} dev ${name} nud permanent`]),
        peer: d.publicIP,
      });
    } else if (!n.permanent) {
      add({
        code: 'NEIGH_NOT_PERMANENT',
        severity: 'warning',
        object: `neighbour ${d.gw} on ${name}`,
        problem: `entry is ${neighState(n)}, not PERMANENT`,
        why: 'it can expire, and without ARP on the tunnel it is not learnt back',
        ...cmds([`ip neigh replace ${d.gw} lladdr ${d.mac} dev ${name} nud permanent`]),
        peer: d.publicIP,
      });
    }
    const forMac = fdbs.filter((x) => x.mac === d.mac);
    if (!forMac.some((x) => x.dst === d.publicIP)) {
      add({
        code: forMac.length ? 'FDB_WRONG_DST' : 'FDB_MISSING',
        severity: 'error',
        object: `fdb ${d.mac} on ${name}`,
        problem: forMac.length ? `dst ${forMac.map((x) => x.dst).join(', ')}; the lease says ${d.publicIP}` : `no entry; expected "${d.mac} dst ${d.publicIP} self permanent"`,
        why: forMac.length ? `encapsulated packets for ${peer} go to the wrong host` : `the kernel does not know which host owns ${d.mac}, so packets for ${peer} are dropped`,
        ...cmds([...forMac.map((x) => `bridge fdb del ${d.mac} dev ${name} dst ${x.dst} self`), `bridge fdb append ${d.mac} dev ${name} dst ${d.publicIP} self permanent`]),
        peer: d.publicIP,
      });
    } else okFdbMacs.add(d.mac);
  }

  // --- entries nobody asked for
  const net = p.network;
  if (!net) return;
  const own = p.self?.lease;
  const wanted = new Map(p.desired.map((d) => [d.dst, d]));
  const knownSubnets = new Set(p.cluster!.leases.map((l) => l.subnet));
  for (const r of k.routes) {
    let rn: IPv4Net;
    try {
      rn = parseIPv4Net(r.dst);
    } catch {
      continue;
    }
    if (!ipv4NetContains(net, rn.ip) || rn.prefix < net.prefix) continue;
    if (own && r.dst === own.subnet) continue; // cni0's own route
    if (wanted.has(r.dst) || knownSubnets.has(r.dst)) continue; // checked per peer above
    const ours = r.oif === dev.index || /^flannel/.test(linkByIndex(k, r.oif)?.name ?? '') || r.gateway !== undefined;
    if (!ours) continue;
    add({
      code: 'STALE_ROUTE',
      severity: 'error',
      object: `route ${r.dst}`,
      problem: `"${describeRoute(k, r)}", but no node holds a lease for ${r.dst}`,
      why: 'traffic to those addresses goes to a node that is gone; if a new node later takes that subnet, this route competes with the right one',
      ...cmds([`ip route del ${r.dst}${r.oif !== undefined ? ` dev ${linkByIndex(k, r.oif)?.name ?? r.oif}` : ''}`]),
    });
  }
  const gws = new Set(p.desired.filter((d) => !d.direct).map((d) => d.gw));
  for (const n of neighs) {
    if (!n.permanent || gws.has(n.ip)) continue;
    let inNet = false;
    try {
      inNet = ipv4NetContains(net, parseIPv4(n.ip));
    } catch {
      /* IPv6 */
    }
    if (!inNet) continue;
    add({
      code: 'STALE_NEIGH',
      severity: 'warning',
      object: `neighbour ${n.ip} on ${name}`,
      problem: `lladdr ${n.mac ?? '?'} PERMANENT, but no node holds the subnet of ${n.ip}`,
      why: 'left over from a node that is gone; harmless alone, but wrong if a new node takes that subnet',
      ...cmds([`ip neigh del ${n.ip} dev ${name}`]),
    });
  }
  const wantedL2 = new Set(p.desired.filter((d) => !d.direct).map((d) => `${d.mac} ${d.publicIP}`));
  const wantedMacs = new Set(p.desired.map((d) => d.mac));
  for (const x of fdbs) {
    if (wantedL2.has(`${x.mac} ${x.dst}`)) continue;
    if (wantedMacs.has(x.mac) && !okFdbMacs.has(x.mac)) continue; // reported as FDB_WRONG_DST
    const peer = peerByIP.get(x.dst!);
    add({
      code: 'STALE_FDB',
      severity: 'error',
      object: `fdb ${x.mac} dst ${x.dst} on ${name}`,
      problem: peer ? `${x.dst} is a peer, but its lease publishes VtepMAC ${peer.vtepMac ?? '?'}` : `no lease has VtepMAC ${x.mac} and public IP ${x.dst}`,
      why: x.mac === '00:00:00:00:00:00' ? 'an all-zero entry floods every unknown frame to that host' : 'left over from a node that is gone (or that changed its MAC); frames for that MAC still go there',
      ...cmds([`bridge fdb del ${x.mac} dev ${name} dst ${x.dst} self`]),
      ...(peer ? { peer: peer.publicIP } : {}),
    });
  }
}

function hostGwFindings(i: DiagnoseInputs, p: Plan, add: Add): void {
  const k = i.kernel;
  for (const l of p.peers) {
    if (l.backend !== 'host-gw') continue;
    const good = k.routes.find((r) => r.dst === l.subnet && r.gateway === l.publicIP);
    if (!good) {
      const exact = k.routes.filter((r) => r.dst === l.subnet);
      const via = lookupRoute(k, l.publicIP);
      const dev = via && via !== 'local' ? linkByIndex(k, via.oif)?.name : undefined;
      add({
        code: exact.length ? 'ROUTE_WRONG' : 'ROUTE_MISSING',
        severity: 'error',
        object: `route ${l.subnet}`,
        problem: exact.length ? `found "${exact.map((r) => describeRoute(k, r)).join('", "')}"; expected "${l.subnet} via ${l.publicIP}"` : `no route for ${l.subnet}; expected "${l.subnet} via ${l.publicIP}"`,
        why: `pods here cannot reach pods on ${l.publicIP}`,
        ...cmds([`ip route replace ${l.subnet} via ${l.publicIP}${dev ? ` dev ${dev}` : ''}`]),
        peer: l.publicIP,
      });
    }
  }
}

function mtuFindings(i: DiagnoseInputs, p: Plan, add: Add): string | undefined {
  const k = i.kernel;
  const dev = p.vtep;
  if (!dev || dev.mtu === undefined) return undefined;
  const name = dev.name;
  const under = p.underlay;
  const podMtu = i.subnetFile?.mtu ?? null;
  const expected = p.vx?.mtu != null ? p.vx.mtu - VXLAN_OVERHEAD : under?.mtu !== undefined ? under.mtu - VXLAN_OVERHEAD : null;
  let vtepBad = false;
  if (under?.mtu !== undefined && dev.mtu + VXLAN_OVERHEAD > under.mtu) {
    vtepBad = true;
    add({
      code: 'MTU_VTEP_TOO_LARGE',
      severity: 'error',
      object: `device ${name} mtu ${dev.mtu}`,
      problem: `${dev.mtu} + ${VXLAN_OVERHEAD} bytes of VXLAN headers > ${under.name} mtu ${under.mtu}`,
      why: 'full-size packets do not fit the underlay once encapsulated: large transfers stall while pings still work',
      ...(podMtu !== null && podMtu > under.mtu - VXLAN_OVERHEAD
        ? {
            fix: `restore ${under.name}'s MTU to at least ${dev.mtu + VXLAN_OVERHEAD} (ip link set ${under.name} mtu ${dev.mtu + VXLAN_OVERHEAD}); or lower the overlay: ip link set ${name} mtu ${under.mtu - VXLAN_OVERHEAD}, restart flanneld (subnet.env gets the new MTU) and recreate the pods`,
          }
        : cmds([`ip link set ${name} mtu ${under.mtu - VXLAN_OVERHEAD}`])),
    });
  }
  const cni0 = linkByName(k, 'cni0');
  const podSide = k.links.filter((l) => l.mtu !== undefined && (l === cni0 || (cni0 && l.masterIndex === cni0.index)));
  const bigger = podSide.filter((l) => l.mtu! > dev.mtu!);
  if (!vtepBad && podMtu !== null && podMtu > dev.mtu) {
    vtepBad = true;
    add({
      code: 'MTU_VTEP_TOO_SMALL',
      severity: 'error',
      object: `device ${name} mtu ${dev.mtu}`,
      problem: `pods were given mtu ${podMtu} (FLANNEL_MTU in ${i.subnetFile!.path})${bigger.length ? ` and ${bigger.map((l) => `${l.name} has ${l.mtu}`).join(', ')}` : ''}, more than ${name} carries`,
      why: 'packets between the two sizes are dropped or need fragmentation: large transfers stall while pings still work',
      ...cmds([`ip link set ${name} mtu ${Math.min(podMtu, expected ?? podMtu)}`]),
    });
  }
  if (!vtepBad && bigger.length) {
    add({
      code: 'MTU_POD_TOO_LARGE',
      severity: 'error',
      object: bigger.map((l) => `${l.name} mtu ${l.mtu}`).join(', '),
      problem: `larger than ${name} mtu ${dev.mtu}`,
      why: 'pods behind these interfaces send packets the tunnel cannot carry: large transfers to other nodes stall',
      ...cmds(
        bigger.map((l) => `ip link set ${l.name} mtu ${dev.mtu}`),
        'and inside each pod: ip link set eth0 mtu ' + dev.mtu + ', or recreate the pods',
      ),
    });
  }
  // Dual-stack: FLANNEL_MTU is sized for flannel-v6.<VNI> (20 bytes more of
  // outer header), so pods fit both tunnels; that is not a mismatch.
  const v6dev = linkByName(k, name.replace(/^flannel\./, 'flannel-v6.'));
  const sizedForV6 = v6dev?.kind === 'vxlan' && v6dev.mtu === podMtu;
  if (!vtepBad && podMtu !== null && podMtu < dev.mtu && !sizedForV6) {
    add({
      code: 'MTU_SUBNET_ENV_MISMATCH',
      severity: 'warning',
      object: `file ${i.subnetFile!.path}`,
      problem: `FLANNEL_MTU=${podMtu}, but ${name} has mtu ${dev.mtu}`,
      why: 'pods use a smaller MTU than the tunnel allows; it works, but the file is probably from another configuration',
      fix: 'restart flanneld (it rewrites the file), then recreate the pods',
    });
  }
  const chain = [under ? `${under.name} ${under.mtu}` : null, `${name} ${dev.mtu}`, cni0 ? `cni0 ${cni0.mtu}` : null];
  const ports = podSide.filter((l) => l !== cni0);
  if (ports.length) chain.push(`${ports.length} pod veth${ports.length > 1 ? 's' : ''} ${[...new Set(ports.map((l) => l.mtu))].join('/')}`);
  return chain.filter(Boolean).join(' -> ') + (podMtu !== null ? ` (FLANNEL_MTU ${podMtu})` : '');
}

function sysctlFindings(i: DiagnoseInputs, p: Plan, add: Add): void {
  const s = i.sysctls;
  if (s.ipForward !== null && s.ipForward !== '1') {
    add({
      code: 'IP_FORWARD_DISABLED',
      severity: 'error',
      object: 'sysctl net.ipv4.ip_forward',
      problem: `is ${s.ipForward}`,
      why: 'the host does not forward between cni0 and the tunnel: pods reach only this host',
      ...cmds(['sysctl -w net.ipv4.ip_forward=1'], 'persist it in /etc/sysctl.d/'),
    });
  }
  // Strict reverse-path filtering drops packets whose source would not be
  // routed back out of the interface they came in on.
  const k = i.kernel;
  const strict = (dev: string) => s.rpFilter.get(dev) === 1;
  const expectIn: Array<{ dev: Link; from: string; what: string }> = [];
  if (p.vtep) for (const d of p.desired.filter((x) => !x.direct)) expectIn.push({ dev: p.vtep, from: d.gw, what: `pods on ${d.publicIP} (${d.dst})` });
  if (p.underlay) for (const l of p.peers) expectIn.push({ dev: p.underlay, from: l.publicIP, what: `VXLAN packets from ${l.publicIP}` });
  const seen = new Set<string>();
  for (const e of expectIn) {
    if (!strict(e.dev.name)) continue;
    const r = lookupRoute(k, e.from);
    if (r !== 'local' && r?.oif === e.dev.index) continue;
    const key = `${e.dev.name} ${e.from}`;
    if (seen.has(key)) continue;
    seen.add(key);
    add({
      code: 'RP_FILTER_DROPS',
      severity: 'error',
      object: `sysctl net.ipv4.conf.${e.dev.name}.rp_filter (strict)`,
      problem: `${e.what} arrive on ${e.dev.name}, but the route back to ${e.from} is ${r === undefined ? 'missing' : r === 'local' ? 'local' : `"${describeRoute(k, r)}"`}`,
      why: 'strict reverse-path filtering silently drops them',
      ...cmds(['sysctl -w net.ipv4.conf.all.rp_filter=2', `sysctl -w net.ipv4.conf.${e.dev.name}.rp_filter=2`], 'loose mode; or fix the route (see above)'),
    });
  }
}

function firewallFindings(i: DiagnoseInputs, p: Plan, port: number, add: Add): void {
  const fw = i.firewall;
  const isVxlan = p.vx !== null || (p.cluster === null && p.vtepName !== null);
  if (isVxlan) {
    const traffic = { peers: p.peers.map((l) => l.publicIP), self: p.self?.lease.publicIP ?? null, underlay: p.underlay?.name ?? null };
    for (const r of rulesDroppingUdpPort(fw, port, traffic)) {
      add({
        code: 'FIREWALL_DROPS_VXLAN',
        severity: 'error',
        object: `${r.source} ${r.table} chain ${r.chain}: ${r.text}`,
        problem: `${r.verdict.toUpperCase()}s UDP port ${port}${r.src ? ` from ${r.src}` : ''}${r.dst ? ` to ${r.dst}` : ''}`,
        why: `VXLAN runs over udp/${port}: ${r.chain.toLowerCase() === 'output' ? 'nothing leaves for other nodes' : 'packets from other nodes are dropped'} while routes, neighbours and FDB all look right`,
        ...cmds([deleteCommand(r)]),
      });
    }
    for (const pol of fw.policies.filter((x) => x.hook === 'input' && x.policy === 'DROP')) {
      // an explicit accept of the port, or a broad accept (by source, interface...) that is not only for replies or other protocols
      const accepted = fw.rules.some(
        (r) =>
          r.table === pol.table &&
          r.verdict === 'accept' &&
          (matchesPort(r, port) || (r.udpDports === null && !/ctstate|--state|ct state|-p (tcp|icmp)|\b(tcp|icmp) /.test(r.text))),
      );
      if (accepted) continue;
      add({
        code: 'FIREWALL_INPUT_POLICY_DROP',
        severity: 'warning',
        object: `${pol.source} ${pol.table} chain ${pol.chain} policy DROP`,
        problem: `no rule accepts udp/${port} explicitly`,
        why: 'VXLAN packets from other nodes are dropped unless another rule accepts them',
        ...cmds([pol.source === 'iptables' ? `iptables -t ${pol.table} -I ${pol.chain} -p udp --dport ${port} -j ACCEPT` : `nft insert rule ${pol.table} ${pol.chain} udp dport ${port} accept`]),
      });
    }
  }
  const net = p.network;
  if (net) {
    const cidr = formatIPv4Net(net);
    for (const pol of fw.policies.filter((x) => x.hook === 'forward' && x.policy === 'DROP')) {
      const accepted = fw.rules.some((r) => r.table === pol.table && r.verdict === 'accept' && (r.src === cidr || r.dst === cidr));
      if (accepted) continue;
      add({
        code: 'FORWARD_POLICY_DROP',
        severity: 'error',
        object: `${pol.source} ${pol.table} chain ${pol.chain} policy DROP`,
        problem: `no rule accepts traffic from or to ${cidr}`,
        why: 'pod traffic between cni0 and the tunnel is forwarded, so it is dropped (Docker sets this policy)',
        ...cmds(
          pol.source === 'iptables'
            ? [`iptables -t ${pol.table} -A ${pol.chain} -s ${cidr} -j ACCEPT`, `iptables -t ${pol.table} -A ${pol.chain} -d ${cidr} -j ACCEPT`]
            : [`nft add rule ${pol.table} ${pol.chain} ip saddr ${cidr} accept`, `nft add rule ${pol.table} ${pol.chain} ip daddr ${cidr} accept`],
          pol.source === 'iptables' ? 'flanneld adds these with --iptables-forward-rules' : undefined,
        ),
      });
    }
  }
}

function offloadFindings(i: DiagnoseInputs, p: Plan, add: Add): { ok: string; skipped?: string } {
  if (!p.vtep || p.vtep.kind !== 'vxlan') return { ok: '', skipped: 'no VTEP' };
  const name = p.vtep.name;
  const affected = kernelHasVxlanCsumBug(i.kernelRelease);
  if (!i.offload || i.offload.txChecksumIpGeneric === null) {
    return affected
      ? { ok: '', skipped: `${i.offload?.note ?? 'not checked'}; kernel ${i.kernelRelease} may have the VXLAN checksum bug: consider ethtool -K ${name} tx-checksum-ip-generic off` }
      : { ok: `kernel ${i.kernelRelease} has the VXLAN checksum fix (${i.offload?.note ?? 'offload not read'})` };
  }
  if (i.offload.txChecksumIpGeneric.startsWith('on') && affected) {
    add({
      code: 'VTEP_CSUM_OFFLOAD',
      severity: 'warning',
      object: `device ${name} tx-checksum-ip-generic on`,
      problem: `kernel ${i.kernelRelease} predates the fix for VXLAN packets NATed twice (5.6.13, 5.4.41, 4.19.123, 4.14.181)`,
      why: 'with kube-proxy\u2019s MASQUERADE --random-fully, outer UDP checksums come out wrong and peers drop them: TCP connects take ~63 s (flannel #1279, #1268)',
      ...cmds([`ethtool -K ${name} tx-checksum-ip-generic off`], 'persist it with a udev rule, or upgrade the kernel'),
    });
    return { ok: '' };
  }
  return { ok: `tx-checksum-ip-generic: ${i.offload.txChecksumIpGeneric} (kernel ${i.kernelRelease}${affected ? '' : ' has the fix'})` };
}

/** Addresses to probe: each peer's VTEP address through the tunnel, and its public IP on the underlay. */
function probeTargets(p: Plan, k: KernelSnapshot): Array<{ peer: string; subnet: string; overlay: string; underlay: string }> {
  if (p.cluster) {
    if (p.vx) return p.desired.map((d) => ({ peer: d.publicIP, subnet: d.dst, overlay: d.gw, underlay: d.publicIP }));
    // other backends have no address that always answers inside a peer's subnet: probe the host only
    return p.peers.map((l) => ({ peer: l.publicIP, subnet: l.subnet, overlay: '', underlay: l.publicIP }));
  }
  // store unreachable: probe what the kernel has (onlink routes on the VTEP and their FDB entries)
  const dev = p.vtep;
  if (!dev) return [];
  return k.routes
    .filter((r) => r.oif === dev.index && r.gateway)
    .map((r) => {
      const mac = k.neighs.find((n) => n.ifindex === dev.index && n.ip === r.gateway)?.mac;
      const dst = k.fdb.find((x) => x.ifindex === dev.index && x.mac === mac)?.dst;
      return { peer: dst ?? r.gateway!, subnet: r.dst, overlay: r.gateway!, underlay: dst ?? '' };
    });
}

/** Findings that break the tunnel to every peer; a failed probe points at them. */
const TUNNEL_WIDE = new Set([
  'VTEP_MISSING',
  'VTEP_NOT_VXLAN',
  'VTEP_DOWN',
  'VTEP_VNI_MISMATCH',
  'VTEP_PORT_MISMATCH',
  'VTEP_LOCAL_MISMATCH',
  'VTEP_MAC_MISMATCH',
  'VTEP_ADDRESS',
  'UNDERLAY_DOWN',
  'PUBLIC_IP_NOT_LOCAL',
  'FIREWALL_DROPS_VXLAN',
  'FIREWALL_INPUT_POLICY_DROP',
]);

function probeFindings(i: DiagnoseInputs, p: Plan, sofar: readonly Finding[], add: Add): { ok: string; skipped?: string } {
  if ('skipped' in i.probes) return { ok: '', skipped: i.probes.skipped };
  const res = i.probes.results;
  const targets = probeTargets(p, i.kernel);
  if (targets.length === 0) return { ok: 'no peers to probe' };
  let ok = 0;
  let maxRtt = 0;
  for (const t of targets) {
    if (!t.overlay) {
      const u = res.get(t.underlay);
      if (u?.ok) ok++;
      else if (u) {
        add({
          code: 'PEER_UNREACHABLE',
          severity: 'error',
          object: `peer ${t.peer} (${t.subnet})`,
          problem: `no answer from ${t.underlay} (${u.error})`,
          why: 'the node is down, or the network between the hosts is broken (or filters ICMP)',
          fix: `check the host ${t.peer}: is it up, and is it reachable from here (ip route get ${t.peer})?`,
          peer: t.peer,
        });
      }
      continue;
    }
    const o = res.get(t.overlay);
    if (!o) continue;
    if (o.ok) {
      ok++;
      maxRtt = Math.max(maxRtt, o.rttMs ?? 0);
      continue;
    }
    const u = t.underlay ? res.get(t.underlay) : undefined;
    const explained = [...new Set(sofar.filter((x) => x.peer === t.peer || TUNNEL_WIDE.has(x.code)).map((x) => x.code))];
    const because = explained.length ? ` (see ${explained.join(', ')} above)` : '';
    if (u && !u.ok) {
      add({
        code: 'PEER_UNREACHABLE',
        severity: 'error',
        object: `peer ${t.peer} (${t.subnet})`,
        problem: `no answer through the tunnel from ${t.overlay} (${o.error}), nor on the underlay from ${t.underlay} (${u.error})${because}`,
        why: 'the node is down, or the underlay between the hosts is broken (or filters ICMP)',
        fix: `check the host ${t.peer}: is it up, and is ${t.peer} reachable from here (ip route get ${t.peer})?`,
        peer: t.peer,
      });
    } else {
      add({
        code: 'OVERLAY_UNREACHABLE',
        severity: 'error',
        object: `peer ${t.peer} (${t.subnet})`,
        problem: `no answer through the tunnel from ${t.overlay} (${o.error})${u?.ok ? `, although ${t.underlay} answers on the underlay (${u.rttMs} ms)` : ''}${because}`,
        why: `the VXLAN path to that node is broken: if nothing above explains it, udp/${p.vx?.udpPort ?? VXLAN_DEFAULT_PORT} is dropped on the way (a firewall on either host, a security group, NSX), or the peer's ${p.vtepName ?? 'flannel.1'} is down or misconfigured`,
        fix: `run flannelctl diagnose on ${t.peer}; capture on both hosts: tcpdump -ni any udp port ${p.vx?.udpPort ?? VXLAN_DEFAULT_PORT}`,
        peer: t.peer,
      });
    }
  }
  const how = targets.some((t) => t.overlay) ? 'through the tunnel' : 'on the underlay';
  return { ok: `${ok}/${targets.length} peer${targets.length === 1 ? '' : 's'} answer ${how}${ok && maxRtt ? ` (slowest ${maxRtt} ms)` : ''}` };
}

// ----------------------------------------------------------------- gather

export interface DiagnoseOptions {
  /** null when the store could not even be opened (bad flags are thrown earlier) */
  store: LeaseStore | StoreUnreachable;
  kernel: KernelNet;
  subnetFile: string;
  /** deadline for the store (default 5 s) */
  storeTimeoutMs?: number;
  /** per-run probe deadline (default 2 s); 0 disables probes */
  probeTimeoutMs?: number;
  /** replaceable for tests */
  readFirewall?: () => Promise<Firewall>;
  readOffload?: (dev: string) => Promise<OffloadState>;
  ping?: typeof pingAll;
}

export async function diagnose(o: DiagnoseOptions): Promise<DiagnoseReport> {
  const t0 = Date.now();
  const clusterP: Promise<ClusterView | StoreUnreachable> =
    o.store instanceof StoreUnreachable ? Promise.resolve(o.store) : readCluster(o.store, o.storeTimeoutMs ?? 5000).catch((e: unknown) => {
      if (e instanceof StoreUnreachable) return e;
      throw e;
    });
  const firewallP = (o.readFirewall ?? readFirewall)();
  const kernel = await readKernel(o.kernel);
  let subnetFile: SubnetFile | null = null;
  try {
    subnetFile = readSubnetFile(o.subnetFile);
  } catch {
    subnetFile = null;
  }
  const cluster = await clusterP;
  const devs = ['flannel.1', 'cni0'];
  const partial: DiagnoseInputs = {
    cluster,
    subnetFilePath: o.subnetFile,
    subnetFile,
    kernel,
    sysctls: { ipForward: null, rpFilter: new Map() },
    firewall: { rules: [], policies: [], notes: [] },
    offload: null,
    kernelRelease: os.release(),
    probes: { skipped: 'not run' },
  };
  const p = plan(partial);
  if (p.vtepName) devs[0] = p.vtepName;
  if (p.underlay) devs.push(p.underlay.name);
  const sysctls = readSysctls(devs);
  const targets = probeTargets(p, kernel);
  const probeTimeout = o.probeTimeoutMs ?? 2000;
  const probesP: Promise<ProbeOutcome> =
    probeTimeout <= 0
      ? Promise.resolve({ skipped: 'disabled (--probe-timeout 0)' })
      : (o.ping ?? pingAll)(targets.flatMap((t) => [t.overlay, t.underlay].filter(Boolean)), probeTimeout).then(
          (results) => ({ results }),
          (e: unknown) => {
            if (e instanceof ProbeUnavailable) return { skipped: e.message };
            throw e;
          },
        );
  const offloadP = p.vtep ? (o.readOffload ?? readOffload)(p.vtep.name) : Promise.resolve(null);
  const [firewall, offload, probes] = await Promise.all([firewallP, offloadP, probesP]);
  const inputs: DiagnoseInputs = { ...partial, sysctls, firewall, offload, probes };
  const { findings, checks, plan: pl } = analyse(inputs);
  return {
    apiVersion: 'flannel-ts/v1',
    kind: 'DiagnoseReport',
    node: { hostname: os.hostname(), publicIP: pl.self?.lease.publicIP ?? null, subnet: pl.self?.lease.subnet ?? null, recognisedBy: pl.self?.by ?? null },
    store: cluster.store,
    generatedAt: new Date().toISOString(),
    elapsedMs: Date.now() - t0,
    summary: { errors: findings.filter((x) => x.severity === 'error').length, warnings: findings.filter((x) => x.severity === 'warning').length, peers: pl.peers.length },
    findings,
    checks,
  };
}

// ----------------------------------------------------------------- render

export function renderDiagnose(r: DiagnoseReport): string {
  const lines: string[] = [];
  const node = r.node.subnet ? `node ${r.node.publicIP} (lease ${r.node.subnet})` : 'node (no lease recognised)';
  lines.push(`flannelctl diagnose: ${node}, ${r.summary.peers} peer${r.summary.peers === 1 ? '' : 's'}, ${r.store}`);
  lines.push('');
  for (const f of r.findings) {
    lines.push(`${f.severity === 'error' ? 'ERROR' : 'WARN '} ${f.code}: ${f.object}`);
    lines.push(`      problem: ${f.problem}`);
    lines.push(`      why:     ${f.why}`);
    lines.push(`      fix:     ${f.fix}`);
    lines.push('');
  }
  lines.push('checks:');
  lines.push(
    renderTable(
      ['  CHECK', 'STATUS', 'DETAIL'],
      r.checks.map((c) => [`  ${c.name}`, c.status, c.detail]),
    ).trimEnd(),
  );
  lines.push('');
  const e = r.summary.errors;
  const w = r.summary.warnings;
  lines.push(e + w === 0 ? `OK: no problems found (${(r.elapsedMs / 1000).toFixed(1)} s)` : `${e} error${e === 1 ? '' : 's'}, ${w} warning${w === 1 ? '' : 's'} (${(r.elapsedMs / 1000).toFixed(1)} s)`);
  return lines.join('\n') + '\n';
}

/** 0: nothing wrong (warnings allowed); 1: at least one error. */
export function diagnoseExitCode(r: DiagnoseReport): number {
  return r.summary.errors > 0 ? 1 : 0;
}
