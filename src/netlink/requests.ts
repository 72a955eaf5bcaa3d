// Request builders for the rtnetlink operations the VXLAN backend needs.
// Each returns a NetlinkRequest: the wire body plus the exact nlmsg flags and
// a human description used in error messages. The transport only stamps the
// sequence number, so serializeRequest(req, seq) is the literal datagram and
// can be compared byte-for-byte with what iproute2 sends.

import * as C from './constants.js';
import { attr, encodeMessage } from './codec.js';
import { encodeIfAddrMsg, encodeIfInfoMsg, encodeNdMsg, encodeRtMsg } from './rtnl.js';
import { isIPv4, isIPv6, parseCidr } from './addr.js';

export interface NetlinkRequest {
  type: number;
  /** Complete nlmsg_flags, including NLM_F_REQUEST and NLM_F_ACK / NLM_F_DUMP. */
  flags: number;
  /** Everything after the nlmsghdr (fixed header + attributes, padded). */
  body: Buffer;
  /** Human description for errors, e.g. 'replace neigh 10.244.2.0 lladdr ... dev #5'. */
  op: string;
  /**
   * Dumps only: the body to send instead on a socket without
   * NETLINK_GET_STRICT_CHK (kernels before 4.20, or strict checking turned
   * off), where the kernel ignores or rejects filter fields. It asks for
   * everything; the caller then filters the replies itself (they lack
   * NLM_F_DUMP_FILTERED).
   */
  unfilteredBody?: Buffer;
}

export function isDumpRequest(req: NetlinkRequest): boolean {
  return (req.flags & C.NLM_F_DUMP) === C.NLM_F_DUMP && req.type % 4 === 2; // RTM_GET*
}

export function serializeRequest(req: NetlinkRequest, seq: number, pid = 0): Buffer {
  return encodeMessage(req.type, req.flags, seq, pid, [req.body]);
}

/**
 * How an RTM_NEW* request treats an existing object:
 *  - 'create':  NLM_F_CREATE|NLM_F_EXCL   — fail with EEXIST if it exists
 *  - 'replace': NLM_F_CREATE|NLM_F_REPLACE — create or overwrite (`ip neigh replace`)
 *  - 'append':  NLM_F_CREATE|NLM_F_APPEND  — add another entry (`bridge fdb append`)
 *  - 'modify':  no flags                   — change an existing object only (`ip link set`)
 */
export type NewMode = 'create' | 'replace' | 'append' | 'modify';

const MODE_FLAGS: Record<NewMode, number> = {
  create: C.NLM_F_CREATE | C.NLM_F_EXCL,
  replace: C.NLM_F_CREATE | C.NLM_F_REPLACE,
  append: C.NLM_F_CREATE | C.NLM_F_APPEND,
  modify: 0,
};

const REQ_ACK = C.NLM_F_REQUEST | C.NLM_F_ACK;
const REQ_DUMP = C.NLM_F_REQUEST | C.NLM_F_DUMP;

// Field-width checks only: semantic validation (VNI range, MTU limits, ...)
// is left to the kernel, whose extended ack explains the problem better.
/** AF_INET6 for IPv6 text, else AF_INET: requests take their family from the address they carry. */
function familyOf(ip: string): number {
  return !isIPv4(ip) && isIPv6(ip) ? C.AF_INET6 : C.AF_INET;
}

function checkUint(name: string, v: number, bits: 8 | 16 | 32): void {
  const max = bits === 32 ? 0xffffffff : (1 << bits) - 1;
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new RangeError(`${name} must be an integer in 0..${max}, got ${v}`);
  }
}

function checkIndex(name: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0 || v > 0x7fffffff) {
    throw new RangeError(`${name} must be a positive interface index, got ${v}`);
  }
}

// ------------------------------------------------------------------- links

export interface VxlanSpec {
  name: string;
  vni: number;
  /** UDP destination port in host order; 0/undefined omits it (kernel default 8472). */
  port?: number;
  local?: string;
  group?: string;
  /** Underlay device index (IFLA_VXLAN_LINK). */
  linkIndex?: number;
  /** Omitted -> kernel default (learning on). */
  learning?: boolean;
  gbp?: boolean;
  ttl?: number;
  tos?: number;
  l2miss?: boolean;
  l3miss?: boolean;
  mtu?: number;
  mac?: string;
  /** Bring the device up as part of creation. */
  up?: boolean;
}

export function newVxlanRequest(spec: VxlanSpec, mode: NewMode = 'create'): NetlinkRequest {
  checkUint('vni', spec.vni, 32);
  const data: Buffer[] = [];
  // Attribute order follows `ip link add ... type vxlan` so captures compare equal.
  if (spec.linkIndex !== undefined) {
    checkIndex('linkIndex', spec.linkIndex);
    data.push(attr.u32(C.IFLA_VXLAN_LINK, spec.linkIndex));
  }
  data.push(attr.u32(C.IFLA_VXLAN_ID, spec.vni));
  // An IPv6 group/local goes in the *6 attributes (flannel-v6.<VNI>).
  if (spec.group !== undefined) data.push(attr.ip(isIPv6(spec.group) ? C.IFLA_VXLAN_GROUP6 : C.IFLA_VXLAN_GROUP, spec.group));
  if (spec.local !== undefined) data.push(attr.ip(isIPv6(spec.local) ? C.IFLA_VXLAN_LOCAL6 : C.IFLA_VXLAN_LOCAL, spec.local));
  if (spec.ttl !== undefined) {
    checkUint('ttl', spec.ttl, 8);
    data.push(attr.u8(C.IFLA_VXLAN_TTL, spec.ttl));
  }
  if (spec.tos !== undefined) {
    checkUint('tos', spec.tos, 8);
    data.push(attr.u8(C.IFLA_VXLAN_TOS, spec.tos));
  }
  if (spec.learning !== undefined) data.push(attr.u8(C.IFLA_VXLAN_LEARNING, spec.learning ? 1 : 0));
  if (spec.l2miss !== undefined) data.push(attr.u8(C.IFLA_VXLAN_L2MISS, spec.l2miss ? 1 : 0));
  if (spec.l3miss !== undefined) data.push(attr.u8(C.IFLA_VXLAN_L3MISS, spec.l3miss ? 1 : 0));
  if (spec.port !== undefined && spec.port !== 0) {
    checkUint('port', spec.port, 16);
    data.push(attr.be16(C.IFLA_VXLAN_PORT, spec.port));
  }
  if (spec.gbp) data.push(attr.flag(C.IFLA_VXLAN_GBP));

  const attrs: Buffer[] = [attr.string(C.IFLA_IFNAME, spec.name)];
  if (spec.mac !== undefined) attrs.push(attr.mac(C.IFLA_ADDRESS, spec.mac));
  if (spec.mtu !== undefined) {
    checkUint('mtu', spec.mtu, 32);
    attrs.push(attr.u32(C.IFLA_MTU, spec.mtu));
  }
  attrs.push(
    attr.nested(C.IFLA_LINKINFO, [
      attr.stringNoNul(C.IFLA_INFO_KIND, 'vxlan'),
      attr.nested(C.IFLA_INFO_DATA, data),
    ]),
  );
  const up = spec.up === true;
  return {
    type: C.RTM_NEWLINK,
    flags: REQ_ACK | MODE_FLAGS[mode],
    body: Buffer.concat([encodeIfInfoMsg({ flags: up ? C.IFF_UP : 0, change: up ? C.IFF_UP : 0 }), ...attrs]),
    op: `${mode} vxlan ${spec.name} (vni ${spec.vni})`,
  };
}

export interface LinkChange {
  index: number;
  up?: boolean;
  mtu?: number;
  mac?: string;
}

/** `ip link set`: RTM_NEWLINK without create flags on an existing index. */
export function setLinkRequest(change: LinkChange): NetlinkRequest {
  checkIndex('index', change.index);
  const attrs: Buffer[] = [];
  const what: string[] = [];
  if (change.mac !== undefined) {
    attrs.push(attr.mac(C.IFLA_ADDRESS, change.mac));
    what.push(`address ${change.mac}`);
  }
  if (change.mtu !== undefined) {
    checkUint('mtu', change.mtu, 32);
    attrs.push(attr.u32(C.IFLA_MTU, change.mtu));
    what.push(`mtu ${change.mtu}`);
  }
  let flags = 0;
  let mask = 0;
  if (change.up !== undefined) {
    mask = C.IFF_UP;
    flags = change.up ? C.IFF_UP : 0;
    what.push(change.up ? 'up' : 'down');
  }
  return {
    type: C.RTM_NEWLINK,
    flags: REQ_ACK,
    body: Buffer.concat([encodeIfInfoMsg({ index: change.index, flags, change: mask }), ...attrs]),
    op: `set link #${change.index} ${what.join(' ') || '(no change)'}`,
  };
}

export function delLinkRequest(index: number): NetlinkRequest {
  checkIndex('index', index);
  return {
    type: C.RTM_DELLINK,
    flags: REQ_ACK,
    body: encodeIfInfoMsg({ index }),
    op: `delete link #${index}`,
  };
}

const EXT_MASK = attr.u32(C.IFLA_EXT_MASK, C.RTEXT_FILTER_SKIP_STATS);

/** Single link by name or index; the reply is one RTM_NEWLINK (ENODEV if absent). */
export function getLinkRequest(by: { name: string } | { index: number }): NetlinkRequest {
  if ('name' in by) {
    return {
      type: C.RTM_GETLINK,
      flags: REQ_ACK,
      body: Buffer.concat([encodeIfInfoMsg({}), EXT_MASK, attr.string(C.IFLA_IFNAME, by.name)]),
      op: `get link ${by.name}`,
    };
  }
  checkIndex('index', by.index);
  return {
    type: C.RTM_GETLINK,
    flags: REQ_ACK,
    body: Buffer.concat([encodeIfInfoMsg({ index: by.index }), EXT_MASK]),
    op: `get link #${by.index}`,
  };
}

export function dumpLinksRequest(): NetlinkRequest {
  return {
    type: C.RTM_GETLINK,
    flags: REQ_DUMP,
    body: Buffer.concat([encodeIfInfoMsg({}), EXT_MASK]),
    op: 'dump links',
  };
}

// --------------------------------------------------------------- addresses

export interface AddrSpec {
  index: number;
  /** 'a.b.c.d/len' */
  cidr: string;
}

function addrBody(spec: AddrSpec): Buffer {
  checkIndex('index', spec.index);
  const { ip, prefixLen } = parseCidr(spec.cidr);
  // IFA_LOCAL is the address; IFA_ADDRESS repeats it for non-point-to-point links.
  return Buffer.concat([
    encodeIfAddrMsg({ family: familyOf(ip), prefixLen, index: spec.index }),
    attr.ip(C.IFA_LOCAL, ip),
    attr.ip(C.IFA_ADDRESS, ip),
  ]);
}

export function newAddrRequest(spec: AddrSpec, mode: NewMode = 'create'): NetlinkRequest {
  return {
    type: C.RTM_NEWADDR,
    flags: REQ_ACK | MODE_FLAGS[mode],
    body: addrBody(spec),
    op: `${mode === 'create' ? 'add' : mode} address ${spec.cidr} dev #${spec.index}`,
  };
}

export function delAddrRequest(spec: AddrSpec): NetlinkRequest {
  return {
    type: C.RTM_DELADDR,
    flags: REQ_ACK,
    body: addrBody(spec),
    op: `delete address ${spec.cidr} dev #${spec.index}`,
  };
}

export function dumpAddrsRequest(family: number = C.AF_INET): NetlinkRequest {
  return {
    type: C.RTM_GETADDR,
    flags: REQ_DUMP,
    body: encodeIfAddrMsg({ family }),
    op: 'dump addresses',
  };
}

// ------------------------------------------------------------------ routes

export type RouteType = 'unicast' | 'blackhole' | 'unreachable' | 'prohibit' | 'local' | 'throw';

const ROUTE_TYPES: Record<RouteType, number> = {
  unicast: C.RTN_UNICAST,
  blackhole: C.RTN_BLACKHOLE,
  unreachable: C.RTN_UNREACHABLE,
  prohibit: C.RTN_PROHIBIT,
  local: C.RTN_LOCAL,
  throw: C.RTN_THROW,
};

export interface RouteSpec {
  /** Destination prefix 'a.b.c.d/len' ('0.0.0.0/0' for default). */
  dst: string;
  gw?: string;
  oif?: number;
  /** RTNH_F_ONLINK: gateway is on-link even though no route covers it (flannel's VXLAN routes). */
  onlink?: boolean;
  /** Defaults to RT_TABLE_MAIN. */
  table?: number;
  priority?: number;
  /** Defaults to RTPROT_BOOT, like iproute2. */
  protocol?: number;
  /** Defaults as iproute2: link for gateway-less unicast, host for local, else universe. */
  scope?: number;
  type?: RouteType;
  prefsrc?: string;
}

function routeDesc(spec: RouteSpec): string {
  const parts = [spec.type && spec.type !== 'unicast' ? `${spec.type} ${spec.dst}` : spec.dst];
  if (spec.gw) parts.push(`via ${spec.gw}`);
  if (spec.oif !== undefined) parts.push(`dev #${spec.oif}`);
  if (spec.onlink) parts.push('onlink');
  if (spec.table !== undefined && spec.table !== C.RT_TABLE_MAIN) parts.push(`table ${spec.table}`);
  return parts.join(' ');
}

function routeAttrs(spec: RouteSpec, dst: { ip: string; prefixLen: number }, table: number): Buffer[] {
  const attrs: Buffer[] = [];
  if (table > 255) attrs.push(attr.u32(C.RTA_TABLE, table));
  if (dst.prefixLen > 0 || (dst.ip !== '0.0.0.0' && dst.ip !== '::')) attrs.push(attr.ip(C.RTA_DST, dst.ip));
  if (spec.prefsrc !== undefined) attrs.push(attr.ip(C.RTA_PREFSRC, spec.prefsrc));
  if (spec.gw !== undefined) attrs.push(attr.ip(C.RTA_GATEWAY, spec.gw));
  if (spec.oif !== undefined) {
    checkIndex('oif', spec.oif);
    attrs.push(attr.u32(C.RTA_OIF, spec.oif));
  }
  if (spec.priority !== undefined) {
    checkUint('priority', spec.priority, 32);
    attrs.push(attr.u32(C.RTA_PRIORITY, spec.priority));
  }
  return attrs;
}

export function newRouteRequest(spec: RouteSpec, mode: NewMode = 'replace'): NetlinkRequest {
  const dst = parseCidr(spec.dst);
  const table = spec.table ?? C.RT_TABLE_MAIN;
  checkUint('table', table, 32);
  const type = ROUTE_TYPES[spec.type ?? 'unicast'];
  let scope = spec.scope;
  if (scope === undefined) {
    if (type === C.RTN_LOCAL) scope = C.RT_SCOPE_HOST;
    else if (type === C.RTN_UNICAST && spec.gw === undefined) scope = C.RT_SCOPE_LINK;
    else scope = C.RT_SCOPE_UNIVERSE;
  }
  const rtm = encodeRtMsg({
    family: familyOf(dst.ip),
    dstLen: dst.prefixLen,
    table: table > 255 ? C.RT_TABLE_UNSPEC : table,
    protocol: spec.protocol ?? C.RTPROT_BOOT,
    scope,
    type,
    flags: spec.onlink ? C.RTNH_F_ONLINK : 0,
  });
  return {
    type: C.RTM_NEWROUTE,
    flags: REQ_ACK | MODE_FLAGS[mode],
    body: Buffer.concat([rtm, ...routeAttrs(spec, dst, table)]),
    op: `${mode} route ${routeDesc(spec)}`,
  };
}

/**
 * Deletes the route matching dst (and gw/oif/type if given). Scope NOWHERE,
 * protocol 0 and type 0 are the kernel's wildcards, as `ip route del` sends.
 */
export function delRouteRequest(spec: RouteSpec): NetlinkRequest {
  const dst = parseCidr(spec.dst);
  const table = spec.table ?? C.RT_TABLE_MAIN;
  checkUint('table', table, 32);
  const rtm = encodeRtMsg({
    family: familyOf(dst.ip),
    dstLen: dst.prefixLen,
    table: table > 255 ? C.RT_TABLE_UNSPEC : table,
    protocol: spec.protocol ?? 0,
    scope: C.RT_SCOPE_NOWHERE,
    type: spec.type ? ROUTE_TYPES[spec.type] : C.RTN_UNSPEC,
  });
  return {
    type: C.RTM_DELROUTE,
    flags: REQ_ACK,
    body: Buffer.concat([rtm, ...routeAttrs(spec, dst, table)]),
    op: `delete route ${routeDesc(spec)}`,
  };
}

/**
 * Route dump filters the kernel applies itself under NETLINK_GET_STRICT_CHK
 * (ip_valid_fib_dump_req): table, protocol, type in the rtmsg header and the
 * output device as RTA_OIF. Scope is not a dump filter (a non-zero rtm_scope
 * is EINVAL). A table that does not exist yet is ENOENT, an unknown oif ENODEV.
 */
export interface RouteDumpFilter {
  /** RT_TABLE_* or any id; 0/undefined = every table. */
  table?: number;
  oif?: number;
  /** rtm_protocol, e.g. RTPROT_FLANNEL; 0/undefined = any. */
  protocol?: number;
  type?: RouteType;
}

export function dumpRoutesRequest(family: number = C.AF_INET, filter: RouteDumpFilter = {}): NetlinkRequest {
  const bare = encodeRtMsg({ family });
  const table = filter.table ?? 0;
  checkUint('table', table, 32);
  const protocol = filter.protocol ?? 0;
  checkUint('protocol', protocol, 8);
  const type = filter.type ? ROUTE_TYPES[filter.type] : 0;
  if (table === 0 && protocol === 0 && type === 0 && filter.oif === undefined) {
    return { type: C.RTM_GETROUTE, flags: REQ_DUMP, body: bare, op: 'dump routes' };
  }
  const attrs: Buffer[] = [];
  const what: string[] = [];
  if (table > 255) attrs.push(attr.u32(C.RTA_TABLE, table));
  if (table !== 0) what.push(`table ${table}`);
  if (filter.oif !== undefined) {
    checkIndex('oif', filter.oif);
    attrs.push(attr.u32(C.RTA_OIF, filter.oif));
    what.push(`dev #${filter.oif}`);
  }
  if (protocol !== 0) what.push(`proto ${protocol}`);
  if (filter.type) what.push(`type ${filter.type}`);
  return {
    type: C.RTM_GETROUTE,
    flags: REQ_DUMP,
    body: Buffer.concat([encodeRtMsg({ family, table: table > 255 ? C.RT_TABLE_UNSPEC : table, protocol, type }), ...attrs]),
    op: `dump routes ${what.join(' ')}`,
    unfilteredBody: bare,
  };
}

// -------------------------------------------------------------- neighbours

export interface NeighSpec {
  ifindex: number;
  ip: string;
  mac: string;
  /** NUD_PERMANENT unless false (then NUD_REACHABLE); `state` overrides both. */
  permanent?: boolean;
  state?: number;
}

export function newNeighRequest(spec: NeighSpec, mode: NewMode = 'replace'): NetlinkRequest {
  checkIndex('ifindex', spec.ifindex);
  const state = spec.state ?? (spec.permanent === false ? C.NUD_REACHABLE : C.NUD_PERMANENT);
  checkUint('state', state, 16);
  return {
    type: C.RTM_NEWNEIGH,
    flags: REQ_ACK | MODE_FLAGS[mode],
    body: Buffer.concat([
      encodeNdMsg({ family: familyOf(spec.ip), ifindex: spec.ifindex, state }),
      attr.ip(C.NDA_DST, spec.ip),
      attr.mac(C.NDA_LLADDR, spec.mac),
    ]),
    op: `${mode} neigh ${spec.ip} lladdr ${spec.mac} dev #${spec.ifindex}`,
  };
}

export function delNeighRequest(spec: { ifindex: number; ip: string }): NetlinkRequest {
  checkIndex('ifindex', spec.ifindex);
  return {
    type: C.RTM_DELNEIGH,
    flags: REQ_ACK,
    body: Buffer.concat([encodeNdMsg({ family: familyOf(spec.ip), ifindex: spec.ifindex }), attr.ip(C.NDA_DST, spec.ip)]),
    op: `delete neigh ${spec.ip} dev #${spec.ifindex}`,
  };
}

/**
 * Neighbours of one family, of one device when `ifindex` is given. Under
 * strict checking the kernel (neigh_valid_dump_req) insists on ndm_ifindex
 * = 0 and takes the device as the NDA_IFINDEX attribute instead; its replies
 * then carry NLM_F_DUMP_FILTERED.
 */
export function dumpNeighsRequest(family: number = C.AF_INET, ifindex?: number): NetlinkRequest {
  const bare = encodeNdMsg({ family });
  if (ifindex === undefined) return { type: C.RTM_GETNEIGH, flags: REQ_DUMP, body: bare, op: 'dump neighbours' };
  checkIndex('ifindex', ifindex);
  return {
    type: C.RTM_GETNEIGH,
    flags: REQ_DUMP,
    body: Buffer.concat([bare, attr.u32(C.NDA_IFINDEX, ifindex)]),
    op: `dump neighbours dev #${ifindex}`,
    unfilteredBody: bare,
  };
}

// --------------------------------------------------------------------- fdb

export interface FdbSpec {
  ifindex: number;
  mac: string;
  /** Remote VTEP IPv4 or IPv6 (NDA_DST). */
  dst?: string;
  /** NTF_SELF: entry lives in the device's own table (vxlan). Default true. */
  self?: boolean;
  /** NTF_MASTER: entry lives in the master bridge's table. */
  master?: boolean;
  /** NUD_PERMANENT unless false (then NUD_REACHABLE); `state` overrides both. */
  permanent?: boolean;
  state?: number;
  vni?: number;
  /** Remote UDP port, host order. */
  port?: number;
}

function fdbFlags(spec: FdbSpec): number {
  return (spec.self === false ? 0 : C.NTF_SELF) | (spec.master ? C.NTF_MASTER : 0);
}

function fdbDesc(spec: FdbSpec): string {
  return `${spec.mac}${spec.dst ? ` dst ${spec.dst}` : ''} dev #${spec.ifindex}`;
}

function fdbAttrs(spec: FdbSpec): Buffer[] {
  // NDA_LLADDR first, then NDA_DST: the order `bridge fdb` uses.
  const attrs = [attr.mac(C.NDA_LLADDR, spec.mac)];
  if (spec.dst !== undefined) attrs.push(attr.ip(C.NDA_DST, spec.dst));
  if (spec.port !== undefined) {
    checkUint('port', spec.port, 16);
    attrs.push(attr.be16(C.NDA_PORT, spec.port));
  }
  if (spec.vni !== undefined) {
    checkUint('vni', spec.vni, 32);
    attrs.push(attr.u32(C.NDA_VNI, spec.vni));
  }
  return attrs;
}

export function newFdbRequest(spec: FdbSpec, mode: NewMode = 'replace'): NetlinkRequest {
  checkIndex('ifindex', spec.ifindex);
  const state = spec.state ?? (spec.permanent === false ? C.NUD_REACHABLE : C.NUD_PERMANENT);
  checkUint('state', state, 16);
  return {
    type: C.RTM_NEWNEIGH,
    flags: REQ_ACK | MODE_FLAGS[mode],
    body: Buffer.concat([
      encodeNdMsg({ family: C.AF_BRIDGE, ifindex: spec.ifindex, state, flags: fdbFlags(spec) }),
      ...fdbAttrs(spec),
    ]),
    op: `${mode} fdb ${fdbDesc(spec)}`,
  };
}

/** Without `dst` the whole entry goes; with it only that remote (vxlan). */
export function delFdbRequest(spec: FdbSpec): NetlinkRequest {
  checkIndex('ifindex', spec.ifindex);
  return {
    type: C.RTM_DELNEIGH,
    flags: REQ_ACK,
    body: Buffer.concat([
      encodeNdMsg({ family: C.AF_BRIDGE, ifindex: spec.ifindex, flags: fdbFlags(spec) }),
      ...fdbAttrs(spec),
    ]),
    op: `delete fdb ${fdbDesc(spec)}`,
  };
}

/**
 * FDB entries of every device, or of one. Under strict checking
 * (valid_fdb_dump_strict) the kernel walks only the device in ndm_ifindex,
 * but does not mark the replies NLM_F_DUMP_FILTERED, so callers check the
 * ifindex of each entry anyway. Without strict checking a bare 12-byte
 * ndmsg is the accepted form, and it returns every device's entries.
 */
export function dumpFdbRequest(ifindex?: number): NetlinkRequest {
  const bare = encodeNdMsg({ family: C.AF_BRIDGE });
  if (ifindex === undefined) return { type: C.RTM_GETNEIGH, flags: REQ_DUMP, body: bare, op: 'dump fdb' };
  checkIndex('ifindex', ifindex);
  return {
    type: C.RTM_GETNEIGH,
    flags: REQ_DUMP,
    body: encodeNdMsg({ family: C.AF_BRIDGE, ifindex }),
    op: `dump fdb dev #${ifindex}`,
    unfilteredBody: bare,
  };
}
