// `flannelctl lab up/status/exec/down` end to end, with both stores. Each run
// uses its own namespace prefix and state dir, so it never meets a user's lab.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { FLANNELCTL } from '../helpers/flanneld.js';
import { alive } from '../../src/lab/lab.js';
import { isRoot, listNamespaces, sh } from '../helpers/netns.js';

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


for (const store of ['local', 'etcd'] as const) {
  test(`lab up --hosts 3 --pods 2 --store ${store}: full matrix, article's tables, clean down`, { skip }, async () => {
    const prefix = `ftslt${randomBytes(2).toString('hex')}-`;
    const dir = mkdtempSync(path.join(tmpdir(), 'fts-lab-'));
    const common = ['--dir', dir, '--prefix', prefix];
    const rootLinks = await sh(['ip', '-br', 'link']);
    try {
      const up = await ctl(['lab', 'up', '--hosts', '3', '--pods', '2', '--store', store, ...common]);
      assert.equal(up.code, 0, up.stderr + up.stdout);
      assert.match(up.stderr, /\[1\/5\] creating the underlay and 3 hosts/);
      assert.match(up.stdout, /30\/30 pairs reachable/);
      assert.ok(!/✗/.test(up.stdout), up.stdout);
      const state = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as { procs: Array<{ pid: number }>; hosts: Array<{ name: string; ip: string; pods: Array<{ name: string; ip: string }> }> };
      assert.equal(state.hosts.length, 3);
      // Each host section shows flannel.1 and exactly two PERMANENT neighbours, two self permanent FDB entries and two onlink routes.
      const sections = up.stdout.split('\nhost ').slice(1);
      assert.equal(sections.length, 3);
      for (const sec of sections) {
        assert.match(sec, /flannel\.1 {2}mac [0-9a-f:]{17} {2}addr 10\.244\.\d+\.0\/32 {2}mtu 1450 {2}vxlan id 1 dstport 8472 nolearning/);
        assert.equal((sec.match(/lladdr [0-9a-f:]{17} PERMANENT/g) ?? []).length, 2, sec);
        assert.equal((sec.match(/dst 192\.0\.2\.1\d self permanent/g) ?? []).length, 2, sec);
        assert.equal((sec.match(/via 10\.244\.\d+\.0 dev flannel\.1 onlink/g) ?? []).length, 2, sec);
      }
      // pods came through the CNI plugin: address in the host's subnet, default route via .1, MTU from subnet.env
      const pod = state.hosts[0]!.pods[0]!;
      const route = await sh(['ip', '-n', pod.name, 'route']);
      assert.match(route, /^default via 10\.244\.\d+\.1 dev eth0/m);
      assert.match(await sh(['ip', '-n', pod.name, 'link', 'show', 'eth0']), /mtu 1450 /);

      const again = await ctl(['lab', 'up', ...common]);
      assert.notEqual(again.code, 0);
      assert.match(again.stderr, /a lab is already up/);

      const status = await ctl(['lab', 'status', ...common]);
      assert.equal(status.code, 0);
      assert.match(status.stdout, /30\/30 pairs reachable/);

      const other = state.hosts[2]!.pods[1]!;
      const ex = await ctl(['lab', 'exec', ...common, pod.name.slice(prefix.length), '--', 'ping', '-c', '1', '-W', '2', other.ip]);
      assert.equal(ex.code, 0, ex.stderr);

      const down = await ctl(['lab', 'down', ...common]);
      assert.equal(down.code, 0, down.stderr);
      assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(prefix)), []);
      for (const p of state.procs) assert.ok(!alive(p.pid), `pid ${p.pid} still alive`);
      assert.ok(!existsSync(dir), 'state dir removed');
      assert.equal(await sh(['ip', '-br', 'link']), rootLinks, 'root namespace interfaces unchanged');
      const twice = await ctl(['lab', 'down', ...common]);
      assert.equal(twice.code, 0);
    } finally {
      await ctl(['lab', 'down', ...common]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('lab down cleans up after a crash (state file gone, processes left running)', { skip }, async () => {
  const prefix = `ftslt${randomBytes(2).toString('hex')}-`;
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-lab-'));
  const common = ['--dir', dir, '--prefix', prefix];
  try {
    const up = await ctl(['lab', 'up', '--hosts', '2', '--pods', '1', ...common]);
    assert.equal(up.code, 0, up.stderr);
    const state = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as { procs: Array<{ pid: number }> };
    rmSync(path.join(dir, 'state.json'));
    const down = await ctl(['lab', 'down', ...common]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(prefix)), []);
    for (const p of state.procs) assert.ok(!alive(p.pid), `pid ${p.pid} still alive`);
  } finally {
    await ctl(['lab', 'down', ...common]);
    rmSync(dir, { recursive: true, force: true });
  }
});
