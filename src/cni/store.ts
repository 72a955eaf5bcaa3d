// The rendered delegate config flannel saves per container, so DEL (and
// CHECK) run the delegate with exactly the config ADD used even if
// subnet.env or the network config changed since: <dataDir>/<containerID>,
// directory 0700, file 0600, written and fsync'd before the delegate runs.

import { closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { CniError, ErrorCode } from './errors.js';

export function scratchPath(dataDir: string, containerID: string): string {
  return path.join(dataDir, containerID);
}

export function saveScratchConf(dataDir: string, containerID: string, data: string): string {
  const file = scratchPath(dataDir, containerID);
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const fd = openSync(file, 'w', 0o600);
    try {
      fchmodSync(fd, 0o600); // regardless of umask or an older file's mode
      const buf = Buffer.from(data);
      for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw new CniError(ErrorCode.IOFailure, `failed to save delegate config ${file}`, (e as Error).message);
  }
  return file;
}

/** The saved config, or null when there is none (never added, or already deleted). */
export function readScratchConf(dataDir: string, containerID: string): string | null {
  const file = scratchPath(dataDir, containerID);
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CniError(ErrorCode.IOFailure, `failed to read delegate config ${file}`, (e as Error).message);
  }
}

/** Removes the saved config; a missing file is fine. */
export function removeScratchConf(dataDir: string, containerID: string): void {
  rmSync(scratchPath(dataDir, containerID), { force: true });
}
