// VXLAN backend options from net-conf's Backend object (spec §2.5), matched
// case-insensitively like Go's encoding/json.
import { ConfigError, foldKeys } from '../../subnet/config.js';
import { showJson } from '../../lease/json.js';

export interface VxlanOptions {
  readonly vni: number;
  /** 0 = kernel default (8472 on Linux) */
  readonly port: number;
  /** underlay MTU to derive from; null = the external interface's MTU */
  readonly mtu: number | null;
  readonly gbp: boolean;
  readonly learning: boolean;
  readonly directRouting: boolean;
}

export function parseVxlanOptions(raw: Record<string, unknown>): VxlanOptions {
  const f = foldKeys(raw, ['VNI', 'Port', 'MTU', 'GBP', 'Learning', 'DirectRouting']);
  const int = (name: string, v: unknown, dflt: number, max: number): number => {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
      throw new ConfigError(`Backend.${name}: expected an integer between 0 and ${max}, got ${showJson(v)}`);
    }
    return v;
  };
  const bool = (name: string, v: unknown): boolean => {
    if (v === undefined || v === null) return false;
    if (typeof v !== 'boolean') throw new ConfigError(`Backend.${name}: expected true or false, got ${showJson(v)}`);
    return v;
  };
  const vni = int('VNI', f.VNI, 1, 0xffffff);
  const mtu = int('MTU', f.MTU, 0, 65535);
  if (mtu !== 0 && mtu < 68 + 50) throw new ConfigError(`Backend.MTU: ${mtu} is too small; the VXLAN device needs at least ${68 + 50}`);
  return {
    vni,
    port: int('Port', f.Port, 0, 65535),
    mtu: mtu === 0 ? null : mtu,
    gbp: bool('GBP', f.GBP),
    learning: bool('Learning', f.Learning),
    directRouting: bool('DirectRouting', f.DirectRouting),
  };
}

/** 6 random bytes, locally administered unicast (spec §5.2). */
export function randomVtepMac(random: (n: number) => Uint8Array): string {
  const b = random(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Accept any MAC form Go's net.ParseMAC takes for 6-byte addresses; return lower-case colon hex. */
export function normaliseMac(s: unknown): string | null {
  if (typeof s !== 'string') return null;
  // already canonical (as flannel writes it): the same string, not a copy kept per peer
  if (/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(s)) return s;
  let hex: string | null = null;
  if (/^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$/.test(s)) hex = s.replace(/[:-]/g, '');
  else if (/^([0-9a-fA-F]{4}\.){2}[0-9a-fA-F]{4}$/.test(s)) hex = s.replace(/\./g, '');
  if (!hex) return null;
  return hex.toLowerCase().match(/../g)!.join(':');
}
