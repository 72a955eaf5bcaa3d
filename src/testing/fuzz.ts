// Shared bits of the *.fuzz.test.ts property tests (issue 9): a seeded
// fast-check runner that counts inputs, and generators for the kinds of
// hostile text the parsers see (JSON with wrong types, deep nesting,
// prototype-pollution keys, character-level corruption of valid documents).
//
// Every property runs with a fixed seed, so a failure reproduces; the seed
// and run count are printed as test diagnostics. FUZZ_SEED overrides all
// seeds and FUZZ_SCALE multiplies every run count, for longer campaigns:
//   FUZZ_SCALE=20 FUZZ_SEED=$RANDOM node --test dist/src/lease/lease.fuzz.test.ts

import { test, type TestContext } from 'node:test';
import fc from 'fast-check';

export { fc };

const SCALE = Number(process.env.FUZZ_SCALE ?? '1') > 0 ? Number(process.env.FUZZ_SCALE ?? '1') : 1;
const SEED_OVERRIDE = process.env.FUZZ_SEED !== undefined && process.env.FUZZ_SEED !== '' ? Number(process.env.FUZZ_SEED) | 0 : null;

function runsFor(numRuns: number): number {
  return Math.max(1, Math.round(numRuns * SCALE));
}

/** Inputs run so far per fuzz file (each file is its own process under node --test). */
export class FuzzTally {
  total = 0;
  failed = 0;
  readonly lines: string[] = [];

  /**
   * Run one property with a fixed seed; adds the runs to the tally and
   * reports seed and count as a diagnostic of `t`. Throws (fails the test)
   * with fast-check's counterexample report when the property fails.
   */
  check<Ts extends [unknown, ...unknown[]]>(t: TestContext, name: string, seed: number, numRuns: number, prop: fc.IProperty<Ts>): void {
    const s = SEED_OVERRIDE ?? seed;
    this.report(t, name, s, fc.check(prop, { seed: s, numRuns: runsFor(numRuns) }));
  }

  /** check() for properties over async code (fc.asyncProperty). */
  async checkAsync<Ts extends [unknown, ...unknown[]]>(t: TestContext, name: string, seed: number, numRuns: number, prop: fc.IAsyncProperty<Ts>): Promise<void> {
    const s = SEED_OVERRIDE ?? seed;
    this.report(t, name, s, await fc.check(prop, { seed: s, numRuns: runsFor(numRuns) }));
  }

  private report<Ts>(t: TestContext, name: string, s: number, out: fc.RunDetails<Ts>): void {
    this.total += out.numRuns;
    if (out.failed) this.failed++;
    const line = `${name}: seed ${s}, ${out.numRuns} inputs${out.failed ? ' (FAILED)' : ''}`;
    this.lines.push(line);
    t.diagnostic(line);
    if (out.failed) {
      // fast-check's own report prints the whole counterexample, which for
      // deep-nesting inputs is megabytes; keep it readable.
      let ce: string;
      try {
        ce = fc.stringify(out.counterexample);
      } catch {
        ce = '(too deeply nested for fc.stringify)';
      }
      const err = out.errorInstance instanceof Error ? (out.errorInstance.stack ?? out.errorInstance.message) : String(out.errorInstance);
      throw new Error(
        `property ${name} failed (seed ${s}, path "${out.counterexamplePath ?? ''}", after ${out.numRuns} runs, ${out.numShrinks} shrinks)\n` +
          `counterexample (${ce.length} chars): ${ce.length > 1500 ? `${ce.slice(0, 1500)}…` : ce}\n${err}`,
      );
    }
  }

  /** Register the file's last test: one diagnostic with the total inputs run (call after all other tests). */
  reportTotal(area: string): void {
    test(`${area} fuzz: total`, (t) => {
      t.diagnostic(`${area} fuzz: ${this.total} inputs in total over ${this.lines.length} properties, ${this.failed} failed`);
    });
  }
}

// ------------------------------------------------------------ text generators

/** Keys that have tripped JavaScript parsers before. */
export const NASTY_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '', ' ', '\u0000'];

/** Numbers at the edges of every integer width and of IEEE 754. */
export const NASTY_NUMBERS: readonly number[] = [
  0, -0, -1, 1, 0.5, 1e-7, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e21, 1e308, -1e308, 5e-324, 255, 256, 65535, 65536,
  0xffffff, 0x1000000, 31, 32, 33, 127, 128, 129,
];

/** Strings that look almost like the addresses, MACs and CIDRs the parsers expect. */
export const NASTY_STRINGS: readonly string[] = [
  '', ' ', '\u0000', '0.0.0.0', '255.255.255.255', '127.0.0.1', '224.0.0.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.256', '1.2.3.4 ', ' 1.2.3.4', '1.2.3.4\n',
  '-1.2.3.4', '1.2.3.-4', '0x7f.0.0.1', '1e1.0.0.1', '::', '::1', 'ff02::1', '::ffff:1.2.3.4', '1:2:3:4:5:6:7:8:9', '1::2::3', 'fe80::1%eth0', '2001:db8::/64',
  ':::', 'ABCD::', 'g::1', '10.0.0.0/8', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/', '/8', '10.0.0.0/8/8', '10.0.0.0/08', '10.0.0.0/ 8',
  'c6:d2:32:6f:8f:44', 'C6-D2-32-6F-8F-44', 'c6d2.326f.8f44', 'c6:d2:32:6f:8f', 'c6:d2:32:6f:8f:44:00', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00', '01:00:5e:00:00:01',
  'zz:zz:zz:zz:zz:zz', 'vxlan', 'VXLAN', 'host-gw', 'udp', 'null', 'true', '{}', '[]', '"', '\\', '\ud800', 'NaN', 'Infinity', '1e400', '0'.repeat(400), 'x'.repeat(5000),
];

/** Any JSON value, including the nasty strings and numbers above. */
export function jsonValue(maxDepth = 3): fc.Arbitrary<unknown> {
  const leaf = fc.oneof(
    fc.constant(null),
    fc.boolean(),
    fc.constantFrom(...NASTY_NUMBERS),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
    fc.constantFrom(...NASTY_STRINGS),
    fc.string({ maxLength: 20 }),
  );
  return fc.letrec<{ v: unknown }>((tie) => ({
    v: fc.oneof(
      { depthSize: 'small', maxDepth, depthIdentifier: 'json' },
      leaf,
      fc.array(tie('v'), { maxLength: 4 }),
      fc.dictionary(fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom(...NASTY_KEYS)), tie('v'), { maxKeys: 4 }),
    ),
  })).v;
}

/** JSON text of `v`; JSON.stringify when it can, else a placeholder (never throws). */
export function toJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? 'null';
  } catch {
    return 'null';
  }
}

/** Value nested `depth` levels deep in arrays or objects: stack-depth attacks on stringify/recursion. */
export function deepJsonText(depth: number, kind: 'array' | 'object', leaf = '1'): string {
  if (kind === 'array') return '['.repeat(depth) + leaf + ']'.repeat(depth);
  return '{"a":'.repeat(depth) + leaf + '}'.repeat(depth);
}

/** Deeply nested JSON text, from harmless to far beyond what JSON.stringify can recurse into. */
export const deepJson: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom(2, 50, 500, 3_000, 12_000), fc.constantFrom<'array' | 'object'>('array', 'object'))
  .map(([d, k]) => deepJsonText(d, k));

/**
 * A JSON object written as text from (key, value-text) pairs: keys may repeat
 * and may be "__proto__" (which JSON.stringify of a literal cannot produce).
 */
export function objectText(pairs: ReadonlyArray<readonly [string, string]>): string {
  return `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;
}

/** Character-level corruption of a text: deletes, inserts, replacements, truncation, duplication. */
export function mutateText(base: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const op = fc.record({
    kind: fc.constantFrom('del', 'ins', 'rep', 'cut', 'dup'),
    at: fc.nat(),
    ch: fc.oneof(fc.constantFrom('"', '{', '}', '[', ']', ':', ',', '\\', '.', '-', '/', '&', '0', '9', 'a', 'f', ' ', '\u0000', 'e', '\ud800'), fc.string({ minLength: 1, maxLength: 3 })),
  });
  return fc.tuple(base, fc.array(op, { minLength: 1, maxLength: 6 })).map(([s, ops]) => {
    for (const o of ops) {
      const i = s.length === 0 ? 0 : o.at % (s.length + 1);
      if (o.kind === 'del') s = s.slice(0, i) + s.slice(i + 1);
      else if (o.kind === 'ins') s = s.slice(0, i) + o.ch + s.slice(i);
      else if (o.kind === 'rep') s = s.slice(0, i) + o.ch + s.slice(i + 1);
      else if (o.kind === 'cut') s = s.slice(0, i);
      else s = s.slice(0, i) + s.slice(i, i + 8) + s.slice(i);
    }
    return s;
  });
}

/** Random case per letter, as Go's case-insensitive JSON field matching allows. */
export function anyCase(name: string): fc.Arbitrary<string> {
  return fc.oneof(fc.constant(name), fc.constant(name.toLowerCase()), fc.constant(name.toUpperCase()), fc.mixedCase(fc.constant(name)));
}

/** Replace or delete fields of a valid object, add junk and nasty keys; returns JSON text. */
export function mutateObject(valid: Record<string, unknown>, fieldValue: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const keys = Object.keys(valid);
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), key: fc.oneof(...keys.map(anyCase)), v: fieldValue }),
    fc.record({ kind: fc.constant('del' as const), key: fc.constantFrom(...keys), v: fc.constant('') }),
    fc.record({ kind: fc.constant('add' as const), key: fc.oneof(fc.constantFrom(...NASTY_KEYS), fc.string({ maxLength: 6 })), v: fieldValue }),
  );
  return fc.array(edit, { minLength: 1, maxLength: 5 }).map((edits) => {
    let pairs: Array<[string, string]> = Object.entries(valid).map(([k, v]) => [k, toJson(v)]);
    for (const e of edits) {
      if (e.kind === 'del') pairs = pairs.filter(([k]) => k !== e.key);
      else if (e.kind === 'set') {
        const i = pairs.findIndex(([k]) => k.toLowerCase() === e.key.toLowerCase());
        if (i >= 0) pairs[i] = [e.key, e.v];
        else pairs.push([e.key, e.v]);
      } else pairs.push([e.key, e.v]);
    }
    return objectText(pairs);
  });
}

/** A value's JSON text for field mutation: typed junk, nasty scalars, deep nesting. */
export const fieldValueText: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: jsonValue(3).map(toJson) },
  { weight: 3, arbitrary: fc.constantFrom(...NASTY_STRINGS).map((s) => JSON.stringify(s)) },
  { weight: 2, arbitrary: fc.constantFrom(...NASTY_NUMBERS).map((n) => (Object.is(n, -0) ? '-0' : String(n))) },
  { weight: 1, arbitrary: fc.constantFrom('1e400', '-1e400', '1e-400', '123456789012345678901234567890', '-0.0', '1.0') },
  { weight: 1, arbitrary: deepJson },
);

/** Parse or unexpected-exception classifier for assertions: only these classes may escape. */
export function describeThrown(e: unknown): string {
  if (e instanceof Error) return `${e.constructor.name}: ${e.message.slice(0, 300)}`;
  return `non-Error thrown: ${String(e)}`;
}
