// The periodic re-check both firewall managers run (iptables and nftables):
// every `seconds` (none when 0), look at each installed item and put back the
// ones that drifted. Never two checks at once; an error is logged and the next
// period tries again.

import type { Logger } from '../log/log.js';

export interface Repairable<T> {
  /** what differs from what we installed; [] when the item is intact */
  problems(item: T): Promise<string[]>;
  /** put the item back as we want it */
  install(item: T): Promise<void>;
  /** the log line for an item that drifted */
  describe(item: T, problems: string[]): string;
}

export class Resync<T> {
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  items: readonly T[] = [];
  repairs = 0;

  constructor(
    private readonly what: Repairable<T>,
    private readonly log: Logger,
    private readonly seconds: number,
  ) {}

  start(): void {
    this.stop();
    if (this.seconds > 0) {
      this.timer = setInterval(() => void this.check(), this.seconds * 1000);
      this.timer.unref();
    }
  }

  async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (const item of this.items) {
        const p = await this.what.problems(item);
        if (p.length === 0) continue;
        this.log.warn(this.what.describe(item, p));
        await this.what.install(item);
        this.repairs++;
      }
    } catch (e) {
      this.log.warn((e as Error).message);
    } finally {
      this.busy = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
