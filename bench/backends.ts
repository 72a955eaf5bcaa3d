// npm run bench:backends — not a test. The article's §5.1 claim in numbers:
// on one topology, in one run, iperf3 TCP and ping RTT over
//   underlay host->host, VXLAN pod->pod, host-gw pod->pod, UDP pod->pod.
// Pods are wired once (MTU 1450, VXLAN's), so every backend carries the same
// packet sizes.
import { Topology, isRoot } from '../test/helpers/netns.js';
import type { FlanneldProc } from '../test/helpers/flanneld.js';
import { iperf3 } from './vxlan-handprogrammed.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'vxlan,host-gw,udp').split(',');

interface Row {
  path: string;
  gbps: number;
  rttMs: number | null;
  loss: string;
}

async function pingStats(topo: Topology, from: string, to: string): Promise<{ rttMs: number | null; loss: string }> {
  const r = await topo.run(from, ['ping', '-c', '50', '-i', '0.02', '-W', '1', '-q', to]);
  const loss = /(\d+(?:\.\d+)?)% packet loss/.exec(r.stdout)?.[1] ?? '?';
  const avg = /= [\d.]+\/([\d.]+)\//.exec(r.stdout)?.[1];
  return { rttMs: avg ? Number(avg) : null, loss: `${loss}%` };
}

async function main(): Promise<void> {
  const topo = await Topology.create({ hosts: 2, podsPerHost: 1 });
  const rows: Row[] = [];
  let procs: FlanneldProc[] = [];
  try {
    await topo.startEtcd();
    const [h1, h2] = [topo.hosts[0]!, topo.hosts[1]!];
    const u = await pingStats(topo, h1.name, h2.ip);
    rows.push({ path: 'underlay host->host', gbps: await iperf3(topo, h1.name, h2.name, h2.ip, SECONDS), ...u });
    let wired = false;
    for (const b of BACKENDS) {
      await Promise.all(procs.map((p) => p.stop()));
      await topo.etcdctl('put', '/coreos.com/network/config', JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: b } }));
      procs = topo.hosts.map((h) => topo.startFlanneld(h));
      await Promise.all(procs.map((p) => p.waitReady()));
      if (!wired) {
        for (const h of topo.hosts) await topo.wirePods(h);
        wired = true;
      }
      const [p1, p2] = [h1.pods[0]!, h2.pods[0]!];
      for (let i = 0; !(await topo.ping(p1.name, p2.ip, { timeoutS: 1 })).ok; i++) if (i > 20) throw new Error(`${b}: no pod-to-pod connectivity`);
      const st = await pingStats(topo, p1.name, p2.ip);
      rows.push({ path: `${b} pod->pod`, gbps: await iperf3(topo, p1.name, p2.name, p2.ip, SECONDS), ...st });
    }
    await Promise.all(procs.map((p) => p.stop()));
  } finally {
    await topo.destroy();
  }
  const vx = rows.find((r) => r.path.startsWith('vxlan'))?.gbps ?? NaN;
  console.log(`iperf3 TCP ${SECONDS} s per path; ping 50 x 20 ms; one run, one topology (2 hosts, veth underlay)`);
  console.log(`${'path'.padEnd(22)}${'Gbit/s'.padStart(9)}${'x VXLAN'.padStart(9)}${'RTT ms'.padStart(9)}${'loss'.padStart(7)}`);
  for (const r of rows) {
    console.log(`${r.path.padEnd(22)}${r.gbps.toFixed(2).padStart(9)}${(r.gbps / vx).toFixed(3).padStart(9)}${(r.rttMs?.toFixed(3) ?? '?').padStart(9)}${r.loss.padStart(7)}`);
  }
  const udp = rows.find((r) => r.path.startsWith('udp'));
  if (udp) console.log(`UDP / VXLAN = ${(udp.gbps / vx).toFixed(3)} (target >= 0.17; flannel's C proxy ~0.04 on this kind of machine)`);
}

if (!isRoot()) {
  console.error('bench:backends needs root (network namespaces)');
  process.exit(1);
}
await main();
