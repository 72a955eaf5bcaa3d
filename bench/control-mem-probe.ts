// Preloaded into flannel-ts's flanneld by bench/control.ts (node --import) to
// read its heap without changing the daemon: on SIGUSR2 it writes
// process.memoryUsage() as JSON to $FTS_BENCH_MEM_FILE, plus the used and total
// heap of each worker thread's isolate (from the diagnostic report) as
// `workers`. A few hundred bytes of code; it does nothing until signalled.
import { writeFileSync, renameSync } from 'node:fs';

interface HeapReport {
  javascriptHeap?: { totalMemory?: number; usedMemory?: number };
}

const file = process.env.FTS_BENCH_MEM_FILE;
if (file) {
  process.on('SIGUSR2', () => {
    const mem: Record<string, unknown> = { ...process.memoryUsage() };
    try {
      const report = process.report.getReport() as unknown as { workers?: HeapReport[] };
      mem.workers = (report.workers ?? []).map((w) => ({ heapTotal: w.javascriptHeap?.totalMemory ?? NaN, heapUsed: w.javascriptHeap?.usedMemory ?? NaN }));
    } catch {
      /* no report: main isolate only */
    }
    writeFileSync(`${file}.tmp`, JSON.stringify(mem));
    renameSync(`${file}.tmp`, file);
  });
}
