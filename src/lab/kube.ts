// `flannelctl lab up --store kube`: the lab on a real kube-apiserver.
//
// The control plane (etcd + kube-apiserver, see kubeapi.ts) runs in the
// underlay namespace on 192.0.2.1:6443. The lab applies the RBAC objects of
// deploy/kube-flannel.yml, gives each flanneld a token for the manifest's
// ServiceAccount (so the daemons have exactly upstream's permissions),
// creates one Node per host with podCIDR 10.244.<i>.0/24 (--ipv6: podCIDRs
// [10.244.<i>.0/24, fd00:10:244:<i>::/64]), and writes the
// manifest's net-conf.json for --net-config-path.
//
// @kubernetes/client-node is only loaded here, lazily, so the other lab modes
// don't pay for it.

import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KubeApi, KubeObject, KubeProcess } from './kubeapi.js';
import { FlannelError } from '../errors.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BUILD_SCRIPT = path.join(REPO_ROOT, 'scripts/build-kube-apiserver.sh');
export const MANIFEST = path.join(REPO_ROOT, 'deploy/kube-flannel.yml');
export const ANNOTATION_PREFIX = 'flannel.alpha.coreos.com/';

export class LabKubeError extends FlannelError {
  static override readonly defaultCode: string = 'LAB_KUBE';
  override name = 'LabKubeError';
}

/** The kube-apiserver binary, built by scripts/build-kube-apiserver.sh the first time (minutes), with its progress shown. */
export function kubeApiserverBinary(progress: (l: string) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [BUILD_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let announced = false;
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      for (const l of d.toString().split('\n')) {
        if (!l.trim()) continue;
        if (!announced) {
          announced = true;
          progress('kube-apiserver is not built on this machine yet; building it from the Go module proxy (once; it is cached under ~/.cache/flannel-ts)');
        }
        if (/^build-kube-apiserver:/.test(l)) progress(`  ${l}`);
      }
    });
    child.on('error', (e) => reject(new LabKubeError(`cannot run ${BUILD_SCRIPT}: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) return resolve(out.trim().split('\n').pop()!);
      if (code === 3) return reject(new LabKubeError('--store kube needs a kube-apiserver, and building one needs Go (`go` is not installed)'));
      reject(new LabKubeError(`building kube-apiserver failed (exit ${code}):\n${err.trim().split('\n').slice(-10).join('\n')}`));
    });
  });
}

export interface LabKubeSetup {
  dir: string;
  url: string;
  adminKubeconfig: string;
  /** flanneld arguments for every host (plus NODE_NAME in its environment) */
  flanneldArgs: string[];
}

/**
 * What a flanneld needs from a fresh cluster, the way kube-flannel.yml sets it
 * up: the manifest's Namespace, ServiceAccount, ClusterRole and binding
 * (exactly upstream's verbs), a token for that ServiceAccount in a kubeconfig,
 * and the ConfigMap's net-conf.json (or `netConf`) in a file. Returns the
 * flanneld arguments that use them.
 */
export async function prepareFlannelAccess(api: KubeApi, dir: string, netConf?: string): Promise<string[]> {
  const { loadAll } = await import('js-yaml');
  const objs = loadAll(readFileSync(MANIFEST, 'utf8')) as KubeObject[];
  await api.applyObjects(objs.filter((x) => ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'].includes(x.kind)));
  const kc = path.join(dir, 'flannel.kubeconfig');
  await api.tokenKubeconfig('kube-flannel', 'flannel', kc);
  const cm = objs.find((x) => x.kind === 'ConfigMap') as (KubeObject & { data?: Record<string, string> }) | undefined;
  const netConfFile = path.join(dir, 'net-conf.json');
  writeFileSync(netConfFile, netConf ?? cm?.data?.['net-conf.json'] ?? '');
  return ['--kube-subnet-mgr', `--kubeconfig-file=${kc}`, `--net-config-path=${netConfFile}`];
}

/** Start the control plane in the underlay and prepare everything flanneld needs. */
export async function startLabKube(o: {
  dir: string;
  binary: string;
  netns: string;
  bindIP: string;
  hosts: Array<{ name: string; index: number }>;
  netConf: string;
  /** dual-stack: host i's IPv6 podCIDR; the Node then has spec.podCIDRs [v4, v6] */
  podCidr6?: (index: number) => string;
  onProcess: (p: KubeProcess) => void;
}): Promise<LabKubeSetup> {
  const { startKubeApi } = await import('./kubeapi.js');
  const api = await startKubeApi({ dir: o.dir, binary: o.binary, netns: o.netns, bindIP: o.bindIP, detached: true, onProcess: o.onProcess });
  // The processes are detached and recorded by the lab (its local relay is unref'd), so nothing needs closing here.
  const flanneldArgs = await prepareFlannelAccess(api, o.dir, o.netConf);
  for (const h of o.hosts) {
    const v4 = `10.244.${h.index}.0/24`;
    await api.createNode(h.name, { podCIDR: v4, ...(o.podCidr6 ? { podCIDRs: [v4, o.podCidr6(h.index)] } : {}), labels: { 'kubernetes.io/os': 'linux' } });
  }
  return {
    dir: o.dir,
    url: api.url,
    adminKubeconfig: api.adminKubeconfig,
    flanneldArgs,
  };
}

/** Each node's flannel annotations and NetworkUnavailable condition, read as admin through the apiserver's socket. */
export async function nodeAnnotations(kubeDir: string): Promise<Map<string, { annotations: Record<string, string>; condition: string }> | string> {
  const { bridgeToUnixSocket } = await import('./kubeapi.js');
  const k8s = await import('@kubernetes/client-node');
  let bridge: { port: number; close(): void } | null = null;
  try {
    bridge = await bridgeToUnixSocket(path.join(kubeDir, 'apiserver.sock'));
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(path.join(kubeDir, 'admin.kubeconfig'));
    const local = `https://127.0.0.1:${bridge.port}`;
    kc.clusters = kc.clusters.map((c) => ({ ...c, server: local }));
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const list = await Promise.race([
      core.listNode(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 5 s')), 5000)),
    ]);
    const out = new Map<string, { annotations: Record<string, string>; condition: string }>();
    for (const n of list.items) {
      const ann = Object.fromEntries(Object.entries(n.metadata?.annotations ?? {}).filter(([k]) => k.startsWith(ANNOTATION_PREFIX)));
      const c = n.status?.conditions?.find((x) => x.type === 'NetworkUnavailable');
      out.set(n.metadata?.name ?? '?', { annotations: ann, condition: c ? `NetworkUnavailable=${c.status} (${c.reason ?? ''})` : 'NetworkUnavailable not set' });
    }
    return out;
  } catch (e) {
    return `could not read the Node objects: ${(e as Error).message}`;
  } finally {
    bridge?.close();
  }
}
