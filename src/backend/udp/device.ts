// Opening the TUN device and the UDP socket (main thread, once per
// activation). The descriptors are process-wide, so the data-path workers
// use them directly.

import * as N from './native.js';

export interface TunDevice {
  readonly fd: number;
  /** the name the kernel gave it (flannel0 normally) */
  readonly name: string;
  /** TUNSETOFFLOAD(CSUM|TSO4) succeeded: reads may return TSO super-packets with partial checksums */
  readonly tso: boolean;
}

export interface OpenTunOptions {
  /** name or template (`flannel%d`) */
  name: string;
  /** ask the kernel for TSO super-packets and checksum offload */
  offload: boolean;
}

function ifName(ifr: Buffer): string {
  const end = ifr.indexOf(0);
  return ifr.toString('utf8', 0, end < 0 || end > 16 ? 16 : end);
}

/**
 * Opens /dev/net/tun as a TUN device (IFF_TUN | IFF_NO_PI, raw IP packets,
 * as flannel) with a virtio-net header in front of every packet
 * (IFF_VNET_HDR), which is what lets the kernel hand us TSO super-packets
 * and accept coalesced writes. The fd is non-blocking and close-on-exec.
 */
export function openTun(lib: N.UdpLibc, o: OpenTunOptions): TunDevice {
  if (Buffer.byteLength(o.name) > 15) throw new N.SyscallError('TUNSETIFF', N.EINVAL, `interface name "${o.name}" is too long`);
  const fd = lib.open('/dev/net/tun', N.O_RDWR | N.O_NONBLOCK | N.O_CLOEXEC);
  if (fd < 0) throw N.syscallError(lib, 'open /dev/net/tun');
  try {
    const ifr = Buffer.alloc(N.IFREQ_SIZE);
    ifr.write(o.name, 0, 'utf8');
    ifr.writeUInt16LE(N.IFF_TUN | N.IFF_NO_PI | N.IFF_VNET_HDR, 16);
    if (lib.ioctlPtr(fd, N.TUNSETIFF, ifr) < 0) throw N.syscallError(lib, `TUNSETIFF ${o.name}`);
    const name = ifName(ifr);
    let tso = false;
    if (o.offload) tso = lib.ioctlInt(fd, N.TUNSETOFFLOAD, N.TUN_F_CSUM | N.TUN_F_TSO4) === 0;
    return { fd, name, tso };
  } catch (e) {
    lib.close(fd);
    throw e;
  }
}

export interface UdpSocket {
  readonly fd: number;
  /** UDP_SEGMENT (send-side GSO) is available */
  readonly gso: boolean;
  /** UDP_GRO is enabled: a receive may return a train of equal-size datagrams */
  readonly gro: boolean;
  readonly rcvbuf: number;
  readonly sndbuf: number;
}

export interface OpenUdpOptions {
  /** local IPv4 (uint32); flannel binds the external interface's address */
  addr: number;
  port: number;
  offload: boolean;
  /** requested SO_RCVBUF / SO_SNDBUF bytes */
  bufBytes: number;
}

function setBuf(lib: N.UdpLibc, fd: number, force: number, plain: number, bytes: number): number {
  if (lib.setsockopt(fd, N.SOL_SOCKET, force, N.intBuf(bytes), 4) < 0) lib.setsockopt(fd, N.SOL_SOCKET, plain, N.intBuf(bytes), 4);
  const v = Buffer.alloc(4);
  const l = N.intBuf(4);
  lib.getsockopt(fd, N.SOL_SOCKET, plain, v, l);
  return v.readInt32LE(0);
}

export function openUdpSocket(lib: N.UdpLibc, o: OpenUdpOptions): UdpSocket {
  const fd = lib.socket(N.AF_INET, N.SOCK_DGRAM | N.SOCK_NONBLOCK | N.SOCK_CLOEXEC, 0);
  if (fd < 0) throw N.syscallError(lib, 'socket(AF_INET, SOCK_DGRAM)');
  try {
    const rcvbuf = setBuf(lib, fd, N.SO_RCVBUFFORCE, N.SO_RCVBUF, o.bufBytes);
    const sndbuf = setBuf(lib, fd, N.SO_SNDBUFFORCE, N.SO_SNDBUF, o.bufBytes);
    if (lib.bind(fd, N.sockaddrIn(o.addr, o.port), N.SOCKADDR_IN_SIZE) < 0) {
      const a = o.addr;
      throw N.syscallError(lib, `bind UDP ${(a >>> 24) & 255}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}:${o.port}`);
    }
    let gso = false;
    let gro = false;
    if (o.offload) {
      const v = Buffer.alloc(4);
      gso = lib.getsockopt(fd, N.SOL_UDP, N.UDP_SEGMENT, v, N.intBuf(4)) === 0;
      gro = lib.setsockopt(fd, N.SOL_UDP, N.UDP_GRO, N.intBuf(1), 4) === 0;
    }
    return { fd, gso, gro, rcvbuf, sndbuf };
  } catch (e) {
    lib.close(fd);
    throw e;
  }
}
