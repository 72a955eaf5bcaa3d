#!/usr/bin/env node
// flanneld entry point: the only place that reads argv/env, handles signals
// and exits. Exit codes: 0 clean stop (signal, lease revoked); 1 anything fatal
// (bad flags or config, no interface, lease acquisition failed); 2 usage.

import { VERSION } from '../../version.js';

/** `-version` / `--version` (Go flag syntax, optionally `=true` in any of Go's spellings) */
const VERSION_FLAG = /^--?version(=(1|t|true|T|TRUE|True))?$/;

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  // `flanneld --version` alone is answered before the flag parser (commander)
  // is even loaded: ~15 ms less. As in flannel, the version is printed before
  // the FLANNELD_* environment is read, so a bad variable does not stop it.
  if (argv.length === 1 && VERSION_FLAG.test(argv[0]!)) {
    process.stderr.write(`${VERSION}\n`);
    return 0;
  }
  const { FlagError, parseFlanneldFlags } = await import('./flags.js');
  let parsed;
  try {
    parsed = parseFlanneldFlags(process.argv.slice(2), process.env);
  } catch (e) {
    if (e instanceof FlagError) {
      process.stderr.write(`flanneld: ${e.message}\nRun "flanneld --help" for usage.\n`);
      return 2;
    }
    throw e;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(parsed.text);
    return 0;
  }
  const f = parsed.flags;
  if (f.version) {
    process.stderr.write(`${VERSION}\n`);
    return 0;
  }
  // The daemon itself (etcd client, netlink, metrics...) is loaded only now.
  const { run } = await import('./run.js');
  return run(f);
}

main().then(
  (code) => {
    process.exitCode = code;
    // Give pino a moment to flush, then make sure no stray handle keeps us alive.
    setTimeout(() => process.exit(code), 50).unref();
  },
  (e: unknown) => {
    process.stderr.write(`flanneld: internal error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
