// Reads one offload feature of a device the way `ethtool -k` does, through
// the SIOCETHTOOL ioctl (ETHTOOL_GSSET_INFO, ETHTOOL_GSTRINGS,
// ETHTOOL_GFEATURES): get requests only, nothing is changed. Used by
// diagnose for tx-checksum-ip-generic on the VTEP (flannel #1279), so the
// check works on hosts without the ethtool binary.

import os from 'node:os';
import { addressOf, libc } from '../netlink/libc.js';

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SIOCETHTOOL = 0x8946;
const ETHTOOL_GSTRINGS = 0x1b;
const ETHTOOL_GSSET_INFO = 0x37;
const ETHTOOL_GFEATURES = 0x3a;
const ETH_SS_FEATURES = 4;
const ETH_GSTRING_LEN = 32;
const IFNAMSIZ = 16;

/** 'on' / 'off' for one feature, e.g. 'tx-checksum-ip-generic'; throws with a reason when it cannot be read. */
export function readFeature(dev: string, feature: string): 'on' | 'off' {
  if (os.endianness() !== 'LE') throw new Error('ethtool ioctl decoding assumes a little-endian host');
  if (Buffer.byteLength(dev) >= IFNAMSIZ) throw new Error(`bad device name ${dev}`);
  const c = libc();
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`socket: errno ${c.errno()}`);
  try {
    const call = (data: Buffer, what: string) => {
      // struct ifreq: the name, then a pointer to the ethtool command in the union
      const ifr = Buffer.alloc(40);
      ifr.write(dev, 0, IFNAMSIZ - 1, 'latin1');
      ifr.writeBigUInt64LE(addressOf(data), IFNAMSIZ);
      if (c.ioctlPtr(fd, SIOCETHTOOL, ifr) < 0) {
        const e = c.errno();
        throw new Error(`SIOCETHTOOL ${what} on ${dev}: ${e === 19 ? 'no such device' : e === 95 ? 'not supported' : `errno ${e}`}`);
      }
    };
    // how many feature names there are
    const sset = Buffer.alloc(24);
    sset.writeUInt32LE(ETHTOOL_GSSET_INFO, 0);
    sset.writeBigUInt64LE(1n << BigInt(ETH_SS_FEATURES), 8);
    call(sset, 'GSSET_INFO');
    const n = sset.readUInt32LE(16);
    // their names
    const strings = Buffer.alloc(12 + n * ETH_GSTRING_LEN);
    strings.writeUInt32LE(ETHTOOL_GSTRINGS, 0);
    strings.writeUInt32LE(ETH_SS_FEATURES, 4);
    strings.writeUInt32LE(n, 8);
    call(strings, 'GSTRINGS');
    let index = -1;
    for (let i = 0; i < n; i++) {
      const name = strings.toString('latin1', 12 + i * ETH_GSTRING_LEN, 12 + (i + 1) * ETH_GSTRING_LEN).replace(/\0.*$/s, '');
      if (name === feature) index = i;
    }
    if (index < 0) throw new Error(`${dev} has no feature ${feature}`);
    // and their state: blocks of {available, requested, active, never_changed}
    const blocks = Math.ceil(n / 32);
    const feats = Buffer.alloc(8 + blocks * 16);
    feats.writeUInt32LE(ETHTOOL_GFEATURES, 0);
    feats.writeUInt32LE(blocks, 4);
    call(feats, 'GFEATURES');
    const active = feats.readUInt32LE(8 + Math.floor(index / 32) * 16 + 8);
    return (active >>> index % 32) & 1 ? 'on' : 'off';
  } finally {
    c.close(fd);
  }
}
