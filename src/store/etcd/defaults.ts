// flannel's etcd defaults (spec §1.1) and key layout, in a module of their own
// so the flag parsers and the gateway adapter can use them without loading the
// etcd3 client (which costs about 200 ms and 30 MB at start-up).
import path from 'node:path';

export const DEFAULT_ETCD_ENDPOINTS = 'http://127.0.0.1:4001,http://127.0.0.1:2379';
export const DEFAULT_ETCD_PREFIX = '/coreos.com/network';

/** "/a//b/" → "/a/b": keys are path-joined so duplicate or trailing slashes in --etcd-prefix do not matter. */
export function joinKey(...parts: string[]): string {
  return path.posix.join('/', ...parts).replace(/\/+$/, '') || '/';
}
