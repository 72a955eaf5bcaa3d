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
