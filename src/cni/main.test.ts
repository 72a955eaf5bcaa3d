// The compiled executable (dist/src/cmd/cni/main.js) as a runtime calls it:
// env + stdin in, JSON on stdout, exit status. No namespaces needed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../cmd/cni/main.js');

function run(env: Record<string, string>, stdin: string | null) {
  const r = spawnSync(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? '', ...env },
    input: stdin ?? undefined,
    stdio: [stdin === null ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const ADD_ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/var/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' };

function noStack(s: string): void {
  assert.doesNotMatch(s, /^\s+at /m, `stack trace in output:\n${s}`);
}

test('VERSION', () => {
  const r = run({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');
  assert.equal(r.status, 0);
  assert.equal(r.stdout, '{"cniVersion":"1.0.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0"]}\n');
  assert.equal(run({ CNI_COMMAND: 'VERSION' }, null).status, 0, 'no stdin at all');
});

test('missing CNI_COMMAND: code 4 JSON on stdout, exit 1, about text on stderr', () => {
  const r = run({}, '');
  assert.equal(r.status, 1);
  const e = JSON.parse(r.stdout);
  assert.deepEqual(
    { code: e.code, msg: e.msg, cniVersion: e.cniVersion },
    { code: 4, msg: 'required env variables [CNI_COMMAND] missing', cniVersion: '1.0.0' },
  );
  assert.match(r.stderr, /CNI protocol versions supported: 0\.1\.0, 0\.2\.0, 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0/);
  noStack(r.stderr);
});

test('malformed stdin: code 6 naming the problem, never a stack trace', () => {
  for (const [stdin, re] of [
    ['{"cniVersion":"0.3.1","name":"cbr0",', /invalid JSON/],
    ['', /stdin is empty/],
    ['[]', /must be a JSON object, got array/],
    ['{"name":"cbr0","delegate":7}', /"delegate" must be an object, got number/],
  ] as const) {
    const r = run(ADD_ENV, stdin);
    assert.equal(r.status, 1, r.stdout);
    const e = JSON.parse(r.stdout);
    assert.equal(e.code, 6);
    assert.equal(e.msg, 'error decoding network configuration from stdin');
    assert.match(e.details, re);
    noStack(r.stdout + r.stderr);
  }
});

test('missing subnet.env: code 11 naming the file', () => {
  const r = run(ADD_ENV, JSON.stringify({ cniVersion: '0.3.1', name: 'cbr0', type: 'flannel', subnetFile: '/nonexistent/flannel/subnet.env' }));
  assert.equal(r.status, 1);
  const e = JSON.parse(r.stdout);
  assert.deepEqual({ cniVersion: e.cniVersion, code: e.code, msg: e.msg }, { cniVersion: '0.3.1', code: 11, msg: 'subnet file /nonexistent/flannel/subnet.env does not exist' });
  noStack(r.stderr);
});
