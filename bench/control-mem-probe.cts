// Preloaded into flannel-ts's flanneld by bench/control.ts (node --require) to
// read its heap without changing the daemon: on SIGUSR2 it writes
// process.memoryUsage() as JSON to $FTS_BENCH_MEM_FILE, plus `heapLive`: the
// heap used right after a full garbage collection (what is really retained;
// bench/control.ts reads RSS before it signals). A few hundred bytes of code;
// it does nothing until signalled.
// CommonJS (.cts -> .cjs), preloaded with --require: `--import` would make
// node run even a CommonJS main (the bundle, dist/bundle/flanneld.cjs) through
// its ESM loader, which lexes the whole file for exports: +11 MB RSS and a
// slower start that the deployed daemon does not have.
import { writeFileSync, renameSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const file = process.env.FTS_BENCH_MEM_FILE;
if (file) {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  process.on('SIGUSR2', () => {
    const mem = process.memoryUsage();
    gc();
    writeFileSync(`${file}.tmp`, JSON.stringify({ ...mem, heapLive: process.memoryUsage().heapUsed }));
    renameSync(`${file}.tmp`, file);
  });
}
