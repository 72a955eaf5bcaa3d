// Invoking a delegate plugin the CNI way (libcni's invoke package): find the
// executable named after the config's `type` in CNI_PATH, run it with the
// caller's CNI_* environment (CNI_COMMAND replaced), the config on stdin, and
// read its result (or error JSON) from stdout.
//
// The delegate runs with spawnSync: the plugin is a one-shot process with
// nothing else to do meanwhile, and a synchronous child costs ~2 ms where
// spawn() with three stream pipes and event-loop turns costs ~6.5 ms (per
// delegate call, so twice per ADD+DEL; issue 11). node:child_process (which
// loads node:net) is imported only when a delegate actually runs, so VERSION
// does not pay for it.

import type { SpawnSyncReturns } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { CniError, ErrorCode } from './errors.js';
import { isObject } from './json.js';

export const DEFAULT_DELEGATE_TIMEOUT_MS = 60_000;

export type CniCommand = 'ADD' | 'DEL' | 'CHECK';

/** The directories of a CNI_PATH value (colon-separated; empty entries dropped). */
export function splitCniPath(cniPath: string | undefined): string[] {
  return (cniPath ?? '').split(':').filter((p) => p !== '');
}

/** The first regular, executable file `<dir>/<plugin>`; CniError(101) if there is none. */
export function findInPath(plugin: string, dirs: readonly string[]): string {
  if (plugin === '' || plugin.includes('/')) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid plugin name "${plugin}"`);
  }
  for (const dir of dirs) {
    const full = path.join(dir, plugin);
    try {
      if (!statSync(full).isFile()) continue;
      accessSync(full, constants.X_OK);
      return full;
    } catch {
      /* not here */
    }
  }
  throw new CniError(ErrorCode.DelegateNotFound, `failed to find plugin "${plugin}" in path [${dirs.join(' ')}]`, 'install the delegate plugin or fix CNI_PATH');
}

export interface ExecOptions {
  /** The environment to run the plugin with (CNI_COMMAND is overridden). */
  env: NodeJS.ProcessEnv;
  timeoutMs?: number | undefined;
  /** Receives the plugin's stderr (flannel lets it through to its own). */
  onStderr?: (chunk: string) => void;
}

interface Exited {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  spawnError: NodeJS.ErrnoException | null;
}

/** The most a delegate may print on stdout or stderr (a CNI result is a few kB). */
const MAX_OUTPUT = 16 << 20;

async function execRaw(file: string, stdin: string, env: NodeJS.ProcessEnv, timeoutMs: number, onStderr?: (s: string) => void): Promise<Exited> {
  const { spawnSync } = await import('node:child_process');
  const r: SpawnSyncReturns<string> = spawnSync(file, [], {
    env,
    input: stdin,
    stdio: ['pipe', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    maxBuffer: MAX_OUTPUT,
  });
  const stdout = r.stdout ?? '';
  const stderr = r.stderr ?? '';
  // The delegate's stderr goes through to ours (as flannel lets it), once it has exited.
  if (stderr) onStderr?.(stderr);
  const err = (r.error ?? null) as NodeJS.ErrnoException | null;
  // A plugin that exits without reading all of stdin gives EPIPE: not our error.
  const timedOut = err?.code === 'ETIMEDOUT';
  const spawnError = err && !timedOut && err.code !== 'EPIPE' ? err : null;
  return { code: r.status, signal: r.signal, stdout, stderr, timedOut, spawnError };
}

/** Maps a failed run to an error, passing a plugin's own CNI error JSON through unchanged. */
function pluginError(plugin: string, r: Exited, timeoutMs: number): CniError {
  if (r.spawnError) return new CniError(ErrorCode.DelegateFailed, `failed to execute delegate plugin ${plugin}`, r.spawnError.message);
  if (r.timedOut) return new CniError(ErrorCode.DelegateFailed, `delegate plugin ${plugin} timed out after ${timeoutMs} ms and was killed`, r.stderr.trim());
  const status = r.code !== null ? `exit status ${r.code}` : `signal ${r.signal}`;
  if (r.stdout.trim() === '') {
    if (r.stderr.trim() === '') return new CniError(ErrorCode.DelegateFailed, `netplugin failed with no error message: ${status}`);
    return new CniError(ErrorCode.DelegateFailed, `netplugin failed: ${JSON.stringify(r.stderr)}`, status);
  }
  let e: unknown;
  try {
    e = JSON.parse(r.stdout);
  } catch (err) {
    return new CniError(ErrorCode.DelegateFailed, `netplugin failed but error parsing its diagnostic message ${JSON.stringify(r.stdout)}`, (err as Error).message);
  }
  if (!isObject(e) || typeof e.code !== 'number' || typeof e.msg !== 'string') {
    return new CniError(ErrorCode.DelegateFailed, `netplugin failed with an unrecognised error result ${JSON.stringify(r.stdout)}`, status);
  }
  return new CniError(e.code, e.msg, typeof e.details === 'string' ? e.details : '');
}

/**
 * Runs plugin `file` for `command` with `config` on stdin and resolves with
 * its stdout. Rejects with a CniError: the plugin's own error (same code, msg,
 * details) when it printed one, else code 102.
 */
export async function execPlugin(file: string, command: CniCommand, config: string, opts: ExecOptions): Promise<string> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_DELEGATE_TIMEOUT_MS;
  const r = await execRaw(file, config, { ...opts.env, CNI_COMMAND: command }, timeoutMs, opts.onStderr);
  if (r.spawnError || r.timedOut || r.code !== 0) throw pluginError(path.basename(file), r, timeoutMs);
  return r.stdout;
}
