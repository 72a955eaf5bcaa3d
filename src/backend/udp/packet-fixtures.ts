// Test support for packet.ts, shared by packet.test.ts and packet.fuzz.test.ts
// (imported by tests only): a byte-by-byte reference checksum, a DataView
// that throws on any access outside the packet, and ways to lay packets out
// in a larger buffer.

/** Reference ones'-complement sum of [off, off+len), byte by byte, no tricks. */
export function refSum(u8: Uint8Array, off = 0, len = u8.length - off): number {
  let s = 0;
  for (let i = 0; i < len; i += 2) s += (u8[off + i]! << 8) | (i + 1 < len ? u8[off + i + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/**
 * A DataView that throws on any access outside [lo, hi): the functions under
 * test must stay inside the packet they were given. (A plain Uint8Array would
 * silently return undefined out of range; DataView only checks the buffer.)
 */
export function guarded(dv: DataView, lo: number, hi: number): DataView {
  const widths: Record<string, number> = {
    getUint8: 1, setUint8: 1, getInt8: 1, setInt8: 1,
    getUint16: 2, setUint16: 2, getInt16: 2, setInt16: 2,
    getUint32: 4, setUint32: 4, getInt32: 4, setInt32: 4,
  };
  return new Proxy(dv, {
    get(target, prop) {
      const w = typeof prop === 'string' ? widths[prop] : undefined;
      const v = Reflect.get(target, prop, target) as unknown;
      if (w === undefined) return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      const f = v as (at: number, ...rest: unknown[]) => unknown;
      return (at: number, ...rest: unknown[]) => {
        if (!(at >= lo && at + w <= hi)) throw new RangeError(`out-of-packet access ${String(prop)}(${at}) outside [${lo}, ${hi})`);
        return f.call(target, at, ...rest);
      };
    },
  });
}

/** A packet at offset `off` of a larger buffer, poison around it, read through a guarded view. */
export interface Placed {
  buf: Uint8Array;
  /** the whole buffer, unguarded */
  raw: DataView;
  /** the buffer, guarded to the packet */
  dv: DataView;
  off: number;
  len: number;
}

/** `pkt` copied to offset `pad` of a buffer filled with 0xee, with 8 poison bytes after it. */
export function place(pkt: Uint8Array, pad: number): Placed {
  const buf = new Uint8Array(pkt.length + pad + 8).fill(0xee);
  buf.set(pkt, pad);
  const raw = new DataView(buf.buffer);
  return { buf, raw, dv: guarded(raw, pad, pad + pkt.length), off: pad, len: pkt.length };
}

/** Packets one after another in one buffer (an arena), `gap` zero bytes after each, and where each starts. */
export function packArena(pkts: readonly Uint8Array[], gap = 0): { ab: ArrayBuffer; u8: Uint8Array; offs: number[]; total: number } {
  const total = pkts.reduce((n, p) => n + p.length + gap, 0);
  const ab = new ArrayBuffer(total);
  const u8 = new Uint8Array(ab);
  const offs: number[] = [];
  let at = 0;
  for (const p of pkts) {
    u8.set(p, at);
    offs.push(at);
    at += p.length + gap;
  }
  return { ab, u8, offs, total };
}
