// FakeKube: an in-memory stand-in for the few Kubernetes API verbs the kube
// subnet manager uses, for fast unit tests of its logic. The real thing is
// exercised against a real kube-apiserver in test/kube and test/e2e.
//
// What it models: Node objects with a cluster-wide resourceVersion counter;
// list; watch from a resourceVersion (replaying nothing older than the
// compaction point: such a watch ends with 410 Gone, as the real server does);
// strategic-merge patches of annotations and of status.conditions (merged by
// type); pods with spec.nodeName; and a call log so tests can check which
// verbs were used.

import { KubeApiError, type KubeApi, type KubeNode, type NodeWatchEvent, type NodeWatchHandlers } from '../store/kube/kube-api.js';

export interface FakeNode {
  name: string;
  annotations: Record<string, string>;
  podCIDR?: string;
  podCIDRs?: string[];
  conditions: Array<Record<string, string>>;
  resourceVersion: number;
}

export class FakeKube implements KubeApi {
  readonly server = 'https://fake-kube.invalid:6443';
  readonly nodes = new Map<string, FakeNode>();
  readonly pods = new Map<string, string>();
  readonly calls: string[] = [];
  private rv = 1;
  /** events newer than this can be replayed to a watch; older resourceVersions get 410 */
  compactedAt = 0;
  private readonly history: Array<{ rv: number; e: NodeWatchEvent }> = [];
  private readonly watchers = new Set<{ h: NodeWatchHandlers; ended: boolean }>();
  /** make the next N calls of a verb fail with this status */
  failNext: Record<string, { status: number; count: number }> = {};

  private view(n: FakeNode): KubeNode {
    return {
      name: n.name,
      annotations: { ...n.annotations },
      podCIDR: n.podCIDR,
      podCIDRs: n.podCIDRs ? [...n.podCIDRs] : undefined,
      resourceVersion: String(n.resourceVersion),
    };
  }

  private maybeFail(verb: string): void {
    const f = this.failNext[verb];
    if (f && f.count > 0) {
      f.count--;
      throw new KubeApiError(`${verb}: HTTP ${f.status}: injected`, f.status);
    }
  }

  private publish(type: 'ADDED' | 'MODIFIED' | 'DELETED', n: FakeNode): void {
    const e: NodeWatchEvent = { type, node: this.view(n) };
    this.history.push({ rv: n.resourceVersion, e });
    for (const w of this.watchers) if (!w.ended) w.h.onEvent(e);
  }

  // ---------------------------------------------------------------- test side

  addNode(name: string, o: { podCIDR?: string; podCIDRs?: string[]; annotations?: Record<string, string> } = {}): void {
    if (this.nodes.has(name)) throw new Error(`node ${name} exists`);
    const n: FakeNode = { name, annotations: { ...(o.annotations ?? {}) }, conditions: [], resourceVersion: ++this.rv };
    if (o.podCIDR !== undefined) n.podCIDR = o.podCIDR;
    if (o.podCIDRs !== undefined) n.podCIDRs = o.podCIDRs;
    this.nodes.set(name, n);
    this.publish('ADDED', n);
  }

  updateNode(name: string, f: (n: FakeNode) => void): void {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    f(n);
    n.resourceVersion = ++this.rv;
    this.publish('MODIFIED', n);
  }

  deleteNode(name: string): void {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    this.nodes.delete(name);
    n.resourceVersion = ++this.rv;
    this.publish('DELETED', n);
  }

  /** End every open watch, as an apiserver restart does; `gone` makes it a 410. */
  dropWatches(gone = false): void {
    for (const w of this.watchers) {
      if (w.ended) continue;
      w.ended = true;
      w.h.onEnd(gone ? new KubeApiError('watch nodes: too old resource version', 410) : null, gone);
    }
    this.watchers.clear();
  }

  /** Forget history up to now: watches from an older resourceVersion get 410. */
  compact(): void {
    this.compactedAt = this.rv;
    this.history.length = 0;
  }

  get openWatches(): number {
    return [...this.watchers].filter((w) => !w.ended).length;
  }

  // ---------------------------------------------------------------- KubeApi

  async getNode(name: string): Promise<KubeNode | null> {
    this.calls.push(`get node ${name}`);
    this.maybeFail('getNode');
    const n = this.nodes.get(name);
    return n ? this.view(n) : null;
  }

  async getPodNodeName(namespace: string, name: string): Promise<string> {
    this.calls.push(`get pod ${namespace}/${name}`);
    this.maybeFail('getPod');
    const n = this.pods.get(`${namespace}/${name}`);
    if (n === undefined) throw new KubeApiError(`get pod ${namespace}/${name}: HTTP 404: not found`, 404);
    return n;
  }

  async listNodes(): Promise<{ resourceVersion: string; nodes: KubeNode[] }> {
    this.calls.push('list nodes');
    this.maybeFail('listNodes');
    return { resourceVersion: String(this.rv), nodes: [...this.nodes.values()].map((n) => this.view(n)) };
  }

  watchNodes(resourceVersion: string, h: NodeWatchHandlers): { stop(): void } {
    this.calls.push('watch nodes');
    const w = { h, ended: false };
    const from = Number(resourceVersion);
    queueMicrotask(() => {
      if (w.ended) return;
      if (from < this.compactedAt) {
        w.ended = true;
        h.onEnd(new KubeApiError('watch nodes: too old resource version', 410), true);
        return;
      }
      for (const { rv, e } of this.history) if (rv > from && !w.ended) h.onEvent(e);
      if (!w.ended) this.watchers.add(w);
    });
    return {
      stop: () => {
        w.ended = true;
        this.watchers.delete(w);
      },
    };
  }

  async patchNodeStatus(name: string, patch: object): Promise<void> {
    this.calls.push(`patch node ${name} status`);
    this.maybeFail('patchNodeStatus');
    const n = this.nodes.get(name);
    if (!n) throw new KubeApiError(`patch node ${name} status: HTTP 404: not found`, 404);
    const p = patch as { metadata?: { annotations?: Record<string, string | null> }; status?: { conditions?: Array<Record<string, string>> } };
    for (const [k, v] of Object.entries(p.metadata?.annotations ?? {})) {
      if (v === null) delete n.annotations[k];
      else n.annotations[k] = v;
    }
    for (const c of p.status?.conditions ?? []) {
      const i = n.conditions.findIndex((x) => x.type === c.type);
      if (i >= 0) n.conditions[i] = { ...n.conditions[i], ...c };
      else n.conditions.push({ ...c });
    }
    n.resourceVersion = ++this.rv;
    this.publish('MODIFIED', n);
  }

  close(): void {
    /* nothing to release */
  }
}
