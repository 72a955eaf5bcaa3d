// How long a Node process takes from its last line to being gone after
// process.exit(): a thread-pool call or worker still blocked in poll() would
// hold the exit for its poll interval. Runs `body` (an ES module; `imports`
// maps a local name to a module URL, imported as a namespace) in a child.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export function exitDelay(imports: Record<string, URL>, body: string): { status: number | null; stderr: string; exitMs: number } {
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-exit-'));
  try {
    const file = path.join(dir, 'exit.mjs');
    const head = Object.entries(imports).map(([name, url]) => `import * as ${name} from ${JSON.stringify(url.href)};`).join('\n');
    writeFileSync(file, `${head}\n${body}\nawait new Promise((r) => setTimeout(r, 20));\nprocess.stdout.write(String(Date.now()));\nprocess.exit(0);\n`);
    const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 10_000 });
    return { status: r.status, stderr: r.stderr, exitMs: Date.now() - Number(r.stdout) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
