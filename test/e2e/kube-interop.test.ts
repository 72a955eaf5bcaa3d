// A real flannel node and a flannel-ts node in one Kubernetes cluster.
//
// h1 runs the real flanneld (Go, v0.28.9, built from the Go module proxy by
// scripts/build-flanneld.sh) with --kube-subnet-mgr; h2 runs flannel-ts with
// the same flags. Both hold a token for the manifest's ServiceAccount. They
// must publish the same annotations, program each other from them, and carry
// pod traffic both ways.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { cniInvoke, findPlugin } from '../../src/lab/lab.js';
import { prepareFlannelAccess } from '../../src/lab/kube.js';
import { isRoot, Topology, UNDERLAY_GW, type BgProc, type Host } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';
import { kubeApiserverBinary, kubeSkipReason, realFlanneldBinary, startKube, type KubeHarness } from '../helpers/kube.js';

const kubeBin = isRoot() ? await kubeApiserverBinary() : null;
const flannelBin = isRoot() && kubeBin ? await realFlanneldBinary() : null;
const skip = !isRoot() ? 'needs root (network namespaces)' : kubeSkipReason(kubeBin) || (flannelBin ? false : 'SKIPPED: real flanneld unavailable (Go is not installed)');
const PREFIX = 'flannel.alpha.coreos.com/';

let topo: Topology;
let kube: KubeHarness;
let real: BgProc;
let ours: FlanneldProc;
let h1: Host;
let h2: Host;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitUntil(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}
async function annotations(name: string): Promise<Record<string, string>> {
  const n = await kube.api.getNode(name);
  return Object.fromEntries(Object.entries((n?.metadata?.annotations ?? {}) as Record<string, string>).filter(([k]) => k.startsWith(PREFIX)));
}
async function vtepMac(h: Host): Promise<string> {
  return (JSON.parse(await topo.ip(h.name, '-j', 'link', 'show', 'flannel.1')) as Array<{ address: string }>)[0]!.address;
}

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 2, podsPerHost: 1 });
  [h1, h2] = topo.hosts as [Host, Host];
  kube = await startKube({ ns: topo.underlay, bindIP: UNDERLAY_GW });
  const access = await prepareFlannelAccess(kube.api, topo.tmpDir, '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
  // Real kubelets always annotate their Node; upstream panics on a Node with
  // none at all (flannel-io/flannel#969), so the nodes carry one, as in a real cluster.
  for (const h of topo.hosts) {
    await kube.api.createNode(h.name, { podCIDR: `10.244.${h.index}.0/24`, labels: { 'kubernetes.io/os': 'linux' }, annotations: { 'node.alpha.kubernetes.io/ttl': '0' } });
  }

  real = topo.spawn(
    h1.name,
    [flannelBin!, ...access, '--iface=eth0', `--subnet-file=${topo.subnetFile(h1)}`],
    { env: { NODE_NAME: h1.name }, label: 'real flanneld' },
  );
  ours = topo.startFlanneld(h2, [...access, '--iface=eth0'], { env: { NODE_NAME: h2.name } });
  await ours.waitReady(30_000);
  // real flanneld polls its informer once a second before it writes subnet.env
  await waitUntil('real flanneld wrote subnet.env', async () => existsSync(topo.subnetFile(h1)) || real.done, 30_000);
  assert.equal(real.done, false, `real flanneld exited:\n${real.stderr.slice(-3000)}`);
  const cniDir = findPlugin('bridge')!;
  for (const h of topo.hosts) {
    const pod = await topo.createNamespace(`h${h.index}p1`);
    const res = await cniInvoke({ name: h.name, dir: path.dirname(topo.subnetFile(h)) }, 'ADD', pod, cniDir).catch((e: Error) => {
      throw new Error(`${e.message}\nreal flanneld said:\n${real.stderr.slice(-3000)}`);
    });
    const ip = /"address":\s*"([\d.]+)\//.exec(res)![1]!;
    h.pods.push({ name: pod, ip, host: h });
  }
});

after(async () => {
  if (real && !real.done) await real.stop();
  await ours?.stop();
  await kube?.stop();
  await topo?.destroy();
});

test('real flannel and flannel-ts publish the same annotations, byte for byte in form', { skip }, async () => {
  await waitUntil('real flanneld annotated its node', async () => (await annotations(h1.name))[`${PREFIX}kube-subnet-manager`] === 'true', 30_000);
  for (const h of [h1, h2]) {
    const a = await annotations(h.name);
    assert.deepEqual(Object.keys(a).sort(), [`${PREFIX}backend-data`, `${PREFIX}backend-type`, `${PREFIX}kube-subnet-manager`, `${PREFIX}public-ip`], h.name);
    assert.equal(a[`${PREFIX}backend-data`], `{"VNI":1,"VtepMAC":"${await vtepMac(h)}"}`, h.name);
    assert.equal(a[`${PREFIX}backend-type`], 'vxlan');
    assert.equal(a[`${PREFIX}public-ip`], h.ip);
    const cond = (await kube.api.getNode(h.name))?.status?.conditions?.find((c) => c.type === 'NetworkUnavailable');
    assert.equal(cond?.status, 'False', h.name);
    assert.equal(cond?.reason, 'FlannelIsUp', h.name);
  }
});

test('each programs the other: neighbour, FDB entry and route from the other\'s annotations', { skip }, async () => {
  for (const [h, p] of [[h1, h2], [h2, h1]] as const) {
    const mac = await vtepMac(p);
    await waitUntil(`${h.name} programs ${p.name}`, async () => (await topo.ip(h.name, 'route', 'show', 'dev', 'flannel.1')).includes(`10.244.${p.index}.0/24 via 10.244.${p.index}.0`), 15_000);
    assert.match(await topo.ip(h.name, 'neigh', 'show', 'dev', 'flannel.1'), new RegExp(`^10\\.244\\.${p.index}\\.0 lladdr ${mac} PERMANENT`, 'm'));
    assert.match(await topo.exec(h.name, ['bridge', 'fdb', 'show', 'dev', 'flannel.1']), new RegExp(`^${mac} dst ${p.ip.replace(/\./g, '\\.')} self permanent`, 'm'));
  }
});

test('pods on the real-flannel node and the flannel-ts node reach each other', { skip }, async () => {
  const a = h1.pods[0]!;
  const b = h2.pods[0]!;
  await waitUntil('ping', async () => (await topo.ping(a.name, b.ip)).ok, 10_000);
  assert.ok((await topo.ping(a.name, b.ip, { count: 5 })).ok);
  assert.ok((await topo.ping(b.name, a.ip, { count: 5 })).ok);
});

test('neither daemon complains about the other', { skip }, async () => {
  assert.equal(real.done, false, `real flanneld is running:\n${real.stderr.slice(-2000)}`);
  const realErrors = real.stderr.split('\n').filter((l) => /^E\d{4} /.test(l));
  assert.deepEqual(realErrors, [], 'real flanneld logged errors');
  assert.deepEqual(ours.raw.filter((l) => /"level":(40|50)/.test(l)), [], 'flannel-ts logged warnings or errors');
});
