// exitedAndDrained: the output a process wrote just before it exited is all
// there when the promise resolves. With Node's 'exit' alone it often is not:
// ping's SIGINT summary went missing that way in a CI run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { exitedAndDrained } from './exited.js';

test('resolves after the last bytes written before exit are read', async () => {
  for (let i = 0; i < 20; i++) {
    // 256 KiB fills the pipe several times over, then a marker line at the very end.
    const p = spawn('sh', ['-c', 'head -c 262144 /dev/zero | tr "\\0" x; echo; echo "1 packets transmitted, 1 received"; exit 3'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await exitedAndDrained(p);
    assert.equal(code, 3);
    assert.equal(out.length, 262144 + 1 + '1 packets transmitted, 1 received\n'.length, `run ${i}: ${out.length} bytes`);
    assert.match(out, /1 packets transmitted, 1 received\n$/);
  }
});

test('a pipe held open by a grandchild delays it by at most drainMs', async () => {
  // The shell exits at once; the backgrounded sleep keeps stdout open. It
  // prints the sleep's pid, which is killed at the end.
  const p = spawn('sh', ['-c', 'sleep 5 & echo $!; exit 0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const t0 = Date.now();
  try {
    const code = await exitedAndDrained(p, 300);
    const ms = Date.now() - t0;
    assert.equal(code, 0);
    assert.ok(ms < 2000, `took ${ms} ms`);
  } finally {
    const pid = Number(out.trim());
    if (Number.isInteger(pid) && pid > 0) process.kill(pid, 'SIGKILL');
  }
});

test('a command that cannot start resolves with null', async () => {
  const p = spawn('/nonexistent/flannel-ts-no-such-binary', [], { stdio: 'ignore' });
  assert.equal(await exitedAndDrained(p), null);
});
