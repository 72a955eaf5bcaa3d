// Go's encoding/json matches object keys to struct fields case-insensitively
// (an exact match first, else a case-folded one); flannel's config and lease
// JSON are read that way, so we do the same.

/** lower-case name -> canonical name, per list of names (each lease decodes with the same list) */
const folded = new WeakMap<readonly string[], Map<string, string>>();

/** Fold the keys of a JSON object onto canonical names, case-insensitively, last one wins. */
export function foldKeys<K extends string>(obj: Record<string, unknown>, names: readonly K[]): Partial<Record<K, unknown>> {
  let byLower = folded.get(names) as Map<string, K> | undefined;
  if (!byLower) folded.set(names, (byLower = new Map(names.map((n) => [n.toLowerCase(), n]))));
  const out: Partial<Record<K, unknown>> = {};
  for (const [k, v] of Object.entries(obj)) {
    const canon = byLower.get(k.toLowerCase());
    if (canon !== undefined) out[canon] = v;
  }
  return out;
}

/**
 * How deep stored/config JSON may nest. JSON.parse copes with any depth, but
 * JSON.stringify and every recursive walk after it (error messages, lease
 * comparison, re-encoding) overflow the stack somewhere past a few thousand
 * levels with a RangeError. Nothing flannel writes nests more than 3 levels.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * Nesting depth of a parsed JSON value (a scalar is 0, [] is 1), counted
 * without recursion so any depth is safe; stops counting past `limit`.
 */
export function jsonDepth(v: unknown, limit = MAX_JSON_DEPTH): number {
  if (v === null || typeof v !== 'object') return 0;
  let max = 0;
  const stack: Array<[unknown, number]> = [[v, 0]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (x === null || typeof x !== 'object') continue;
    const depth = d + 1;
    if (depth > max) max = depth;
    if (max > limit) return max;
    for (const c of Object.values(x)) if (c !== null && typeof c === 'object') stack.push([c, depth]);
  }
  return max;
}

/** A value as short JSON text for an error message: never throws, at most ~`max` characters. */
export function showJson(v: unknown, max = 80): string {
  if (jsonDepth(v) > MAX_JSON_DEPTH) return `${Array.isArray(v) ? 'an array' : 'an object'} nested more than ${MAX_JSON_DEPTH} levels deep`;
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = String(v);
  }
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** JSON.parse that insists on an object; `fail` builds the caller's error type from one line. */
export function parseJsonObject(text: string, what: string, fail: (msg: string) => Error): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw fail(`${what} is not valid JSON: ${(e as Error).message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw fail(`${what} must be a JSON object, got ${showJson(doc)}`);
  }
  return doc as Record<string, unknown>;
}
