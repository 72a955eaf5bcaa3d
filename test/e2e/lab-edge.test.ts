// `flannelctl lab up --edge` (issue 12): the office LAN behind h1 and h2,
// with its own namespace prefix and state dir, so it never meets a user's lab;
// with the local store, and with a real kube-apiserver (--store kube).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { FLANNELCTL } from '../helpers/flanneld.js';
import { isRoot, listNamespaces } from '../helpers/netns.js';
import { kubeApiserverBinary, kubeSkipReason } from '../helpers/kube.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
const pexec = promisify(execFile);

async function ctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await pexec(process.execPath, [FLANNELCTL, ...args], { timeout: 120_000, maxBuffer: 16 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

test('lab up --edge --hosts 3: office LAN behind h1 and h2; bridges, routes both sides and a pods <-> LAN matrix, all answered', { skip }, async () => {
  const prefix = `ftsle${randomBytes(2).toString('hex')}-`;
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-lab-edge-'));
  const common = ['--dir', dir, '--prefix', prefix, '--no-ui'];
  try {
    const refused = await ctl(['lab', 'up', '--edge', '--backend', 'host-gw', ...common]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /--edge: the edge gateway is a vxlan feature; use --backend vxlan \(not host-gw\)/);
    assert.deepEqual(await listNamespaces().then((l) => l.filter((n) => n.startsWith(prefix))), [], 'a refused lab up makes nothing');

    const up = await ctl(['lab', 'up', '--edge', '--hosts', '3', '--pods', '1', ...common]);
    assert.equal(up.code, 0, up.stderr + up.stdout);
    const out = up.stdout;
    assert.match(out, /6\/6 pairs reachable/);
    assert.match(out, /office LAN 192\.168\.50\.0\/24 \(switch lan; hosts lan1=192\.168\.50\.10 {2}lan2=192\.168\.50\.11\)/);
    assert.match(out, /edge node h1 {2}br-lan 192\.168\.50\.1 /);
    assert.match(out, /edge node h2 {2}br-lan 192\.168\.50\.2 /);
    assert.match(out, /br-lan +UP +192\.168\.50\.1\/24/);
    assert.match(out, /lan0@\S+ +UP .*\(the NIC on the LAN\)/);
    assert.match(out, /h1 +192\.168\.50\.0\/24 dev br-lan proto kernel scope link src 192\.168\.50\.1/);
    assert.match(out, /h2 +192\.168\.50\.0\/24 dev br-lan proto kernel scope link src 192\.168\.50\.2/);
    assert.match(out, /h3 +192\.168\.50\.0\/24 via 10\.244\.\d+\.0 dev flannel\.1 proto 222 onlink/);
    assert.match(out, /lan1 +10\.244\.0\.0\/16 via 192\.168\.50\.1 dev eth0/);
    assert.match(out, /12\/12 pod <-> LAN pings answered/);
    assert.ok(!/✗/.test(out), out);
    // lab exec reaches the LAN hosts too
    const h3pod = /h3p1=(10\.244\.\d+\.\d+)/.exec(out)![1]!;
    const ping = await ctl(['lab', 'exec', ...common.slice(0, 4), 'lan2', '--', 'ping', '-c', '1', '-W', '2', h3pod]);
    assert.equal(ping.code, 0, ping.stderr + ping.stdout);
    const status = await ctl(['lab', 'status', ...common.slice(0, 4)]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /12\/12 pod <-> LAN pings answered/);
  } finally {
    const down = await ctl(['lab', 'down', ...common.slice(0, 4)]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(prefix)), []);
    rmSync(dir, { recursive: true, force: true });
  }
});

const kubeBin = isRoot() ? await kubeApiserverBinary() : null;
const kubeSkip = !isRoot() ? 'needs root (network namespaces)' : kubeSkipReason(kubeBin);

test('lab up --edge --store kube: the segment travels in the edge-networks annotation; same matrix', { skip: kubeSkip }, async () => {
  const prefix = `ftslk${randomBytes(2).toString('hex')}-`;
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-lab-edge-kube-'));
  const common = ['--dir', dir, '--prefix', prefix];
  try {
    const up = await ctl(['lab', 'up', '--edge', '--store', 'kube', '--hosts', '3', '--pods', '1', '--no-ui', ...common]);
    assert.equal(up.code, 0, up.stderr + up.stdout);
    assert.equal((up.stdout.match(/flannel\.alpha\.coreos\.com\/edge-networks: \["192\.168\.50\.0\/24"\]/g) ?? []).length, 2, 'h1 and h2 carry the annotation');
    assert.match(up.stdout, /h3 +192\.168\.50\.0\/24 via 10\.244\.\d+\.0 dev flannel\.1 proto 222 onlink/);
    assert.match(up.stdout, /12\/12 pod <-> LAN pings answered/);
  } finally {
    const down = await ctl(['lab', 'down', ...common]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(prefix)), []);
    rmSync(dir, { recursive: true, force: true });
  }
});
