// Synthetic remote peers for bench/control.ts, shared by the etcd driver (which
// writes them as leases) and the raw-batch script (which programs the same
// kernel entries directly). Peer i is fully determined by i:
//   subnet  10.(100 + i/256).(i%256).0/24       (inside Network 10.0.0.0/8)
//   public  198.18.(i/250).(i%250 + 1)          (benchmarking range; never contacted)
//   VtepMAC 0e:fb:<i as 4 bytes>                (locally administered unicast)
// Valid for 0 <= i < 39936.

export const PREFIX = '/coreos.com/network';
export const SUBNETS = `${PREFIX}/subnets/`;
export const NETWORK_CONFIG = '{"Network":"10.0.0.0/8","Backend":{"Type":"vxlan"}}';

export interface Peer {
  index: number;
  /** network address, '10.100.3.0' */
  base: string;
  /** '10.100.3.0/24', as a route dst prints */
  dst: string;
  key: string;
  publicIP: string;
  mac: string;
  /** flannel's lease JSON, byte for byte */
  value: string;
}

export function peer(i: number): Peer {
  if (!Number.isInteger(i) || i < 0 || i >= 39936) throw new Error(`peer index out of range: ${i}`);
  const base = `10.${100 + (i >> 8)}.${i & 255}.0`;
  const publicIP = `198.18.${Math.floor(i / 250)}.${(i % 250) + 1}`;
  const hex = (n: number) => (n & 255).toString(16).padStart(2, '0');
  const mac = `0e:fb:${hex(i >>> 24)}:${hex(i >>> 16)}:${hex(i >>> 8)}:${hex(i)}`;
  return {
    index: i,
    base,
    dst: `${base}/24`,
    key: `${SUBNETS}${base}-24`,
    publicIP,
    mac,
    value: `{"PublicIP":"${publicIP}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`,
  };
}

/** High-resolution wall clock in ms, comparable across processes on this machine. */
export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}
