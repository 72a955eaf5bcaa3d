// `flannelctl lab up/status/exec/down` end to end, with both stores. Each run
// uses its own namespace prefix and state dir, so it never meets a user's lab.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { FLANNELCTL } from '../helpers/flanneld.js';
import { alive } from '../../src/lab/lab.js';
import { isRoot, listNamespaces, sh } from '../helpers/netns.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
const pexec = promisify(execFile);

async function ctl(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await pexec(process.execPath, [FLANNELCTL, ...args], { timeout: 120_000, maxBuffer: 16 << 20, ...(env ? { env: { ...process.env, ...env } } : {}) });
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
        assert.equal((sec.match(/via 10\.244\.\d+\.0 dev flannel\.1 proto 222 onlink/g) ?? []).length, 2, sec);
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

test('lab up with a bad size while a lab is up is refused and leaves that lab alone; a lab up that fails half-way removes only what it made', { skip }, async () => {
  const prefix = `ftslt${randomBytes(2).toString('hex')}-`;
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-lab-'));
  const common = ['--dir', dir, '--prefix', prefix];
  const prefix2 = `ftslt${randomBytes(2).toString('hex')}-`;
  const dir2 = path.join(mkdtempSync(path.join(tmpdir(), 'fts-lab2-')), 'lab');
  const ours = async (p: string) => (await listNamespaces()).filter((n) => n.startsWith(p)).sort();
  try {
    const up = await ctl(['lab', 'up', '--hosts', '2', '--pods', '1', ...common]);
    assert.equal(up.code, 0, up.stderr + up.stdout);
    const nss = await ours(prefix);
    assert.equal(nss.length, 5);
    const stateText = readFileSync(path.join(dir, 'state.json'), 'utf8');
    const state = JSON.parse(stateText) as { procs: Array<{ pid: number }> };

    for (const [args, msg] of [
      [['--hosts', '0'], /--hosts: 0 is out of range \(1\.\.50\)/],
      [['--hosts', '300'], /--hosts: 300 is out of range \(1\.\.50\)/],
      [['--pods', '51'], /--pods: 51 is out of range \(0\.\.50\)/],
    ] as const) {
      const bad = await ctl(['lab', 'up', ...args, ...common]);
      assert.notEqual(bad.code, 0, args.join(' '));
      assert.match(bad.stderr, msg);
      assert.doesNotMatch(bad.stderr, /cleaning up|removed \d+ namespaces/, 'nothing is cleaned up');
      assert.deepEqual(await ours(prefix), nss, `${args.join(' ')}: the running lab's namespaces are all there`);
      assert.equal(readFileSync(path.join(dir, 'state.json'), 'utf8'), stateText);
      for (const p of state.procs) assert.ok(alive(p.pid), `pid ${p.pid} still running`);
    }

    // Another lab that fails after it created namespaces: with only `ip` on
    // PATH, setting the hosts' sysctl fails. Its cleanup removes its own
    // namespaces and directory, and nothing of the running lab.
    const onlyIp = path.join(path.dirname(dir2), 'bin');
    mkdirSync(onlyIp);
    symlinkSync((await sh(['sh', '-c', 'command -v ip'])).trim(), path.join(onlyIp, 'ip'));
    const failed = await ctl(['lab', 'up', '--hosts', '1', '--pods', '0', '--dir', dir2, '--prefix', prefix2], { PATH: onlyIp });
    assert.notEqual(failed.code, 0);
    assert.match(failed.stderr, /lab up failed: .*sysctl[\s\S]*cleaning up/);
    assert.deepEqual(await ours(prefix2), [], 'its own namespaces are gone');
    assert.ok(!existsSync(dir2), 'its own state dir is gone');
    assert.deepEqual(await ours(prefix), nss, 'the running lab is untouched');
    const status = await ctl(['lab', 'status', ...common]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /2\/2 pairs reachable/);
  } finally {
    await ctl(['lab', 'down', ...common]);
    await ctl(['lab', 'down', '--dir', dir2, '--prefix', prefix2]);
    rmSync(dir, { recursive: true, force: true });
    rmSync(path.dirname(dir2), { recursive: true, force: true });
  }
});

/** The lines lab up / lab status print after "Word:" (e.g. "Leases:"), as typed commands. */
function hint(stderr: string, word: string): string {
  const m = new RegExp(`^${word}: +(.+)$`, 'm').exec(stderr);
  assert.ok(m, `no "${word}:" line in:\n${stderr}`);
  return m[1]!;
}

test('lab up prints commands that work as typed (with --dir/--prefix, and the store for leases); lab status says when a flanneld is not running and where its log is', { skip }, async () => {
  const prefix = `ftslt${randomBytes(2).toString('hex')}-`;
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-lab-'));
  const common = ['--dir', dir, '--prefix', prefix];
  try {
    const up = await ctl(['lab', 'up', '--hosts', '2', '--pods', '1', '--no-ui', ...common]);
    assert.equal(up.code, 0, up.stderr + up.stdout);
    const rel = path.relative(process.cwd(), FLANNELCTL);
    const self = `node ${rel.startsWith('..') ? FLANNELCTL : rel}`;
    for (const w of ['Try', 'Status', 'Remove']) {
      const line = hint(up.stderr, w);
      assert.ok(line.startsWith(`${self} lab `), `${w}: the full command, not a bare flannelctl: ${line}`);
      assert.ok(line.includes(`--dir ${dir}`) && line.includes(`--prefix ${prefix}`), `${w}: the lab's own flags: ${line}`);
    }
    assert.equal(hint(up.stderr, 'Leases'), `${self} leases --store local:${path.join(dir, 'leases.db')}`);
    // The printed commands run as printed.
    const leases = await ctlShell(hint(up.stderr, 'Leases'));
    assert.equal(leases.code, 0, leases.stderr);
    assert.equal((leases.stdout.match(/192\.0\.2\.1[12]/g) ?? []).length, 2, leases.stdout);
    const node = await ctlShell(hint(up.stderr, 'Node'));
    assert.match(node.stdout, /192\.0\.2\.11/, node.stdout + node.stderr);
    const ok = await ctlShell(hint(up.stderr, 'Status'));
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`flanneld running \\(pid \\d+\\), log ${path.join(dir, 'h1', 'flanneld.log')}`));

    const state = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as { procs: Array<{ pid: number; what: string }> };
    const f2 = state.procs.find((p) => p.what === `flanneld ${prefix}h2`)!;
    process.kill(f2.pid, 'SIGTERM');
    for (let i = 0; i < 50 && alive(f2.pid); i++) await new Promise((r) => setTimeout(r, 100));
    const st = await ctlShell(hint(up.stderr, 'Status'));
    assert.equal(st.code, 1, 'lab status fails while a flanneld is down');
    const log = path.join(dir, 'h2', 'flanneld.log');
    assert.match(st.stdout, new RegExp(`host ${prefix}h2 .*\\n  flanneld NOT RUNNING \\(pid ${f2.pid} has exited\\); its log is ${log}, last lines:\\n    \\| `));
    assert.match(st.stdout, /\| .*shutting down/i, 'its last log lines are shown');
    assert.match(st.stderr, new RegExp(`flanneld is not running on ${prefix}h2`));

    const rm = await ctlShell(hint(up.stderr, 'Remove'));
    assert.equal(rm.code, 0, rm.stderr);
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(prefix)), []);
  } finally {
    await ctl(['lab', 'down', ...common]);
    rmSync(dir, { recursive: true, force: true });
  }
});

async function ctlShell(line: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await pexec('sh', ['-c', line], { timeout: 60_000, maxBuffer: 16 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

test('lab reports for host-gw and udp show the routes via peers and flannel0, not "(none)"', { skip }, async () => {
  for (const backend of ['host-gw', 'udp'] as const) {
    const prefix = `ftslt${randomBytes(2).toString('hex')}-`;
    const dir = mkdtempSync(path.join(tmpdir(), 'fts-lab-'));
    const common = ['--dir', dir, '--prefix', prefix];
    try {
      const up = await ctl(['lab', 'up', '--backend', backend, '--hosts', '2', '--pods', '1', '--no-ui', ...common]);
      assert.equal(up.code, 0, up.stderr + up.stdout);
      const sections = up.stdout.split('\nhost ').slice(1);
      assert.equal(sections.length, 2);
      for (const sec of sections) {
        assert.doesNotMatch(sec, /^ {2}\(none\)$/m, `${backend}: a bare (none)`);
        if (backend === 'udp') assert.match(sec, /^ {2}flannel0 {2}tun {2}addr 10\.244\.\d+\.0\/32 {2}mtu 1472 /m);
        else {
          assert.match(sec, /^ {2}host-gw: no tunnel device; each peer's subnet is routed via the peer's public IP\n {4}10\.244\.\d+\.0\/24 via 192\.0\.2\.1[12] dev eth0 proto 222$/m);
        }
      }
      assert.match(up.stdout, /2\/2 pairs reachable/);
    } finally {
      await ctl(['lab', 'down', ...common]);
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

for (const [sig, when] of [
  ['SIGINT', 'its flanneld are started'],
  ['SIGTERM', 'its first namespaces exist'],
] as const) {
  test(`lab up interrupted by ${sig} once ${when} removes everything it made and says so`, { skip }, async () => {
    const prefix = `ftslt${randomBytes(2).toString('hex')}-`;
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'fts-lab-')), 'lab');
    const child = spawn(process.execPath, [FLANNELCTL, 'lab', 'up', '--hosts', '3', '--pods', '3', '--no-ui', '--dir', dir, '--prefix', prefix], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.resume();
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    const pids = new Set<number>();
    try {
      for (let i = 0; ; i++) {
        assert.ok(i < 1500 && child.exitCode === null, `lab up ended before it could be interrupted:\n${stderr}`);
        let ready = false;
        if (when === 'its flanneld are started') {
          try {
            const s = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as { procs: Array<{ pid: number; what: string }> };
            for (const p of s.procs) pids.add(p.pid);
            ready = s.procs.filter((p) => p.what.startsWith('flanneld ')).length === 3;
          } catch {
            /* not written yet */
          }
        } else ready = (await listNamespaces()).some((n) => n.startsWith(prefix));
        if (ready) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      child.kill(sig);
      const { code } = await exited;
      assert.equal(code, sig === 'SIGINT' ? 130 : 143, stderr);
      assert.match(stderr, new RegExp(`${sig}: stopping lab up; it will remove what it made`));
      assert.match(stderr, /lab up interrupted \(SIG\w+\); removing what it made/);
      assert.match(stderr, /removed \d+ namespaces, stopped \d+ processes/);
      assert.match(stderr, /lab up was interrupted; nothing of it is left/);
      assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(prefix)), [], 'no namespace left');
      assert.ok(!existsSync(dir), 'state dir removed');
      for (const pid of pids) assert.ok(!alive(pid), `pid ${pid} still alive`);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await ctl(['lab', 'down', '--dir', dir, '--prefix', prefix]);
      rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });
}
