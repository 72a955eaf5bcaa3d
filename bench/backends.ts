// npm run bench:backends — not a test. The article's §5.1 claim in numbers:
// on one topology, in one run, iperf3 TCP and ping RTT over
//   underlay host->host, VXLAN pod->pod, host-gw pod->pod, UDP pod->pod,
// each over IPv4 and (except UDP, IPv4-only as in flannel) over IPv6.
//
// The underlay is dual-stack (192.0.2.0/24 and 2001:db8::/64). VXLAN and
// host-gw run with {"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56"}, UDP
// with the IPv4-only config. Pods keep one MTU for every backend and both
// families, 1430 (dual-stack VXLAN's: flannel-v6.1 is underlay − 70), so
// every row carries the same packet sizes. Switching configs may move a
// host's lease, so the pods are re-addressed from subnet.env per backend.
//
// BENCH_SECONDS (default 5), BENCH_BACKENDS (default vxlan,host-gw,udp),
// BENCH_IPV6=0 leaves out the IPv6 rows.
import { Topology, isRoot, type Host } from '../test/helpers/netns.js';
import type { FlanneldProc } from '../test/helpers/flanneld.js';
import { iperf3 } from './vxlan-handprogrammed.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'vxlan,host-gw,udp').split(',');
const IPV6 = process.env.BENCH_IPV6 !== '0';
const POD_MTU = 1430;
/** backends that carry IPv6 (flannel: vxlan, host-gw, wireguard; udp is IPv4-only) */
const DUAL_STACK = new Set(['vxlan', 'host-gw']);

interface Row {
  path: string;
  family: 4 | 6;
  gbps: number;
  rttMs: number | null;
  loss: string;
}

interface BenchPod {
  ns: string;
  ip: string;
  ip6: string | null;
}

async function pingStats(topo: Topology, from: string, to: string): Promise<{ rttMs: number | null; loss: string }> {
  const r = await topo.run(from, ['ping', ...(to.includes(':') ? ['-6'] : []), '-c', '50', '-i', '0.02', '-W', '1', '-q', to]);
  const loss = /(\d+(?:\.\d+)?)% packet loss/.exec(r.stdout)?.[1] ?? '?';
  const avg = /= [\d.]+\/([\d.]+)\//.exec(r.stdout)?.[1];
  return { rttMs: avg ? Number(avg) : null, loss: `${loss}%` };
}

/** One pod per host: namespace <host>p1, eth0 on the host's bridge cni0, MTU POD_MTU. */
async function makePod(topo: Topology, h: Host): Promise<string> {
  const ns = await topo.createNamespace(`h${h.index}p1`);
  await topo.ip(h.name, 'link', 'add', 'cni0', 'type', 'bridge');
  await topo.ip(h.name, 'link', 'set', 'cni0', 'mtu', String(POD_MTU), 'up');
  await topo.ip(h.name, 'link', 'add', 'veth1', 'mtu', String(POD_MTU), 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', String(POD_MTU), 'netns', ns);
  await topo.ip(h.name, 'link', 'set', 'veth1', 'master', 'cni0', 'up');
  await topo.ip(ns, 'link', 'set', 'eth0', 'up');
  return ns;
}

/** Address cni0 (gateway .1 / ::1) and the pod (.11 / ::11) from the subnet.env flanneld just wrote. */
async function addressPod(topo: Topology, h: Host, ns: string): Promise<BenchPod> {
  const env = topo.subnetEnv(h).raw;
  const v4 = /^(\d+\.\d+\.\d+\.)1\/(\d+)$/.exec(env.FLANNEL_SUBNET ?? '');
  if (!v4) throw new Error(`${h.name}: FLANNEL_SUBNET ${env.FLANNEL_SUBNET} is not <net>.1/<len>`);
  const v6 = /^(.+::)1\/(\d+)$/.exec(env.FLANNEL_IPV6_SUBNET ?? '');
  for (const [dev, where] of [['cni0', h.name], ['eth0', ns]] as const) await topo.ip(where, 'addr', 'flush', 'dev', dev, 'scope', 'global');
  await topo.ip(h.name, 'addr', 'add', `${v4[1]}1/${v4[2]}`, 'dev', 'cni0');
  await topo.ip(ns, 'addr', 'add', `${v4[1]}11/${v4[2]}`, 'dev', 'eth0');
  await topo.ip(ns, 'route', 'replace', 'default', 'via', `${v4[1]}1`, 'dev', 'eth0');
  if (v6) {
    await topo.ip(h.name, 'addr', 'add', `${v6[1]}1/${v6[2]}`, 'dev', 'cni0', 'nodad');
    await topo.ip(ns, 'addr', 'add', `${v6[1]}11/${v6[2]}`, 'dev', 'eth0', 'nodad');
    await topo.ip(ns, '-6', 'route', 'replace', 'default', 'via', `${v6[1]}1`, 'dev', 'eth0');
  }
  return { ns, ip: `${v4[1]}11`, ip6: v6 ? `${v6[1]}11` : null };
}

async function waitReachable(topo: Topology, from: string, to: string, what: string): Promise<void> {
  for (let i = 0; !(await topo.ping(from, to, { timeoutS: 1 })).ok; i++) if (i > 20) throw new Error(`${what}: no connectivity to ${to}`);
}

async function main(): Promise<void> {
  const topo = await Topology.create({ hosts: 2, podsPerHost: 0, ipv6: IPV6 });
  const rows: Row[] = [];
  let procs: FlanneldProc[] = [];
  try {
    await topo.startEtcd();
    const [h1, h2] = [topo.hosts[0]!, topo.hosts[1]!];
    rows.push({ path: 'underlay host->host', family: 4, gbps: await iperf3(topo, h1.name, h2.name, h2.ip, SECONDS), ...(await pingStats(topo, h1.name, h2.ip)) });
    if (IPV6) rows.push({ path: 'underlay host->host', family: 6, gbps: await iperf3(topo, h1.name, h2.name, h2.ip6!, SECONDS), ...(await pingStats(topo, h1.name, h2.ip6!)) });
    const podNs = [await makePod(topo, h1), await makePod(topo, h2)];
    for (const b of BACKENDS) {
      await Promise.all(procs.map((p) => p.stop()));
      const dual = IPV6 && DUAL_STACK.has(b);
      const conf = { Network: '10.244.0.0/16', ...(dual ? { EnableIPv6: true, IPv6Network: 'fd00:10:244::/56' } : {}), Backend: { Type: b } };
      await topo.etcdctl('put', '/coreos.com/network/config', JSON.stringify(conf));
      procs = topo.hosts.map((h) => topo.startFlanneld(h));
      await Promise.all(procs.map((p) => p.waitReady()));
      const [p1, p2] = [await addressPod(topo, h1, podNs[0]!), await addressPod(topo, h2, podNs[1]!)];
      await waitReachable(topo, p1.ns, p2.ip, b);
      rows.push({ path: `${b} pod->pod`, family: 4, gbps: await iperf3(topo, p1.ns, p2.ns, p2.ip, SECONDS), ...(await pingStats(topo, p1.ns, p2.ip)) });
      if (dual) {
        if (!p1.ip6 || !p2.ip6) throw new Error(`${b}: dual-stack config but no FLANNEL_IPV6_SUBNET`);
        await waitReachable(topo, p1.ns, p2.ip6, `${b} v6`);
        rows.push({ path: `${b} pod->pod`, family: 6, gbps: await iperf3(topo, p1.ns, p2.ns, p2.ip6, SECONDS), ...(await pingStats(topo, p1.ns, p2.ip6)) });
      }
    }
    await Promise.all(procs.map((p) => p.stop()));
  } finally {
    await topo.destroy();
  }
  const vx = rows.find((r) => r.path.startsWith('vxlan') && r.family === 4)?.gbps ?? NaN;
  console.log(`iperf3 TCP ${SECONDS} s per path; ping 50 x 20 ms; one run, one topology (2 hosts, veth underlay, dual-stack); pod MTU ${POD_MTU} for every row`);
  console.log(`${'path'.padEnd(22)}${'IP'.padStart(4)}${'Gbit/s'.padStart(9)}${'x VXLAN'.padStart(9)}${'v6/v4'.padStart(8)}${'RTT ms'.padStart(9)}${'loss'.padStart(7)}`);
  for (const r of rows) {
    const v4 = r.family === 6 ? rows.find((x) => x.path === r.path && x.family === 4) : undefined;
    const ratio = v4 ? (r.gbps / v4.gbps).toFixed(3) : '';
    console.log(
      `${r.path.padEnd(22)}${`v${r.family}`.padStart(4)}${r.gbps.toFixed(2).padStart(9)}${(r.gbps / vx).toFixed(3).padStart(9)}${ratio.padStart(8)}${(r.rttMs?.toFixed(3) ?? '?').padStart(9)}${r.loss.padStart(7)}`,
    );
  }
  const udp = rows.find((r) => r.path.startsWith('udp'));
  if (udp) console.log(`UDP / VXLAN = ${(udp.gbps / vx).toFixed(3)} (target >= 0.17; flannel's C proxy ~0.04 on this kind of machine)`);
  if (IPV6) console.log('UDP has no IPv6 row: the udp backend is IPv4-only, as in flannel.');
}

if (!isRoot()) {
  console.error('bench:backends needs root (network namespaces)');
  process.exit(1);
}
await main();
