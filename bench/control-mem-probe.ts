// Preloaded into flannel-ts's flanneld by bench/control.ts (node --import) to
// read its heap without changing the daemon: on SIGUSR2 it writes
// process.memoryUsage() as JSON to $FTS_BENCH_MEM_FILE. A few hundred bytes
// of code; it does nothing until signalled.
import { writeFileSync, renameSync } from 'node:fs';

const file = process.env.FTS_BENCH_MEM_FILE;
if (file) {
  process.on('SIGUSR2', () => {
    writeFileSync(`${file}.tmp`, JSON.stringify(process.memoryUsage()));
    renameSync(`${file}.tmp`, file);
  });
}
