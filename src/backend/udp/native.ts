// Constants and struct layouts of the UDP backend's data path. The libc
// functions themselves are bound once for the whole project, in
// src/netlink/libc.ts (its raw-address calls are the ones used here).
//
// Every call on the data path is synchronous: a sync koffi call costs ~50 ns,
// an async one ~20 µs (it hops through a thread pool), which would cap the
// data path at a few tens of thousands of packets per second. The data path
// therefore runs in worker threads (see worker.ts) and only ever blocks in
// poll() with a bounded timeout, so a shared stop flag always ends it.
//
// Hot-path functions take raw addresses (numbers) rather than Buffers: the
// worker keeps all packet buffers and the iovec/msghdr arrays that point into
// them in malloc'd memory whose address never changes, viewed from JS through
// koffi.view(). Passing an integer is the cheapest argument koffi has, and the
// kernel structures can hold absolute pointers.
//
// Layouts are those of LP64 Linux (x86-64 and arm64 agree on all of them).

export { libc, nativeBlock, syscallError, SyscallError, type NativeBlock, type SysLibc } from '../../netlink/libc.js';

// ------------------------------------------------------------ constants

export const AF_INET = 2;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const IPPROTO_UDP = 17;

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
