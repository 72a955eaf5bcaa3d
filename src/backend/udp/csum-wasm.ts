// A packet arena in WebAssembly memory with a SIMD Internet-checksum kernel.
//
// Cutting TSO super-packets into segments means computing every segment's TCP
// checksum over its payload in userspace: the single largest cost in the tx
// worker. A plain JS loop (DataView, 32-bit words) does ~8 GB/s; this
// 60-byte hand-assembled WebAssembly function does ~27 GB/s by adding 16
// bytes per step as two i64x2 lanes of zero-extended 32-bit words.
//
// The arena is the module's own linear memory, so the kernel reads packets in
// place; its native address (koffi.address) is what the syscalls get. Wasm
// memory never moves unless grown, and it is never grown.
//
//   (func (export "sum") (param $p i32) (param $n i32) (result f64)
//     ;; $n must be a multiple of 16; returns the sum of the little-endian
//     ;; u32 words of [$p, $p+$n) as an exact f64 (< 2^53 for $n < 2^38).
//     (local $end i32) (local $acc v128) (local $v v128)
//     (local.set $end (i32.add (local.get $p) (local.get $n)))
//     (block (loop
//       (br_if 1 (i32.ge_u (local.get $p) (local.get $end)))
//       (local.set $v (v128.load align=4 (local.get $p)))
//       (local.set $acc (i64x2.add (local.get $acc) (i64x2.extend_low_i32x4_u (local.get $v))))
//       (local.set $acc (i64x2.add (local.get $acc) (i64x2.extend_high_i32x4_u (local.get $v))))
//       (local.set $p (i32.add (local.get $p) (i32.const 16)))
//       (br 0)))
//     (f64.convert_i64_u (i64.add (i64x2.extract_lane 0 (local.get $acc)) (i64x2.extract_lane 1 (local.get $acc)))))

import { koffi } from '../../netlink/libc.js';
import { fold16 } from './packet.js';

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function name(s: string): number[] {
  return [...leb(s.length), ...Buffer.from(s, 'latin1')];
}

function section(id: number, bytes: number[]): number[] {
  return [id, ...leb(bytes.length), ...bytes];
}

const simd = (op: number): number[] => [0xfd, ...leb(op)];
const GET = 0x20;
const SET = 0x21;
const TEE = 0x22;

function moduleBytes(): Uint8Array<ArrayBuffer> {
  const code = [
    2, 1, 0x7f, 2, 0x7b, // locals: 1 × i32 ($end), 2 × v128 ($acc, $v)
    GET, 0, GET, 1, 0x6a, SET, 2, // $end = $p + $n
    0x02, 0x40, 0x03, 0x40, // block, loop
    GET, 0, GET, 2, 0x4f, 0x0d, 1, // br_if 1 ($p >= $end)
    GET, 0, ...simd(0), 2, 0, TEE, 4, // $v = v128.load align=4 offset=0
    ...simd(201), GET, 3, ...simd(206), SET, 3, // $acc += extend_low_u($v)
    GET, 4, ...simd(202), GET, 3, ...simd(206), SET, 3, // $acc += extend_high_u($v)
    GET, 0, 0x41, 16, 0x6a, SET, 0, // $p += 16
    0x0c, 0, // br 0
    0x0b, 0x0b, // end loop, end block
    GET, 3, ...simd(29), 0, GET, 3, ...simd(29), 1, 0x7c, 0xba, // lane0 + lane1, f64.convert_i64_u
    0x0b,
  ];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 2, 0x7f, 0x7f, 1, 0x7c]), // type (i32, i32) -> f64
    ...section(2, [1, ...name('m'), ...name('m'), 0x02, 0x00, 0x01]), // import memory m.m (min 1)
    ...section(3, [1, 0]),
    ...section(7, [1, ...name('sum'), 0x00, 0x00]),
    ...section(10, [1, ...leb(code.length), ...code]),
  ]);
}

export interface WasmArena {
  /** native address of byte 0 */
  readonly addr: number;
  readonly size: number;
  readonly u8: Uint8Array;
  readonly dv: DataView;
  /** ones'-complement sum of [off, off+len) as big-endian 16-bit words, folded, not complemented (like packet.sum16) */
  sum16(off: number, len: number): number;
}

let compiled: WebAssembly.Module | null | undefined;

/**
 * Allocates an arena of at least `size` bytes with the SIMD checksum, or
 * returns null when this engine/CPU has no Wasm SIMD (the caller falls back
 * to malloc'd memory and the JS checksum).
 */
export function wasmArena(size: number): WasmArena | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(moduleBytes());
    } catch {
      compiled = null;
    }
  }
  if (!compiled) return null;
  const memory = new WebAssembly.Memory({ initial: Math.ceil(size / 65536) });
  const instance = new WebAssembly.Instance(compiled, { m: { m: memory } });
  const wsum = instance.exports.sum as (p: number, n: number) => number;
  const buffer = memory.buffer;
  const u8 = new Uint8Array(buffer);
  const dv = new DataView(buffer);
  const addr = Number(koffi().address(u8));
  return {
    addr,
    size: buffer.byteLength,
    u8,
    dv,
    sum16(off: number, len: number): number {
      const body = len - (len % 16);
      let s = 0;
      if (body > 0) {
        // Sum of little-endian words = the byte-swapped big-endian sum.
        const le = fold16(wsum(off, body));
        s = ((le & 0xff) << 8) | (le >>> 8);
      }
      let i = off + body;
      const end2 = off + len - (len % 2);
      for (; i < end2; i += 2) s += dv.getUint16(i);
      if (i < off + len) s += dv.getUint8(i) << 8;
      return fold16(s);
    },
  };
}
