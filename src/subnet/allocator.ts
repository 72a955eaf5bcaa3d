// Pure subnet allocation policy (spec §3.6 step 4): walk the candidate
// subnets from SubnetMin to SubnetMax, skip any that overlap a taken one,
// collect at most 100 free ones and pick one at random.

import { ipv4NetAligned, ipv4NetSize, ipv4NetsOverlap, ipv6NetAligned, ipv6NetsOverlap, type IPv4Net, type IPv6Net } from '../lease/ip.js';
import type { NetworkConfig } from './config.js';

export const MAX_CANDIDATES = 100;

export type Random = () => number;

export function freeSubnets(cfg: NetworkConfig, taken: readonly IPv4Net[], max = MAX_CANDIDATES): IPv4Net[] {
  const out: IPv4Net[] = [];
  const step = ipv4NetSize(cfg.subnetLen);
  for (let ip = cfg.subnetMin; ip <= cfg.subnetMax && out.length < max; ip += step) {
    const cand = { ip, prefix: cfg.subnetLen };
    if (!taken.some((t) => ipv4NetsOverlap(t, cand))) out.push(cand);
  }
  return out;
}

export function freeSubnets6(cfg: NetworkConfig, taken: readonly IPv6Net[], max = MAX_CANDIDATES): IPv6Net[] {
  const out: IPv6Net[] = [];
  const step = 1n << BigInt(128 - cfg.ipv6SubnetLen);
  for (let ip = cfg.ipv6SubnetMin; ip <= cfg.ipv6SubnetMax && out.length < max; ip += step) {
    const cand = { ip, prefix: cfg.ipv6SubnetLen };
    if (!taken.some((t) => ipv6NetsOverlap(t, cand))) out.push(cand);
  }
  return out;
}

export function pick<T>(xs: readonly T[], random: Random): T | null {
  if (xs.length === 0) return null;
  return xs[Math.min(xs.length - 1, Math.floor(random() * xs.length))]!;
}

/** Does this subnet fit the current config (right length, aligned, inside [Min, Max])? */
export function compatible(cfg: NetworkConfig, subnet: IPv4Net, subnet6: IPv6Net | null): boolean {
  if (cfg.enableIPv4) {
    if (subnet.prefix !== cfg.subnetLen || !ipv4NetAligned(subnet) || subnet.ip < cfg.subnetMin || subnet.ip > cfg.subnetMax) return false;
  }
  if (!cfg.enableIPv6) return subnet6 === null;
  if (subnet6 === null) return false;
  return subnet6.prefix === cfg.ipv6SubnetLen && ipv6NetAligned(subnet6) && subnet6.ip >= cfg.ipv6SubnetMin && subnet6.ip <= cfg.ipv6SubnetMax;
}
