#!/usr/bin/env node
// flannelctl: operator CLI. Only this file reads argv/env and exits.
import { Command, Option } from 'commander';
import { leaseRows, renderLeases } from '../../ctl/leases.js';
import { stderrLogger } from '../../log/log.js';
import { openStore, type StoreFlags } from '../../store/open.js';
import { DEFAULT_ETCD_ENDPOINTS, DEFAULT_ETCD_PREFIX } from '../../store/etcd/etcd-store.js';
import { VERSION } from '../../version.js';
import { existsSync } from 'node:fs';
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
import { DEFAULT_LAB_PREFIX, LabRefused, labDown, labNamespace, labStatus, labUp, loadState, type LabStore } from '../../lab/lab.js';

function storeOptions(c: Command): Command {
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
    .option('--json', 'print JSON instead of a table');
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
    .addOption(new Option('--dir <dir>', 'where the lab keeps its state, logs and leases').default(process.env.FLANNEL_LAB_DIR || '/run/flannel-ts-lab'))
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
  .action(async (o: { hosts: number; pods: number; backend: string; store: LabStore; dir: string; prefix: string }) => {
    const progress = (l: string) => process.stderr.write(l + '\n');
    const t0 = Date.now();
    let state;
    try {
      state = await labUp({ ...o, progress });
    } catch (e) {
      // Refused before anything was made: nothing to clean up, and a running lab stays.
      if (e instanceof LabRefused) throw e;
      process.stderr.write(`lab up failed: ${(e as Error).message}\ncleaning up...\n`);
      await labDown(o.dir, o.prefix, progress);
      throw new Error('lab up failed');
    }
    const { text, reach } = await labStatus(state);
    process.stdout.write(text);
    // Show the command the way the user can type it (flannelctl may not be on PATH).
    const self = /main\.js$/.test(process.argv[1] ?? '') ? `node ${path.relative(process.cwd(), process.argv[1]!)}` : 'flannelctl';
    process.stderr.write(
      `lab up took ${((Date.now() - t0) / 1000).toFixed(1)} s.\nTry:    ${self} lab exec h1p1 -- ping -c 3 ${state.hosts.at(-1)?.pods[0]?.ip ?? ''}\nStatus: ${self} lab status\nRemove: ${self} lab down\n`,
    );
    if (reach.some((r) => !r.ok)) process.exitCode = 1;
  });

labOpts(lab.command('status'))
  .description('show each host\'s flannel.1, neighbours, FDB, routes and the pod reachability matrix')
  .action(async (o: { dir: string }) => {
    const s = loadState(o.dir);
    if (!s) throw new Error(`no lab is up (no state in ${o.dir})`);
    const { text, reach } = await labStatus(s);
    process.stdout.write(text);
    if (reach.some((r) => !r.ok)) process.exitCode = 1;
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
