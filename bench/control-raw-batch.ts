// Runs inside a host namespace for bench/control.ts: the physical floor for
// programming N peers. Creates flannel.1 the way the VXLAN backend does
// (VNI 1, kernel default port, local = underlay IP, dev = the underlay
// interface, no learning), then sends the 3N entries flannel programs for N
// remote leases (permanent neighbour, `self permanent` FDB entry, onlink
// route) with ONE RtNetlink.applyBatch on an inline socket: no store, no
// watch, no diff. Prints JSON timings, then deletes the device.
//
//   node control-raw-batch.js <count> <underlay iface> <underlay IP> [first peer index]
import { RtNetlink } from '../src/kernel/rtnetlink.js';
import type { KernelOp } from '../src/kernel/types.js';
import { peer, wallNow } from './control-peers.js';

const [countText, iface, localIP, fromText] = process.argv.slice(2);
const count = Number(countText);
const from = Number(fromText ?? 0);
const k = RtNetlink.open({ rcvbuf: 32 << 20 });
const under = await k.getLinkByName(iface!);
if (!under) throw new Error(`no interface ${iface}`);
const old = await k.getLinkByName('flannel.1');
if (old) await k.deleteLink(old.index);
const dev = await k.createVxlan({ name: 'flannel.1', vni: 1, local: localIP!, linkIndex: under.index, learning: false, mtu: (under.mtu ?? 1500) - 50 });
await k.setLinkUp(dev.index);

const t0 = wallNow();
const ops: KernelOp[] = [];
for (let i = 0; i < count; i++) {
  const p = peer(from + i);
  ops.push(
    { op: 'replaceNeigh', neigh: { ifindex: dev.index, ip: p.base, mac: p.mac, permanent: true } },
    { op: 'replaceFdb', fdb: { ifindex: dev.index, mac: p.mac, dst: p.publicIP, self: true, permanent: true } },
    { op: 'replaceRoute', route: { dst: p.dst, gw: p.base, oif: dev.index, onlink: true } },
  );
}
const tBuilt = wallNow();
const r = await k.applyBatch(ops);
const t1 = wallNow();
const routes = (await k.listRoutes({ oif: dev.index })).filter((x) => x.dstLen === 24).length;
await k.deleteLink(dev.index);
k.close();
console.log(JSON.stringify({ entries: ops.length, failures: r.failures.length, firstFailure: r.failures[0]?.error.message, batchMs: r.durationMs, buildMs: tBuilt - t0, t0, t1, routes }));
