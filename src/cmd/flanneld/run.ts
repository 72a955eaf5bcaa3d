// flanneld after its flags are parsed: everything the daemon needs is loaded
// here, so `flanneld --version` and `--help` (main.ts) load none of it.
// Like main.ts, this is src/cmd: it reads env, handles signals, decides exit codes.

import { readFileSync } from 'node:fs';
import { BackendError, BackendRegistry, type Backend } from '../../backend/backend.js';
import { parseEdgeFlags, type EdgeOptions } from '../../backend/vxlan/edge.js';
import { edgeForwardRules, edgeMasqRules } from '../../kernel/iptables.js';
import { AllocBackend } from '../../backend/alloc/alloc.js';
import { VxlanBackend } from '../../backend/vxlan/vxlan.js';
import { HostGwBackend } from '../../backend/hostgw/hostgw.js';
import { UdpBackend } from '../../backend/udp/udp.js';
import { NetlinkChangeFeed } from '../../kernel/feed.js';
import { RtNetlink, type KernelObserver } from '../../kernel/rtnetlink.js';
import { Daemon, type TrafficRules } from '../../daemon/daemon.js';
import { heapCompactor } from '../../daemon/heap.js';
import { cleanupIptables, forwardRules, forwardRules6, IptablesManager, masqRules, masqRules6 } from '../../kernel/iptables.js';
import { cleanupNftables, NFT_TABLE_V4, NFT_TABLE_V6, nftForwardChain, nftForwardChain6, nftMasqChain, nftMasqChain6, NftablesManager, nftTableV4, nftTableV6 } from '../../kernel/nftables.js';
import { startHealthServer, type HealthServer } from '../../daemon/healthz.js';
import { DaemonMetrics } from '../../daemon/metrics.js';
import { kernelHostView, type HostView } from '../../daemon/iface.js';
import { stderrLogger } from '../../log/log.js';
import { openStore } from '../../store/open.js';
import type { LeaseStore } from '../../store/store.js';
import type { LeaseSource } from '../../subnet/source.js';
import { AnnotationPrefixError, annotationNames, DEFAULT_ANNOTATION_PREFIX } from '../../store/kube/annotations.js';
import { sdNotify } from '../../daemon/sdnotify.js';
import type { FlanneldFlags } from './flags.js';

/**
 * Backends by type; the netlink socket is on this thread with its kernel
 * waits on the libuv thread pool (AsyncTransport), so the kernel never blocks
 * the daemon's event loop, and no worker isolate costs ~10 MB of RSS (issue
 * 11). prestart() opens it as soon as the flags are checked (koffi's load,
 * ~15 ms, then happens while the store's first requests are in flight). A
 * backend that needs no netlink (alloc) closes it again.
 */
function defaultBackends(observer: () => KernelObserver | null, edge: EdgeOptions | null): { registry: BackendRegistry; current(): Backend | null; prestart(): void; ownPort(): number; close(): void } {
  let kernel: RtNetlink | null = null;
  let current: Backend | null = null;
  const k = () => {
    kernel ??= RtNetlink.openAsync();
    kernel.observer = observer();
    return kernel;
  };
  const made = <B extends Backend>(b: B): B => ((current = b), b);
  // the edge gateway routes through VTEPs: vxlan only
  const noEdge = (type: string) => {
    if (edge) throw new BackendError(`--edge-network: only the vxlan backend can be an edge gateway (Backend.Type is "${type}")`);
  };
  const registry = new BackendRegistry()
    .register('alloc', (ctx) => {
      noEdge('alloc');
      kernel?.close();
      kernel = null;
      return made(new AllocBackend(ctx));
    })
    .register('vxlan', (ctx) => made(new VxlanBackend(ctx, { kernel: k(), edge })))
    .register('host-gw', (ctx) => (noEdge('host-gw'), made(new HostGwBackend(ctx, { kernel: k() }))))
    .register('udp', (ctx) => (noEdge('udp'), made(new UdpBackend(ctx, { kernel: k() }))));
  return { registry, current: () => current, prestart: () => void (kernel ??= RtNetlink.openAsync()), ownPort: () => kernel?.ownPortId() ?? 0, close: () => kernel?.close() };
}

/**
 * Interface discovery over rtnetlink, in this process's network namespace.
 * Each question opens a short-lived socket (a few dumps, once at start-up),
 * on this thread with its waits on the thread pool, like the backends' one.
 */
function netlinkHost(): HostView {
  const ask = async <T>(q: (h: HostView) => T | Promise<T>): Promise<T> => {
    const k = RtNetlink.openAsync();
    try {
      return await q(kernelHostView(k));
    } finally {
      k.close();
    }
  };
  return { interfaces: () => ask((h) => h.interfaces()), defaultRouteInterface: () => ask((h) => h.defaultRouteInterface()) };
}

export async function run(f: FlanneldFlags): Promise<number> {
  // Text for people at a terminal, JSON lines for log shippers (--log-format).
  const format = f.logFormat || (process.stderr.isTTY ? 'text' : 'json');
  if (format !== 'text' && format !== 'json') {
    process.stderr.write(`flanneld: --log-format: "${f.logFormat}" is not "text" or "json"\n`);
    return 2;
  }
  const log = stderrLogger(f.v, 'flanneld', format);
  // A start-up error is one plain line in either format (in JSON mode, a log
  // shipper still gets the JSON line from the daemon for errors found later).
  const fatal = (msg: string): number => {
    if (format === 'text') log.error(msg);
    else process.stderr.write(`flanneld: ${msg}\n`);
    return 1;
  };
  if (f.subnetLeaseRenewMargin < 1 || f.subnetLeaseRenewMargin > 1439) {
    return fatal(`--subnet-lease-renew-margin: ${f.subnetLeaseRenewMargin} is out of range; it must be between 1 and 1439 minutes`);
  }
  if (f.kubeSubnetMgr) {
    if (f.store !== 'etcd') {
      return fatal(`--store ${f.store}: cannot be combined with --kube-subnet-mgr (Kubernetes is the store in that mode)`);
    }
    try {
      annotationNames(f.kubeAnnotationPrefix);
    } catch (e) {
      if (!(e instanceof AnnotationPrefixError)) throw e;
      return fatal(e.message);
    }
  } else {
    // As in flannel these only matter in kube mode; say so rather than ignore them silently.
    const kubeOnly = [
      f.kubeconfigFile && '--kubeconfig-file',
      f.kubeApiUrl && '--kube-api-url',
      f.kubeAnnotationPrefix !== DEFAULT_ANNOTATION_PREFIX && '--kube-annotation-prefix',
      f.setNodeNetworkUnavailableSet && '--set-node-network-unavailable',
    ].filter(Boolean);
    if (kubeOnly.length > 0) log.warn(`${kubeOnly.join(', ')}: only used with --kube-subnet-mgr; ignored`);
  }
  if (f.ipBlackholeRoute) return fatal('--ip-blackhole-route: not implemented yet in flannel-ts; start without it');
  if (f.ifaceCanReach) {
    return fatal('--iface-can-reach: not implemented yet in flannel-ts; use --iface or --iface-regex');
  }

  // The edge gateway (issue 12, src/backend/vxlan/edge.ts).
  let edge: EdgeOptions | null;
  try {
    edge = parseEdgeFlags(f.edgeNetwork, f.edgeIface, f.edgeMasq, f.edgeAllow);
  } catch (e) {
    if (!(e instanceof BackendError)) throw e;
    return fatal(e.message);
  }

  let configText: string | undefined;
  // kube mode always reads net-conf from the file (the mounted ConfigMap);
  // etcd mode only when the flag was given (flannel-ts extension).
  if (f.netConfigPathSet || f.kubeSubnetMgr) {
    try {
      configText = readFileSync(f.netConfigPath, 'utf8');
    } catch (e) {
      return fatal(`--net-config-path: failed to read net conf ${f.netConfigPath}: ${(e as Error).message}`);
    }
  }

  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    log.info(`received ${sig}, shutting down`);
    ac.abort();
    // A second signal gets the default action, as in flannel.
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let kernelObserver: KernelObserver | null = null;
  const backends = defaultBackends(() => kernelObserver, edge);
  backends.prestart();

  let store: LeaseStore | undefined;
  let leases: LeaseSource | undefined;
  try {
    if (f.kubeSubnetMgr) {
      const { connectKube, SERVICE_ACCOUNT_DIR } = await import('../../store/kube/kube-api.js');
      const { KubeSubnetManager, resolveNodeName } = await import('../../store/kube/kube-manager.js');
      const env = process.env;
      const api = await connectKube({
        ...(f.kubeconfigFile ? { kubeconfigFile: f.kubeconfigFile } : {}),
        ...(f.kubeApiUrl ? { apiUrl: f.kubeApiUrl } : {}),
        ...(env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT
          ? { inCluster: { host: env.KUBERNETES_SERVICE_HOST, port: env.KUBERNETES_SERVICE_PORT, tokenFile: `${SERVICE_ACCOUNT_DIR}/token`, caFile: `${SERVICE_ACCOUNT_DIR}/ca.crt` } }
          : {}),
      });
      log.info(`kube subnet manager: API server ${api.server}`);
      // Upstream's DaemonSet sets these; they tune flannel's bounded event
      // channel and its 10-minute informer-sync deadline. flannel-ts has
      // neither (events are coalesced, sync is retried for as long as it
      // takes), so say that they change nothing rather than ignore them silently.
      for (const v of ['EVENT_QUEUE_DEPTH', 'CONT_WHEN_CACHE_NOT_READY']) {
        if (env[v]) log.info(`${v}=${env[v]}: has no effect in flannel-ts (no bounded event queue; the node list is retried until it works)`);
      }
      const nodeName = await resolveNodeName(
        api,
        {
          ...(env.NODE_NAME ? { nodeName: env.NODE_NAME } : {}),
          ...(env.POD_NAME ? { podName: env.POD_NAME } : {}),
          ...(env.POD_NAMESPACE ? { podNamespace: env.POD_NAMESPACE } : {}),
        },
        log,
        ac.signal,
      );
      leases = new KubeSubnetManager(nodeName, {
        api,
        log: log.child('kube'),
        annotationPrefix: f.kubeAnnotationPrefix,
        setNodeNetworkUnavailable: f.setNodeNetworkUnavailable,
      });
    } else {
      store = await openStore(f, log);
    }
  } catch (e) {
    backends.close();
    if (ac.signal.aborted) return 0;
    return fatal((e as Error).message);
  }
  // Masquerade/forward rules (spec §9): iptables, or nftables with EnableNFTables.
  // Like flannel, each mode first removes what the other mode left behind
  // (spec §9.4). Unlike flannel, rules this run does not want (e.g. after a
  // restart without --ip-masq) are removed too, and a run that wants none
  // creates no empty table; it then only reads the firewall.
  let trafficMgr: IptablesManager | NftablesManager | null = null;
  const traffic: TrafficRules = {
    setup: async (cfg, own) => {
      trafficMgr?.close();
      trafficMgr = null;
      const masq = f.ipMasq && cfg.network !== null;
      const fwd = f.iptablesForwardRules && cfg.network !== null;
      const v6 = cfg.ipv6Network !== null && own.subnet6 !== null;
      if (cfg.enableNFTables) {
        if (edge?.masq) throw new Error('--edge-masq: not supported with EnableNFTables yet in flannel-ts; use iptables mode (EnableNFTables false)');
        if (edge?.allow) throw new Error('--edge-allow: not supported with EnableNFTables yet in flannel-ts; use iptables mode (EnableNFTables false)');
        await cleanupIptables(log.child('iptables'));
        const chains = [];
        if (masq) chains.push(nftMasqChain(cfg.network!, own.subnet, !f.ipMasqFullyRandomDisable));
        if (fwd) chains.push(nftForwardChain(cfg.network!));
        const chains6 = [];
        if (v6 && f.ipMasq) chains6.push(nftMasqChain6(cfg.ipv6Network!, own.subnet6!, !f.ipMasqFullyRandomDisable));
        if (v6 && f.iptablesForwardRules) chains6.push(nftForwardChain6(cfg.ipv6Network!));
        const tables = [...(chains.length ? [nftTableV4(chains)] : []), ...(chains6.length ? [nftTableV6(chains6)] : [])];
        // a table this run does not want (no rules, or no EnableIPv6) is removed
        const unwanted = [`ip ${NFT_TABLE_V4}`, `ip6 ${NFT_TABLE_V6}`].filter((n) => !tables.some((t) => `${t.family} ${t.name}` === n));
        if (unwanted.length) await cleanupNftables(log.child('nftables'), { tables: unwanted });
        if (tables.length === 0) return;
        const nft = (trafficMgr = new NftablesManager(log.child('nftables'), f.iptablesResync));
        await nft.setup(tables); // both tables in one nft transaction
        return;
      }
      await cleanupNftables(log.child('nftables'));
      const sets = [];
      if (masq) sets.push(masqRules(cfg.network!, own.subnet, !f.ipMasqFullyRandomDisable));
      if (fwd) sets.push(forwardRules(cfg.network!));
      if (edge?.masq && cfg.network) sets.push(edgeMasqRules(cfg.network, edge.segments));
      if (edge?.allow && cfg.network) sets.push(edgeForwardRules(cfg.network, edge.segments, edge.allow));
      await cleanupIptables(log.child('iptables'), { families: ['iptables'], keep: sets.map((s) => s.chain) });
      // IPv6 (EnableIPv6): the same chains with ip6tables for IPv6Network and our v6 subnet (spec §9).
      // Without EnableIPv6, ip6tables chains of an earlier dual-stack run are removed.
      const sets6 = [];
      if (v6 && f.ipMasq) sets6.push(masqRules6(cfg.ipv6Network!, own.subnet6!, !f.ipMasqFullyRandomDisable));
      if (v6 && f.iptablesForwardRules) sets6.push(forwardRules6(cfg.ipv6Network!));
      await cleanupIptables(log.child('iptables'), { families: ['ip6tables'], keep: sets6.map((s) => s.chain) });
      sets.push(...sets6);
      if (sets.length === 0) return;
      const ipt = (trafficMgr = new IptablesManager(log.child('iptables'), f.iptablesResync));
      await ipt.setup(sets);
    },
    close: () => trafficMgr?.close(),
  };
  const notifySocket = process.env.NOTIFY_SOCKET;
  const daemon = new Daemon({
    ...(leases ? { leases } : { store: store! }),
    // systemd Type=notify: READY=1 once subnet.env is written (spec §0 step 19); errors are only logged.
    onReady: () => {
      try {
        if (sdNotify(notifySocket, 'READY=1')) log.info(`notified systemd: READY=1 (${notifySocket})`);
      } catch (e) {
        log.warn((e as Error).message);
      }
    },
    backends: backends.registry,
    log,
    host: netlinkHost(),
    iface: { iface: f.iface, ifaceRegex: f.ifaceRegex, ...(f.publicIp ? { publicIP: f.publicIp } : {}), ...(f.publicIpv6 ? { publicIPv6: f.publicIpv6 } : {}) },
    subnetFile: f.subnetFile,
    ipMasq: f.ipMasq,
    renewMarginMinutes: f.subnetLeaseRenewMargin,
    traffic,
    // kernel notifications for self-healing; subscribed only when the backend takes them (vxlan, host-gw);
    // what our own requests caused is dropped in the kernel (the backend ignores it anyway)
    feed: new NetlinkChangeFeed({ ownPort: () => backends.ownPort() }),
    // Metrics are only readable on the healthz server (/metrics): without it, prom-client is not even loaded.
    metrics: new DaemonMetrics(f.healthzPort > 0 ? await import('prom-client') : null),
    ...(configText !== undefined ? { configText } : {}),
    // the heap shrunk once after start-up and after each burst of lease changes (heap.ts); never if this Node cannot
    ...withGc(heapCompactor()),
  });

  let health: HealthServer | null = null;
  if (f.healthzPort > 0) {
    try {
      health = await startHealthServer(f.healthzIp, f.healthzPort, () => daemon.ready, daemon.metrics.registry, () => daemon.conditions());
      log.info(`healthz listening on ${f.healthzIp}:${health.port}`);
    } catch (e) {
      await store?.close();
      await leases?.close();
      backends.close();
      return fatal(`--healthz-port: cannot listen on ${f.healthzIp}:${f.healthzPort}: ${(e as Error).message}`);
    }
  }

  kernelObserver = daemon.metrics.kernelObserver;
  daemon.metrics.bind({
    backend: () => backends.current()?.metrics?.(),
    leaseExpiry: () => (daemon.lease ? daemon.lease.expiration : undefined),
  });
  daemon.metrics.startLoopMonitor();
  const exit = await daemon.run(ac.signal);
  daemon.metrics.stopLoopMonitor();
  await health?.close();
  await store?.close();
  backends.close();
  if (exit.code === 0) log.info('Exiting cleanly...');
  else if (format === 'json') process.stderr.write(`flanneld: ${exit.reason}\n`);
  return exit.code;
}

const withGc = (gc: (() => void) | null) => (gc ? { collectGarbage: gc } : {});
