// Kubernetes mode, dual-stack (EnableIPv6): the daemon with the real VXLAN
// backend on FakeKernel and the kube subnet manager on FakeKube.
//
// * The lease is spec.podCIDRs' IPv4 and IPv6 ranges.
// * Our Node gets flannel's annotations byte for byte, the v6 pair included
//   (backend-v6-data, public-ipv6), and public-ipv6-overwrite is honoured.
// * On a restart whose devices are gone (a reboot), flannel.1 and
//   flannel-v6.1 come back with the MACs published in backend-data and
//   backend-v6-data, so peers' entries stay valid and nothing is re-patched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BackendRegistry } from '../../backend/backend.js';
import { VxlanBackend } from '../../backend/vxlan/vxlan.js';
import { Daemon } from '../../daemon/daemon.js';
import type { HostView } from '../../daemon/iface.js';
import { formatIPv4Net, formatIPv6Net, parseIPv4, parseIPv6 } from '../../lease/ip.js';
import { FakeKernel } from '../../testing/fake-kernel.js';
import { FakeKube } from '../../testing/fake-kube.js';
import { MemoryLogger } from '../../testing/memory-logger.js';
import { annotationNames } from './annotations.js';
import { KubeSubnetManager } from './kube-manager.js';
import { desiredAnnotations, storedVtepMac } from './node-lease.js';

const A = annotationNames('flannel.alpha.coreos.com');
const DUAL = '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}';

const host: HostView = {
  interfaces: () => [{ name: 'eth0', index: 2, mtu: 1500, ipv4: ['192.0.2.11'], ipv6: ['2001:db8::11'] }],
  defaultRouteInterface: () => 'eth0',
};

const peer2 = {
  [A.subnetKubeManaged]: 'true',
  [A.backendType]: 'vxlan',
  [A.backendData]: '{"VNI":1,"VtepMAC":"0a:00:00:00:04:02"}',
  [A.backendV6Data]: '{"VNI":1,"VtepMAC":"0a:00:00:00:06:02"}',
  [A.backendPublicIP]: '192.0.2.12',
  [A.backendPublicIPv6]: '2001:db8::12',
};

const until = async (f: () => boolean, what: string) => {
  for (let i = 0; !f(); i++) {
    if (i > 500) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

function startDaemon(k: FakeKube, kernel: FakeKernel, dir: string, configText = DUAL) {
  const log = new MemoryLogger();
  const mgr = new KubeSubnetManager('n1', { api: k, log: log.child('kube'), annotationPrefix: 'flannel.alpha.coreos.com', setNodeNetworkUnavailable: false, retryMs: 20 });
  const d = new Daemon({
    leases: mgr,
    configText,
    backends: new BackendRegistry().register('vxlan', (ctx) => new VxlanBackend(ctx, { kernel })),
    log,
    host,
    iface: { iface: [], ifaceRegex: [] },
    subnetFile: path.join(dir, 'subnet.env'),
    ipMasq: false,
    renewMarginMinutes: 60,
    completeRetryMs: 20,
  });
  const ac = new AbortController();
  const exit = d.run(ac.signal);
  return {
    d,
    log,
    exit,
    waitReady: () => until(() => d.ready, `ready; log: ${JSON.stringify(log.lines.map((l) => l.msg))}`),
    stop: async () => (ac.abort(), await exit),
  };
}

function kernelWithEth0(): FakeKernel {
  const k = new FakeKernel();
  k.addLink({ name: 'eth0', index: 2, mtu: 1500 });
  return k;
}

const macOf = async (k: FakeKernel, name: string) => (await k.getLinkByName(name))?.mac ?? null;

test('kube dual-stack: the lease is spec.podCIDRs (v4 and v6); flannel\'s annotations exactly, v6 pair included; v6 peer entries on flannel-v6.1', async () => {
  const k = new FakeKube();
  k.addNode('n1', { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'], annotations: { 'kubelet.example/x': 'y' } });
  k.addNode('n2', { podCIDR: '10.244.2.0/24', podCIDRs: ['10.244.2.0/24', 'fd00:10:244:2::/64'], annotations: peer2 });
  const kernel = kernelWithEth0();
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-kube6-'));
  const t = startDaemon(k, kernel, dir);
  try {
    await t.waitReady();
    assert.equal(formatIPv4Net(t.d.lease!.subnet), '10.244.1.0/24');
    assert.equal(formatIPv6Net(t.d.lease!.subnet6!), 'fd00:10:244:1::/64');
    assert.equal(
      readFileSync(path.join(dir, 'subnet.env'), 'utf8'),
      'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n',
    );
    const mac4 = await macOf(kernel, 'flannel.1');
    const mac6 = await macOf(kernel, 'flannel-v6.1');
    assert.match(mac4!, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.match(mac6!, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.notEqual(mac4, mac6);
    assert.deepEqual(k.nodes.get('n1')!.annotations, {
      'kubelet.example/x': 'y',
      'flannel.alpha.coreos.com/backend-type': 'vxlan',
      'flannel.alpha.coreos.com/backend-data': `{"VNI":1,"VtepMAC":"${mac4}"}`,
      'flannel.alpha.coreos.com/backend-v6-data': `{"VNI":1,"VtepMAC":"${mac6}"}`,
      'flannel.alpha.coreos.com/public-ip': '192.0.2.11',
      'flannel.alpha.coreos.com/public-ipv6': '2001:db8::11',
      'flannel.alpha.coreos.com/kube-subnet-manager': 'true',
    });
    // the peer's v6 half is programmed on flannel-v6.1
    const dev6 = (await kernel.getLinkByName('flannel-v6.1'))!;
    await until(() => kernel.fdb.some((f) => f.ifindex === dev6.index), 'v6 FDB entry');
    assert.deepEqual(
      kernel.neighs.filter((n) => n.ifindex === dev6.index).map((n) => [n.ip, n.mac]),
      [['fd00:10:244:2::', '0a:00:00:00:06:02']],
    );
    assert.deepEqual(
      kernel.fdb.filter((f) => f.ifindex === dev6.index).map((f) => [f.mac, f.dst]),
      [['0a:00:00:00:06:02', '2001:db8::12']],
    );
    assert.deepEqual(
      kernel.routes.filter((r) => r.oif === dev6.index && r.gateway).map((r) => [r.dst, r.gateway]),
      [['fd00:10:244:2::/64', 'fd00:10:244:2::']],
    );
  } finally {
    assert.equal((await t.stop()).code, 0);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kube dual-stack restart after a reboot (devices gone): both VTEP MACs come back from backend-data and backend-v6-data; the annotations need no patch', async () => {
  const k = new FakeKube();
  k.addNode('n1', { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'] });
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-kube6-'));
  try {
    const k1 = kernelWithEth0();
    const first = startDaemon(k, k1, dir);
    await first.waitReady();
    assert.equal((await first.stop()).code, 0);
    const mac4 = await macOf(k1, 'flannel.1');
    const mac6 = await macOf(k1, 'flannel-v6.1');
    const published = { ...k.nodes.get('n1')!.annotations };
    assert.equal(published[A.backendV6Data], `{"VNI":1,"VtepMAC":"${mac6}"}`);
    assert.equal(storedVtepMac(published, A.backendV6Data), mac6);

    // a fresh kernel: no flannel devices (a reboot, or someone deleted them)
    const k2 = kernelWithEth0();
    const patches = () => k.calls.filter((c) => c.startsWith('patch node n1 status')).length;
    const before = patches();
    const second = startDaemon(k, k2, dir);
    await second.waitReady();
    assert.equal(await macOf(k2, 'flannel.1'), mac4, 'flannel.1 gets the MAC from backend-data');
    assert.equal(await macOf(k2, 'flannel-v6.1'), mac6, 'flannel-v6.1 gets the MAC from backend-v6-data');
    assert.deepEqual(k.nodes.get('n1')!.annotations, published, 'annotations unchanged');
    assert.equal(patches(), before, 'no annotation patch needed');
    assert.equal((await second.stop()).code, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kube dual-stack: public-ipv6-overwrite is what gets published as public-ipv6; host-gw publishes backend-v6-data "null" with public-ipv6, as flannel', () => {
  const attrs = {
    publicIP: parseIPv4('192.0.2.11'),
    publicIPv6: parseIPv6('2001:db8:0:0::11'),
    backendType: 'vxlan',
    backendData: { VNI: 1, VtepMAC: '0a:58:0a:f4:01:01' },
    backendV6Data: { VNI: 1, VtepMAC: '0a:58:0a:f4:06:01' },
  };
  assert.deepEqual(desiredAnnotations(A, attrs, {}), {
    'flannel.alpha.coreos.com/backend-type': 'vxlan',
    'flannel.alpha.coreos.com/backend-data': '{"VNI":1,"VtepMAC":"0a:58:0a:f4:01:01"}',
    'flannel.alpha.coreos.com/public-ip': '192.0.2.11',
    'flannel.alpha.coreos.com/backend-v6-data': '{"VNI":1,"VtepMAC":"0a:58:0a:f4:06:01"}',
    'flannel.alpha.coreos.com/public-ipv6': '2001:db8::11',
    'flannel.alpha.coreos.com/kube-subnet-manager': 'true',
  });
  assert.equal(desiredAnnotations(A, attrs, { [A.backendPublicIPv6Overwrite]: '2001:db8:ffff::7' })[A.backendPublicIPv6], '2001:db8:ffff::7');
  const hostgw = desiredAnnotations(A, { publicIP: attrs.publicIP, publicIPv6: attrs.publicIPv6, backendType: 'host-gw' }, {});
  assert.equal(hostgw[A.backendData], 'null');
  assert.equal(hostgw[A.backendV6Data], 'null');
  assert.equal(hostgw[A.backendPublicIPv6], '2001:db8::11');
  // v4-only: nothing v6 at all (observed-flannel.md)
  const v4 = desiredAnnotations(A, { publicIP: attrs.publicIP, publicIPv6: null, backendType: 'vxlan', backendData: attrs.backendData }, {});
  assert.equal(A.backendV6Data in v4 || A.backendPublicIPv6 in v4, false);
});

test('kube dual-stack: a node without an IPv6 podCIDR is waited for with one line; an IPv6 podCIDR outside IPv6Network is fatal', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-kube6-'));
  try {
    const k = new FakeKube();
    k.addNode('n1', { podCIDR: '10.244.1.0/24' });
    const t = startDaemon(k, kernelWithEth0(), dir);
    await until(() => t.log.lines.some((l) => /node n1 has no IPv6 podCIDR/.test(l.msg)), 'missing v6 podCIDR line');
    assert.equal(t.d.ready, false);
    k.updateNode('n1', (n) => (n.podCIDRs = ['10.244.1.0/24', 'fd00:10:244:9::/64']));
    await t.waitReady();
    assert.equal(formatIPv6Net(t.d.lease!.subnet6!), 'fd00:10:244:9::/64');
    assert.equal(t.log.lines.filter((l) => /has no IPv6 podCIDR/.test(l.msg)).length, 1, 'one line, not one per retry');
    assert.equal((await t.stop()).code, 0);

    const k2 = new FakeKube();
    k2.addNode('n1', { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:99::/64'] });
    const bad = startDaemon(k2, kernelWithEth0(), dir);
    const exit = await bad.exit;
    assert.equal(exit.code, 1);
    assert.match(exit.reason, /IPv6Network fd00:10:244::\/56 doesn't contain node n1's IPv6 PodCIDR fd00:99::\/64/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
