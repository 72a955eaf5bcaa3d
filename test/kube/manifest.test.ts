// deploy/kube-flannel.yml against a real kube-apiserver (v1.37, RBAC on).
//
// 1. Every object passes a server-side dry run with strict field validation
//    (a misspelled field would fail, see the control case), and nothing is
//    persisted by it.
// 2. With the manifest's Namespace, ServiceAccount, ClusterRole and binding
//    created for real, a token for kube-flannel/flannel (TokenRequest API) can
//    do every call flanneld makes — get/list/watch nodes, strategic-merge
//    patches of nodes/<n>/status, get its pod — and is refused a patch of the
//    node itself and node creation. So upstream's RBAC is enough, and no more
//    than upstream's is granted.
// 3. The ConfigMap's net-conf.json and cni-conf.json, and the DaemonSet's
//    image contract, are what the image and the daemon expect (no apiserver
//    needed for these).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  Watch,
  setHeaderOptions,
  type V1Node,
} from '@kubernetes/client-node';
// js-yaml, not client-node's loadAllYaml: that one maps objects onto its
// typed models and silently drops fields it does not know, which would hide
// a misspelled field from the strict dry run.
import yaml from 'js-yaml';
import type { KubeObject } from '../../src/lab/kubeapi.js';
import { parseNetworkConfig } from '../../src/subnet/config.js';
import { ROOT } from '../helpers/flanneld.js';
import { kubeApiserverBinary, kubeSkipReason, startKube, type KubeHarness } from '../helpers/kube.js';

const MANIFEST = path.join(ROOT, 'deploy/kube-flannel.yml');
const objects = (yaml.loadAll(readFileSync(MANIFEST, 'utf8')) as Array<KubeObject | null>).filter((o): o is KubeObject => o !== null);
const find = (kind: string, name: string): KubeObject => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind} ${name} is in ${MANIFEST}`);
  return o;
};
const label = (o: KubeObject) => `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

const NS = 'kube-flannel';
const SA = 'flannel';
const NODE = 'fts-rbac-node';
const POD = 'kube-flannel-ds-test';
const PREFIX = 'flannel.alpha.coreos.com';
/** The image the DaemonSet runs: flannel-ts:<package version>. */
const IMAGE = `flannel-ts:${(JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version}`;

/** Runs fn and returns the HTTP status of the ApiException it throws (or 200 if it succeeds). */
async function statusOf(fn: () => Promise<unknown>): Promise<number> {
  try {
    await fn();
    return 200;
  } catch (e) {
    if (e instanceof ApiException) return e.code;
    throw e;
  }
}

const bin = await kubeApiserverBinary();

describe('deploy/kube-flannel.yml on a real kube-apiserver', { skip: kubeSkipReason(bin) }, () => {
  let k: KubeHarness;
  before(async () => {
    k = await startKube({ binary: bin! });
  });
  after(async () => {
    await k?.stop();
  });

  describe('server-side dry run (dryRun=All, fieldValidation=Strict)', () => {
    const ns = objects.find((o) => o.kind === 'Namespace');
    assert.ok(ns, 'the manifest has a Namespace');
    // Namespaced objects can only be checked once their Namespace exists, so
    // the Namespace is dry-run first and then created for real.
    for (const obj of [ns, ...objects.filter((o) => o !== ns)]) {
      test(label(obj), async () => {
        const [back] = await k.api.applyObjects([obj], { dryRun: true });
        assert.equal(back?.kind, obj.kind);
        assert.equal(back?.metadata.name, obj.metadata.name);
        if (obj === ns) {
          assert.equal(await k.api.request('GET', `/api/v1/namespaces/${NS}`).then((r) => r.status), 404, 'a dry run persists nothing');
          await k.api.applyObjects([obj]);
        }
      });
    }
    test('control: a misspelled field is rejected, so the dry run is strict', async () => {
      const ds = clone(find('DaemonSet', 'kube-flannel-ds')) as KubeObject & { spec: { template: { spec: Record<string, unknown> } } };
      ds.spec.template.spec.hostNetwrk = true;
      await assert.rejects(k.api.applyObjects([ds], { dryRun: true }), /unknown field.*hostNetwrk/);
    });
    test('nothing but the Namespace was persisted', async () => {
      assert.equal((await k.api.request('GET', `/api/v1/namespaces/${NS}/configmaps/kube-flannel-cfg`)).status, 404);
      assert.equal((await k.api.request('GET', `/apis/apps/v1/namespaces/${NS}/daemonsets/kube-flannel-ds`)).status, 404);
      assert.equal((await k.api.request('GET', '/apis/rbac.authorization.k8s.io/v1/clusterroles/flannel')).status, 404);
    });
  });

  describe('RBAC: the flannel ServiceAccount can do what flanneld does, and no more', () => {
    let fkc: KubeConfig;
    let fcore: CoreV1Api;
    const strategic = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);

    before(async () => {
      await k.api.applyObjects(['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'].map((kind) => objects.find((o) => o.kind === kind)!));
      const file = path.join(k.dir, 'flannel.kubeconfig');
      await k.api.tokenKubeconfig(NS, SA, file);
      fkc = new KubeConfig();
      fkc.loadFromFile(file);
      fcore = fkc.makeApiClient(CoreV1Api);
      // A node as a kubelet would register it, and the DaemonSet pod on it.
      await k.api.createNode(NODE, { podCIDR: '10.244.7.0/24', labels: { 'kubernetes.io/os': 'linux' }, annotations: { 'node.alpha.kubernetes.io/ttl': '0' } });
      await k.core.createNamespacedPod({
        namespace: NS,
        body: { metadata: { name: POD }, spec: { nodeName: NODE, serviceAccountName: SA, hostNetwork: true, containers: [{ name: 'kube-flannel', image: IMAGE }] } },
      });
    });

    test('the token authenticates as system:serviceaccount:kube-flannel:flannel', async () => {
      const r = await k.api.request<{ status: { userInfo: { username: string; groups: string[] } } }>('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
        kubeConfig: fkc,
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
      });
      assert.equal(r.status, 201);
      assert.equal(r.body.status.userInfo.username, `system:serviceaccount:${NS}:${SA}`);
      assert.ok(!r.body.status.userInfo.groups.includes('system:masters'));
    });

    test('the ClusterRole on the server grants exactly upstream\'s verbs', async () => {
      const r = await k.api.request<{ rules: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }> }>('GET', '/apis/rbac.authorization.k8s.io/v1/clusterroles/flannel');
      assert.equal(r.status, 200);
      const flat = r.body.rules.flatMap((rule) => rule.resources.flatMap((res) => rule.verbs.map((v) => `${rule.apiGroups.join(',')}|${res}|${v}`))).sort();
      assert.deepEqual(flat, ['|nodes/status|patch', '|nodes|get', '|nodes|list', '|nodes|watch', '|pods|get']);
    });

    test('get, list and watch nodes; strategic-merge patch nodes/<n>/status (annotations, then the condition)', async () => {
      const node = await fcore.readNode({ name: NODE });
      assert.equal(node.spec?.podCIDR, '10.244.7.0/24');
      const list = await fcore.listNode();
      assert.ok(list.items.some((n) => n.metadata?.name === NODE));
      const rv = list.metadata?.resourceVersion;
      assert.ok(rv, 'the list has a resourceVersion');

      // Plain list-then-watch, as the daemon does (not a "watch-list").
      const seen: V1Node[] = [];
      let wake: () => void = () => {};
      let ended: unknown = undefined;
      const ctl = await new Watch(fkc).watch('/api/v1/nodes', { resourceVersion: rv }, (type, obj: V1Node) => {
        if (type === 'MODIFIED' && obj.metadata?.name === NODE) seen.push(obj);
        wake();
      }, (err) => {
        ended = err ?? 'closed';
        wake();
      });
      try {
        assert.equal(ended, undefined, `the watch was refused: ${String(ended)}`);
        const annotations = {
          [`${PREFIX}/backend-data`]: '{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}',
          [`${PREFIX}/backend-type`]: 'vxlan',
          [`${PREFIX}/kube-subnet-manager`]: 'true',
          [`${PREFIX}/public-ip`]: '192.0.2.11',
        };
        await fcore.patchNodeStatus({ name: NODE, body: { metadata: { annotations } } }, strategic);
        const now = new Date().toISOString();
        const condition = { type: 'NetworkUnavailable', status: 'False', reason: 'FlannelIsUp', message: 'Flannel is running on this node', lastTransitionTime: now, lastHeartbeatTime: now };
        await fcore.patchNodeStatus({ name: NODE, body: { status: { conditions: [condition] } } }, strategic);

        const deadline = Date.now() + 10_000;
        while (seen.length < 2 && ended === undefined && Date.now() < deadline) await new Promise<void>((r) => ((wake = r), setTimeout(r, 500)));
        assert.ok(seen.length >= 2, `the watch saw both patches (saw ${seen.length}, ended: ${String(ended)})`);
        assert.equal(seen[0]!.metadata?.annotations?.[`${PREFIX}/public-ip`], '192.0.2.11');

        const stored = await k.api.getNode(NODE);
        for (const [key, v] of Object.entries(annotations)) assert.equal(stored?.metadata?.annotations?.[key], v, key);
        assert.equal(stored?.metadata?.annotations?.['node.alpha.kubernetes.io/ttl'], '0', 'other annotations are kept');
        const cond = stored?.status?.conditions?.find((c) => c.type === 'NetworkUnavailable');
        assert.equal(cond?.status, 'False');
        assert.equal(cond?.reason, 'FlannelIsUp');
      } finally {
        ctl.abort();
      }
    });

    test('get its own pod (to learn spec.nodeName when NODE_NAME is unset)', async () => {
      const pod = await fcore.readNamespacedPod({ namespace: NS, name: POD });
      assert.equal(pod.spec?.nodeName, NODE);
    });

    test('refused: patch nodes/<n> itself, create or delete nodes, list pods', async () => {
      assert.equal(await statusOf(() => fcore.patchNode({ name: NODE, body: { metadata: { annotations: { [`${PREFIX}/public-ip`]: '192.0.2.99' } } } }, strategic)), 403);
      assert.equal(await statusOf(() => fcore.createNode({ body: { metadata: { name: 'fts-rbac-intruder' }, spec: { podCIDR: '10.244.8.0/24' } } })), 403);
      assert.equal(await statusOf(() => fcore.deleteNode({ name: NODE })), 403);
      assert.equal(await statusOf(() => fcore.listNamespacedPod({ namespace: NS })), 403);
      assert.equal((await k.api.getNode(NODE))?.metadata?.annotations?.[`${PREFIX}/public-ip`], '192.0.2.11', 'the refused patch changed nothing');
      assert.equal(await k.api.getNode('fts-rbac-intruder'), null);
    });
  });
});

describe('deploy/kube-flannel.yml contents', () => {
  test('the manifest has upstream\'s objects, in an order kubectl can apply', () => {
    assert.deepEqual(objects.map(label), [
      'Namespace kube-flannel',
      'ServiceAccount kube-flannel/flannel',
      'ClusterRole flannel',
      'ClusterRoleBinding flannel',
      'ConfigMap kube-flannel/kube-flannel-cfg',
      'DaemonSet kube-flannel/kube-flannel-ds',
    ]);
    const ns = find('Namespace', NS);
    assert.deepEqual(ns.metadata.labels, { 'k8s-app': 'flannel', 'pod-security.kubernetes.io/enforce': 'privileged' });
  });

  test('ConfigMap net-conf.json: exactly upstream\'s network config', () => {
    const data = (find('ConfigMap', 'kube-flannel-cfg') as KubeObject & { data: Record<string, string> }).data;
    const parsed = JSON.parse(data['net-conf.json']!) as unknown;
    // Same keys, values and key order as upstream's.
    assert.equal(JSON.stringify(parsed), '{"Network":"10.244.0.0/16","EnableNFTables":false,"Backend":{"Type":"vxlan"}}');
    const conf = parseNetworkConfig(data['net-conf.json']!);
    assert.equal(conf.backend.type, 'vxlan');
    assert.equal(conf.backend.defaulted, false);
    assert.equal(conf.enableNFTables, false);
  });

  test('ConfigMap cni-conf.json: the cbr0 conflist (flannel + portmap)', () => {
    const data = (find('ConfigMap', 'kube-flannel-cfg') as KubeObject & { data: Record<string, string> }).data;
    const parsed = JSON.parse(data['cni-conf.json']!) as unknown;
    assert.equal(
      JSON.stringify(parsed),
      '{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}',
    );
    assert.deepEqual(Object.keys(data).sort(), ['cni-conf.json', 'net-conf.json']);
  });

  test('DaemonSet: the image contract and upstream\'s settings', () => {
    type Ctr = { name: string; image: string; command: string[]; args?: string[]; env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }>; volumeMounts: Array<{ name: string; mountPath: string }>; securityContext?: unknown; resources?: unknown; livenessProbe?: unknown; readinessProbe?: unknown };
    const ds = find('DaemonSet', 'kube-flannel-ds') as KubeObject & {
      spec: { template: { spec: { hostNetwork: boolean; priorityClassName: string; serviceAccountName: string; tolerations: unknown; initContainers: Ctr[]; containers: Ctr[]; volumes: Array<Record<string, unknown>> } } };
    };
    const pod = ds.spec.template.spec;
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.priorityClassName, 'system-node-critical');
    assert.equal(pod.serviceAccountName, 'flannel');
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists', effect: 'NoSchedule' }]);
    const mounts = (c: Ctr) => Object.fromEntries(c.volumeMounts.map((m) => [m.mountPath, m.name]));
    assert.deepEqual(
      pod.initContainers.map((c) => [c.name, c.image, c.command, mounts(c)]),
      [
        ['install-cni-plugin', IMAGE, ['/opt/bin/install-cni-plugin'], { '/opt/cni/bin': 'cni-plugin' }],
        ['install-cni', IMAGE, ['/opt/bin/install-conf'], { '/etc/cni/net.d': 'cni', '/etc/kube-flannel/': 'flannel-cfg' }],
      ],
    );
    assert.equal(pod.containers.length, 1);
    const main = pod.containers[0]!;
    assert.equal(main.name, 'kube-flannel');
    assert.equal(main.image, IMAGE);
    assert.deepEqual(main.command, ['/opt/bin/flanneld']);
    assert.deepEqual(main.args, ['--ip-masq', '--kube-subnet-mgr', '--healthz-port=8081']);
    assert.deepEqual(mounts(main), { '/run/flannel': 'run', '/etc/kube-flannel/': 'flannel-cfg', '/run/xtables.lock': 'xtables-lock' });
    assert.deepEqual(main.securityContext, { privileged: false, capabilities: { add: ['NET_ADMIN', 'NET_RAW'] } });
    assert.deepEqual(main.resources, { requests: { cpu: '100m', memory: '50Mi' } });
    const env = Object.fromEntries((main.env ?? []).map((e) => [e.name, e.value ?? `<${e.valueFrom?.fieldRef.fieldPath}>`]));
    assert.deepEqual(env, {
      POD_NAME: '<metadata.name>',
      POD_NAMESPACE: '<metadata.namespace>',
      NODE_NAME: '<spec.nodeName>',
      EVENT_QUEUE_DEPTH: '5000',
      CONT_WHEN_CACHE_NOT_READY: 'false',
    });
    assert.deepEqual(main.livenessProbe, { httpGet: { path: '/healthz', port: 8081 }, initialDelaySeconds: 10, periodSeconds: 30 });
    assert.deepEqual(main.readinessProbe, { httpGet: { path: '/readyz', port: 8081 }, initialDelaySeconds: 5, periodSeconds: 10 });
    assert.deepEqual(pod.volumes, [
      { name: 'run', hostPath: { path: '/run/flannel' } },
      { name: 'cni-plugin', hostPath: { path: '/opt/cni/bin' } },
      { name: 'cni', hostPath: { path: '/etc/cni/net.d' } },
      { name: 'flannel-cfg', configMap: { name: 'kube-flannel-cfg' } },
      { name: 'xtables-lock', hostPath: { path: '/run/xtables.lock', type: 'FileOrCreate' } },
    ]);
  });
});
