// The single place that decides which kernel errors mean "already in the
// desired state". Reconciliation re-applies desired state freely, so these
// outcomes must be successes and must not be logged as failures.
//
//  - add (NLM_F_EXCL create): EEXIST — the identical object is present. Only
//    used where EEXIST really implies "identical": an address is keyed by
//    (device, local, prefix), so an existing one is the same address. Links
//    are keyed by name only, so createVxlan compares parameters before
//    accepting EEXIST (see vxlanMatches).
//  - delete: ENOENT (neighbour/FDB entry absent), ESRCH (route absent),
//    EADDRNOTAVAIL (address absent), ENODEV (device absent — nothing that
//    lived on it can exist either).
//  - replace: never; replace cannot fail because of existing state.

import type { NetlinkError } from '../netlink/errors.js';
import type { Link, VxlanCreateSpec } from './types.js';

export type Effect = 'add' | 'delete' | 'replace';

const BENIGN: Record<Effect, ReadonlySet<string>> = {
  add: new Set(['EEXIST']),
  delete: new Set(['ENOENT', 'ESRCH', 'EADDRNOTAVAIL', 'ENODEV']),
  replace: new Set(),
};

export function isAlreadyDone(effect: Effect, err: NetlinkError): boolean {
  return BENIGN[effect].has(err.code);
}

/** Linux's VXLAN default UDP port, reported by the kernel when none was given. */
export const VXLAN_DEFAULT_PORT = 8472;

/**
 * Differences between an existing link and a VXLAN spec, as readable strings;
 * empty when the link can be reused as is (MTU and MAC are adjustable and so
 * not compared).
 */
export function vxlanMismatches(link: Link, spec: VxlanCreateSpec): string[] {
  if (link.kind !== 'vxlan' || !link.vxlan) return [`kind is ${link.kind ?? 'none'}, not vxlan`];
  const v = link.vxlan;
  const out: string[] = [];
  const want = {
    vni: spec.vni,
    port: spec.port ? spec.port : VXLAN_DEFAULT_PORT,
    local: spec.local,
    linkIndex: spec.linkIndex,
    learning: spec.learning ?? false,
    gbp: spec.gbp ?? false,
  };
  if (v.vni !== want.vni) out.push(`vni ${v.vni} != ${want.vni}`);
  if (v.port !== want.port) out.push(`port ${v.port} != ${want.port}`);
  if (v.local !== want.local) out.push(`local ${v.local ?? 'none'} != ${want.local ?? 'none'}`);
  if (v.linkIndex !== want.linkIndex) out.push(`underlay #${v.linkIndex ?? 'none'} != #${want.linkIndex ?? 'none'}`);
  if (v.learning !== want.learning) out.push(`learning ${v.learning} != ${want.learning}`);
  if (v.gbp !== want.gbp) out.push(`gbp ${v.gbp} != ${want.gbp}`);
  return out;
}
