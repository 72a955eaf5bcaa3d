// The lab's ping matrix: one row per source pod, one column per destination,
// "✓ <rtt>" or "✗" in each cell. IPv4 and IPv6 reports share it.

export interface ReachCell {
  readonly from: string;
  readonly to: string;
  readonly ok: boolean;
  readonly rttMs: number | null;
}

/** The title line and the matrix rows; pod names are shown without the lab prefix. */
export function renderReachMatrix(prefix: string, pods: ReadonlyArray<{ name: string }>, reach: readonly ReachCell[], title: string): string[] {
  const short = (n: string) => n.slice(prefix.length);
  const w = Math.max(...pods.map((p) => short(p.name).length), 9);
  const out = [title, `${'from \\ to'.padEnd(w)}  ${pods.map((p) => short(p.name).padStart(9)).join('')}`];
  for (const a of pods) {
    const cells = pods.map((b) => {
      if (a === b) return '-'.padStart(9);
      const r = reach.find((x) => x.from === a.name && x.to === b.name);
      return (r?.ok ? `✓ ${r.rttMs?.toFixed(2) ?? ''}` : '✗').padStart(9);
    });
    out.push(`${short(a.name).padEnd(w)}  ${cells.join('')}`);
  }
  return out;
}
