// The project's one libc binding, with koffi: every libc function flannel-ts
// calls is declared here, once (netlink worker, TUN device, UDP data path,
// sd_notify, ICMP probes, ethtool ioctls). Nothing else calls koffi.load.
//
// Calls are synchronous on purpose: each costs well under a microsecond,
// whereas koffi's async variants hop through a thread pool (~20 µs each),
// which matters when thousands of requests are batched or packets forwarded.
// Nothing here blocks without a timeout: callers poll() with a bound before
// recv(). The exceptions are the *Async netlink calls (sendto, recv, poll),
// which the main thread uses for the calls that may wait in the kernel
// (rtnl_lock, a dump's next part, a notification), so it never waits itself.
//
// Two calling conventions, both over the same symbols:
//  - Buffer arguments (`void *`): handed to C in place, so recv() or
//    getsockname() write straight into them. Setup and control paths use these.
//  - Raw addresses (`intptr_t`, the *At/raw-named functions and the hot-path
//    I/O calls): the UDP data path keeps its buffers in malloc'd memory whose
//    address never moves, and an integer is the cheapest argument koffi has.
//
// Module state is per thread: a worker_thread that imports this file binds
// libc in its own koffi instance on its first libc() call. koffi itself is
// loaded then too, not on import: a thread that only imports this file and
// never calls libc() (the alloc backend's daemon) pays neither its ~15 ms nor
// its ~1 MB. The vxlan, host-gw and udp daemons bind it on the main thread,
// where their netlink sockets are (AsyncTransport, NetlinkSubscriber).
//
// The codec modules never import this file, so they load and test without
// the addon. Layouts are those of LP64 Linux (x86-64 and arm64 agree).

import { createRequire } from 'node:module';
import type Koffi from 'koffi';
import { FlannelError } from '../errors.js';
import { errnoName } from './errors.js';

/** The socket calls of the netlink transport (tests script a fake of exactly this much). */
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
  /**
   * The same calls run on a libuv thread-pool thread (koffi's `.async`), for
   * the main thread's netlink I/O (socket.ts, AsyncTransport): the event loop
   * never waits in the kernel. They cannot report errno (it is the pool
   * thread's); callers learn it another way (see NetlinkSocket's async driver).
   * Absent in scripted fakes: the async driver then calls the sync ones.
   */
  sendtoAsync?(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer | null, addrlen: number): Promise<number>;
  recvAsync?(fd: number, buf: Buffer, len: number, flags: number): Promise<number>;
  pollAsync?(fds: Buffer, nfds: number, timeoutMs: number): Promise<number>;
}

/** Everything else: files and ioctls, and the data path's raw-address calls. */
export interface SysLibc extends Libc {
  // Hot path: raw addresses.
  read(fd: number, buf: number, len: number): number;
  readv(fd: number, iov: number, iovcnt: number): number;
  write(fd: number, buf: number, len: number): number;
  writev(fd: number, iov: number, iovcnt: number): number;
  sendmsg(fd: number, msg: number, flags: number): number;
  sendmmsg(fd: number, vec: number, vlen: number, flags: number): number;
  recvmmsg(fd: number, vec: number, vlen: number, flags: number, timeout: number): number;
  /** poll() on a pollfd array at a raw address. */
  pollAt(fds: number, nfds: number, timeoutMs: number): number;
  memcpy(dst: number, src: number, n: number): number;
  malloc(n: number): number;
  free(p: number): void;
  // Setup: Buffers are fine.
  open(path: string, flags: number): number;
  ioctlPtr(fd: number, req: number, arg: Buffer): number;
  ioctlInt(fd: number, req: number, arg: number): number;
  fcntl(fd: number, cmd: number, arg: number): number;
  /** eventfd(2): the netlink worker's wake-up counter (see thread.ts). */
  eventfd(initval: number, flags: number): number;
  getsockopt(fd: number, level: number, name: number, value: Buffer, len: Buffer): number;
  strerror(errno: number): string;
}

let koffiCached: typeof Koffi | undefined;

/** The koffi module, loaded on first use (see the header). */
export function koffi(): typeof Koffi {
  // not named `require`: the bundle's banner declares that name (scripts/build-bundle.mjs)
  return (koffiCached ??= createRequire(import.meta.url)('koffi') as typeof Koffi);
}

let cached: SysLibc | undefined;

/** Binds libc once per thread. */
export function libc(): SysLibc {
  if (cached) return cached;
  const k = koffi();
  const lib = k.load('libc.so.6');
  const socket = lib.func('int socket(int domain, int type, int protocol)');
  const bind = lib.func('int bind(int fd, void *addr, uint32_t addrlen)');
  const getsockname = lib.func('int getsockname(int fd, void *addr, void *addrlen)');
  const setsockopt = lib.func('int setsockopt(int fd, int level, int name, void *value, uint32_t len)');
  const getsockopt = lib.func('int getsockopt(int fd, int level, int name, void *value, void *len)');
  const sendto = lib.func('long sendto(int fd, void *buf, size_t len, int flags, void *addr, uint32_t addrlen)');
  const recv = lib.func('long recv(int fd, void *buf, size_t len, int flags)');
  const poll = lib.func('int poll(void *fds, unsigned long nfds, int timeout)');
  const pollAt = lib.func('poll', 'int', ['intptr_t', 'unsigned long', 'int']);
  const close = lib.func('int close(int fd)');
  const read = lib.func('read', 'long', ['int', 'intptr_t', 'size_t']);
  const readv = lib.func('readv', 'long', ['int', 'intptr_t', 'int']);
  const write = lib.func('write', 'long', ['int', 'intptr_t', 'size_t']);
  const writev = lib.func('writev', 'long', ['int', 'intptr_t', 'int']);
  const sendmsg = lib.func('sendmsg', 'long', ['int', 'intptr_t', 'int']);
  const sendmmsg = lib.func('sendmmsg', 'int', ['int', 'intptr_t', 'unsigned int', 'int']);
  const recvmmsg = lib.func('recvmmsg', 'int', ['int', 'intptr_t', 'unsigned int', 'int', 'intptr_t']);
  const memcpy = lib.func('memcpy', 'intptr_t', ['intptr_t', 'intptr_t', 'size_t']);
  const malloc = lib.func('malloc', 'intptr_t', ['size_t']);
  const free = lib.func('free', 'void', ['intptr_t']);
  const open = lib.func('int open(const char *path, int flags, ...)');
  const ioctl = lib.func('int ioctl(int fd, unsigned long req, ...)');
  const fcntl = lib.func('int fcntl(int fd, int cmd, ...)');
  const strerror = lib.func('const char *strerror(int errnum)');
  const eventfd = lib.func('int eventfd(unsigned int initval, int flags)');
  cached = {
    socket: (d, t, p) => socket(d, t, p) as number,
    bind: (fd, a, l) => bind(fd, a, l) as number,
    getsockname: (fd, a, l) => getsockname(fd, a, l) as number,
    setsockopt: (fd, lv, n, v, l) => setsockopt(fd, lv, n, v, l) as number,
    getsockopt: (fd, lv, n, v, l) => getsockopt(fd, lv, n, v, l) as number,
    sendto: (fd, b, l, f, a, al) => Number(sendto(fd, b, l, f, a, al)),
    recv: (fd, b, l, f) => Number(recv(fd, b, l, f)),
    poll: (fds, n, t) => poll(fds, n, t) as number,
    pollAt: (fds, n, t) => pollAt(fds, n, t) as number,
    close: (fd) => close(fd) as number,
    read: (fd, b, l) => Number(read(fd, b, l)),
    readv: (fd, v, n) => Number(readv(fd, v, n)),
    write: (fd, b, l) => Number(write(fd, b, l)),
    writev: (fd, v, n) => Number(writev(fd, v, n)),
    sendmsg: (fd, m, f) => Number(sendmsg(fd, m, f)),
    sendmmsg: (fd, v, n, f) => sendmmsg(fd, v, n, f) as number,
    recvmmsg: (fd, v, n, f, t) => recvmmsg(fd, v, n, f, t) as number,
    memcpy: (d, s, n) => Number(memcpy(d, s, n)),
    malloc: (n) => Number(malloc(n)),
    free: (p) => void free(p),
    open: (p, f) => open(p, f, 'int', 0) as number,
    ioctlPtr: (fd, req, arg) => ioctl(fd, req, 'void *', arg) as number,
    ioctlInt: (fd, req, arg) => ioctl(fd, req, 'unsigned long', arg) as number,
    fcntl: (fd, cmd, arg) => fcntl(fd, cmd, 'int', arg) as number,
    strerror: (e) => String(strerror(e)),
    eventfd: (v, f) => eventfd(v, f) as number,
    errno: () => k.errno(),
    sendtoAsync: (fd, b, l, f, a, al) => viaPool<bigint | number>((cb) => sendto.async(fd, b, l, f, a, al, cb)).then(Number),
    recvAsync: (fd, b, l, f) => viaPool<bigint | number>((cb) => recv.async(fd, b, l, f, cb)).then(Number),
    pollAsync: (fds, n, t) => viaPool<number>((cb) => poll.async(fds, n, t, cb)),
  };
  return cached;
}

let trim: ((pad: number) => number) | null | undefined;

/**
 * glibc's malloc_trim(0): gives the free pages of every malloc arena back to
 * the kernel (free() alone keeps them unless they are at the top of the
 * heap). false when the C library has no such call (musl), or with
 * onlyIfLoaded when koffi has not been loaded on this thread (then it is not
 * loaded for this). Bound on first use.
 */
export function mallocTrim(o: { onlyIfLoaded?: boolean } = {}): boolean {
  if (o.onlyIfLoaded && koffiCached === undefined) return false;
  if (trim === undefined) {
    try {
      const f = koffi().load('libc.so.6').func('int malloc_trim(size_t pad)');
      trim = (pad) => f(pad) as number;
    } catch {
      trim = null;
    }
  }
  if (!trim) return false;
  trim(0);
  return true;
}

/** A koffi `.async` call as a promise (it runs on a libuv thread-pool thread). */
function viaPool<T>(start: (cb: (err: unknown, res: unknown) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => start((err, res) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(res as T))));
}

/** The address of a Buffer's bytes, for structures that hold pointers (e.g. ifreq.ifr_data). */
export function addressOf(b: Buffer): bigint {
  return BigInt(koffi().address(b) as unknown as number | bigint);
}

/** A malloc'd block that JS reads and writes in place; `addr` never moves. */
export interface NativeBlock {
  readonly addr: number;
  readonly size: number;
  readonly u8: Uint8Array;
  readonly dv: DataView;
}

export function nativeBlock(lib: SysLibc, size: number): NativeBlock {
  const addr = lib.malloc(size);
  if (!addr) throw new Error(`malloc(${size}) failed`);
  const ab = koffi().view(addr, size);
  const u8 = new Uint8Array(ab);
  u8.fill(0);
  return { addr, size, u8, dv: new DataView(ab) };
}

/** A failed system call: which one, and errno; `code` is the errno name ("EBUSY"). */
export class SyscallError extends FlannelError {
  override name = 'SyscallError';
  constructor(
    readonly op: string,
    readonly errno: number,
    detail: string,
  ) {
    super(`${op}: ${detail} (errno ${errno})`, { code: errnoName(errno) });
  }
}

export function syscallError(lib: SysLibc, op: string, errno = lib.errno()): SyscallError {
  let text = `errno ${errno}`;
  try {
    text = lib.strerror(errno);
  } catch {
    // keep the number
  }
  return new SyscallError(op, errno, text);
}
