// The few libc socket calls the netlink transport needs, bound with koffi.
// Calls are synchronous on purpose: each costs well under a microsecond,
// whereas koffi's async variants hop through a thread pool (~20 µs each),
// which matters when thousands of requests are batched. Nothing here blocks
// without a timeout: callers poll() with a bound before recv().
//
// Only the transport (socket.ts and the subscriber worker) imports this file;
// the codec modules never do, so they load and test without the addon.

import koffi from 'koffi';

export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, addrlen: number): number;
  getsockname(fd: number, addr: Buffer, addrlen: Buffer): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer | null, addrlen: number): number;
  recv(fd: number, buf: Buffer, len: number, flags: number): number;
  poll(fds: Buffer, nfds: number, timeoutMs: number): number;
  close(fd: number): number;
  /** errno of the last failed call on this thread. */
  errno(): number;
}

let cached: Libc | undefined;

export function libc(): Libc {
  if (cached) return cached;
  const lib = koffi.load('libc.so.6');
  // Buffers passed as `void *` are handed to C in place, so recv()/getsockname()
  // write straight into them.
  const socket = lib.func('int socket(int domain, int type, int protocol)');
  const bind = lib.func('int bind(int fd, void *addr, uint32_t addrlen)');
  const getsockname = lib.func('int getsockname(int fd, void *addr, void *addrlen)');
  const setsockopt = lib.func('int setsockopt(int fd, int level, int name, void *value, uint32_t len)');
  const sendto = lib.func('long sendto(int fd, void *buf, size_t len, int flags, void *addr, uint32_t addrlen)');
  const recv = lib.func('long recv(int fd, void *buf, size_t len, int flags)');
  const poll = lib.func('int poll(void *fds, unsigned long nfds, int timeout)');
  const close = lib.func('int close(int fd)');
  cached = {
    socket: (d, t, p) => socket(d, t, p) as number,
    bind: (fd, a, l) => bind(fd, a, l) as number,
    getsockname: (fd, a, l) => getsockname(fd, a, l) as number,
    setsockopt: (fd, lv, n, v, l) => setsockopt(fd, lv, n, v, l) as number,
    sendto: (fd, b, l, f, a, al) => Number(sendto(fd, b, l, f, a, al)),
    recv: (fd, b, l, f) => Number(recv(fd, b, l, f)),
    poll: (fds, n, t) => poll(fds, n, t) as number,
    close: (fd) => close(fd) as number,
    errno: () => koffi.errno(),
  };
  return cached;
}
