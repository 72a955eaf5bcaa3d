// A ChangeFeed the test drives: deliver kernel notifications, signal an
// overrun, kill the subscription, or refuse to start.
import type { ChangeFeed } from '../backend/backend.js';
import type { NetlinkEvent } from '../netlink/subscriber.js';

export class FakeChangeFeed implements ChangeFeed {
  /** start() rejects with this while set */
  failStart: Error | null = null;
  starts = 0;
  stops = 0;
  private handlers: { onEvent: (e: NetlinkEvent) => void; onOverrun: () => void; onLost: (err: Error) => void } | null = null;

  get subscribed(): boolean {
    return this.handlers !== null;
  }

  async start(onEvent: (e: NetlinkEvent) => void, onOverrun: () => void, onLost: (err: Error) => void): Promise<void> {
    this.starts++;
    if (this.failStart) throw this.failStart;
    this.handlers = { onEvent, onOverrun, onLost };
  }

  async stop(): Promise<void> {
    this.stops++;
    this.handlers = null;
  }

  emit(e: NetlinkEvent): void {
    this.handlers?.onEvent(e);
  }

  overrun(): void {
    this.handlers?.onOverrun();
  }

  /** The subscription ends for good, as when the subscriber's worker dies. */
  die(err: Error): void {
    const h = this.handlers;
    this.handlers = null;
    h?.onLost(err);
  }
}
