// Opening the UDP socket (main thread, once per activation). The TUN device
// comes from the kernel port (HostPort.openTun, src/kernel/tun.ts). The
// descriptors are process-wide, so the data-path workers use them directly.

import * as N from './native.js';

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

function setBuf(lib: N.SysLibc, fd: number, force: number, plain: number, bytes: number): number {
  if (lib.setsockopt(fd, N.SOL_SOCKET, force, N.intBuf(bytes), 4) < 0) lib.setsockopt(fd, N.SOL_SOCKET, plain, N.intBuf(bytes), 4);
  const v = Buffer.alloc(4);
  const l = N.intBuf(4);
  lib.getsockopt(fd, N.SOL_SOCKET, plain, v, l);
  return v.readInt32LE(0);
}

export function openUdpSocket(lib: N.SysLibc, o: OpenUdpOptions): UdpSocket {
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
