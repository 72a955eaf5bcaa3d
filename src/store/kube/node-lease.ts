// Node objects <-> flannel leases in Kubernetes mode (spec §4.2, §4.3). Pure.
//
// A node is a peer when it carries `<prefix>kube-subnet-manager: "true"`, a
// public IP and a podCIDR. Everything read from another node's annotations is
// validated here, before any backend or the kernel sees it: a bad node yields
// a one-line reason and is skipped, never a crash.
//
// Differences from flannel, each deliberate:
// * A Node with no annotations at all is simply "not a peer" (flannel panics
//   on the nil map: flannel-io/flannel#969).
// * Our own VTEP MAC is read back by decoding backend-data as JSON; flannel
//   cuts the string apart, which breaks on any other key order or spacing.

import { AddrError, formatIPv4, formatIPv6, ipv4NetContains, ipv6NetContains, parseIPv4, parseIPv4Net, parseIPv6, parseIPv6Net, unusablePublicIPv4, unusablePublicIPv6, type IPv4Net, type IPv6Net } from '../../lease/ip.js';
import { jsonDepth, MAX_JSON_DEPTH } from '../../lease/json.js';
import type { Lease, LeaseAttrs } from '../../lease/lease.js';
import type { Annotations } from './annotations.js';

/** The parts of a core/v1 Node flannel reads. */
export interface NodeView {
  readonly name: string;
  readonly annotations: Readonly<Record<string, string>>;
  readonly podCIDR?: string | undefined;
  readonly podCIDRs?: readonly string[] | undefined;
}

/** What a node's lease must fit: the configured networks. */
export interface KubeLeaseNetwork {
  readonly enableIPv4: boolean;
  readonly enableIPv6: boolean;
  readonly network: IPv4Net | null;
  readonly ipv6Network: IPv6Net | null;
}

export type NodeLease =
  | { readonly kind: 'lease'; readonly lease: Lease }
  /** not (yet) managed by flannel: no kube-subnet-manager annotation; not an error */
  | { readonly kind: 'unmanaged' }
  | { readonly kind: 'invalid'; readonly reason: string };

export interface PodCidrs {
  readonly v4: IPv4Net | null;
  readonly v6: IPv6Net | null;
}

/** spec.podCIDRs (or spec.podCIDR when that is empty), at most one per family. */
export function nodePodCidrs(node: NodeView): PodCidrs | string {
  const list = node.podCIDRs && node.podCIDRs.length > 0 ? node.podCIDRs : node.podCIDR ? [node.podCIDR] : [];
  if (list.length > 2) return `spec.podCIDRs has ${list.length} entries (${clip(list.join(', '))}); at most 2 (one per family) are supported`;
  let v4: IPv4Net | null = null;
  let v6: IPv6Net | null = null;
  for (const c of list) {
    try {
      if (c.includes(':')) {
        if (v6) return `spec.podCIDRs has two IPv6 ranges (${clip(list.join(', '))})`;
        v6 = parseIPv6Net(c);
      } else {
        if (v4) return `spec.podCIDRs has two IPv4 ranges (${clip(list.join(', '))})`;
        v4 = parseIPv4Net(c);
      }
    } catch (e) {
      if (e instanceof AddrError || e instanceof Error) return `spec.podCIDR "${clip(c)}" is not a CIDR`;
      throw e;
    }
  }
  return { v4, v6 };
}

function parseJsonAnnotation(name: string, text: string): { value: unknown } | string {
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch {
    return `annotation ${name}: ${JSON.stringify(text.length > 80 ? text.slice(0, 80) + '…' : text)} is not valid JSON`;
  }
  // Fuzzing (issue 9): JSON nested thousands deep parses, but re-encoding the
  // lease (sameAttrs, encodeLeaseAttrs) then throws a RangeError.
  if (jsonDepth(value) > MAX_JSON_DEPTH) return `annotation ${name}: JSON nested more than ${MAX_JSON_DEPTH} levels deep`;
  return { value };
}

/** Turn a node into a lease, or say why not. */
export function nodeToLease(node: NodeView, names: Annotations, net: KubeLeaseNetwork): NodeLease {
  const a = node.annotations ?? {};
  if (a[names.subnetKubeManaged] !== 'true') return { kind: 'unmanaged' };
  const cidrs = nodePodCidrs(node);
  if (typeof cidrs === 'string') return { kind: 'invalid', reason: cidrs };
  if (!cidrs.v4 && !cidrs.v6) return { kind: 'invalid', reason: 'it has no spec.podCIDR' };

  if (!net.enableIPv4) return { kind: 'invalid', reason: 'IPv6-only networks are not supported by flannel-ts yet' };
  if (!cidrs.v4) return { kind: 'invalid', reason: 'it has no IPv4 podCIDR' };
  if (net.network && (!ipv4NetContains(net.network, cidrs.v4.ip) || cidrs.v4.prefix < net.network.prefix)) {
    return { kind: 'invalid', reason: `podCIDR ${fmt4(cidrs.v4)} is outside Network ${fmt4(net.network)}` };
  }
  const ipText = a[names.backendPublicIP];
  if (ipText === undefined || ipText === '') return { kind: 'invalid', reason: `annotation ${names.backendPublicIP} is missing` };
  let publicIP: number;
  try {
    publicIP = parseIPv4(ipText);
  } catch {
    return { kind: 'invalid', reason: `annotation ${names.backendPublicIP}: "${clip(ipText)}" is not an IPv4 address` };
  }
  const why = unusablePublicIPv4(publicIP);
  if (why) return { kind: 'invalid', reason: `annotation ${names.backendPublicIP}: ${ipText} is ${why}` };

  const backendType = a[names.backendType] ?? '';
  const attrs: { -readonly [K in keyof LeaseAttrs]: LeaseAttrs[K] } = { publicIP, publicIPv6: null, backendType };
  const dataText = a[names.backendData];
  if (dataText !== undefined && dataText !== '') {
    const d = parseJsonAnnotation(names.backendData, dataText);
    if (typeof d === 'string') return { kind: 'invalid', reason: d };
    attrs.backendData = d.value;
  }
  // The edge gateway's segments (flannel-ts): checked by the vxlan backend
  // where they are used (src/backend/vxlan/edge.ts), so a bad value costs only
  // the edge routes, never the peer; text that is not JSON is passed on as
  // the string it is, and reported there.
  const edgeText = a[names.edgeNetworks];
  if (edgeText !== undefined && edgeText !== '') {
    const d = parseJsonAnnotation(names.edgeNetworks, edgeText);
    attrs.edgeNetworks = typeof d === 'string' ? clip(edgeText) : d.value;
  }

  let subnet6: IPv6Net | null = null;
  if (net.enableIPv6 && cidrs.v6) {
    if (net.ipv6Network && !ipv6NetContains(net.ipv6Network, cidrs.v6.ip)) {
      return { kind: 'invalid', reason: `IPv6 podCIDR ${formatIPv6(cidrs.v6.ip)}/${cidrs.v6.prefix} is outside IPv6Network` };
    }
    const v6Text = a[names.backendPublicIPv6];
    if (v6Text) {
      let v6: bigint;
      try {
        v6 = parseIPv6(v6Text);
      } catch {
        return { kind: 'invalid', reason: `annotation ${names.backendPublicIPv6}: "${clip(v6Text)}" is not an IPv6 address` };
      }
      const why6 = unusablePublicIPv6(v6);
      if (why6) return { kind: 'invalid', reason: `annotation ${names.backendPublicIPv6}: ${v6Text} is ${why6}` };
      attrs.publicIPv6 = v6;
      subnet6 = cidrs.v6;
    }
    const d6Text = a[names.backendV6Data];
    if (d6Text !== undefined && d6Text !== '') {
      const d = parseJsonAnnotation(names.backendV6Data, d6Text);
      if (typeof d === 'string') return { kind: 'invalid', reason: d };
      attrs.backendV6Data = d.value;
    }
  }
  return { kind: 'lease', lease: { subnet: cidrs.v4, subnet6, attrs, expiration: null } };
}

/** backend-data bytes exactly as flannel writes them: compact JSON, "null" when the backend has none. */
export function backendDataText(data: unknown): string {
  return data === undefined ? 'null' : JSON.stringify(data);
}

/**
 * The annotations our own node must carry for `attrs` (spec §4.3). The
 * operator's `public-ip-overwrite` (and v6) replaces the published address,
 * e.g. for a node behind NAT.
 */
export function desiredAnnotations(names: Annotations, attrs: LeaseAttrs, current: Readonly<Record<string, string>>): Record<string, string> {
  const want: Record<string, string> = {};
  want[names.backendType] = attrs.backendType;
  want[names.backendData] = backendDataText(attrs.backendData);
  const overwrite = current[names.backendPublicIPOverwrite];
  want[names.backendPublicIP] = overwrite ? overwrite : formatIPv4(attrs.publicIP);
  // flannel: vxlan publishes the v6 pair when it has v6 backend data, host-gw
  // whenever it has a public IPv6 (its backend-v6-data is then "null").
  const v6Data = attrs.backendV6Data !== undefined && attrs.backendV6Data !== null;
  if (attrs.publicIPv6 !== null && (v6Data || attrs.backendType === 'host-gw')) {
    want[names.backendV6Data] = backendDataText(attrs.backendV6Data);
    const overwrite6 = current[names.backendPublicIPv6Overwrite];
    want[names.backendPublicIPv6] = overwrite6 ? overwrite6 : formatIPv6(attrs.publicIPv6);
  }
  // flannel-ts's edge gateway; "[]" withdraws segments a previous run published
  if (attrs.edgeNetworks !== undefined) want[names.edgeNetworks] = JSON.stringify(attrs.edgeNetworks);
  else if (current[names.edgeNetworks] !== undefined && current[names.edgeNetworks] !== '[]') want[names.edgeNetworks] = '[]';
  want[names.subnetKubeManaged] = 'true';
  return want;
}

/** Only the annotations that differ (what a two-way merge patch of the node would carry); null when none do. */
export function annotationPatch(want: Readonly<Record<string, string>>, current: Readonly<Record<string, string>>): Record<string, string> | null {
  const patch: Record<string, string> = {};
  for (const [k, v] of Object.entries(want)) if (current[k] !== v) patch[k] = v;
  return Object.keys(patch).length > 0 ? patch : null;
}

/** The VTEP MAC a previous run published in backend-data (null when absent or not decodable). */
export function storedVtepMac(current: Readonly<Record<string, string>>, key: string): string | null {
  const text = current[key];
  if (!text) return null;
  try {
    const d = JSON.parse(text) as unknown;
    if (d && typeof d === 'object' && !Array.isArray(d)) {
      for (const [k, v] of Object.entries(d)) if (k.toLowerCase() === 'vtepmac' && typeof v === 'string') return v;
    }
  } catch {
    /* not ours to judge; a fresh MAC is used */
  }
  return null;
}

/** node-public-ip / node-public-ipv6, the operator's override of --public-ip (spec §0 step 10). */
export function storedPublicIPs(names: Annotations, current: Readonly<Record<string, string>>): { v4: string | null; v6: string | null } {
  return { v4: current[names.nodePublicIP] || null, v6: current[names.nodePublicIPv6] || null };
}

/**
 * Node fields quoted in a reason, cut to a log-line-friendly length: the
 * reason is logged per node, and a field can be any size (found by fuzzing).
 */
function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

function fmt4(n: IPv4Net): string {
  return `${formatIPv4(n.ip)}/${n.prefix}`;
}
