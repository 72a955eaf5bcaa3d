import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatIPv4Net, parseIPv4 } from '../../lease/ip.js';
import { BackendRegistry } from '../../backend/backend.js';
import { Daemon } from '../../daemon/daemon.js';
import type { HostView } from '../../daemon/iface.js';
import { parseNetworkConfig } from '../../subnet/config.js';
import { FakeKube } from '../../testing/fake-kube.js';
import { MemoryLogger } from '../../testing/memory-logger.js';
import { RecordingBackend } from '../../testing/recording-backend.js';
import { annotationNames } from './annotations.js';
import { KubeSubnetManager, resolveNodeName } from './kube-manager.js';
import { annotationPatch, desiredAnnotations, nodeToLease, storedVtepMac } from './node-lease.js';

const A = annotationNames('flannel.alpha.coreos.com');
const CFG = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
const peerAnn = (ip: string, mac = '02:00:00:00:00:aa') => ({
  [A.subnetKubeManaged]: 'true',
  [A.backendType]: 'vxlan',
  [A.backendData]: `{"VNI":1,"VtepMAC":"${mac}"}`,
  [A.backendPublicIP]: ip,
});

test('annotation prefix normalisation follows flannel', () => {
  assert.equal(annotationNames('flannel.alpha.coreos.com').backendType, 'flannel.alpha.coreos.com/backend-type');
  assert.equal(annotationNames('flannel.alpha.coreos.com/prefix').backendType, 'flannel.alpha.coreos.com/prefix-backend-type');
  assert.equal(annotationNames('example.com/x-').backendPublicIP, 'example.com/x-public-ip');
  assert.throws(() => annotationNames('org'), /not a valid annotation prefix/);
  assert.throws(() => annotationNames('Flannel.io'), /not a valid annotation prefix/);
  assert.throws(() => annotationNames('a.com/b/c'), /more than one "\/"/);
});

test('nodeToLease: peers, non-peers and bad annotations', () => {
  const ok = nodeToLease({ name: 'n2', podCIDR: '10.244.2.0/24', annotations: peerAnn('192.0.2.12') }, A, CFG);
  assert.equal(ok.kind, 'lease');
  if (ok.kind === 'lease') {
    assert.equal(formatIPv4Net(ok.lease.subnet), '10.244.2.0/24');
    assert.equal(ok.lease.attrs.publicIP, parseIPv4('192.0.2.12'));
    assert.deepEqual(ok.lease.attrs.backendData, { VNI: 1, VtepMAC: '02:00:00:00:00:aa' });
    assert.equal(ok.lease.expiration, null);
  }
  // podCIDRs wins over podCIDR; a dual-stack list is fine
  const dual = nodeToLease({ name: 'n', podCIDR: '10.244.9.0/24', podCIDRs: ['10.244.3.0/24', 'fd00::/64'], annotations: peerAnn('192.0.2.13') }, A, CFG);
  assert.equal(dual.kind === 'lease' && formatIPv4Net(dual.lease.subnet), '10.244.3.0/24');
  // a node with no annotations at all is not a peer (flannel panics: flannel-io/flannel#969)
  assert.deepEqual(nodeToLease({ name: 'bare', podCIDR: '10.244.4.0/24', annotations: {} }, A, CFG), { kind: 'unmanaged' });
  const bad = (annotations: Record<string, string>, extra: object = {}) => {
    const r = nodeToLease({ name: 'x', podCIDR: '10.244.5.0/24', annotations, ...extra }, A, CFG);
    assert.equal(r.kind, 'invalid');
    return r.kind === 'invalid' ? r.reason : '';
  };
  assert.match(bad({ ...peerAnn('192.0.2.14'), [A.backendData]: '{not json' }), /backend-data.*not valid JSON/);
  assert.match(bad({ ...peerAnn('banana') }), /public-ip: "banana" is not an IPv4 address/);
  assert.match(bad({ ...peerAnn('127.0.0.1') }), /public-ip: 127\.0\.0\.1 is/);
  assert.match(bad({ ...peerAnn('192.0.2.14'), [A.backendPublicIP]: '' }), /public-ip is missing/);
  assert.match(bad(peerAnn('192.0.2.14'), { podCIDR: '10.99.0.0/24' }), /outside Network 10\.244\.0\.0\/16/);
  assert.match(bad(peerAnn('192.0.2.14'), { podCIDR: undefined }), /no spec\.podCIDR/);
  assert.match(bad(peerAnn('192.0.2.14'), { podCIDR: 'nope' }), /"nope" is not a CIDR/);
  assert.match(bad(peerAnn('192.0.2.14'), { podCIDRs: ['10.244.1.0/24', 'fd00::/64', '10.244.2.0/24'] }), /at most 2/);
});

test('desired annotations: flannel bytes, public-ip-overwrite, minimal patch', () => {
  const attrs = { publicIP: parseIPv4('192.0.2.11'), publicIPv6: null, backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '0a:58:0a:f4:01:01' } };
  const want = desiredAnnotations(A, attrs, {});
  assert.deepEqual(want, {
    'flannel.alpha.coreos.com/backend-type': 'vxlan',
    'flannel.alpha.coreos.com/backend-data': '{"VNI":1,"VtepMAC":"0a:58:0a:f4:01:01"}',
    'flannel.alpha.coreos.com/public-ip': '192.0.2.11',
    'flannel.alpha.coreos.com/kube-subnet-manager': 'true',
  });
  // host-gw has no backend data: flannel writes the string "null"
  assert.equal(desiredAnnotations(A, { ...attrs, backendType: 'host-gw', backendData: undefined }, {})[A.backendData], 'null');
  const over = desiredAnnotations(A, attrs, { [A.backendPublicIPOverwrite]: '203.0.113.7' });
  assert.equal(over[A.backendPublicIP], '203.0.113.7');
  assert.equal(annotationPatch(want, want), null);
  assert.deepEqual(annotationPatch(want, { ...want, [A.backendPublicIP]: '1.2.3.4', other: 'x' }), { [A.backendPublicIP]: '192.0.2.11' });
  assert.equal(storedVtepMac({ [A.backendData]: '{"VtepMAC":"0a:58:0a:f4:01:01","VNI":1}' }, A.backendData), '0a:58:0a:f4:01:01');
  assert.equal(storedVtepMac({ [A.backendData]: 'null' }, A.backendData), null);
  assert.equal(storedVtepMac({ [A.backendData]: '{bad' }, A.backendData), null);
});

test('node name: NODE_NAME, else the pod\'s spec.nodeName, else a clear error', async () => {
  const k = new FakeKube();
  const log = new MemoryLogger();
  assert.equal(await resolveNodeName(k, { nodeName: 'n1' }, log), 'n1');
  k.pods.set('kube-flannel/ds-abc', 'n7');
  assert.equal(await resolveNodeName(k, { podName: 'ds-abc', podNamespace: 'kube-flannel' }, log), 'n7');
  await assert.rejects(resolveNodeName(k, {}, log), /set NODE_NAME, or POD_NAME and POD_NAMESPACE/);
  k.failNext.getPod = { status: 403, count: 1 };
  await assert.rejects(resolveNodeName(k, { podName: 'ds-abc', podNamespace: 'kube-flannel' }, log), /"get" on pods/);
});

const host: HostView = {
  interfaces: () => [{ name: 'eth0', index: 2, mtu: 1500, ipv4: ['192.0.2.11', '203.0.113.9'], ipv6: [] }],
  defaultRouteInterface: () => 'eth0',
};

async function startDaemon(k: FakeKube, opts: { unavailable?: boolean } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-kube-'));
  const log = new MemoryLogger();
  let backend: RecordingBackend | null = null;
  const mgr = new KubeSubnetManager('n1', { api: k, log: log.child('kube'), annotationPrefix: 'flannel.alpha.coreos.com', setNodeNetworkUnavailable: opts.unavailable ?? true, retryMs: 20, now: () => new Date('2026-11-30T10:00:00.123Z') });
  let readyCalls = 0;
  const d = new Daemon({
    leases: mgr,
    configText: '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}',
    backends: new BackendRegistry().register('vxlan', (ctx) => (backend = new RecordingBackend(ctx, { backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: ctx.storedVtepMac ?? '02:00:00:00:00:01' } }))),
    log,
    host,
    iface: { iface: [], ifaceRegex: [] },
    subnetFile: path.join(dir, 'subnet.env'),
    ipMasq: true,
    renewMarginMinutes: 60,
    completeRetryMs: 20,
    onReady: () => readyCalls++,
  });
  const ac = new AbortController();
  const exit = d.run(ac.signal);
  return {
    d,
    log,
    dir,
    exit,
    get backend() {
      return backend!;
    },
    readyCalls: () => readyCalls,
    waitReady: async () => {
      for (let i = 0; !d.ready; i++) {
        if (i > 500) throw new Error(JSON.stringify(log.lines));
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    stop: async () => (ac.abort(), await exit),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

const until = async (f: () => boolean, what: string) => {
  for (let i = 0; !f(); i++) {
    if (i > 500) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

test('kube mode: podCIDR is the lease, annotations and condition are published, peers follow the nodes', async () => {
  const k = new FakeKube();
  k.addNode('n1', { podCIDR: '10.244.1.0/24', annotations: { 'kubelet.example/x': 'y' } });
  k.addNode('n2', { podCIDR: '10.244.2.0/24', annotations: peerAnn('192.0.2.12') });
  k.addNode('plain', { podCIDR: '10.244.3.0/24' }); // no annotations: not a peer, no crash
  const t = await startDaemon(k);
  try {
    await t.waitReady();
    assert.equal(readFileSync(path.join(t.dir, 'subnet.env'), 'utf8'), 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
    assert.equal(t.readyCalls(), 1);
    const n1 = k.nodes.get('n1')!;
    assert.deepEqual(n1.annotations, {
      'kubelet.example/x': 'y',
      'flannel.alpha.coreos.com/backend-type': 'vxlan',
      'flannel.alpha.coreos.com/backend-data': '{"VNI":1,"VtepMAC":"02:00:00:00:00:01"}',
      'flannel.alpha.coreos.com/public-ip': '192.0.2.11',
      'flannel.alpha.coreos.com/kube-subnet-manager': 'true',
    });
    await until(() => n1.conditions.length === 1, 'condition');
    assert.deepEqual(n1.conditions[0], {
      type: 'NetworkUnavailable', status: 'False', reason: 'FlannelIsUp', message: 'Flannel is running on this node',
      lastTransitionTime: '2026-11-30T10:00:00Z', lastHeartbeatTime: '2026-11-30T10:00:00Z',
    });
    // only the verbs upstream's ClusterRole grants
    assert.ok(k.calls.every((c) => /^(get node|list nodes|watch nodes|patch node n1 status)/.test(c)), k.calls.join('\n'));

    await t.backend.waitFor((r) => r.length === 1 && formatIPv4Net(r[0]!.subnet) === '10.244.2.0/24');
    // a node gains the annotations: programmed
    k.updateNode('plain', (n) => Object.assign(n.annotations, peerAnn('192.0.2.13')));
    await t.backend.waitFor((r) => r.length === 2);
    // a node's annotation turns bad: logged once, removed from the desired set
    k.updateNode('plain', (n) => (n.annotations[A.backendPublicIP] = 'garbage'));
    await t.backend.waitFor((r) => r.length === 1);
    k.updateNode('plain', (n) => (n.annotations['unrelated'] = '1'));
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(t.log.lines.filter((l) => /ignoring node plain/.test(l.msg)).length, 1);
    // a node deleted: removed
    k.deleteNode('n2');
    await t.backend.waitFor((r) => r.length === 0);
    // the watch ends with 410 after a compaction: re-list and converge on what changed meanwhile
    k.compact();
    k.dropWatches(true);
    k.addNode('n4', { podCIDR: '10.244.4.0/24', annotations: peerAnn('192.0.2.14') });
    await t.backend.waitFor((r) => r.length === 1 && formatIPv4Net(r[0]!.subnet) === '10.244.4.0/24');
    assert.ok(k.calls.filter((c) => c === 'list nodes').length >= 2);
    // someone strips our annotations: they come back
    k.updateNode('n1', (n) => delete n.annotations[A.subnetKubeManaged]);
    await until(() => k.nodes.get('n1')!.annotations[A.subnetKubeManaged] === 'true', 'annotations restored');
    // our own Node deleted: keep running (as flannel), say so once
    k.deleteNode('n1');
    await until(() => t.log.lines.some((l) => /disappeared from kubernetes/.test(l.msg)), 'warning');
    assert.equal(t.d.state, 'ready');
  } finally {
    assert.equal((await t.stop()).code, 0);
    t.cleanup();
  }
});

test('kube mode: waits for the node and its podCIDR with one clear line; MAC and public IP come back from annotations', async () => {
  const k = new FakeKube();
  const t = await startDaemon(k, { unavailable: false });
  try {
    await until(() => t.log.lines.some((l) => /node n1 does not exist/.test(l.msg)), 'missing node line');
    k.addNode('n1', { annotations: { [A.backendData]: '{"VNI":1,"VtepMAC":"0a:0b:0c:0d:0e:0f"}', [A.nodePublicIP]: '203.0.113.9' } });
    await until(() => t.log.lines.some((l) => /has no spec\.podCIDR yet/.test(l.msg)), 'missing podCIDR line');
    assert.equal(t.d.state, 'starting');
    k.updateNode('n1', (n) => (n.podCIDR = '10.244.7.0/24'));
    await t.waitReady();
    assert.equal(formatIPv4Net(t.d.lease!.subnet), '10.244.7.0/24');
    assert.equal(t.backend.ctx.storedVtepMac, '0a:0b:0c:0d:0e:0f');
    const ann = k.nodes.get('n1')!.annotations;
    assert.equal(ann[A.backendPublicIP], '203.0.113.9');
    assert.equal(ann[A.backendData], '{"VNI":1,"VtepMAC":"0a:0b:0c:0d:0e:0f"}');
    assert.equal(k.nodes.get('n1')!.conditions.length, 0, '--set-node-network-unavailable=false sets no condition');
    assert.equal(t.log.lines.filter((l) => /does not exist/.test(l.msg)).length, 1, 'one line, not one per retry');
  } finally {
    assert.equal((await t.stop()).code, 0);
    t.cleanup();
  }
});

test('kube mode: a podCIDR outside Network is fatal with a clear line', async () => {
  const k = new FakeKube();
  k.addNode('n1', { podCIDR: '10.99.1.0/24' });
  const t = await startDaemon(k);
  try {
    const exit = await t.exit;
    assert.equal(exit.code, 1);
    assert.match(exit.reason, /Network 10\.244\.0\.0\/16 doesn't contain node n1's PodCIDR 10\.99\.1\.0\/24/);
  } finally {
    t.cleanup();
  }
});

test('kube mode: overlapping podCIDRs keep the first node; the condition is retried until it lands', async () => {
  const k = new FakeKube();
  k.addNode('n1', { podCIDR: '10.244.1.0/24' });
  k.addNode('a', { podCIDR: '10.244.2.0/24', annotations: peerAnn('192.0.2.12') });
  k.addNode('b', { podCIDR: '10.244.2.0/24', annotations: peerAnn('192.0.2.13') });
  const t = await startDaemon(k);
  try {
    await t.waitReady();
    k.failNext.patchNodeStatus = { status: 500, count: 2 };
    const r = await t.backend.waitFor((x) => x.length === 1);
    assert.equal(r[0]!.attrs.publicIP, parseIPv4('192.0.2.12'));
    assert.ok(t.log.lines.some((l) => /ignoring node b: its podCIDR 10\.244\.2\.0\/24 overlaps/.test(l.msg)));
    await until(() => k.nodes.get('n1')!.conditions.length === 1, 'condition after retries');
  } finally {
    await t.stop();
    t.cleanup();
  }
});

test('FakeKube: a watch from a compacted resourceVersion gets 410, a fresh one replays', async () => {
  const k = new FakeKube();
  k.addNode('a', { podCIDR: '10.244.1.0/24' });
  const rv = (await k.listNodes()).resourceVersion;
  k.addNode('b', { podCIDR: '10.244.2.0/24' });
  const seen: string[] = [];
  const h = k.watchNodes(rv, { onEvent: (e) => seen.push(e.type === 'BOOKMARK' ? 'bm' : `${e.type} ${e.node.name}`), onEnd: () => seen.push('end') });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(seen, ['ADDED b']);
  h.stop();
  k.compact();
  const ends: boolean[] = [];
  k.watchNodes(rv, { onEvent: () => undefined, onEnd: (_e, gone) => ends.push(gone) });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(ends, [true]);
});
