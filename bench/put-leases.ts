// Run inside the underlay namespace by bench/vxlan.ts: writes N synthetic
// vxlan leases (flannel's exact JSON) concurrently and prints timings as JSON.
// Synthetic public IPs come from 198.18.0.0/15 (benchmarking range); no
// packet is ever sent to them, only kernel entries are programmed.
import { Etcd3 } from 'etcd3';
import { randomBytes } from 'node:crypto';

const [endpoint, prefix, countText] = process.argv.slice(2);
const count = Number(countText);
const client = new Etcd3({ hosts: endpoint! });
const mac = () => {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
};
const t0 = Date.now();
const puts = [];
for (let i = 0; i < count; i++) {
  const subnet = `10.${100 + (i >> 8)}.${i & 255}.0`;
  const ip = `198.18.${i >> 8}.${(i & 255) || 254}`;
  const v = `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac()}"}}`;
  puts.push(client.put(`${prefix}/subnets/${subnet}-24`).value(v).exec());
}
await Promise.all(puts);
console.log(JSON.stringify({ startMs: t0, endMs: Date.now() }));
client.close();
