// Kubernetes mode end to end: a real kube-apiserver (with its own etcd) in the
// underlay namespace, three hosts running `flanneld --kube-subnet-mgr` with a
// ServiceAccount token bound to the manifest's ClusterRole (so RBAC is
// exercised, not bypassed), Node objects with podCIDRs, and pods attached
// through the flannel CNI plugin (real bridge + host-local).
//
// Asserts: subnet.env from the podCIDR; flannel's exact annotations and the
// NetworkUnavailable condition on every Node; the full pod mesh; the kernel
// entries per peer; node deleted/added -> kernel follows (timed); apiserver
// restarted under the daemons -> they re-watch and converge with no pod ping
// lost; bad annotations never reach the kernel; no "forbidden" in any log.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { cniInvoke, findPlugin } from '../../src/lab/lab.js';
import { prepareFlannelAccess } from '../../src/lab/kube.js';
import { isRoot, Topology, UNDERLAY_GW, type Host } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';
import { kubeApiserverBinary, kubeSkipReason, startKube, type KubeHarness } from '../helpers/kube.js';

const bin = isRoot() ? await kubeApiserverBinary() : null;
const skip = !isRoot() ? 'needs root (network namespaces)' : kubeSkipReason(bin);
const PREFIX = 'flannel.alpha.coreos.com/';

let topo: Topology;
let kube: KubeHarness;
const flanneld = new Map<Host, FlanneldProc>();
const timings: Record<string, number> = {};
let flanneldArgs: string[] = [];
/** log lines each daemon had written when the apiserver was restarted */
const linesBeforeRestart = new Map<Host, number>();

const podCidr = (h: Host) => `10.244.${h.index}.0/24`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await cond()) return Math.round(performance.now() - t0);
    if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(10);
  }
}

async function routes(h: Host): Promise<string> {
  return topo.ip(h.name, 'route', 'show', 'dev', 'flannel.1');
}

async function annotations(name: string): Promise<Record<string, string>> {
  const n = await kube.api.getNode(name);
  return (n?.metadata?.annotations ?? {}) as Record<string, string>;
}

function flannelAnnotations(a: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(a).filter(([k]) => k.startsWith(PREFIX)));
}

async function vtepMac(h: Host): Promise<string> {
  const out = await topo.ip(h.name, '-j', 'link', 'show', 'flannel.1');
  return (JSON.parse(out) as Array<{ address: string }>)[0]!.address;
}

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 3, podsPerHost: 2 });
  kube = await startKube({ ns: topo.underlay, bindIP: UNDERLAY_GW });
  // The manifest's own RBAC objects (the daemons get exactly upstream's verbs), its token and its net-conf.
  const access = await prepareFlannelAccess(kube.api, topo.tmpDir);
  // h1: a Node with no annotations at all (flannel panics on it: #969)
  for (const h of topo.hosts) {
    await kube.api.createNode(h.name, { podCIDR: podCidr(h), ...(h.index === 1 ? {} : { labels: { 'kubernetes.io/os': 'linux' }, annotations: { 'node.alpha.kubernetes.io/ttl': '0' } }) });
  }
  flanneldArgs = [...access, '--iface=eth0', '--ip-masq'];
  for (const h of topo.hosts) flanneld.set(h, topo.startFlanneld(h, flanneldArgs, { env: { NODE_NAME: h.name } }));
  await Promise.all([...flanneld.values()].map((f) => f.waitReady(30_000)));
  // pods through the flannel CNI plugin, as the kubelet would call it
  const cniDir = findPlugin('bridge');
  assert.ok(cniDir, 'CNI bridge plugin installed');
  for (const h of topo.hosts) {
    for (let j = 1; j <= 2; j++) {
      const pod = await topo.createNamespace(`h${h.index}p${j}`);
      const res = await cniInvoke({ name: h.name, dir: path.dirname(topo.subnetFile(h)) }, 'ADD', pod, cniDir);
      const ip = /"address":\s*"([\d.]+)\//.exec(res)?.[1];
      assert.ok(ip, `pod ${pod} got an address: ${res}`);
      h.pods.push({ name: pod, ip, host: h });
    }
  }
});

after(async () => {
  if (Object.keys(timings).length > 0) process.stderr.write(`kube e2e timings (ms): ${JSON.stringify(timings)}\n`);
  for (const f of flanneld.values()) await f.stop();
  await kube?.stop();
  await topo?.destroy();
});

test('subnet.env comes from the podCIDR; every Node carries flannel\'s exact annotations and the condition', { skip }, async () => {
  for (const h of topo.hosts) {
    const env = topo.subnetEnv(h);
    assert.equal(env.FLANNEL_NETWORK, '10.244.0.0/16');
    assert.equal(env.FLANNEL_SUBNET, `10.244.${h.index}.1/24`);
    assert.equal(env.FLANNEL_MTU, 1450);
    assert.equal(env.FLANNEL_IPMASQ, true);
    const a = await annotations(h.name);
    assert.deepEqual(flannelAnnotations(a), {
      [`${PREFIX}backend-data`]: `{"VNI":1,"VtepMAC":"${await vtepMac(h)}"}`,
      [`${PREFIX}backend-type`]: 'vxlan',
      [`${PREFIX}kube-subnet-manager`]: 'true',
      [`${PREFIX}public-ip`]: h.ip,
    });
    if (h.index !== 1) assert.equal(a['node.alpha.kubernetes.io/ttl'], '0', 'other annotations are kept');
    const node = await kube.api.getNode(h.name);
    const cond = node?.status?.conditions?.find((c) => c.type === 'NetworkUnavailable');
    assert.ok(cond, `${h.name} has the NetworkUnavailable condition`);
    assert.equal(cond.status, 'False');
    assert.equal(cond.reason, 'FlannelIsUp');
    assert.equal(cond.message, 'Flannel is running on this node');
  }
});

test('every pod reaches every other pod (pods attached with the CNI plugin)', { skip }, async () => {
  await waitUntil('mesh', async () => (await topo.pingMesh({ timeoutS: 1 })).every((r) => r.ok), 10_000);
  const mesh = await topo.pingMesh();
  assert.deepEqual(mesh.filter((r) => !r.ok).map((r) => `${r.from.name}->${r.to.name}`), []);
  assert.equal(mesh.length, 6 * 5);
});

test('each host has a permanent neighbour, FDB entry and onlink route per peer, from the annotations', { skip }, async () => {
  for (const h of topo.hosts) {
    const neigh = await topo.ip(h.name, 'neigh', 'show', 'dev', 'flannel.1');
    const fdb = await topo.exec(h.name, ['bridge', 'fdb', 'show', 'dev', 'flannel.1']);
    const rt = await routes(h);
    for (const p of topo.hosts.filter((x) => x !== h)) {
      const mac = await vtepMac(p);
      assert.match(neigh, new RegExp(`^10\\.244\\.${p.index}\\.0 lladdr ${mac} PERMANENT\\s*$`, 'm'));
      assert.match(fdb, new RegExp(`^${mac} dst ${p.ip.replace(/\./g, '\\.')} self permanent$`, 'm'));
      assert.match(rt, new RegExp(`^10\\.244\\.${p.index}\\.0/24 via 10\\.244\\.${p.index}\\.0 proto 222 onlink $`, 'm'));
    }
  }
});

test('a Node deleted is removed from the other kernels; added again, it is programmed again', { skip }, async () => {
  const [h1, h2, h3] = topo.hosts as [Host, Host, Host];
  const has3 = async (h: Host) => (await routes(h)).includes('10.244.3.0/24');
  assert.ok((await has3(h1)) && (await has3(h2)));
  const t0 = performance.now();
  await kube.api.deleteNode(h3.name);
  await waitUntil('h3 removed', async () => !(await has3(h1)) && !(await has3(h2)), 10_000);
  timings.nodeDeletedToRemoved = Math.round(performance.now() - t0);
  const neigh = await topo.ip(h1.name, 'neigh', 'show', 'dev', 'flannel.1');
  assert.doesNotMatch(neigh, /^10\.244\.3\.0 /m);
  // The Node comes back bare (as a re-registering kubelet would make it): h3's
  // flanneld puts its annotations back, and the peers program it again.
  const t1 = performance.now();
  await kube.api.createNode(h3.name, { podCIDR: podCidr(h3) });
  await waitUntil('h3 programmed again', async () => (await has3(h1)) && (await has3(h2)), 15_000);
  timings.nodeRecreatedToProgrammed = Math.round(performance.now() - t1);
  assert.equal(flannelAnnotations(await annotations(h3.name))[`${PREFIX}public-ip`], h3.ip);
  // A brand-new annotated Node (any flannel, real or ours, writes these): programmed on every host.
  const t2 = performance.now();
  await kube.api.createNode('peer-x', {
    podCIDR: '10.244.99.0/24',
    annotations: { [`${PREFIX}kube-subnet-manager`]: 'true', [`${PREFIX}backend-type`]: 'vxlan', [`${PREFIX}backend-data`]: '{"VNI":1,"VtepMAC":"0a:11:22:33:44:55"}', [`${PREFIX}public-ip`]: '192.0.2.99' },
  });
  await waitUntil('peer-x programmed', async () => (await Promise.all(topo.hosts.map(async (h) => (await routes(h)).includes('10.244.99.0/24')))).every(Boolean), 10_000);
  timings.nodeAddedToProgrammed = Math.round(performance.now() - t2);
  const fdb = await topo.exec(h2.name, ['bridge', 'fdb', 'show', 'dev', 'flannel.1']);
  assert.match(fdb, /^0a:11:22:33:44:55 dst 192\.0\.2\.99 self permanent$/m);
  await kube.api.deleteNode('peer-x');
  await waitUntil('peer-x removed', async () => !(await routes(h1)).includes('10.244.99.0/24'), 10_000);
  await waitUntil('mesh after re-add', async () => (await topo.pingMesh({ timeoutS: 1 })).every((r) => r.ok), 10_000);
});

test('bad annotations on a Node are skipped with one line and never reach the kernel', { skip }, async () => {
  const [h1] = topo.hosts as [Host];
  await kube.api.createNode('evil', {
    podCIDR: '10.244.66.0/24',
    annotations: { [`${PREFIX}kube-subnet-manager`]: 'true', [`${PREFIX}backend-type`]: 'vxlan', [`${PREFIX}backend-data`]: '{not json', [`${PREFIX}public-ip`]: '192.0.2.66' },
  });
  const f = flanneld.get(h1)!;
  await f.waitFor((l) => /ignoring node evil: annotation flannel\.alpha\.coreos\.com\/backend-data: .* is not valid JSON/.test(l.msg), 10_000, 'evil warning');
  await sleep(300);
  assert.doesNotMatch(await routes(h1), /10\.244\.66\./);
  await kube.api.deleteNode('evil');
  for (const p of flanneld.values()) assert.equal(p.proc.exitCode, null, 'every flanneld still running');
});

test('apiserver restarted under the daemons: they re-watch and converge, and no pod ping is lost', { skip }, async () => {
  const [h1, h2] = topo.hosts as [Host, Host];
  const from = h1.pods[0]!;
  const to = h2.pods[0]!;
  // ~8 s of pings at 50 ms intervals across the restart
  const ping = topo.run(from.name, ['ping', '-n', '-q', '-i', '0.05', '-c', '160', '-W', '1', to.ip], { timeoutMs: 30_000 });
  await sleep(500);
  for (const [h, f] of flanneld) linesBeforeRestart.set(h, f.raw.length);
  const t0 = performance.now();
  await kube.api.restartApiserver();
  timings.apiserverRestart = Math.round(performance.now() - t0);
  // Converged = a change made after the restart reaches every kernel.
  const t1 = performance.now();
  await kube.api.createNode('after-restart', {
    podCIDR: '10.244.77.0/24',
    annotations: { [`${PREFIX}kube-subnet-manager`]: 'true', [`${PREFIX}backend-type`]: 'vxlan', [`${PREFIX}backend-data`]: '{"VNI":1,"VtepMAC":"0a:77:77:77:77:77"}', [`${PREFIX}public-ip`]: '192.0.2.77' },
  });
  await waitUntil('programmed after restart', async () => (await Promise.all(topo.hosts.map(async (h) => (await routes(h)).includes('10.244.77.0/24')))).every(Boolean), 30_000);
  timings.apiserverReadyToConverged = Math.round(performance.now() - t1);
  await kube.api.deleteNode('after-restart');
  await waitUntil('removed after restart', async () => !(await routes(h1)).includes('10.244.77.0/24'), 15_000);
  const r = await ping;
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  assert.ok(m, r.stdout + r.stderr);
  assert.equal(m[2], m[1], `no ping lost across the apiserver restart: ${m[0]}`);
  for (const f of flanneld.values()) assert.ok(f.lines.some((l) => /nodes watch ended/.test(l.msg)), 'the watch noticed the restart');
});

test('RBAC: the daemons, holding only the manifest\'s ClusterRole, never hit "forbidden"', { skip }, async () => {
  for (const [h, f] of flanneld) {
    // A freshly restarted apiserver can refuse requests for a moment while its
    // RBAC caches fill; the daemon retries those. Before the restart, nothing
    // it did may have been refused.
    const upTo = linesBeforeRestart.get(h) ?? f.raw.length;
    const bad = f.raw.slice(0, upTo).filter((l) => /forbidden/i.test(l));
    assert.deepEqual(bad, [], `${h.name}`);
    const afterRestart = f.raw.slice(upTo).filter((l) => /forbidden/i.test(l));
    if (afterRestart.length > 0) process.stderr.write(`${h.name} after the apiserver restart (transient): ${afterRestart.join('\n')}\n`);
    assert.equal(f.proc.exitCode, null);
  }
  const kc = readFileSync(path.join(topo.tmpDir, 'flannel.kubeconfig'), 'utf8');
  assert.match(kc, /token: /);
  assert.doesNotMatch(kc, /client-certificate/);
});
