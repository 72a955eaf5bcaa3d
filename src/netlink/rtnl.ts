// rtnetlink payloads: the fixed headers (ifinfomsg, ifaddrmsg, rtmsg, ndmsg)
// and decoders that turn RTM_* messages into plain objects. Pure; no I/O.

import * as C from './constants.js';
import { AttrSet, zeroed, type NlMessage } from './codec.js';
import { NetlinkDecodeError } from './errors.js';

// ------------------------------------------------------------ fixed headers

function needBody(msg: NlMessage, size: number, what: string): void {
  if (msg.payload.length < size) {
    throw new NetlinkDecodeError(
      'TRUNCATED_BODY',
      `${what} in ${C.msgTypeName(msg.header.type)}`,
      C.NLMSG_HDRLEN,
      `need ${size} bytes, have ${msg.payload.length}`,
    );
  }
}

export interface IfInfoMsg {
  family: number;
  /** ARPHRD_* device type. */
  type: number;
  index: number;
  flags: number;
  change: number;
}

export function encodeIfInfoMsg(m: Partial<IfInfoMsg>): Buffer {
  const b = zeroed(C.IFINFOMSG_LEN);
  b.writeUInt8(m.family ?? C.AF_UNSPEC, 0);
  b.writeUInt16LE(m.type ?? 0, 2);
  b.writeInt32LE(m.index ?? 0, 4);
  b.writeUInt32LE((m.flags ?? 0) >>> 0, 8);
  b.writeUInt32LE((m.change ?? 0) >>> 0, 12);
  return b;
}

export function decodeIfInfoMsg(p: Buffer): IfInfoMsg {
  return {
    family: p.readUInt8(0),
    type: p.readUInt16LE(2),
    index: p.readInt32LE(4),
    flags: p.readUInt32LE(8),
    change: p.readUInt32LE(12),
  };
}

export interface IfAddrMsg {
  family: number;
  prefixLen: number;
  flags: number;
  scope: number;
  index: number;
}

export function encodeIfAddrMsg(m: Partial<IfAddrMsg>): Buffer {
  const b = zeroed(C.IFADDRMSG_LEN);
  b.writeUInt8(m.family ?? C.AF_INET, 0);
  b.writeUInt8(m.prefixLen ?? 0, 1);
  b.writeUInt8(m.flags ?? 0, 2);
  b.writeUInt8(m.scope ?? 0, 3);
  b.writeUInt32LE((m.index ?? 0) >>> 0, 4);
  return b;
}

export function decodeIfAddrMsg(p: Buffer): IfAddrMsg {
  return {
    family: p.readUInt8(0),
    prefixLen: p.readUInt8(1),
    flags: p.readUInt8(2),
    scope: p.readUInt8(3),
    index: p.readUInt32LE(4),
  };
}

export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}

export function encodeRtMsg(m: Partial<RtMsg>): Buffer {
  const b = zeroed(C.RTMSG_LEN);
  b.writeUInt8(m.family ?? C.AF_INET, 0);
  b.writeUInt8(m.dstLen ?? 0, 1);
  b.writeUInt8(m.srcLen ?? 0, 2);
  b.writeUInt8(m.tos ?? 0, 3);
  b.writeUInt8(m.table ?? 0, 4);
  b.writeUInt8(m.protocol ?? 0, 5);
  b.writeUInt8(m.scope ?? 0, 6);
  b.writeUInt8(m.type ?? 0, 7);
  b.writeUInt32LE((m.flags ?? 0) >>> 0, 8);
  return b;
}

export function decodeRtMsg(p: Buffer): RtMsg {
  return {
    family: p.readUInt8(0),
    dstLen: p.readUInt8(1),
    srcLen: p.readUInt8(2),
    tos: p.readUInt8(3),
    table: p.readUInt8(4),
    protocol: p.readUInt8(5),
    scope: p.readUInt8(6),
    type: p.readUInt8(7),
    flags: p.readUInt32LE(8),
  };
}

export interface NdMsg {
  family: number;
  ifindex: number;
  state: number;
  flags: number;
  type: number;
}

export function encodeNdMsg(m: Partial<NdMsg>): Buffer {
  const b = zeroed(C.NDMSG_LEN);
  b.writeUInt8(m.family ?? C.AF_INET, 0);
  b.writeInt32LE(m.ifindex ?? 0, 4);
  b.writeUInt16LE(m.state ?? 0, 8);
  b.writeUInt8(m.flags ?? 0, 10);
  b.writeUInt8(m.type ?? 0, 11);
  return b;
}

export function decodeNdMsg(p: Buffer): NdMsg {
  return {
    family: p.readUInt8(0),
    ifindex: p.readInt32LE(4),
    state: p.readUInt16LE(8),
    flags: p.readUInt8(10),
    type: p.readUInt8(11),
  };
}

// ------------------------------------------------------------ attribute names

const IFLA_NAMES: Record<number, string> = {
  [C.IFLA_ADDRESS]: 'IFLA_ADDRESS',
  [C.IFLA_BROADCAST]: 'IFLA_BROADCAST',
  [C.IFLA_IFNAME]: 'IFLA_IFNAME',
  [C.IFLA_MTU]: 'IFLA_MTU',
  [C.IFLA_LINK]: 'IFLA_LINK',
  [C.IFLA_MASTER]: 'IFLA_MASTER',
  [C.IFLA_OPERSTATE]: 'IFLA_OPERSTATE',
  [C.IFLA_LINKINFO]: 'IFLA_LINKINFO',
};
const INFO_NAMES: Record<number, string> = {
  [C.IFLA_INFO_KIND]: 'IFLA_INFO_KIND',
  [C.IFLA_INFO_DATA]: 'IFLA_INFO_DATA',
  [C.IFLA_INFO_SLAVE_KIND]: 'IFLA_INFO_SLAVE_KIND',
};
const VXLAN_NAMES: Record<number, string> = {
  [C.IFLA_VXLAN_ID]: 'IFLA_VXLAN_ID',
  [C.IFLA_VXLAN_GROUP]: 'IFLA_VXLAN_GROUP',
  [C.IFLA_VXLAN_LINK]: 'IFLA_VXLAN_LINK',
  [C.IFLA_VXLAN_LOCAL]: 'IFLA_VXLAN_LOCAL',
  [C.IFLA_VXLAN_GROUP6]: 'IFLA_VXLAN_GROUP6',
  [C.IFLA_VXLAN_LOCAL6]: 'IFLA_VXLAN_LOCAL6',
  [C.IFLA_VXLAN_TTL]: 'IFLA_VXLAN_TTL',
  [C.IFLA_VXLAN_TOS]: 'IFLA_VXLAN_TOS',
  [C.IFLA_VXLAN_LEARNING]: 'IFLA_VXLAN_LEARNING',
  [C.IFLA_VXLAN_AGEING]: 'IFLA_VXLAN_AGEING',
  [C.IFLA_VXLAN_L2MISS]: 'IFLA_VXLAN_L2MISS',
  [C.IFLA_VXLAN_L3MISS]: 'IFLA_VXLAN_L3MISS',
  [C.IFLA_VXLAN_PORT]: 'IFLA_VXLAN_PORT',
  [C.IFLA_VXLAN_GBP]: 'IFLA_VXLAN_GBP',
};
const IFA_NAMES: Record<number, string> = {
  [C.IFA_ADDRESS]: 'IFA_ADDRESS',
  [C.IFA_LOCAL]: 'IFA_LOCAL',
  [C.IFA_LABEL]: 'IFA_LABEL',
  [C.IFA_BROADCAST]: 'IFA_BROADCAST',
  [C.IFA_FLAGS]: 'IFA_FLAGS',
};
const RTA_NAMES: Record<number, string> = {
  [C.RTA_DST]: 'RTA_DST',
  [C.RTA_SRC]: 'RTA_SRC',
  [C.RTA_OIF]: 'RTA_OIF',
  [C.RTA_GATEWAY]: 'RTA_GATEWAY',
  [C.RTA_PRIORITY]: 'RTA_PRIORITY',
  [C.RTA_PREFSRC]: 'RTA_PREFSRC',
  [C.RTA_TABLE]: 'RTA_TABLE',
};
const NDA_NAMES: Record<number, string> = {
  [C.NDA_DST]: 'NDA_DST',
  [C.NDA_LLADDR]: 'NDA_LLADDR',
  [C.NDA_VLAN]: 'NDA_VLAN',
  [C.NDA_PORT]: 'NDA_PORT',
  [C.NDA_VNI]: 'NDA_VNI',
  [C.NDA_IFINDEX]: 'NDA_IFINDEX',
  [C.NDA_MASTER]: 'NDA_MASTER',
};
const namer = (table: Record<number, string>, prefix: string) => (t: number) => table[t] ?? `${prefix} ${t}`;

// ------------------------------------------------------------ decoded objects

export type OperState = (typeof C.IF_OPER_STATES)[number];

export interface VxlanInfo {
  vni: number;
  /** UDP destination port in host order; 0 if the kernel did not report one. */
  port: number;
  local?: string;
  group?: string;
  /** Underlay device (IFLA_VXLAN_LINK). */
  linkIndex?: number;
  learning: boolean;
  gbp: boolean;
  ttl?: number;
  tos?: number;
  l2miss: boolean;
  l3miss: boolean;
  ageing?: number;
}

export interface Link {
  family: number;
  index: number;
  name: string;
  /** ARPHRD_* type. */
  type: number;
  flags: number;
  up: boolean;
  lowerUp: boolean;
  mtu?: number;
  mac?: string;
  broadcast?: string;
  /** IFLA_LINK: peer/parent index (veth peer, vlan parent). */
  linkIndex?: number;
  masterIndex?: number;
  operState: OperState;
  /** IFLA_INFO_KIND: 'vxlan', 'bridge', 'veth', 'tun', ... (undefined for plain devices). */
  kind?: string;
  slaveKind?: string;
  vxlan?: VxlanInfo;
}

export interface Addr {
  family: number;
  index: number;
  prefixLen: number;
  flags: number;
  scope: number;
  address?: string;
  local?: string;
  label?: string;
  /** `${local ?? address}/${prefixLen}` */
  cidr: string;
}

export interface Route {
  family: number;
  /** Destination prefix, '0.0.0.0/0' for the default route. */
  dst: string;
  dstLen: number;
  src?: string;
  gateway?: string;
  oif?: number;
  /** RTA_TABLE when present (tables > 255), else rtm_table. */
  table: number;
  priority?: number;
  prefsrc?: string;
  protocol: number;
  scope: number;
  /** RTN_* */
  type: number;
  flags: number;
  onlink: boolean;
}

export interface Neigh {
  family: typeof C.AF_INET | typeof C.AF_INET6;
  ifindex: number;
  ip: string;
  mac?: string;
  /** NUD_* bit set. */
  state: number;
  flags: number;
  permanent: boolean;
}

export interface FdbEntry {
  family: typeof C.AF_BRIDGE;
  ifindex: number;
  mac: string;
  /** Remote VTEP (vxlan) for entries that have one. */
  dst?: string;
  state: number;
  flags: number;
  self: boolean;
  master: boolean;
  permanent: boolean;
  vni?: number;
  port?: number;
  vlan?: number;
  masterIndex?: number;
  /** NDA_IFINDEX: outgoing interface for the remote. */
  viaIfindex?: number;
}

function decodeVxlan(data: AttrSet): VxlanInfo {
  const out: VxlanInfo = {
    vni: data.u32(C.IFLA_VXLAN_ID) ?? 0,
    port: data.be16(C.IFLA_VXLAN_PORT) ?? 0,
    learning: (data.u8(C.IFLA_VXLAN_LEARNING) ?? 1) !== 0,
    gbp: data.flag(C.IFLA_VXLAN_GBP),
    l2miss: (data.u8(C.IFLA_VXLAN_L2MISS) ?? 0) !== 0,
    l3miss: (data.u8(C.IFLA_VXLAN_L3MISS) ?? 0) !== 0,
  };
  const local = data.ip(C.IFLA_VXLAN_LOCAL) ?? data.ip(C.IFLA_VXLAN_LOCAL6);
  if (local !== undefined) out.local = local;
  const group = data.ip(C.IFLA_VXLAN_GROUP) ?? data.ip(C.IFLA_VXLAN_GROUP6);
  if (group !== undefined) out.group = group;
  // The kernel reports IFLA_VXLAN_LINK only when an underlay was set; 0 means none.
  const link = data.u32(C.IFLA_VXLAN_LINK);
  if (link !== undefined && link !== 0) out.linkIndex = link;
  const ttl = data.u8(C.IFLA_VXLAN_TTL);
  if (ttl !== undefined) out.ttl = ttl;
  const tos = data.u8(C.IFLA_VXLAN_TOS);
  if (tos !== undefined) out.tos = tos;
  const ageing = data.u32(C.IFLA_VXLAN_AGEING);
  if (ageing !== undefined) out.ageing = ageing;
  return out;
}

export function decodeLink(msg: NlMessage): Link {
  needBody(msg, C.IFINFOMSG_LEN, 'ifinfomsg');
  const ifi = decodeIfInfoMsg(msg.payload);
  const attrs = AttrSet.parse(msg.payload.subarray(C.IFINFOMSG_LEN), 'link attributes', namer(IFLA_NAMES, 'IFLA'));
  const operIdx = attrs.u8(C.IFLA_OPERSTATE) ?? 0;
  const link: Link = {
    family: ifi.family,
    index: ifi.index,
    name: attrs.string(C.IFLA_IFNAME) ?? '',
    type: ifi.type,
    flags: ifi.flags,
    up: (ifi.flags & C.IFF_UP) !== 0,
    lowerUp: (ifi.flags & C.IFF_LOWER_UP) !== 0,
    operState: C.IF_OPER_STATES[operIdx] ?? 'unknown',
  };
  const mtu = attrs.u32(C.IFLA_MTU);
  if (mtu !== undefined) link.mtu = mtu;
  const mac = attrs.mac(C.IFLA_ADDRESS);
  if (mac !== undefined) link.mac = mac;
  const brd = attrs.mac(C.IFLA_BROADCAST);
  if (brd !== undefined) link.broadcast = brd;
  const parent = attrs.i32(C.IFLA_LINK);
  if (parent !== undefined) link.linkIndex = parent;
  const master = attrs.u32(C.IFLA_MASTER);
  if (master !== undefined) link.masterIndex = master;
  const info = attrs.nested(C.IFLA_LINKINFO, namer(INFO_NAMES, 'IFLA_INFO'));
  if (info) {
    const kind = info.string(C.IFLA_INFO_KIND);
    if (kind !== undefined) link.kind = kind;
    const slaveKind = info.string(C.IFLA_INFO_SLAVE_KIND);
    if (slaveKind !== undefined) link.slaveKind = slaveKind;
    if (kind === 'vxlan') {
      const data = info.nested(C.IFLA_INFO_DATA, namer(VXLAN_NAMES, 'IFLA_VXLAN'));
      if (data) link.vxlan = decodeVxlan(data);
    }
  }
  return link;
}

export function decodeAddr(msg: NlMessage): Addr {
  needBody(msg, C.IFADDRMSG_LEN, 'ifaddrmsg');
  const ifa = decodeIfAddrMsg(msg.payload);
  const attrs = AttrSet.parse(msg.payload.subarray(C.IFADDRMSG_LEN), 'address attributes', namer(IFA_NAMES, 'IFA'));
  const address = attrs.ip(C.IFA_ADDRESS);
  const local = attrs.ip(C.IFA_LOCAL);
  const a: Addr = {
    family: ifa.family,
    index: ifa.index,
    prefixLen: ifa.prefixLen,
    // IFA_FLAGS (u32) supersedes the u8 in the header when present.
    flags: attrs.u32(C.IFA_FLAGS) ?? ifa.flags,
    scope: ifa.scope,
    cidr: `${local ?? address ?? '?'}/${ifa.prefixLen}`,
  };
  if (address !== undefined) a.address = address;
  if (local !== undefined) a.local = local;
  const label = attrs.string(C.IFA_LABEL);
  if (label !== undefined) a.label = label;
  return a;
}

export function decodeRoute(msg: NlMessage): Route {
  needBody(msg, C.RTMSG_LEN, 'rtmsg');
  const rtm = decodeRtMsg(msg.payload);
  const attrs = AttrSet.parse(msg.payload.subarray(C.RTMSG_LEN), 'route attributes', namer(RTA_NAMES, 'RTA'));
  const anyAddr = rtm.family === C.AF_INET6 ? '::' : '0.0.0.0';
  const r: Route = {
    family: rtm.family,
    dst: `${attrs.ip(C.RTA_DST) ?? anyAddr}/${rtm.dstLen}`,
    dstLen: rtm.dstLen,
    table: attrs.u32(C.RTA_TABLE) ?? rtm.table,
    protocol: rtm.protocol,
    scope: rtm.scope,
    type: rtm.type,
    flags: rtm.flags,
    onlink: (rtm.flags & C.RTNH_F_ONLINK) !== 0,
  };
  const src = attrs.ip(C.RTA_SRC);
  if (src !== undefined) r.src = `${src}/${rtm.srcLen}`;
  const gw = attrs.ip(C.RTA_GATEWAY);
  if (gw !== undefined) r.gateway = gw;
  const oif = attrs.u32(C.RTA_OIF);
  if (oif !== undefined) r.oif = oif;
  const prio = attrs.u32(C.RTA_PRIORITY);
  if (prio !== undefined) r.priority = prio;
  const prefsrc = attrs.ip(C.RTA_PREFSRC);
  if (prefsrc !== undefined) r.prefsrc = prefsrc;
  return r;
}

/** RTM_*NEIGH carries IP neighbours (AF_INET/AF_INET6) and bridge FDB entries (AF_BRIDGE). */
export function decodeNeighOrFdb(msg: NlMessage): Neigh | FdbEntry {
  needBody(msg, C.NDMSG_LEN, 'ndmsg');
  const nd = decodeNdMsg(msg.payload);
  const attrs = AttrSet.parse(msg.payload.subarray(C.NDMSG_LEN), 'neighbour attributes', namer(NDA_NAMES, 'NDA'));
  const permanent = (nd.state & C.NUD_PERMANENT) !== 0;
  if (nd.family === C.AF_BRIDGE) {
    const mac = attrs.mac(C.NDA_LLADDR);
    if (mac === undefined) {
      throw new NetlinkDecodeError('BAD_VALUE', 'fdb entry', C.NLMSG_HDRLEN, 'AF_BRIDGE neighbour without NDA_LLADDR');
    }
    const f: FdbEntry = {
      family: C.AF_BRIDGE,
      ifindex: nd.ifindex,
      mac,
      state: nd.state,
      flags: nd.flags,
      self: (nd.flags & C.NTF_SELF) !== 0,
      master: (nd.flags & C.NTF_MASTER) !== 0,
      permanent,
    };
    const dst = attrs.ip(C.NDA_DST);
    if (dst !== undefined) f.dst = dst;
    const vni = attrs.u32(C.NDA_VNI);
    if (vni !== undefined) f.vni = vni;
    const port = attrs.be16(C.NDA_PORT);
    if (port !== undefined) f.port = port;
    const vlan = attrs.u16(C.NDA_VLAN);
    if (vlan !== undefined) f.vlan = vlan;
    const master = attrs.u32(C.NDA_MASTER);
    if (master !== undefined) f.masterIndex = master;
    const via = attrs.u32(C.NDA_IFINDEX);
    if (via !== undefined) f.viaIfindex = via;
    return f;
  }
  if (nd.family !== C.AF_INET && nd.family !== C.AF_INET6) {
    throw new NetlinkDecodeError('BAD_VALUE', 'ndmsg', C.NLMSG_HDRLEN, `unsupported neighbour family ${nd.family}`);
  }
  const ip = attrs.ip(C.NDA_DST);
  if (ip === undefined) {
    throw new NetlinkDecodeError('BAD_VALUE', 'neighbour', C.NLMSG_HDRLEN, 'neighbour without NDA_DST');
  }
  const n: Neigh = {
    family: nd.family,
    ifindex: nd.ifindex,
    ip,
    state: nd.state,
    flags: nd.flags,
    permanent,
  };
  const mac = attrs.mac(C.NDA_LLADDR);
  if (mac !== undefined) n.mac = mac;
  return n;
}

export function isFdbEntry(x: Neigh | FdbEntry): x is FdbEntry {
  return x.family === C.AF_BRIDGE;
}

const NUD_NAMES: ReadonlyArray<[number, string]> = [
  [C.NUD_INCOMPLETE, 'INCOMPLETE'],
  [C.NUD_REACHABLE, 'REACHABLE'],
  [C.NUD_STALE, 'STALE'],
  [C.NUD_DELAY, 'DELAY'],
  [C.NUD_PROBE, 'PROBE'],
  [C.NUD_FAILED, 'FAILED'],
  [C.NUD_NOARP, 'NOARP'],
  [C.NUD_PERMANENT, 'PERMANENT'],
];

/** NUD bit set as iproute2 spells it, e.g. ['PERMANENT']. */
export function nudStateNames(state: number): string[] {
  if (state === C.NUD_NONE) return ['NONE'];
  return NUD_NAMES.filter(([bit]) => state & bit).map(([, name]) => name);
}

// ------------------------------------------------------------ notifications

export type RtnlObject =
  | { kind: 'link'; action: 'new' | 'del'; link: Link }
  | { kind: 'addr'; action: 'new' | 'del'; addr: Addr }
  | { kind: 'route'; action: 'new' | 'del'; route: Route }
  | { kind: 'neigh'; action: 'new' | 'del'; neigh: Neigh }
  | { kind: 'fdb'; action: 'new' | 'del'; fdb: FdbEntry };

/**
 * Decodes any RTM_NEW/DEL{LINK,ADDR,ROUTE,NEIGH} message; other types (and
 * neighbours of families other than inet/inet6/bridge) give undefined so
 * callers skip them; malformed messages throw NetlinkDecodeError.
 */
export function decodeRtnlMessage(msg: NlMessage): RtnlObject | undefined {
  switch (msg.header.type) {
    case C.RTM_NEWLINK:
    case C.RTM_DELLINK:
      return { kind: 'link', action: msg.header.type === C.RTM_NEWLINK ? 'new' : 'del', link: decodeLink(msg) };
    case C.RTM_NEWADDR:
    case C.RTM_DELADDR:
      return { kind: 'addr', action: msg.header.type === C.RTM_NEWADDR ? 'new' : 'del', addr: decodeAddr(msg) };
    case C.RTM_NEWROUTE:
    case C.RTM_DELROUTE:
      return { kind: 'route', action: msg.header.type === C.RTM_NEWROUTE ? 'new' : 'del', route: decodeRoute(msg) };
    case C.RTM_NEWNEIGH:
    case C.RTM_DELNEIGH: {
      // Neighbour tables of other families (e.g. AF_MPLS) are not ours to decode.
      const family = msg.payload.length > 0 ? msg.payload[0] : undefined;
      if (family !== C.AF_INET && family !== C.AF_INET6 && family !== C.AF_BRIDGE) return undefined;
      const action = msg.header.type === C.RTM_NEWNEIGH ? 'new' : 'del';
      const x = decodeNeighOrFdb(msg);
      return isFdbEntry(x) ? { kind: 'fdb', action, fdb: x } : { kind: 'neigh', action, neigh: x };
    }
    default:
      return undefined;
  }
}
