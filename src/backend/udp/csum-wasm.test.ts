import { test } from 'node:test';
import assert from 'node:assert/strict';
import { wasmArena } from './csum-wasm.js';
import { sum16 } from './packet.js';

test('the Wasm SIMD checksum agrees with sum16 for every offset and length', (t) => {
  const a = wasmArena(200_000);
  if (!a) return t.skip('no WebAssembly SIMD on this engine');
  assert.ok(a.size >= 200_000);
  assert.ok(a.addr > 0);
  let x = 12345;
  for (let i = 0; i < a.size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    a.u8[i] = x >>> 24;
  }
  for (let off = 0; off < 20; off++) {
    for (let len = 0; len < 300; len++) assert.equal(a.sum16(off, len), sum16(a.dv, off, len), `off ${off} len ${len}`);
  }
  for (const [off, len] of [[12, 1420], [3, 1421], [100, 65535], [0, 131072], [7, 199_000]] as const) {
    assert.equal(a.sum16(off, len), sum16(a.dv, off, len), `off ${off} len ${len}`);
  }
  a.u8.fill(0xff, 0, 65536);
  assert.equal(a.sum16(0, 65536), 0xffff);
  a.u8.fill(0, 0, 65536);
  assert.equal(a.sum16(0, 65536), 0);
});
