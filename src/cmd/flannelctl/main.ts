#!/usr/bin/env node
// flannelctl: operator CLI. Only this file reads argv/env and exits.
import { Command, Option } from 'commander';
import { leaseRows, renderLeases } from '../../ctl/leases.js';
import { stderrLogger } from '../../log/log.js';
import { openStore, type StoreFlags } from '../../store/open.js';
import { DEFAULT_ETCD_ENDPOINTS, DEFAULT_ETCD_PREFIX } from '../../store/etcd/etcd-store.js';
import { VERSION } from '../../version.js';
import { spawnSync } from 'node:child_process';
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
    .addOption(new Option('--store <store>', 'lease store: etcd').default('etcd'))
    .option('--json', 'print JSON instead of a table');
}

const program = new Command('flannelctl').description('flannel-ts operator CLI').version(VERSION);

for (const name of ['leases', 'status']) {
  storeOptions(program.command(name))
    .description(name === 'leases' ? 'list the subnet leases in the store' : 'alias of "leases"')
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
