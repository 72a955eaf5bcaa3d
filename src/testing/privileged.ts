// Shared gate for tests that need root and system tools: a skip reason, or false.
import { execFileSync } from 'node:child_process';

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** `why` says what root is needed for; `tools` must all be on PATH. */
export function privilegedSkip(why: string, tools: readonly string[]): string | false {
  if (process.platform !== 'linux') return 'Linux only';
  if (process.getuid?.() !== 0) return `needs root (${why}); run the suite as root to include it`;
  const missing = tools.filter((t) => !hasCommand(t));
  return missing.length ? `needs ${missing.join(', ')}` : false;
}
