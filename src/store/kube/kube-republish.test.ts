// Republishing our attributes in kube mode (found by the edge-kube e2e test,
// which failed now and then): the watch event of our own patch must not be
// taken for someone else's change and "repaired" back to the old value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LeaseAttrs } from '../../lease/lease.js';
import { parseNetworkConfig } from '../../subnet/config.js';
import { FakeKube } from '../../testing/fake-kube.js';
import { MemoryLogger } from '../../testing/memory-logger.js';
import { annotationNames } from './annotations.js';
import { KubeSubnetManager } from './kube-manager.js';

const A = annotationNames('flannel.alpha.coreos.com');
const EDGE = 'flannel.alpha.coreos.com/edge-networks';
const cfg = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
const attrs = (edge: string[]): LeaseAttrs => ({
  publicIP: 0xc0000201,
  publicIPv6: null,
  backendType: 'vxlan',
  backendData: { VNI: 1, VtepMAC: '0a:0b:0c:0d:0e:0f' },
  edgeNetworks: edge,
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(f: () => boolean, what: string, ms = 3000): Promise<void> {
  const t0 = Date.now();
  while (!f()) {
    if (Date.now() - t0 > ms) assert.fail(`timed out: ${what}`);
    await sleep(5);
  }
}

function setup() {
  const k = new FakeKube();
  k.addNode('n1', { podCIDR: '10.244.1.0/24' });
  const log = new MemoryLogger();
  const mgr = new KubeSubnetManager('n1', { api: k, log, annotationPrefix: 'flannel.alpha.coreos.com', setNodeNetworkUnavailable: false, retryMs: 20 });
  const feed = mgr.watch(cfg, log, () => {});
  feed.start();
  return { k, log, mgr, feed };
}

test('kube: a republish whose watch event arrives before the patch returns is not undone by the annotation repair', async () => {
  const { k, log, mgr, feed } = setup();
  try {
    await mgr.acquire(cfg, { attrs: attrs(['192.168.50.0/24']) });
    await until(() => k.openWatches === 1, 'watch open');
    assert.equal(k.nodes.get('n1')!.annotations[EDGE], '["192.168.50.0/24"]');
    // FakeKube delivers the MODIFIED event inside patchNodeStatus, before the
    // patch's promise settles: the order a fast watch stream gives.
    await mgr.acquire(cfg, { attrs: attrs([]) });
    await sleep(100);
    assert.equal(k.nodes.get('n1')!.annotations[EDGE], '[]');
    assert.equal(log.lines.filter((l) => /were changed or removed/.test(l.msg)).length, 0, 'our own patch is no change to repair');
  } finally {
    await feed.stop();
    await mgr.close();
  }
});

test('kube: a change to our annotations inside the repair hold-off is still repaired once the hold-off ends', async () => {
  const { k, mgr, feed } = setup();
  try {
    await mgr.acquire(cfg, { attrs: attrs(['192.168.50.0/24']) });
    await until(() => k.openWatches === 1, 'watch open');
    k.updateNode('n1', (n) => delete n.annotations[A.subnetKubeManaged]);
    await until(() => k.nodes.get('n1')!.annotations[A.subnetKubeManaged] === 'true', 'first repair');
    // a second removal right away: within the 2 s hold-off, so it must be
    // picked up when the hold-off ends rather than dropped
    k.updateNode('n1', (n) => (n.annotations[EDGE] = '["10.9.9.0/24"]'));
    await until(() => k.nodes.get('n1')!.annotations[EDGE] === '["192.168.50.0/24"]', 'second repair after the hold-off', 5000);
  } finally {
    await feed.stop();
    await mgr.close();
  }
});
