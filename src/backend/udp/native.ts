// libc bindings for the UDP backend's data path, bound with koffi.
//
// Every call here is synchronous: a sync koffi call costs ~50 ns, an async one
// ~20 µs (it hops through a thread pool), which would cap the data path at a
// few tens of thousands of packets per second. The data path therefore runs in
// worker threads (see worker.ts) and only ever blocks in poll() with a bounded
// timeout, so a shared stop flag always ends it.
//
// Hot-path functions take raw addresses (numbers) rather than Buffers: the
// worker keeps all packet buffers and the iovec/msghdr arrays that point into
// them in malloc'd memory whose address never changes, viewed from JS through
// koffi.view(). Passing an integer is the cheapest argument koffi has, and the
// kernel structures can hold absolute pointers.
//
// Layouts are those of LP64 Linux (x86-64 and arm64 agree on all of them).

import koffi from 'koffi';
import { FlannelError } from '../../errors.js';
import { errnoName } from '../../netlink/errors.js';

// ------------------------------------------------------------ constants

export const AF_INET = 2;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const IPPROTO_UDP = 17;

export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const F_GETFL = 3;
export const F_SETFL = 4;

export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const SOL_UDP = 17;
/** sendmsg cmsg / sockopt: segment size for UDP GSO (Linux 4.18+). */
export const UDP_SEGMENT = 103;
/** sockopt: deliver GRO-coalesced datagram trains, cmsg carries the segment size (Linux 5.0+). */
export const UDP_GRO = 104;

export const MSG_DONTWAIT = 0x40;
export const MSG_TRUNC = 0x20;

export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;

export const EINTR = 4;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EBUSY = 16;
export const EINVAL = 22;
export const EMSGSIZE = 90;
export const ENOBUFS = 105;
export const ECONNREFUSED = 111;
export const EHOSTUNREACH = 113;
export const ENETUNREACH = 101;
export const EIO = 5;

// <linux/if_tun.h>
export const TUNSETIFF = 0x400454ca;
export const TUNSETPERSIST = 0x400454cb;
export const TUNGETFEATURES = 0x800454cf;
export const TUNSETOFFLOAD = 0x400454d0;
export const TUNGETIFF = 0x800454d2;
export const TUNSETVNETHDRSZ = 0x400454d8;
export const IFF_TUN = 0x0001;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;
export const IFF_PERSIST = 0x0800;
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;

// <linux/virtio_net.h>
export const VNET_HDR_LEN = 10;
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

// struct layouts
export const IOVEC_SIZE = 16;
export const MSGHDR_SIZE = 56;
export const MMSGHDR_SIZE = 64;
export const MSG_NAME = 0;
export const MSG_NAMELEN = 8;
export const MSG_IOV = 16;
export const MSG_IOVLEN = 24;
export const MSG_CONTROL = 32;
export const MSG_CONTROLLEN = 40;
export const MSG_FLAGS = 48;
export const MMSG_LEN = 56;
export const SOCKADDR_IN_SIZE = 16;
export const CMSG_HDR = 16;
/** CMSG_SPACE(sizeof(int)) and CMSG_SPACE(sizeof(uint16_t)) on LP64. */
export const CMSG_SPACE_INT = 24;
export const IFREQ_SIZE = 40;

// ------------------------------------------------------------ bindings

export interface UdpLibc {
  // Hot path: raw addresses.
  read(fd: number, buf: number, len: number): number;
  readv(fd: number, iov: number, iovcnt: number): number;
  write(fd: number, buf: number, len: number): number;
  writev(fd: number, iov: number, iovcnt: number): number;
  sendmsg(fd: number, msg: number, flags: number): number;
  sendmmsg(fd: number, vec: number, vlen: number, flags: number): number;
  recvmmsg(fd: number, vec: number, vlen: number, flags: number, timeout: number): number;
  poll(fds: number, nfds: number, timeoutMs: number): number;
  memcpy(dst: number, src: number, n: number): number;
  // Setup: Buffers are fine.
  open(path: string, flags: number): number;
  ioctlPtr(fd: number, req: number, arg: Buffer): number;
  ioctlInt(fd: number, req: number, arg: number): number;
  fcntl(fd: number, cmd: number, arg: number): number;
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  getsockname(fd: number, addr: Buffer, len: Buffer): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: Buffer, len: Buffer): number;
  close(fd: number): number;
  malloc(n: number): number;
  free(p: number): void;
  strerror(errno: number): string;
  errno(): number;
}

let cached: UdpLibc | undefined;

/** Binds libc once per thread (each worker has its own koffi instance). */
export function udpLibc(): UdpLibc {
  if (cached) return cached;
  const lib = koffi.load('libc.so.6');
  const read = lib.func('read', 'long', ['int', 'intptr_t', 'size_t']);
  const readv = lib.func('readv', 'long', ['int', 'intptr_t', 'int']);
  const write = lib.func('write', 'long', ['int', 'intptr_t', 'size_t']);
  const writev = lib.func('writev', 'long', ['int', 'intptr_t', 'int']);
  const sendmsg = lib.func('sendmsg', 'long', ['int', 'intptr_t', 'int']);
  const sendmmsg = lib.func('sendmmsg', 'int', ['int', 'intptr_t', 'unsigned int', 'int']);
  const recvmmsg = lib.func('recvmmsg', 'int', ['int', 'intptr_t', 'unsigned int', 'int', 'intptr_t']);
  const poll = lib.func('poll', 'int', ['intptr_t', 'unsigned long', 'int']);
  const memcpy = lib.func('memcpy', 'intptr_t', ['intptr_t', 'intptr_t', 'size_t']);
  const open = lib.func('int open(const char *path, int flags, ...)');
  const ioctl = lib.func('int ioctl(int fd, unsigned long req, ...)');
  const fcntl = lib.func('int fcntl(int fd, int cmd, ...)');
  const socket = lib.func('int socket(int domain, int type, int protocol)');
  const bind = lib.func('int bind(int fd, void *addr, uint32_t addrlen)');
  const getsockname = lib.func('int getsockname(int fd, void *addr, void *addrlen)');
  const setsockopt = lib.func('int setsockopt(int fd, int level, int name, void *value, uint32_t len)');
  const getsockopt = lib.func('int getsockopt(int fd, int level, int name, void *value, void *len)');
  const close = lib.func('int close(int fd)');
  const malloc = lib.func('malloc', 'intptr_t', ['size_t']);
  const free = lib.func('free', 'void', ['intptr_t']);
  const strerror = lib.func('const char *strerror(int errnum)');
  cached = {
    read: (fd, b, l) => Number(read(fd, b, l)),
    readv: (fd, v, n) => Number(readv(fd, v, n)),
    write: (fd, b, l) => Number(write(fd, b, l)),
    writev: (fd, v, n) => Number(writev(fd, v, n)),
    sendmsg: (fd, m, f) => Number(sendmsg(fd, m, f)),
    sendmmsg: (fd, v, n, f) => sendmmsg(fd, v, n, f) as number,
    recvmmsg: (fd, v, n, f, t) => recvmmsg(fd, v, n, f, t) as number,
    poll: (fds, n, t) => poll(fds, n, t) as number,
    memcpy: (d, s, n) => Number(memcpy(d, s, n)),
    open: (p, f) => open(p, f, 'int', 0) as number,
    ioctlPtr: (fd, req, arg) => ioctl(fd, req, 'void *', arg) as number,
    ioctlInt: (fd, req, arg) => ioctl(fd, req, 'unsigned long', arg) as number,
    fcntl: (fd, cmd, arg) => fcntl(fd, cmd, 'int', arg) as number,
    socket: (d, t, p) => socket(d, t, p) as number,
    bind: (fd, a, l) => bind(fd, a, l) as number,
    getsockname: (fd, a, l) => getsockname(fd, a, l) as number,
    setsockopt: (fd, lv, n, v, l) => setsockopt(fd, lv, n, v, l) as number,
    getsockopt: (fd, lv, n, v, l) => getsockopt(fd, lv, n, v, l) as number,
    close: (fd) => close(fd) as number,
    malloc: (n) => Number(malloc(n)),
    free: (p) => void free(p),
    strerror: (e) => String(strerror(e)),
    errno: () => koffi.errno(),
  };
  return cached;
}

/** A malloc'd block that JS reads and writes in place; `addr` never moves. */
export interface NativeBlock {
  readonly addr: number;
  readonly size: number;
  readonly u8: Uint8Array;
  readonly dv: DataView;
}

export function nativeBlock(lib: UdpLibc, size: number): NativeBlock {
  const addr = lib.malloc(size);
  if (!addr) throw new Error(`malloc(${size}) failed`);
  const ab = koffi.view(addr, size);
  const u8 = new Uint8Array(ab);
  u8.fill(0);
  return { addr, size, u8, dv: new DataView(ab) };
}

/** A failed system call; `code` is the errno name ("EBUSY"). */
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

export function syscallError(lib: UdpLibc, op: string, errno = lib.errno()): SyscallError {
  let text = `errno ${errno}`;
  try {
    text = lib.strerror(errno);
  } catch {
    // keep the number
  }
  return new SyscallError(op, errno, text);
}

export function intBuf(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v, 0);
  return b;
}

/** struct sockaddr_in for ip (uint32, host order) and port. */
export function sockaddrIn(ip: number, port: number): Buffer {
  const b = Buffer.alloc(SOCKADDR_IN_SIZE);
  b.writeUInt16LE(AF_INET, 0);
  b.writeUInt16BE(port, 2);
  b.writeUInt32BE(ip >>> 0, 4);
  return b;
}
