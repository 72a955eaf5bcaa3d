// A Logger that keeps its lines in memory, for tests to assert on.
import type { Logger } from '../log/log.js';

export class MemoryLogger implements Logger {
  readonly lines: { level: string; msg: string; fields?: Record<string, unknown> }[];
  constructor(lines?: MemoryLogger['lines'], private readonly prefix = '') {
    this.lines = lines ?? [];
  }
  private add(level: string, msg: string, fields?: Record<string, unknown>): void {
    this.lines.push({ level, msg: this.prefix + msg, ...(fields ? { fields } : {}) });
  }
  debug(msg: string, f?: Record<string, unknown>): void { this.add('debug', msg, f); }
  info(msg: string, f?: Record<string, unknown>): void { this.add('info', msg, f); }
  warn(msg: string, f?: Record<string, unknown>): void { this.add('warn', msg, f); }
  error(msg: string, f?: Record<string, unknown>): void { this.add('error', msg, f); }
  child(component: string): Logger { return new MemoryLogger(this.lines, `${this.prefix}[${component}] `); }
}

