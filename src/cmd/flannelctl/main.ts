#!/usr/bin/env node
// flannelctl: operator CLI. Only this file reads argv/env and exits.
import { Command, Option } from 'commander';
import { leaseRows, renderLeases } from '../../ctl/leases.js';
import { stderrLogger } from '../../log/log.js';
import { openStore, type StoreFlags } from '../../store/open.js';
import { DEFAULT_ETCD_ENDPOINTS, DEFAULT_ETCD_PREFIX } from '../../store/etcd/defaults.js';
import { VERSION } from '../../version.js';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { RtNetlink } from '../../kernel/rtnetlink.js';
import type { LeaseStore } from '../../store/store.js';
import { DEFAULT_SUBNET_FILE } from '../../subnet/subnet-env.js';
import { StoreUnreachable, readCluster, readSubnetFile, withTimeout } from '../../ctl/cluster.js';
import { readFirewall, readSysctl } from '../../ctl/host.js';
import { readKernel } from '../../ctl/kernel-view.js';
import { renderTrace, trace, traceExitCode, type NodeSnapshot } from '../../ctl/trace.js';
import { diagnose, diagnoseExitCode, renderDiagnose } from '../../ctl/diagnose.js';
import { renderStatus, status, statusExitCode } from '../../ctl/status.js';
import { execFile, spawnSync } from 'node:child_process';
import path from 'node:path';
import {
  DEFAULT_LAB_DIR,
  DEFAULT_LAB_PREFIX,
  LabInterrupted,
  LabRefused,
  labDown,
  labFlags,
  labHints,
  labNamespace,
  labStatus,
  labUiFile,
  labUp,
  loadState,
  type LabState,
  type LabStore,
} from '../../lab/lab.js';
import { UiServer, isLoopback, parseListen } from '../../ui/server.js';
import { labSource, storeSource } from '../../ui/sources.js';
import type { UiSource } from '../../ui/server.js';

/** flanneld's store flags. */
function storeFlags(c: Command): Command {
  const env = process.env;
  return c
    .addOption(new Option('--etcd-endpoints <list>', 'comma-separated etcd endpoints').default(env.FLANNELD_ETCD_ENDPOINTS || DEFAULT_ETCD_ENDPOINTS))
    .addOption(new Option('--etcd-prefix <prefix>', 'etcd prefix').default(env.FLANNELD_ETCD_PREFIX || DEFAULT_ETCD_PREFIX))
    .addOption(new Option('--etcd-keyfile <file>').default(env.FLANNELD_ETCD_KEYFILE || ''))
    .addOption(new Option('--etcd-certfile <file>').default(env.FLANNELD_ETCD_CERTFILE || ''))
    .addOption(new Option('--etcd-cafile <file>').default(env.FLANNELD_ETCD_CAFILE || ''))
    .addOption(new Option('--etcd-username <user>').default(env.FLANNELD_ETCD_USERNAME || ''))
    .addOption(new Option('--etcd-password <password>').default(env.FLANNELD_ETCD_PASSWORD || ''))
    .addOption(new Option('--store <store>', 'lease store: etcd, or local:/path/leases.db').default(process.env.FLANNELD_STORE || 'etcd'))
    // which etcd client (gateway, or etcd3 for one more release), as flanneld's FLANNEL_ETCD_CLIENT
    .addOption(new Option('--etcd-client <client>').default(env.FLANNEL_ETCD_CLIENT || '').hideHelp());
}

function storeOptions(c: Command): Command {
  return storeFlags(c).option('--json', 'print JSON instead of a table');
}

/**
 * How the user ran this flannelctl, so printed commands work as typed:
 * "node dist/src/cmd/flannelctl/main.js" when it was run that way (it is not
 * on PATH after `npm ci`), else "flannelctl".
 */
function selfCommand(): string {
  const script = process.argv[1] ?? '';
  if (!/main\.js$/.test(script)) return 'flannelctl';
  const rel = path.relative(process.cwd(), script);
  return `node ${rel.startsWith('..') || path.isAbsolute(rel) ? script : rel}`;
}

const program = new Command('flannelctl').description('flannel-ts operator CLI').version(VERSION);

storeOptions(program.command('leases'))
  .description('list the subnet leases in the store')
  .action(async (opts: StoreFlags & { json?: boolean }) => {
    const log = stderrLogger(0, 'flannelctl');
    const store = await openStore(opts, log);
    try {
      const rows = await leaseRows(store);
      process.stdout.write(opts.json ? JSON.stringify(rows, null, 2) + '\n' : renderLeases(rows));
    } finally {
      await store.close();
    }
  });

// ---------------------------------------------------------------- status, diagnose, trace

interface NodeFlags extends StoreFlags {
  json?: boolean;
  subnetFile: string;
  timeout: number;
}

/** Store flags plus what every node-side command shares. */
function nodeOptions(c: Command): Command {
  return storeOptions(c)
    .addOption(new Option('--subnet-file <file>', 'the subnet.env flanneld writes on this node').default(process.env.FLANNELD_SUBNET_FILE || DEFAULT_SUBNET_FILE))
    .addOption(new Option('--timeout <seconds>', 'give up on the store after this long').default(5).argParser((v) => numArg('--timeout', v)));
}

/**
 * Opens the store for a read-only command. A store that cannot even be
 * opened (a local database file that is missing or unreadable) is reported
 * like an unreachable one; bad flags still throw.
 */
async function openReadOnly(f: StoreFlags): Promise<LeaseStore | StoreUnreachable> {
  if (f.store.startsWith('local:')) {
    const file = f.store.slice('local:'.length);
    if (file && !existsSync(file)) return new StoreUnreachable(`local ${file}`, 'no such file (flannelctl does not create it)', 0);
  }
  try {
    return await openStore(f, stderrLogger(0, 'flannelctl'));
  } catch (e) {
    if (f.store.startsWith('local:')) return new StoreUnreachable(f.store, (e as Error).message, 0);
    throw e;
  }
}

async function closeQuietly(s: LeaseStore | StoreUnreachable): Promise<void> {
  if (s instanceof StoreUnreachable) return;
  await withTimeout(s.close(), 1000, 'close').catch(() => undefined);
}

function openKernel(): RtNetlink | null {
  try {
    return RtNetlink.open({ timeoutMs: 3000 });
  } catch {
    return null;
  }
}

nodeOptions(program.command('status'))
  .description('network config, every lease (marking this node), this node\'s kernel entries per peer, and the local flanneld\'s health')
  .addOption(new Option('--healthz-port <port>', 'also ask the local flanneld on its health port (its --healthz-port)').argParser((v) => intArg('--healthz-port', v)))
  .addOption(new Option('--healthz-ip <ip>', 'address of the health port').default('127.0.0.1'))
  .action(async (o: NodeFlags & { healthzPort?: number; healthzIp: string }) => {
    const store = await openReadOnly(o);
    const kernel = openKernel();
    try {
      const r = await status({
        store,
        storeTimeoutMs: o.timeout * 1000,
        subnetFile: o.subnetFile,
        kernel,
        ...(o.healthzPort !== undefined ? { daemon: { host: o.healthzIp, port: o.healthzPort } } : {}),
      });
      process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : renderStatus(r));
      if (!r.store.ok && !o.json) process.stderr.write(`flannelctl: cannot read the store (${r.store.error}); check --etcd-endpoints / --store\n`);
      process.exitCode = statusExitCode(r);
    } finally {
      kernel?.close();
      await closeQuietly(store);
    }
  });

nodeOptions(program.command('diagnose'))
  .description('check this node (run inside its network namespace) against the store, without flanneld\'s help; exit 0 healthy, 1 problems found, 2 diagnose failed')
  .addOption(new Option('--probe-timeout <seconds>', 'deadline for the probes through the overlay (0: no probes)').default(2).argParser((v) => numArg('--probe-timeout', v)))
  .action(async (o: NodeFlags & { probeTimeout: number }) => {
    try {
      const store = await openReadOnly(o);
      const kernel = RtNetlink.open({ timeoutMs: 3000 });
      try {
        const r = await diagnose({ store, kernel, subnetFile: o.subnetFile, storeTimeoutMs: o.timeout * 1000, probeTimeoutMs: o.probeTimeout * 1000 });
        process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : renderDiagnose(r));
        process.exitCode = diagnoseExitCode(r);
      } finally {
        kernel.close();
        await closeQuietly(store);
      }
    } catch (e) {
      process.stderr.write(`flannelctl diagnose: ${(e as Error).message}\n`);
      process.exitCode = 2;
    }
  });

nodeOptions(program.command('trace'))
  .description('print the path of one packet from a pod on this node to another pod, layer by layer, from the live state; stops at the first missing step (exit 1)')
  .argument('<src>', 'source pod IP (on this node)')
  .argument('<dst>', 'destination pod IP')
  .addOption(new Option('--dst-netns <ns>', 'also read the receiving host\'s kernel from this network namespace (lab and tests)'))
  .action(async (src: string, dst: string, o: NodeFlags & { dstNetns?: string }) => {
    const store = await openReadOnly(o);
    try {
      if (store instanceof StoreUnreachable) throw new Error(`cannot read the store: ${store.message}`);
      const [cluster, here, there] = await Promise.all([
        readCluster(store, o.timeout * 1000),
        readNodeSnapshot(),
        o.dstNetns ? snapshotOfNetns(o.dstNetns) : Promise.resolve(null),
      ]);
      let subnetFile = null;
      try {
        subnetFile = readSubnetFile(o.subnetFile);
      } catch {
        /* trace can tell this node by its addresses */
      }
      const r = trace({ src, dst, cluster, here, there, subnetFile });
      process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : renderTrace(r));
      process.exitCode = traceExitCode(r);
    } catch (e) {
      process.stderr.write(`flannelctl trace: ${(e as Error).message}\n`);
      process.exitCode = 2;
    } finally {
      await closeQuietly(store);
    }
  });

// Used by `trace --dst-netns`: prints this namespace's state as JSON.
program
  .command('node-snapshot', { hidden: true })
  .action(async () => {
    process.stdout.write(JSON.stringify(await readNodeSnapshot()) + '\n');
  });

// Used by the topology page in the lab: this namespace's kernel tables as JSON.
program
  .command('kernel-snapshot', { hidden: true })
  .action(async () => {
    const k = RtNetlink.open({ timeoutMs: 3000 });
    try {
      process.stdout.write(JSON.stringify(await readKernel(k)) + '\n');
    } finally {
      k.close();
    }
  });

// ---------------------------------------------------------------- ui

storeFlags(program.command('ui'))
  .description('serve a live topology page: hosts, subnets, VTEP MACs and public IPs, the tunnels between them, and a host\'s kernel tables on click')
  .addOption(new Option('--listen <addr>', 'where to serve it (host:port; a bare port means 127.0.0.1)').default('127.0.0.1:8480'))
  .addOption(new Option('--lab <dir>', 'serve it for the lab whose state is in <dir>: its store, ping probes between the hosts, every host\'s kernel tables'))
  .addOption(new Option('--interval <seconds>', 'how often to probe and refresh').default(2).argParser((v) => numArg('--interval', v)))
  .action(async (o: StoreFlags & { listen: string; lab?: string; interval: number }) => {
    const log = stderrLogger(0, 'flannelctl', process.stderr.isTTY ? 'text' : 'json');
    const { host, port } = parseListen(o.listen);
    let source: UiSource;
    let lab: LabState | null = null;
    if (o.lab) {
      lab = loadState(o.lab);
      if (!lab) throw new Error(`no lab is up (no state in ${o.lab})`);
      source = await labSource(lab, log);
    } else {
      if (o.store.startsWith('local:') && !existsSync(o.store.slice('local:'.length))) throw new Error(`--store ${o.store}: no such file (flannelctl does not create it)`);
      source = await storeSource(o, log);
    }
    const server = new UiServer({ host, port, source, log, intervalMs: Math.max(0.2, o.interval) * 1000 });
    let url: string;
    try {
      url = await server.start();
    } catch (e) {
      await source.close();
      throw new Error(`cannot serve on ${o.listen}: ${(e as Error).message}`);
    }
    if (lab) writeFileSync(labUiFile(lab.dir), JSON.stringify({ url, pid: process.pid }) + '\n');
    process.stderr.write(`flannelctl ui: serving ${url} (store ${source.storeLabel}); stop with Ctrl-C\n`);
    if (!isLoopback(host)) process.stderr.write(`flannelctl ui: warning: ${host} is not loopback; the page has no authentication and shows this network's layout to anyone who can reach it\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await server.stop();
    if (lab) {
      try {
        if ((JSON.parse(readFileSync(labUiFile(lab.dir), 'utf8')) as { pid?: number }).pid === process.pid) rmSync(labUiFile(lab.dir), { force: true });
      } catch {
        /* already gone (lab down) */
      }
    }
  });

async function readNodeSnapshot(): Promise<NodeSnapshot> {
  const k = RtNetlink.open({ timeoutMs: 3000 });
  try {
    const [kernel, firewall] = await Promise.all([readKernel(k), readFirewall()]);
    return { kernel, firewall, ipForward: readSysctl('net/ipv4/ip_forward') };
  } finally {
    k.close();
  }
}

/** Runs `flannelctl node-snapshot` inside another network namespace. */
function snapshotOfNetns(ns: string): Promise<NodeSnapshot> {
  if (!/^[A-Za-z0-9_.-]+$/.test(ns)) return Promise.reject(new Error(`--dst-netns: "${ns}" is not a namespace name`));
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', ns, process.execPath, process.argv[1]!, 'node-snapshot'], { timeout: 15_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`--dst-netns ${ns}: ${(stderr || err.message).trim()}`));
      try {
        resolve(JSON.parse(stdout) as NodeSnapshot);
      } catch (e) {
        reject(new Error(`--dst-netns ${ns}: bad snapshot: ${(e as Error).message}`));
      }
    });
  });
}

const lab = program.command('lab').description('a multi-host flannel overlay on this machine, in network namespaces (needs root)');
const labOpts = (c: Command) =>
  c
    .addOption(new Option('--dir <dir>', 'where the lab keeps its state, logs and leases').default(process.env.FLANNEL_LAB_DIR || DEFAULT_LAB_DIR))
    .addOption(new Option('--prefix <prefix>', 'namespace name prefix').default(DEFAULT_LAB_PREFIX));

labOpts(lab.command('up'))
  .description('create hosts, start one flanneld per host and attach pods through the flannel CNI plugin')
  .addOption(new Option('--hosts <n>', 'number of hosts').default(3).argParser((v) => intArg('--hosts', v)))
  .addOption(new Option('--pods <n>', 'pods per host').default(2).argParser((v) => intArg('--pods', v)))
  .addOption(new Option('--backend <type>', 'flannel backend').default('vxlan').choices(['vxlan', 'host-gw', 'udp']))
  .addOption(
    new Option('--store <store>', 'lease store: the embedded local store, a real etcd-server, or a real kube-apiserver (flanneld --kube-subnet-mgr)')
      .default('local')
      .choices(['local', 'etcd', 'kube']),
  )
  .addOption(new Option('--ui <addr>', 'serve the topology page here (host:port; port 0 picks a free one)').default('127.0.0.1:0'))
  .option('--no-ui', 'do not serve the topology page')
  .option('--ipv6', 'dual-stack: an IPv6 underlay (2001:db8::/64), EnableIPv6 with IPv6Network fd00:10:244::/56, pods with both addresses, and a ping -6 matrix')
  .option('--edge', 'add an office LAN (192.168.50.0/24, two plain hosts) behind h1, and h2 with 3+ hosts, as edge gateways (vxlan)')
  .action(async (o: { hosts: number; pods: number; backend: string; store: LabStore; dir: string; prefix: string; ui: string | false; ipv6?: boolean; edge?: boolean }) => {
    const progress = (l: string) => process.stderr.write(l + '\n');
    const self = selfCommand();
    if (o.ui !== false) parseListen(o.ui);
    const t0 = Date.now();
    // Ctrl-C (SIGINT) or SIGTERM while the lab is being made: stop, remove
    // what this lab up made, and say so. A third signal gives up at once.
    const ac = new AbortController();
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals === 1) {
        progress(`\n${sig}: stopping lab up; it will remove what it made`);
        ac.abort(sig);
      } else if (signals === 2) progress(`${sig}: still cleaning up; one more signal leaves the rest for: ${self} lab down${labFlags(o)}`);
      else process.exit(sig === 'SIGINT' ? 130 : 143);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    let state: LabState;
    try {
      state = await labUp({ ...o, progress, signal: ac.signal, self });
    } catch (e) {
      // Refused before anything was made: nothing to clean up, and a running lab stays.
      if (e instanceof LabRefused) {
        if (!ac.signal.aborted) throw e;
        progress('lab up was interrupted before it made anything');
        process.exit(ac.signal.reason === 'SIGTERM' ? 143 : 130);
      }
      const interrupted = ac.signal.aborted || e instanceof LabInterrupted;
      if (interrupted) progress(`lab up interrupted (${String(ac.signal.reason ?? 'signal')}); removing what it made...`);
      else process.stderr.write(`lab up failed: ${(e as Error).message}\ncleaning up...\n`);
      await labDown(o.dir, o.prefix, progress);
      if (interrupted) {
        progress('lab up was interrupted; nothing of it is left');
        process.exit(ac.signal.reason === 'SIGTERM' ? 143 : 130);
      }
      throw new Error('lab up failed');
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    // The lab is complete: a signal during the final check leaves it up.
    const late = (sig: NodeJS.Signals) => {
      progress(`\n${sig}: the lab is up (only its final check was cut short). Remove it with: ${self} lab down${labFlags(state)}`);
      process.exit(sig === 'SIGINT' ? 130 : 143);
    };
    process.once('SIGINT', late);
    process.once('SIGTERM', late);
    const { text, reach, stopped, reach6 } = await labStatus(state);
    process.stdout.write(text);
    process.stderr.write(`lab up took ${((Date.now() - t0) / 1000).toFixed(1)} s.\n${labHints(state, self).join('\n')}\n`);
    if (reach.some((r) => !r.ok) || reach6?.some((r) => !r.ok) || stopped.length > 0) process.exitCode = 1;
  });

labOpts(lab.command('status'))
  .description('show each host\'s flanneld, flannel device, neighbours, FDB, routes, the pod reachability matrix, the page\'s URL and how to reach the lab\'s store')
  .action(async (o: { dir: string; prefix: string }) => {
    const s = loadState(o.dir);
    if (!s) throw new Error(`no lab is up (no state in ${o.dir})${o.dir === DEFAULT_LAB_DIR ? '; a lab made with --dir needs the same --dir here' : ''}`);
    const { text, reach, stopped, reach6 } = await labStatus(s);
    process.stdout.write(text);
    process.stderr.write(`${labHints(s, selfCommand()).join('\n')}\n`);
    for (const h of stopped) process.stderr.write(`flanneld is not running on ${h}; see its log (above)\n`);
    if (reach.some((r) => !r.ok) || reach6?.some((r) => !r.ok) || stopped.length > 0) process.exitCode = 1;
  });

labOpts(lab.command('exec'))
  .description('run a command in a pod (or host) namespace, e.g. lab exec h1p1 -- ping 10.244.3.11')
  .argument('<name>', 'pod or host: h1p1, h2, or the full namespace name')
  .argument('<cmd...>', 'command and arguments')
  .action(async (name: string, cmd: string[], o: { dir: string }) => {
    const s = loadState(o.dir);
    if (!s) throw new Error(`no lab is up (no state in ${o.dir})`);
    const ns = labNamespace(s, name);
    if (!ns) throw new Error(`no pod or host named "${name}" in the lab (pods: ${s.hosts.flatMap((h) => h.pods.map((p) => p.name.slice(s.prefix.length))).join(', ')})`);
    const r = spawnSync('ip', ['netns', 'exec', ns, ...cmd], { stdio: 'inherit' });
    process.exitCode = r.status ?? 1;
  });

labOpts(lab.command('down'))
  .description('remove every namespace, process and file the lab made (safe to run twice)')
  .action(async (o: { dir: string; prefix: string }) => {
    await labDown(o.dir, o.prefix, (l) => process.stderr.write(l + '\n'));
  });

function numArg(name: string, v: string): number {
  if (!/^\d+(\.\d+)?$/.test(v)) throw new Error(`${name}: "${v}" is not a number of seconds`);
  return Number(v);
}

function intArg(name: string, v: string): number {
  if (!/^\d+$/.test(v)) throw new Error(`${name}: "${v}" is not a whole number`);
  return Number(v);
}

program.parseAsync(process.argv).then(
  () => process.exit(process.exitCode ?? 0),
  (e: unknown) => {
    process.stderr.write(`flannelctl: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
