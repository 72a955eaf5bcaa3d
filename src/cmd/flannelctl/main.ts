#!/usr/bin/env node
// flannelctl: operator CLI. Only this file reads argv/env and exits.
import { Command, Option } from 'commander';
import { leaseRows, renderLeases } from '../../ctl/leases.js';
import { stderrLogger } from '../../log/log.js';
import { openStore, type StoreFlags } from '../../store/open.js';
import { DEFAULT_ETCD_ENDPOINTS, DEFAULT_ETCD_PREFIX } from '../../store/etcd/etcd-store.js';
import { VERSION } from '../../version.js';

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

program.parseAsync(process.argv).then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`flannelctl: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
