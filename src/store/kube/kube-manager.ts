// The Kubernetes subnet manager (spec §4): flanneld --kube-subnet-mgr.
//
// * Our lease is this node's spec.podCIDR(s); nothing is allocated.
// * We publish flannel's annotations on our Node (backend-type, backend-data,
//   public-ip, kube-subnet-manager, and the v6 ones in dual-stack) with a
//   strategic-merge patch of nodes/<name>/status, the only write upstream's
//   ClusterRole grants.
// * Peers come from the Node objects: list, then watch from the list's
//   resourceVersion; when a watch ends (410 Gone, a closed stream, the
//   apiserver restarting) we list again and diff, so nothing is missed.
// * After subnet.env, the NetworkUnavailable condition is set to False with
//   flannel's reason and message (--set-node-network-unavailable, default on).
//
// Differences from flannel, each deliberate:
// * A missing Node or a missing podCIDR is retried with one clear line,
//   for as long as it takes (flannel gives up after 30 s and exits).
// * If someone removes or changes our annotations while we run, we put them
//   back (flannel writes them once, at start), so peers never lose us.
// * Kubernetes "update" events are diffed on the whole lease, so a change of
//   either family's annotations in dual-stack is seen (flannel's filter drops
//   some: spec §4.2 ⚠).

import { formatIPv4Net, formatIPv6Net, ipv4NetContains, ipv4NetsOverlap, ipv6NetContains } from '../../lease/ip.js';
import { leaseId, type Lease, type LeaseAttrs } from '../../lease/lease.js';
import { LeaseTracker, type LeaseEvent } from '../../lease/tracker.js';
import { RateLimitedLog, type Logger } from '../../log/log.js';
import { ConfigError, type NetworkConfig } from '../../subnet/config.js';
import { SubnetError, sleep, type AcquireRequest, type HeldLease } from '../../subnet/manager.js';
import type { LeaseFeed, LeaseSource, StoredNodeInfo } from '../../subnet/source.js';
import { trackedUpdate, type LeaseUpdate, type LeaseWatchOptions } from '../../subnet/watch.js';
import { runListWatch } from '../../subnet/listwatch.js';
import { annotationNames, type Annotations } from './annotations.js';
import { KubeApiError, type KubeApi, type KubeNode, type NodeWatchEvent } from './kube-api.js';
import { annotationPatch, desiredAnnotations, nodePodCidrs, nodeToLease, storedPublicIPs, storedVtepMac } from './node-lease.js';

export const NETWORK_UNAVAILABLE_REASON = 'FlannelIsUp';
export const NETWORK_UNAVAILABLE_MESSAGE = 'Flannel is running on this node';

export interface NodeIdentity {
  /** NODE_NAME */
  nodeName?: string;
  /** POD_NAME / POD_NAMESPACE: the node is read from the pod's spec.nodeName when NODE_NAME is empty */
  podName?: string;
  podNamespace?: string;
}

export interface KubeSubnetManagerOptions {
  api: KubeApi;
  log: Logger;
  /** --kube-annotation-prefix */
  annotationPrefix: string;
  /** --set-node-network-unavailable */
  setNodeNetworkUnavailable: boolean;
  /** how often to look again for a missing node / podCIDR (flannel: 3 s) */
  retryMs?: number;
  /** injectable clock: condition timestamps and the annotate/repair deadlines */
  now?: () => Date;
}

/** Find our node's name: NODE_NAME, else the pod's spec.nodeName (spec §4.1). */
export async function resolveNodeName(api: KubeApi, id: NodeIdentity, log: Logger, signal?: AbortSignal): Promise<string> {
  if (id.nodeName) return id.nodeName;
  if (!id.podName || !id.podNamespace) {
    throw new SubnetError('kube subnet manager: set NODE_NAME, or POD_NAME and POD_NAMESPACE (from the downward API) so the node can be found');
  }
  const rl = new RateLimitedLog(30_000);
  for (;;) {
    try {
      const n = await api.getPodNodeName(id.podNamespace, id.podName);
      if (n) {
        log.info(`running on node ${n} (spec.nodeName of pod ${id.podNamespace}/${id.podName})`);
        return n;
      }
      if (rl.allow('unscheduled')) log.warn(`pod ${id.podNamespace}/${id.podName} has no spec.nodeName yet; retrying`);
    } catch (e) {
      if (e instanceof KubeApiError && e.forbidden) throw new SubnetError(`kube subnet manager: ${e.message} (the ClusterRole must allow "get" on pods)`);
      if (rl.allow('pod')) log.warn(`${(e as Error).message}; retrying`);
    }
    if (signal?.aborted) throw new SubnetError('stopped while looking up the node name');
    await sleep(3000, signal);
  }
}

export class KubeSubnetManager implements LeaseSource {
  readonly ownLoss = 'ignored' as const;
  readonly names: Annotations;
  private readonly api: KubeApi;
  private readonly log: Logger;
  private readonly retryMs: number;
  private readonly now: () => Date;
  private readonly ac = new AbortController();
  private readonly rl = new RateLimitedLog(30_000);
  /**
   * The attributes we want on our Node, set before each patch is sent: the
   * watch event of our own patch can arrive before the patch's response, and
   * must then match (else the repair below would put the old value back).
   */
  private published: LeaseAttrs | null = null;
  /** patches run one at a time, each towards the latest `published` */
  private publishing: Promise<unknown> = Promise.resolve();
  private lastRepair = 0;
  private repairTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly nodeName: string,
    private readonly o: KubeSubnetManagerOptions,
  ) {
    this.api = o.api;
    this.log = o.log;
    this.names = annotationNames(o.annotationPrefix);
    this.retryMs = o.retryMs ?? 3000;
    this.now = o.now ?? (() => new Date());
  }

  get description(): string {
    return `kubernetes ${this.api.server} (node ${this.nodeName})`;
  }

  async getNetworkConfig(): Promise<NetworkConfig> {
    throw new ConfigError('kube subnet manager: the network config is read from --net-config-path');
  }

  /** Our Node, waiting (with one line every 30 s) until it exists and `ok` says it is usable. */
  private async waitNode(what: (n: KubeNode) => string | null): Promise<KubeNode> {
    for (;;) {
      if (this.ac.signal.aborted) throw new SubnetError('stopped');
      let problem: string;
      try {
        const n = await this.api.getNode(this.nodeName);
        if (n) {
          const why = what(n);
          if (why === null) return n;
          problem = why;
        } else problem = `node ${this.nodeName} does not exist (yet)`;
      } catch (e) {
        if (e instanceof KubeApiError && e.forbidden) throw new SubnetError(`${e.message} (the ClusterRole must allow "get" on nodes)`);
        problem = (e as Error).message;
      }
      if (this.rl.allow(problem)) this.log.warn(`${problem}; retrying every ${this.retryMs / 1000} s`);
      await sleep(this.retryMs, this.ac.signal);
    }
  }

  async storedNodeInfo(): Promise<StoredNodeInfo> {
    const node = await this.waitNode(() => null);
    const ips = storedPublicIPs(this.names, node.annotations);
    return {
      publicIP: ips.v4,
      publicIPv6: ips.v6,
      vtepMac: storedVtepMac(node.annotations, this.names.backendData),
      vtepMac6: storedVtepMac(node.annotations, this.names.backendV6Data),
    };
  }

  async acquire(cfg: NetworkConfig, req: AcquireRequest): Promise<HeldLease> {
    const node = await this.waitNode((n) => {
      const c = nodePodCidrs(n);
      if (typeof c === 'string') return `node ${n.name}: ${c}`;
      if (!c.v4 && !c.v6) return `node ${n.name} has no spec.podCIDR yet (the controller-manager assigns it with --allocate-node-cidrs, or set it when creating the node)`;
      if (cfg.enableIPv4 && !c.v4) return `node ${n.name} has no IPv4 podCIDR`;
      if (cfg.enableIPv6 && !c.v6) return `node ${n.name} has no IPv6 podCIDR (EnableIPv6 needs spec.podCIDRs with an IPv4 and an IPv6 range)`;
      return null;
    });
    const cidrs = nodePodCidrs(node) as Exclude<ReturnType<typeof nodePodCidrs>, string>;
    const v4 = cidrs.v4!;
    if (cfg.network && (!ipv4NetContains(cfg.network, v4.ip) || v4.prefix < cfg.network.prefix)) {
      throw new SubnetError(`Network ${formatIPv4Net(cfg.network)} doesn't contain node ${node.name}'s PodCIDR ${formatIPv4Net(v4)}`);
    }
    const subnet6 = cfg.enableIPv6 ? cidrs.v6 : null;
    if (subnet6 && cfg.ipv6Network && (!ipv6NetContains(cfg.ipv6Network, subnet6.ip) || subnet6.prefix < cfg.ipv6Network.prefix)) {
      throw new SubnetError(`IPv6Network ${formatIPv6Net(cfg.ipv6Network)} doesn't contain node ${node.name}'s IPv6 PodCIDR ${formatIPv6Net(subnet6)}`);
    }
    this.published = req.attrs;
    await this.serially(() => this.publish(req.attrs));
    this.log.info(`node ${node.name}: podCIDR ${formatIPv4Net(v4)}${subnet6 ? ` and ${formatIPv6Net(subnet6)}` : ''} ${subnet6 ? 'are our subnets' : 'is our subnet'}; annotations published`);
    return { subnet: v4, subnet6, attrs: req.attrs, expiration: null, how: 'node-pod-cidr' };
  }

  /** Run a patch after the ones already under way (a repair and a republish must not interleave). */
  private serially<T>(f: () => Promise<T>): Promise<T> {
    const p = this.publishing.then(f);
    this.publishing = p.catch(() => undefined);
    return p;
  }

  /** Patch our annotations if any differs (flannel: retried every 3 s for 30 s). */
  private async publish(attrs: LeaseAttrs): Promise<boolean> {
    const deadline = this.now().getTime() + 30_000;
    for (;;) {
      try {
        const node = await this.api.getNode(this.nodeName);
        if (!node) throw new KubeApiError(`node ${this.nodeName} does not exist`, 404);
        const patch = annotationPatch(desiredAnnotations(this.names, attrs, node.annotations), node.annotations);
        if (!patch) return false;
        await this.api.patchNodeStatus(this.nodeName, { metadata: { annotations: patch } });
        return true;
      } catch (e) {
        if (e instanceof KubeApiError && e.forbidden) throw new SubnetError(`${e.message} (the ClusterRole must allow "patch" on nodes/status)`);
        if (this.now().getTime() > deadline || this.ac.signal.aborted) throw new SubnetError(`could not annotate node ${this.nodeName}: ${(e as Error).message}`);
        if (this.rl.allow('publish')) this.log.warn(`annotating node ${this.nodeName} failed: ${(e as Error).message}; retrying`);
        await sleep(this.retryMs, this.ac.signal);
      }
    }
  }

  async renew(lease: Lease): Promise<Lease> {
    return lease; // podCIDRs don't expire
  }

  async storedExpiration(): Promise<Date | null | undefined> {
    return null;
  }

  /** NetworkUnavailable=False (spec §4.5); a strategic merge keeps the kubelet's other conditions. */
  async complete(): Promise<void> {
    if (!this.o.setNodeNetworkUnavailable) return;
    const t = this.now().toISOString().replace(/\.\d{3}Z$/, 'Z');
    await this.api.patchNodeStatus(this.nodeName, {
      status: {
        conditions: [
          { type: 'NetworkUnavailable', status: 'False', reason: NETWORK_UNAVAILABLE_REASON, message: NETWORK_UNAVAILABLE_MESSAGE, lastTransitionTime: t, lastHeartbeatTime: t },
        ],
      },
    });
    this.log.info(`node ${this.nodeName}: condition NetworkUnavailable=False (${NETWORK_UNAVAILABLE_REASON})`);
  }

  /** Our node changed under us: put our annotations back if someone removed or altered them. */
  private onOwnNode(node: KubeNode): void {
    const attrs = this.published;
    if (!attrs || this.repairTimer || this.ac.signal.aborted) return;
    if (!annotationPatch(desiredAnnotations(this.names, attrs, node.annotations), node.annotations)) return;
    // At most one repair per 2 s (two writers fighting over the annotations
    // must not become a patch storm); a change inside that hold-off is looked
    // at again when it ends, not dropped.
    const wait = this.lastRepair + 2000 - this.now().getTime();
    if (wait > 0) {
      this.repairTimer = setTimeout(() => {
        this.repairTimer = null;
        this.repair();
      }, wait);
      this.repairTimer.unref();
      return;
    }
    this.repair();
  }

  private repair(): void {
    if (this.ac.signal.aborted) return;
    this.lastRepair = this.now().getTime();
    this.serially(async () => {
      // read again at the time of the patch: a republish may have come first
      const attrs = this.published;
      if (attrs && (await this.publish(attrs))) this.log.warn(`node ${this.nodeName}: our flannel annotations were changed or removed; restored them`);
    }).catch((e: unknown) => this.log.warn((e as Error).message));
  }

  watch(cfg: NetworkConfig, log: Logger, onUpdate: (u: LeaseUpdate) => void, opts: LeaseWatchOptions = {}): LeaseFeed {
    return new NodeWatch(this.api, this.names, cfg, log, onUpdate, opts, this.nodeName, (n) => this.onOwnNode(n));
  }

  async close(): Promise<void> {
    this.ac.abort();
    if (this.repairTimer) clearTimeout(this.repairTimer);
    this.repairTimer = null;
    this.api.close();
  }
}

/**
 * The node informer: Node objects turned into lease events. List, then watch
 * from the list's resourceVersion (bookmarks keep it fresh); any end of the
 * watch leads to a new list, diffed against what we knew.
 */
class NodeWatch implements LeaseFeed {
  private readonly tracker = new LeaseTracker();
  /** node name -> the lease id it holds in the tracker */
  private readonly byNode = new Map<string, string>();
  private readonly warned = new Map<string, string>();
  private readonly ac = new AbortController();
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  relists = 0;

  constructor(
    private readonly api: KubeApi,
    private readonly names: Annotations,
    private readonly cfg: NetworkConfig,
    private readonly log: Logger,
    private readonly onUpdate: (u: LeaseUpdate) => void,
    private readonly opts: LeaseWatchOptions,
    private readonly self: string,
    private readonly onSelf: (n: KubeNode) => void,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.ac.abort();
    this.wake?.();
    await this.loop;
  }

  /** A node's lease, or null (with one warning per node and reason when it is invalid). */
  private leaseOf(node: KubeNode): Lease | null {
    const r = nodeToLease(node, this.names, this.cfg);
    if (r.kind === 'lease') {
      this.warned.delete(node.name);
      return r.lease;
    }
    if (r.kind === 'invalid' && this.warned.get(node.name) !== r.reason) {
      this.warned.set(node.name, r.reason);
      this.log.warn(`ignoring node ${node.name}: ${r.reason}`);
    }
    return null;
  }

  /** Two nodes claiming overlapping subnets: the first one keeps it. */
  private conflict(node: string, l: Lease): string | null {
    for (const [other, id] of this.byNode) {
      if (other === node) continue;
      const o = this.tracker.get(id);
      if (o && ipv4NetsOverlap(o.subnet, l.subnet)) return other;
    }
    return null;
  }

  private apply(node: KubeNode, deleted: boolean): LeaseEvent[] {
    const out: LeaseEvent[] = [];
    const prev = this.byNode.get(node.name);
    let l = deleted ? null : this.leaseOf(node);
    if (l) {
      const other = this.conflict(node.name, l);
      if (other) {
        const reason = `its podCIDR ${formatIPv4Net(l.subnet)} overlaps node ${other}'s`;
        if (this.warned.get(node.name) !== reason) {
          this.warned.set(node.name, reason);
          this.log.warn(`ignoring node ${node.name}: ${reason}`);
        }
        l = null;
      }
    }
    const id = l ? leaseId(l) : null;
    if (prev !== undefined && prev !== id) {
      out.push(...this.tracker.remove(prev));
      this.byNode.delete(node.name);
    }
    if (l && id) {
      this.byNode.set(node.name, id);
      out.push(...this.tracker.put(l, id));
    }
    if (deleted) this.warned.delete(node.name);
    return out;
  }

  private emit(events: LeaseEvent[], snapshot: boolean): void {
    if (events.length === 0 && !snapshot) return;
    try {
      this.onUpdate(trackedUpdate(this.tracker, events, snapshot));
    } catch (e) {
      this.log.error(`lease update handler failed: ${(e as Error).message}`);
    }
  }

  private run(): Promise<void> {
    return runListWatch({ what: 'nodes', list: () => this.list() }, this.log, this.ac.signal, this.opts);
  }

  /** List the nodes, deliver the diff as a snapshot, and return the watch to run next. */
  private async list(): Promise<() => Promise<string>> {
    const { resourceVersion, nodes } = await this.api.listNodes();
    // Re-derive every node's lease from scratch, then diff with what we had.
    const before = new Map(this.byNode);
    this.byNode.clear();
    const leases: Lease[] = [];
    const seen = new Set<string>();
    // By name in code-unit order: the same on every node whatever its locale,
    // and no ICU collation loaded for it (localeCompare maps ~2.6 MB of the
    // node binary's ICU data into RSS).
    for (const n of [...nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      seen.add(n.name);
      if (n.name === this.self) this.onSelf(n);
      let l = this.leaseOf(n);
      if (l) {
        const taken = leases.find((x) => ipv4NetsOverlap(x.subnet, l!.subnet));
        if (taken) {
          this.log.warn(`ignoring node ${n.name}: its podCIDR ${formatIPv4Net(l.subnet)} overlaps another node's`);
          l = null;
        }
      }
      if (l) {
        leases.push(l);
        this.byNode.set(n.name, leaseId(l));
      }
    }
    for (const name of before.keys()) if (!seen.has(name)) this.warned.delete(name);
    this.relists++;
    this.emit(this.tracker.snapshot(leases), true);
    return () => this.watchFrom(resourceVersion);
  }

  private watchFrom(resourceVersion: string): Promise<string> {
    return new Promise<string>((resolve) => {
      let done = false;
      const finish = (why: string) => {
        if (done) return;
        done = true;
        this.wake = null;
        handle.stop();
        resolve(why);
      };
      this.wake = () => finish('stopped');
      const handle = this.api.watchNodes(resourceVersion, {
        onEvent: (e: NodeWatchEvent) => {
          if (done || e.type === 'BOOKMARK') return;
          if (e.node.name === this.self && e.type !== 'DELETED') this.onSelf(e.node);
          this.emit(this.apply(e.node, e.type === 'DELETED'), false);
        },
        onEnd: (err, gone) => finish(gone ? 'resourceVersion too old (410 Gone)' : err ? err.message : 'closed by the server'),
      });
    });
  }
}
