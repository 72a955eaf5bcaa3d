// Go's encoding/json matches object keys to struct fields case-insensitively
// (an exact match first, else a case-folded one); flannel's config and lease
// JSON are read that way, so we do the same.

/** Fold the keys of a JSON object onto canonical names, case-insensitively, last one wins. */
export function foldKeys<K extends string>(obj: Record<string, unknown>, names: readonly K[]): Partial<Record<K, unknown>> {
  const byLower = new Map(names.map((n) => [n.toLowerCase(), n]));
  const out: Partial<Record<K, unknown>> = {};
  for (const [k, v] of Object.entries(obj)) {
    const canon = byLower.get(k.toLowerCase());
    if (canon !== undefined) out[canon] = v;
  }
  return out;
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
    throw fail(`${what} must be a JSON object, got ${JSON.stringify(doc)}`);
  }
  return doc as Record<string, unknown>;
}
