// A backend that only records what the daemon hands it; for tests of the
// daemon/backend seam without a data path.
import type { Lease } from '../lease/lease.js';
import type { LeaseEvent } from '../lease/tracker.js';
import type { Backend, BackendContext, PublishedAttrs } from '../backend/backend.js';

export class RecordingBackend implements Backend {
  readonly type = 'recording';
  readonly calls: Array<{ remote: readonly Lease[]; events: readonly LeaseEvent[] }> = [];
  private waiters: Array<() => void> = [];
  own: Lease | null = null;
  constructor(
    readonly ctx: BackendContext,
    private readonly published: PublishedAttrs = { backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '02:00:00:00:00:01' } },
  ) {}
  async prepare(): Promise<PublishedAttrs> {
    return this.published;
  }
  async activate(own: Lease): Promise<{ mtu: number }> {
    this.own = own;
    return { mtu: this.ctx.extIface.mtu - 50 };
  }
  async reconcile(remote: readonly Lease[], events: readonly LeaseEvent[]): Promise<Error[]> {
    this.calls.push({ remote: [...remote], events: [...events] });
    for (const w of this.waiters.splice(0)) w();
    return [];
  }
  async close(): Promise<void> {}
  get last(): readonly Lease[] {
    return this.calls.at(-1)?.remote ?? [];
  }
  /** Resolve once `pred` holds for the latest desired set. */
  async waitFor(pred: (remote: readonly Lease[]) => boolean, timeoutMs = 10_000): Promise<readonly Lease[]> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.last)) {
      if (Date.now() > deadline) throw new Error(`backend never saw the expected leases; last: ${JSON.stringify(this.last.map((l) => l.subnet))}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.last;
  }
}
