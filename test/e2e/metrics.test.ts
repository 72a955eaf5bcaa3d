// flanneld's /metrics, scraped as Prometheus would, from a real cluster:
// the udp data path's packet, byte and drop counters, kernel round-trip
// latency, self-healing by trigger, the lease expiry and the event-loop block.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { isRoot, Topology, type Host } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
let topo: Topology;
const fl = new Map<Host, FlanneldProc>();
const PORT = 9819;

async function scrape(h: Host): Promise<string> {
  return topo.exec(h.name, [process.execPath, '-e', `fetch("http://127.0.0.1:${PORT}/metrics").then(r=>r.text()).then(t=>process.stdout.write(t))`]);
}
function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  assert.ok(line, `${series} in:\n${text}`);
  return Number(line.slice(series.length + 1));
}

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 2, podsPerHost: 1 });
  await topo.startEtcd();
  await topo.etcdctl('put', '/coreos.com/network/config', '{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}');
  for (const h of topo.hosts) fl.set(h, topo.startFlanneld(h, ['--iface=eth0', '--healthz-ip=127.0.0.1', `--healthz-port=${PORT}`]));
  await Promise.all([...fl.values()].map((f) => f.waitReady()));
  for (const h of topo.hosts) await topo.wirePods(h);
});

after(async () => {
  for (const f of fl.values()) await f.stop();
  await topo?.destroy();
});

test('udp data path counters, kernel latency, lease expiry and event-loop block are exported', { skip }, async () => {
  const [h1, h2] = topo.hosts as [Host, Host];
  const a = h1.pods[0]!;
  const b = h2.pods[0]!;
  for (let i = 0; i < 50 && !(await topo.ping(a.name, b.ip, { timeoutS: 1 })).ok; i++);
  assert.ok((await topo.ping(a.name, b.ip, { count: 5 })).ok);
  // a packet to a subnet nobody holds: dropped for no route, answered with ICMP net-unreachable
  await topo.ping(a.name, '10.244.250.9', { timeoutS: 1 });
  const m = await scrape(h1);
  assert.ok(value(m, 'flannel_udp_packets_total{direction="tun_to_udp"}') >= 5);
  assert.ok(value(m, 'flannel_udp_packets_total{direction="udp_to_tun"}') >= 5);
  assert.ok(value(m, 'flannel_udp_bytes_total{direction="tun_to_udp"}') >= 5 * 84);
  assert.ok(value(m, 'flannel_udp_drops_total{direction="tun_to_udp",reason="no_route"}') >= 1);
  assert.ok(value(m, 'flannel_udp_icmp_unreachable_sent_total') >= 1);
  assert.ok(value(m, 'flannel_kernel_request_seconds_count{kind="request",result="ok"}') >= 1);
  assert.match(m, /^flannel_kernel_request_seconds_bucket\{le="0.0005",kind="dump",result="ok"\} \d+$/m);
  const expiry = value(m, 'flannel_lease_expiry_timestamp_seconds');
  assert.ok(Math.abs(expiry - (Date.now() / 1000 + 24 * 3600)) < 600, `lease expiry ${expiry}`);
  assert.ok(value(m, 'flannel_event_loop_max_delay_seconds') >= 0);
  assert.equal(value(m, 'flannel_ready'), 1);
  assert.match(m, /^# TYPE flannel_udp_drops_total counter$/m);
});

test('self-healing is counted by trigger (vxlan)', { skip }, async () => {
  const t = await Topology.create({ hosts: 2, podsPerHost: 0 });
  const started: FlanneldProc[] = [];
  try {
    await t.startEtcd();
    await t.etcdctl('put', '/coreos.com/network/config', '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    for (const h of t.hosts) started.push(t.startFlanneld(h, ['--iface=eth0', '--healthz-ip=127.0.0.1', `--healthz-port=${PORT}`]));
    await Promise.all(started.map((f) => f.waitReady()));
    const h1 = t.hosts[0]!;
    const neigh = async () => (await t.ip(h1.name, 'neigh', 'show', 'dev', 'flannel.1')).trim();
    for (let i = 0; i < 100 && !(await neigh()); i++) await new Promise((r) => setTimeout(r, 50));
    const entry = (await neigh()).split('\n')[0]!.split(' ')[0]!;
    await t.ip(h1.name, 'neigh', 'del', entry, 'dev', 'flannel.1');
    for (let i = 0; i < 100 && !(await neigh()).includes(entry); i++) await new Promise((r) => setTimeout(r, 20));
    const m = await t.exec(h1.name, [process.execPath, '-e', `fetch("http://127.0.0.1:${PORT}/metrics").then(r=>r.text()).then(t=>process.stdout.write(t))`]);
    assert.ok(value(m, 'flannel_self_heals_total{trigger="neigh deleted"}') >= 1, m);
  } finally {
    for (const f of started) await f.stop();
    await t.destroy();
  }
});
