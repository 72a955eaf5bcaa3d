// Logging port. Library code takes a Logger; only src/cmd/* decides where it goes.
import { writeSync } from 'node:fs';
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

export type LogFormat = 'json' | 'text';

/**
 * A logger on stderr (flannel logs to stderr too). verbosity follows klog's
 * -v: 0 info, >=1 debug. 'json' is one JSON object per line (pino), for log
 * shippers; 'text' is one klog-style line per event, for people.
 */
export function stderrLogger(verbosity = 0, name = 'flanneld', format: LogFormat = 'json'): Logger {
  if (format === 'text') return new TextLogger(verbosity > 0 ? 0 : 1, '', (line) => writeSync(2, line));
  return new PinoAdapter(pino({ name, level: verbosity > 0 ? 'debug' : 'info', base: { pid: process.pid } }, pino.destination(2)));
}

const LEVELS = ['D', 'I', 'W', 'E'] as const;

/** `key=value` with values quoted only when they need it. */
function formatFields(f: Record<string, unknown> | undefined): string {
  if (!f) return '';
  let out = '';
  for (const [k, v] of Object.entries(f)) {
    let t: string;
    if (typeof v === 'string') t = /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
    else if (v instanceof Error) t = JSON.stringify(v.message);
    else if (typeof v === 'bigint') t = v.toString();
    else t = JSON.stringify(v) ?? String(v);
    out += ` ${k}=${t}`;
  }
  return out;
}

/**
 * klog-flavoured text: `I1130 11:07:50.542 16909 kube] message key=value`
 * (level letter D/I/W/E, month and day, local time with milliseconds, pid,
 * component). One line per event, written synchronously.
 */
export class TextLogger implements Logger {
  constructor(
    /** lowest level written: 0 debug, 1 info, 2 warn, 3 error */
    private readonly min: number,
    private readonly component: string,
    private readonly write: (line: string) => void,
    private readonly now: () => Date = () => new Date(),
  ) {}
  private line(level: number, msg: string, f?: Record<string, unknown>): void {
    if (level < this.min) return;
    const d = this.now();
    const p2 = (n: number) => String(n).padStart(2, '0');
    const stamp = `${p2(d.getMonth() + 1)}${p2(d.getDate())} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
    const where = this.component || 'flanneld';
    this.write(`${LEVELS[level]}${stamp} ${process.pid} ${where}] ${msg.replace(/\n/g, ' | ')}${formatFields(f)}\n`);
  }
  debug(msg: string, f?: Record<string, unknown>): void { this.line(0, msg, f); }
  info(msg: string, f?: Record<string, unknown>): void { this.line(1, msg, f); }
  warn(msg: string, f?: Record<string, unknown>): void { this.line(2, msg, f); }
  error(msg: string, f?: Record<string, unknown>): void { this.line(3, msg, f); }
  child(component: string): Logger {
    return new TextLogger(this.min, this.component ? `${this.component}/${component}` : component, this.write, this.now);
  }
}

/** Logs at most once per interval per key; used for noisy retry paths (etcd outages). */
export class RateLimitedLog {
  private last = new Map<string, number>();
  constructor(
    private readonly intervalMs: number,
    /** milliseconds since the epoch (a Clock's now) */
    private readonly now: () => number = Date.now,
  ) {}
  allow(key: string): boolean {
    const now = this.now();
    const t = this.last.get(key);
    if (t !== undefined && now - t < this.intervalMs) return false;
    this.last.set(key, now);
    return true;
  }
}
