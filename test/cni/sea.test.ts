// The standalone CNI plugin (scripts/build-cni-plugin.sh: an esbuild bundle
// inside a Node single executable application) must answer exactly as
// `node dist/src/cmd/cni/main.js` does, with no node reachable: first with an
// empty environment (PATH=/nonexistent), then, as root, chrooted into a
// directory that holds only the binary and the libraries ldd lists for it.
// The script reuses the binary when its inputs are unchanged.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, closeSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { privilegedSkip } from '../../src/testing/privileged.js';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const REPO = path.resolve(DIST, '..');
const MAIN = path.join(DIST, 'src/cmd/cni/main.js');
const SEA = path.join(DIST, 'cni-plugin/flannel');

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(argv: string[], env: NodeJS.ProcessEnv, stdin = ''): Ran {
  const r = spawnSync(argv[0]!, argv.slice(1), { env, input: stdin, encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Answers of the plugin under `env` + `stdin`, as the SEA and as `node main.js`. */
function both(env: Record<string, string>, stdin = ''): { sea: Ran; node: Ran } {
  return {
    sea: run(['env', '-i', 'PATH=/nonexistent', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), SEA], {}, stdin),
    node: run([process.execPath, MAIN], { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdin),
  };
}

function medianMs(argv: string[], env: NodeJS.ProcessEnv, n: number): number {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(argv[0]!, argv.slice(1), { env, input: '', stdio: ['pipe', 'ignore', 'pipe'], encoding: 'utf8' });
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    assert.equal(r.status, 0, `${argv.join(' ')} failed: ${r.stderr}`);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(n / 2)]!;
}

let tmp = '';
before(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'flannel-ts-sea-'));
  // Builds, or reuses a fresh build (then it takes well under a second).
  execFileSync('bash', [path.join(REPO, 'scripts/build-cni-plugin.sh')], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 180_000 });
});
after(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('the plugin is one ELF executable', () => {
  const st = statSync(SEA);
  assert.ok(st.isFile());
  assert.equal(st.mode & 0o777, 0o755);
  const fd = openSync(SEA, 'r');
  const head = Buffer.alloc(4);
  readSync(fd, head, 0, 4, 0);
  closeSync(fd);
  assert.deepEqual(head, Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
});

test('VERSION with no node on PATH equals node dist/src/cmd/cni/main.js', () => {
  const { sea, node } = both({ CNI_COMMAND: 'VERSION' });
  assert.equal(node.status, 0, node.stderr);
  assert.equal(sea.status, 0, sea.stderr);
  assert.equal(sea.stdout, node.stdout);
  assert.equal(sea.stderr, '');
  const v = JSON.parse(sea.stdout) as { cniVersion: string; supportedVersions: string[] };
  assert.ok(v.supportedVersions.includes('0.3.1'));
});

test('errors are the same CNI error JSON and exit code as node main.js', () => {
  const cases: { env: Record<string, string>; stdin: string }[] = [
    { env: { CNI_COMMAND: 'BOGUS' }, stdin: '{}' },
    { env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/nonexistent', CNI_IFNAME: 'eth0', CNI_PATH: '/nonexistent' }, stdin: 'not json' },
    {
      env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/nonexistent', CNI_IFNAME: 'eth0', CNI_PATH: '/nonexistent' },
      stdin: JSON.stringify({ cniVersion: '0.3.1', name: 'cbr0', type: 'flannel', subnetFile: '/nonexistent/subnet.env', delegate: { isDefaultGateway: true } }),
    },
  ];
  for (const c of cases) {
    const { sea, node } = both(c.env, c.stdin);
    assert.notEqual(node.status, 0, `node main.js accepted ${JSON.stringify(c)}`);
    assert.equal(sea.status, node.status, JSON.stringify(c));
    assert.equal(sea.stdout, node.stdout, JSON.stringify(c));
    assert.equal(sea.stderr, node.stderr, JSON.stringify(c));
  }
});

test('ADD and DEL run the delegate (a fake one here) and answer as node main.js does', () => {
  const dir = path.join(tmp, 'delegate');
  mkdirSync(path.join(dir, 'bin'), { recursive: true });
  const result = '{"cniVersion":"1.0.0","ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1"}]}';
  // Records each call; fails DEL for container "bad" with its own CNI error and a line on stderr.
  writeFileSync(
    path.join(dir, 'bin', 'fakebr'),
    `#!/bin/sh\n/bin/cat >"${dir}/$CNI_CONTAINERID.$CNI_COMMAND.stdin"\n` +
      `if [ "$CNI_CONTAINERID" = bad ] && [ "$CNI_COMMAND" = DEL ]; then echo '{"code":11,"msg":"busy"}'; echo 'fakebr: busy' >&2; exit 1; fi\n` +
      `[ "$CNI_COMMAND" = ADD ] && echo '${result}'\nexit 0\n`,
  );
  chmodSync(path.join(dir, 'bin', 'fakebr'), 0o755);
  writeFileSync(path.join(dir, 'subnet.env'), 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
  const conf = (who: string) => JSON.stringify({ cniVersion: '1.0.0', name: 'cbr0', type: 'flannel', subnetFile: path.join(dir, 'subnet.env'), dataDir: path.join(dir, `data-${who}`), delegate: { type: 'fakebr' } });
  const env = (cmd: string, cid: string) => ({ CNI_COMMAND: cmd, CNI_CONTAINERID: cid, CNI_NETNS: '/var/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: path.join(dir, 'bin') });
  for (const cid of ['c1', 'bad']) {
    const sea = run(['env', '-i', 'PATH=/nonexistent', ...Object.entries(env('ADD', cid)).map(([k, v]) => `${k}=${v}`), SEA], {}, conf('sea'));
    const node = run([process.execPath, MAIN], { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env('ADD', cid) }, conf('node'));
    assert.equal(sea.status, 0, sea.stdout + sea.stderr);
    assert.equal(sea.stdout, node.stdout);
    assert.equal(JSON.parse(sea.stdout).ips[0].address, '10.244.1.5/24');
    assert.ok(existsSync(path.join(dir, `data-sea`, cid)), 'the delegate config is saved for DEL');
    const seaDel = run(['env', '-i', 'PATH=/nonexistent', ...Object.entries(env('DEL', cid)).map(([k, v]) => `${k}=${v}`), SEA], {}, conf('sea'));
    const nodeDel = run([process.execPath, MAIN], { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env('DEL', cid) }, conf('node'));
    assert.equal(seaDel.status, nodeDel.status, seaDel.stdout + seaDel.stderr);
    assert.equal(seaDel.stdout, nodeDel.stdout);
    assert.equal(seaDel.stderr, nodeDel.stderr);
    if (cid === 'bad') {
      assert.equal(seaDel.status, 1);
      assert.deepEqual({ code: JSON.parse(seaDel.stdout).code, msg: JSON.parse(seaDel.stdout).msg }, { code: 11, msg: 'busy' });
      assert.match(seaDel.stderr, /fakebr: busy/, "the delegate's stderr is let through");
    } else {
      assert.equal(seaDel.status, 0);
      assert.equal(existsSync(path.join(dir, `data-sea`, cid)), false);
    }
  }
});

test('runs chrooted into a root that holds only the binary and its shared libraries', { skip: privilegedSkip('chroot', ['chroot', 'ldd']) }, () => {
  const root = path.join(tmp, 'root');
  mkdirSync(root);
  copyFileSync(SEA, path.join(root, 'flannel'));
  execFileSync('chmod', ['0755', path.join(root, 'flannel')]);
  const libs = execFileSync('ldd', [SEA], { encoding: 'utf8' })
    .split('\n')
    .map((l) => /(\/\S+)/.exec(l)?.[1])
    .filter((p): p is string => p !== undefined);
  assert.ok(libs.length > 0);
  for (const lib of libs) {
    mkdirSync(path.join(root, path.dirname(lib)), { recursive: true });
    copyFileSync(lib, path.join(root, lib)); // follows symlinks
  }
  // PATH only lets spawn find chroot; inside the root there is no node at all.
  const inRoot = run(['chroot', root, '/flannel'], { PATH: process.env.PATH, CNI_COMMAND: 'VERSION' });
  const { node } = both({ CNI_COMMAND: 'VERSION' });
  assert.equal(inRoot.status, 0, inRoot.stderr);
  assert.equal(inRoot.stdout, node.stdout);
});

test('VERSION latency: SEA vs node main.js (reported, not asserted)', (t) => {
  const n = 15;
  const sea = medianMs([SEA], { CNI_COMMAND: 'VERSION' }, n);
  const node = medianMs([process.execPath, MAIN], { CNI_COMMAND: 'VERSION' }, n);
  const size = statSync(SEA).size;
  t.diagnostic(`CNI VERSION median of ${n}: SEA ${sea.toFixed(1)} ms, node main.js ${node.toFixed(1)} ms; SEA size ${(size / 1048576).toFixed(1)} MiB`);
});
