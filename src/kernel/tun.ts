// TUN devices: open /dev/net/tun and TUNSETIFF, the one way flannel-ts makes
// a TUN. Like everything in src/kernel/ it acts on the network namespace of
// the calling process (the device appears there). Reached through
// HostPort.openTun so backends can be tested on a fake kernel.

import { libc, syscallError, SyscallError, type SysLibc } from '../netlink/libc.js';
import type { TunDevice, TunSpec } from './types.js';

const O_RDWR = 2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const EINVAL = 22;

// <linux/if_tun.h>
export const TUNSETIFF = 0x400454ca;
export const TUNSETOFFLOAD = 0x400454d0;
export const IFF_TUN = 0x0001;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
const IFNAMSIZ = 16;
const IFREQ_SIZE = 40;

function ifName(ifr: Buffer): string {
  const end = ifr.indexOf(0);
  return ifr.toString('utf8', 0, end < 0 || end > IFNAMSIZ ? IFNAMSIZ : end);
}

/**
 * Opens /dev/net/tun as a TUN device (IFF_TUN | IFF_NO_PI, raw IP packets,
 * as flannel) with a virtio-net header in front of every packet
 * (IFF_VNET_HDR), which is what lets the kernel hand us TSO super-packets
 * and accept coalesced writes. The fd is non-blocking and close-on-exec.
 * Rejects with SyscallError (errno kept: EBUSY = attached by another process).
 */
export function openTun(spec: TunSpec, lib: SysLibc = libc()): TunDevice {
  if (Buffer.byteLength(spec.name) >= IFNAMSIZ) throw new SyscallError('TUNSETIFF', EINVAL, `interface name "${spec.name}" is too long`);
  const fd = lib.open('/dev/net/tun', O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw syscallError(lib, 'open /dev/net/tun');
  try {
    const ifr = Buffer.alloc(IFREQ_SIZE);
    ifr.write(spec.name, 0, 'utf8');
    ifr.writeUInt16LE(IFF_TUN | IFF_NO_PI | IFF_VNET_HDR, IFNAMSIZ);
    if (lib.ioctlPtr(fd, TUNSETIFF, ifr) < 0) throw syscallError(lib, `TUNSETIFF ${spec.name}`);
    const name = ifName(ifr);
    let tso = false;
    if (spec.offload) tso = lib.ioctlInt(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4) === 0;
    let open = true;
    return {
      fd,
      name,
      tso,
      close: () => {
        if (!open) return;
        open = false;
        lib.close(fd);
      },
    };
  } catch (e) {
    lib.close(fd);
    throw e;
  }
}
