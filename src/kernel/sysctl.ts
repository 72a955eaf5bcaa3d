// Sysctls, read and written through /proc/sys. The net.* ones are per
// network namespace: the kernel resolves /proc/sys/net against the network
// namespace of the task that opens the file, i.e. this process's (which is
// why this is not /sys: sysfs follows the mount namespace instead).
// Reached through HostPort.getSysctl/setSysctl so callers are fakeable;
// flannelctl's read-only checks call readSysctl directly.

import { readFileSync, writeFileSync } from 'node:fs';

/**
 * `key` is the path under /proc/sys with slashes ('net/ipv4/ip_forward',
 * 'net/ipv4/conf/flannel.1/rp_filter': device names keep their dots).
 */
export function sysctlPath(key: string): string {
  const parts = key.split('/');
  if (key === '' || parts.some((p) => p === '' || p === '.' || p === '..') || key.includes('\0')) {
    throw new Error(`bad sysctl key "${key}"`);
  }
  return `/proc/sys/${key}`;
}

/** The value (trimmed), or null when the sysctl does not exist or cannot be read. */
export function readSysctl(key: string): string | null {
  const p = sysctlPath(key);
  try {
    return readFileSync(p, 'utf8').trim();
  } catch {
    return null;
  }
}

/** Throws the fs error (ENOENT: no such sysctl, e.g. no such device; EACCES/EROFS: not allowed). */
export function writeSysctl(key: string, value: string): void {
  writeFileSync(sysctlPath(key), value);
}
