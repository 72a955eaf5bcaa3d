// flanneld's Kubernetes client configuration against a real kube-apiserver:
// the in-cluster config (service-account token and CA files plus
// KUBERNETES_SERVICE_HOST/PORT), --kubeconfig-file, --kube-api-url overriding
// the kubeconfig's server, and clear errors for bad or missing configuration
// and for API errors. The daemon's own verbs (get/list/watch nodes, patch
// nodes/status) run through the same adapter (src/store/kube/kube-api.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { load } from 'js-yaml';
import { connectKube, type KubeApi } from '../../src/store/kube/kube-api.js';
import { kubeApiserverBinary, kubeSkipReason, startKube, type KubeHarness } from '../helpers/kube.js';

const bin = await kubeApiserverBinary();
const skip = kubeSkipReason(bin);
let kube: KubeHarness;
let dir: string;
let token: string;

before(async () => {
  if (skip) return;
  kube = await startKube();
  dir = mkdtempSync(path.join(tmpdir(), 'fts-kclient-'));
  // a ServiceAccount with exactly flannel's verbs
  await kube.api.applyObjects([
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kube-flannel' } },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'flannel', namespace: 'kube-flannel' } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'flannel' },
      rules: [
        { apiGroups: [''], resources: ['pods'], verbs: ['get'] },
        { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['nodes/status'], verbs: ['patch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'flannel' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'flannel' },
      subjects: [{ kind: 'ServiceAccount', name: 'flannel', namespace: 'kube-flannel' }],
    },
  ]);
  token = await kube.api.tokenKubeconfig('kube-flannel', 'flannel', path.join(dir, 'flannel.kubeconfig'));
  await kube.api.createNode('client-node', { podCIDR: '10.244.5.0/24' });
});

after(async () => {
  await kube?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function roundTrip(api: KubeApi): Promise<void> {
  const { nodes } = await api.listNodes();
  assert.ok(nodes.some((n) => n.name === 'client-node'));
  const n = await api.getNode('client-node');
  assert.equal(n?.podCIDR, '10.244.5.0/24');
  assert.equal(await api.getNode('no-such-node'), null);
  await api.patchNodeStatus('client-node', { metadata: { annotations: { 'flannel.alpha.coreos.com/public-ip': '192.0.2.5' } } });
  assert.equal((await api.getNode('client-node'))?.annotations['flannel.alpha.coreos.com/public-ip'], '192.0.2.5');
}

test('in-cluster config: token file, CA file, KUBERNETES_SERVICE_HOST/PORT', { skip }, async () => {
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, token);
  const u = new URL(kube.api.localUrl);
  const api = await connectKube({ inCluster: { host: u.hostname, port: u.port, tokenFile, caFile: kube.api.caFile } });
  await roundTrip(api);
  // the projected token is rotated by the kubelet: a new file content is picked up
  const second = await kube.api.tokenKubeconfig('kube-flannel', 'flannel', path.join(dir, 'second.kubeconfig'));
  writeFileSync(tokenFile, second);
  assert.ok((await api.listNodes()).nodes.length >= 1);
});

test('--kubeconfig-file, and --kube-api-url overriding its server', { skip }, async () => {
  // The written kubeconfig points at `url`; from this process the apiserver is at localUrl.
  const doc = load(readFileSync(path.join(dir, 'flannel.kubeconfig'), 'utf8')) as { clusters: Array<{ cluster: { server: string } }> };
  doc.clusters[0]!.cluster.server = 'https://127.0.0.1:1'; // wrong on purpose
  const kc = path.join(dir, 'wrong-server.kubeconfig');
  writeFileSync(kc, JSON.stringify(doc));
  const api = await connectKube({ kubeconfigFile: kc, apiUrl: kube.api.localUrl, requestTimeoutMs: 5000 });
  assert.equal(api.server, kube.api.localUrl);
  await roundTrip(api);
  const broken = await connectKube({ kubeconfigFile: kc, requestTimeoutMs: 3000 });
  await assert.rejects(broken.listNodes(), /list nodes: .*(ECONNREFUSED|connect)/);
});

test('API errors and bad configuration are clear one-line errors', { skip }, async () => {
  const tokenFile = path.join(dir, 'token2');
  writeFileSync(tokenFile, token);
  const u = new URL(kube.api.localUrl);
  const api = await connectKube({ inCluster: { host: u.hostname, port: u.port, tokenFile, caFile: kube.api.caFile } });
  await assert.rejects(api.getPodNodeName('kube-system', 'nope'), (e: Error & { status?: number }) => e.status === 404 && /get pod kube-system\/nope: HTTP 404/.test(e.message));
  await assert.rejects(connectKube({ kubeconfigFile: path.join(dir, 'missing.kubeconfig') }), /--kubeconfig-file .*missing\.kubeconfig: /);
  await assert.rejects(connectKube({}), /no --kubeconfig-file or --kube-api-url was given and this is not a pod/);
  writeFileSync(path.join(dir, 'garbage.kubeconfig'), 'clusters: [');
  await assert.rejects(connectKube({ kubeconfigFile: path.join(dir, 'garbage.kubeconfig') }), /--kubeconfig-file .*garbage\.kubeconfig: /);
  const anon = await connectKube({ apiUrl: kube.api.localUrl, requestTimeoutMs: 5000 });
  await assert.rejects(anon.listNodes(), /list nodes: /);
});
