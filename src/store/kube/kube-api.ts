// The narrow Kubernetes API port the kube subnet manager needs, and its
// implementation over @kubernetes/client-node. Only the verbs upstream's
// ClusterRole grants are used: get/list/watch nodes, patch nodes/status, get
// pods (spec §4.6).
//
// @kubernetes/client-node is loaded lazily (dynamic import) so that flanneld
// in etcd or local mode never pays for it.

import type { NodeView } from './node-lease.js';
import { FlannelError } from '../../errors.js';

export interface KubeNode extends NodeView {
  readonly resourceVersion: string;
}

export type NodeWatchEvent =
  | { readonly type: 'ADDED' | 'MODIFIED' | 'DELETED'; readonly node: KubeNode }
  | { readonly type: 'BOOKMARK'; readonly resourceVersion: string };

export interface NodeWatchHandlers {
  onEvent(e: NodeWatchEvent): void;
  /** the watch is over: `gone` when the server said 410 (resourceVersion too old) */
  onEnd(err: Error | null, gone: boolean): void;
}

export interface KubeApi {
  /** "https://10.0.0.1:6443" */
  readonly server: string;
  /** null when the node does not exist */
  getNode(name: string): Promise<KubeNode | null>;
  /** spec.nodeName of a pod ("" when not scheduled yet) */
  getPodNodeName(namespace: string, name: string): Promise<string>;
  listNodes(): Promise<{ resourceVersion: string; nodes: KubeNode[] }>;
  watchNodes(resourceVersion: string, h: NodeWatchHandlers): { stop(): void };
  /** strategic-merge patch of nodes/<name>/status */
  patchNodeStatus(name: string, patch: object): Promise<void>;
  close(): void;
}

/**
 * A Kubernetes API call failed. `code` is HTTP_<status> (HTTP_403), or
 * KUBE_UNREACHABLE for a transport error (status 0); those, 429 and 5xx are
 * retryable.
 */
export class KubeApiError extends FlannelError {
  override name = 'KubeApiError';
  constructor(
    message: string,
    /** HTTP status, 0 for transport errors */
    readonly status: number,
    options?: { cause?: unknown },
  ) {
    super(message, { code: status === 0 ? 'KUBE_UNREACHABLE' : `HTTP_${status}`, retryable: status === 0 || status === 429 || status >= 500, cause: options?.cause });
  }
  get forbidden(): boolean {
    return this.status === 403;
  }
}

export interface KubeConnectOptions {
  /** --kubeconfig-file */
  kubeconfigFile?: string;
  /** --kube-api-url: overrides the kubeconfig's server, or is the whole config when no kubeconfig is given */
  apiUrl?: string;
  /** in-cluster config, used when neither of the above is given */
  inCluster?: { host: string; port: string; tokenFile: string; caFile: string };
  /** per-request timeout for non-watch calls (default 15 s) */
  requestTimeoutMs?: number;
  /** a watch is restarted by the server after this long (client-go picks 5-10 min) */
  watchTimeoutSeconds?: number;
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

interface RawObjectMeta {
  name?: string;
  annotations?: Record<string, string> | null;
  resourceVersion?: string;
}
interface RawNode {
  metadata?: RawObjectMeta;
  spec?: { podCIDR?: string; podCIDRs?: string[] };
}

function toNode(o: RawNode): KubeNode {
  return {
    name: o.metadata?.name ?? '',
    annotations: o.metadata?.annotations ?? {},
    podCIDR: o.spec?.podCIDR,
    podCIDRs: o.spec?.podCIDRs,
    resourceVersion: o.metadata?.resourceVersion ?? '',
  };
}

function describeErr(e: unknown): { status: number; message: string } {
  const any = e as { code?: unknown; statusCode?: unknown; body?: unknown; message?: unknown };
  const status = typeof any.code === 'number' ? any.code : typeof any.statusCode === 'number' ? any.statusCode : 0;
  let message = typeof any.message === 'string' ? any.message : String(e);
  // client-node puts the server's Status object (JSON text) in body; its
  // message is what an operator wants to read.
  if (typeof any.body === 'string') {
    try {
      const s = JSON.parse(any.body) as { message?: string };
      if (s.message) message = s.message;
    } catch {
      /* keep the transport message */
    }
  } else if (any.body && typeof any.body === 'object' && typeof (any.body as { message?: unknown }).message === 'string') {
    message = (any.body as { message: string }).message;
  }
  message = message.replace(/\s+/g, ' ').slice(0, 400);
  return { status, message };
}

/** Connect (lazily importing client-node); throws KubeApiError with a clear message on bad config. */
export async function connectKube(o: KubeConnectOptions): Promise<KubeApi> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  try {
    if (o.kubeconfigFile) {
      kc.loadFromFile(o.kubeconfigFile);
      if (o.apiUrl) {
        const cur = kc.getCurrentCluster();
        if (!cur) throw new Error('it has no current cluster');
        kc.clusters = kc.clusters.map((c) => (c.name === cur.name ? { ...c, server: o.apiUrl! } : c));
      }
    } else if (o.apiUrl) {
      kc.loadFromClusterAndUser({ name: 'flannel', server: o.apiUrl, skipTLSVerify: false }, { name: 'flannel' });
    } else if (o.inCluster) {
      const host = o.inCluster.host.includes(':') ? `[${o.inCluster.host}]` : o.inCluster.host;
      kc.loadFromClusterAndUser(
        { name: 'in-cluster', server: `https://${host}:${o.inCluster.port}`, caFile: o.inCluster.caFile, skipTLSVerify: false },
        // tokenFile: the projected token is rotated; client-node re-reads the file.
        { name: 'in-cluster', authProvider: { name: 'tokenFile', config: { tokenFile: o.inCluster.tokenFile } } },
      );
    } else {
      throw new Error(
        'no --kubeconfig-file or --kube-api-url was given and this is not a pod (KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set)',
      );
    }
  } catch (e) {
    const where = o.kubeconfigFile ? `--kubeconfig-file ${o.kubeconfigFile}: ` : '';
    throw new KubeApiError(`${where}${(e as Error).message}`, 0, { cause: e });
  }
  const server = kc.getCurrentCluster()?.server ?? '';
  if (!server) throw new KubeApiError(`--kubeconfig-file ${o.kubeconfigFile ?? ''}: the current context has no cluster server`, 0);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const timeoutMs = o.requestTimeoutMs ?? 15_000;
  const watchTimeout = o.watchTimeoutSeconds ?? 300 + Math.floor(Math.random() * 300);
  const patchOpts = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch);

  async function call<T>(what: string, f: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        f(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new KubeApiError(`${what}: no answer from ${server} within ${timeoutMs / 1000} s`, 0)), timeoutMs);
        }),
      ]);
    } catch (e) {
      if (e instanceof KubeApiError) throw e;
      const d = describeErr(e);
      throw new KubeApiError(`${what}: ${d.status ? `HTTP ${d.status}: ` : ''}${d.message}`, d.status, { cause: e });
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    server,
    async getNode(name) {
      try {
        return toNode((await call(`get node ${name}`, () => core.readNode({ name }))) as RawNode);
      } catch (e) {
        if (e instanceof KubeApiError && e.status === 404) return null;
        throw e;
      }
    },
    async getPodNodeName(namespace, name) {
      const pod = await call(`get pod ${namespace}/${name}`, () => core.readNamespacedPod({ name, namespace }));
      return pod.spec?.nodeName ?? '';
    },
    async listNodes() {
      const list = await call('list nodes', () => core.listNode());
      return { resourceVersion: list.metadata?.resourceVersion ?? '', nodes: list.items.map((n) => toNode(n as RawNode)) };
    },
    watchNodes(resourceVersion, h) {
      let stopped = false;
      let controller: AbortController | null = null;
      let ended = false;
      const end = (err: Error | null, gone: boolean) => {
        if (ended) return;
        ended = true;
        if (!stopped) h.onEnd(err, gone);
      };
      const w = new k8s.Watch(kc);
      void w
        .watch(
          '/api/v1/nodes',
          { resourceVersion, allowWatchBookmarks: true, timeoutSeconds: watchTimeout },
          (phase: string, obj: unknown) => {
            if (stopped || ended) return;
            if (phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED') {
              h.onEvent({ type: phase, node: toNode(obj as RawNode) });
            } else if (phase === 'BOOKMARK') {
              h.onEvent({ type: 'BOOKMARK', resourceVersion: (obj as RawNode).metadata?.resourceVersion ?? '' });
            } else if (phase === 'ERROR') {
              const st = obj as { code?: number; message?: string };
              controller?.abort();
              end(new KubeApiError(`watch nodes: ${st.message ?? 'error'}`, st.code ?? 0), st.code === 410);
            }
          },
          (err: unknown) => {
            if (err && (err as { name?: string }).name === 'AbortError' && stopped) return;
            if (err) {
              const d = describeErr(err);
              end(new KubeApiError(`watch nodes: ${d.status ? `HTTP ${d.status}: ` : ''}${d.message}`, d.status, { cause: err }), d.status === 410);
            } else end(null, false);
          },
        )
        .then(
          (c) => {
            controller = c;
            if (stopped) c.abort();
          },
          (err: unknown) => end(new KubeApiError(`watch nodes: ${describeErr(err).message}`, describeErr(err).status), false),
        );
      return {
        stop() {
          stopped = true;
          controller?.abort();
        },
      };
    },
    async patchNodeStatus(name, patch) {
      await call(`patch node ${name} status`, () => core.patchNodeStatus({ name, body: patch }, patchOpts));
    },
    close() {
      /* client-node keeps no long-lived handles beyond running watches */
    },
  };
}
