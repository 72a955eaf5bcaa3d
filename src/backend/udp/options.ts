// UDP backend options from net-conf's Backend object (spec §2.5, §6), matched
// case-insensitively like Go's encoding/json.
import { ConfigError, foldKeys } from '../../subnet/config.js';
import { showJson } from '../../lease/json.js';

export const UDP_DEFAULT_PORT = 8285;

export interface UdpOptions {
  /** UDP port we listen on and send to (flannel assumes every peer uses the same) */
  readonly port: number;
}

export function parseUdpOptions(raw: Record<string, unknown>): UdpOptions {
  const f = foldKeys(raw, ['Port']);
  const v = f.Port;
  if (v === undefined || v === null) return { port: UDP_DEFAULT_PORT };
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    throw new ConfigError(`Backend.Port: expected an integer between 1 and 65535, got ${showJson(v)}`);
  }
  return { port: v };
}
