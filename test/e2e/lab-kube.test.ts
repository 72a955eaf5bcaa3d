// `flannelctl lab up --store kube`: the lab on a real kube-apiserver, with
// each node's flannel annotations in the report, and a clean `lab down`.
// Its own namespace prefix and state dir, so it never meets a user's lab.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { FLANNELCTL } from '../helpers/flanneld.js';
import { isRoot, listNamespaces, sh } from '../helpers/netns.js';
import { kubeApiserverBinary, kubeSkipReason } from '../helpers/kube.js';

const bin = isRoot() ? await kubeApiserverBinary() : null;
const skip = !isRoot() ? 'needs root (network namespaces)' : kubeSkipReason(bin);
const pexec = promisify(execFile);

async function ctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await pexec(process.execPath, [FLANNELCTL, ...args], { timeout: 180_000, maxBuffer: 16 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

test('lab up --store kube: Node objects with flannel\'s annotations, full matrix, clean down', { skip }, async () => {
  const prefix = `ftslk${randomBytes(2).toString('hex')}-`;
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-labk-'));
  const common = ['--dir', dir, '--prefix', prefix];
  const rootLinks = await sh(['ip', '-br', 'link']);
  try {
    const up = await ctl(['lab', 'up', '--hosts', '2', '--pods', '2', '--store', 'kube', ...common]);
    assert.equal(up.code, 0, up.stderr + up.stdout);
    assert.match(up.stderr, /\[2\/5\] starting etcd and kube-apiserver in the underlay/);
    assert.match(up.stdout, /store kube/);
    assert.match(up.stdout, /kube-apiserver https:\/\/192\.0\.2\.1:6443/);
    for (const i of [1, 2]) {
      const mac = new RegExp(`host ${prefix}h${i} [\\s\\S]*?flannel\\.1  mac (\\S+)`).exec(up.stdout)?.[1];
      assert.ok(mac, up.stdout);
      assert.ok(up.stdout.includes(`flannel.alpha.coreos.com/backend-data: {"VNI":1,"VtepMAC":"${mac}"}`), up.stdout);
      assert.ok(up.stdout.includes(`flannel.alpha.coreos.com/public-ip: 192.0.2.1${i}`), up.stdout);
      assert.match(up.stdout, new RegExp(`FLANNEL_SUBNET=10\\.244\\.${i}\\.1/24`));
    }
    assert.equal((up.stdout.match(/NetworkUnavailable=False \(FlannelIsUp\)/g) ?? []).length, 2);
    assert.match(up.stdout, /12\/12 pairs reachable/);
    const st = await ctl(['lab', 'status', ...common]);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /flannel\.alpha\.coreos\.com\/kube-subnet-manager: true/);
  } finally {
    const down = await ctl(['lab', 'down', ...common]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(prefix)), []);
    assert.equal(existsSync(path.join(dir, 'state.json')), false);
    assert.equal(await sh(['ip', '-br', 'link']), rootLinks, 'root namespace links unchanged');
    const { stdout } = await pexec('pgrep', ['-af', dir]).catch(() => ({ stdout: '' }));
    assert.equal(stdout.trim(), '', 'no process of the lab left');
    rmSync(dir, { recursive: true, force: true });
  }
});
