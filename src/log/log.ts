// Logging port. Library code takes a Logger; only src/cmd/* decides where it goes.
import { pino, type Logger as PinoLogger } from 'pino';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

class PinoAdapter implements Logger {
  constructor(private readonly p: PinoLogger) {}
  debug(msg: string, f?: Record<string, unknown>): void { f ? this.p.debug(f, msg) : this.p.debug(msg); }
  info(msg: string, f?: Record<string, unknown>): void { f ? this.p.info(f, msg) : this.p.info(msg); }
  warn(msg: string, f?: Record<string, unknown>): void { f ? this.p.warn(f, msg) : this.p.warn(msg); }
  error(msg: string, f?: Record<string, unknown>): void { f ? this.p.error(f, msg) : this.p.error(msg); }
  child(component: string): Logger { return new PinoAdapter(this.p.child({ c: component })); }
}

/** JSON lines on stderr (flannel logs to stderr too). verbosity follows klog's -v: 0 info, >=1 debug. */
export function stderrLogger(verbosity = 0, name = 'flanneld'): Logger {
  return new PinoAdapter(pino({ name, level: verbosity > 0 ? 'debug' : 'info', base: { pid: process.pid } }, pino.destination(2)));
}

/** Logs at most once per interval per key; used for noisy retry paths (etcd outages). */
export class RateLimitedLog {
  private last = new Map<string, number>();
  constructor(private readonly intervalMs: number) {}
  allow(key: string): boolean {
    const now = Date.now();
    const t = this.last.get(key);
    if (t !== undefined && now - t < this.intervalMs) return false;
    this.last.set(key, now);
    return true;
  }
}
