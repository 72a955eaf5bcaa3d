// `flannelctl lab up --ipv6` (dual-stack) end to end: a dual-stack underlay,
// EnableIPv6 + IPv6Network, pods with both addresses through the CNI plugin,
// and a report with both families' tables and a ping matrix per family; then
// `lab status` shows the same and `lab down` removes everything.
//
// The same with --store kube (real kube-apiserver, Nodes with dual-stack
// spec.podCIDRs) when the apiserver binary is available: flannel's v6
// annotations (public-ipv6, backend-v6-data) exactly, and both matrices.
//
// Each run uses its own namespace prefix and state dir.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { FLANNELCTL } from '../helpers/flanneld.js';
import { alive, findPlugin } from '../../src/lab/lab.js';
import { isRoot, listNamespaces, sh } from '../helpers/netns.js';
import { kubeApiserverBinary, kubeSkipReason } from '../helpers/kube.js';

const skip = !isRoot() ? 'needs root (network namespaces)' : !findPlugin('bridge') ? 'needs the CNI bridge and host-local plugins' : false;
const pexec = promisify(execFile);

async function ctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await pexec(process.execPath, [FLANNELCTL, ...args], { timeout: 240_000, maxBuffer: 16 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

interface State {
  ipv6?: boolean;
  procs: Array<{ pid: number; what: string }>;
  hosts: Array<{ name: string; ip: string; ip6?: string; dir: string; pods: Array<{ name: string; ip: string; ip6?: string }> }>;
}

function procState(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.slice(0, 1) ?? '?';
  } catch {
    return 'gone';
  }
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The v4 and v6 tables of every host section, checked against the other host's addresses and MACs. */
async function assertTables(stdout: string, st: State): Promise<void> {
  const sections = stdout.split('\nhost ').slice(1);
  assert.equal(sections.length, 2, stdout);
  for (const [i, sec] of sections.entries()) {
    const me = st.hosts[i]!;
    const peer = st.hosts[1 - i]!;
    const env = readFileSync(path.join(peer.dir, 'subnet.env'), 'utf8');
    const net4 = /FLANNEL_SUBNET=(\S+)\.1\/24/.exec(env)![1]! + '.0';
    const net6 = /FLANNEL_IPV6_SUBNET=(\S+::)1\/64/.exec(env)![1]!;
    const link = (dev: string) => sh(['ip', '-n', peer.name, '-j', 'link', 'show', dev]).then((o) => (JSON.parse(o) as Array<{ address: string }>)[0]!.address);
    const mac4 = await link('flannel.1');
    const mac6 = await link('flannel-v6.1');
    assert.match(sec, new RegExp(`^${esc(me.name)} {2}underlay ${esc(me.ip)} ${esc(me.ip6!)} {2}FLANNEL_SUBNET=\\S+ {2}FLANNEL_IPV6_SUBNET=fd00:10:244:[0-9a-f]+::1/64 {2}FLANNEL_MTU=1430`));
    // IPv4 on flannel.1
    assert.match(sec, /^ {2}flannel\.1 {2}mac [0-9a-f:]{17} {2}addr 10\.244\.\d+\.0\/32 {2}mtu 1450 {2}vxlan id 1 dstport 8472 nolearning$/m);
    assert.match(sec, new RegExp(`\\$ ip neigh show dev flannel\\.1\\n {4}${esc(net4)} lladdr ${mac4} PERMANENT\\n`));
    assert.match(sec, new RegExp(`\\$ bridge fdb show dev flannel\\.1\\n {4}${mac4} dst ${esc(peer.ip)} self permanent\\n`));
    assert.match(sec, new RegExp(`^ {4}${esc(net4)}/24 via ${esc(net4)} dev flannel\\.1 proto 222 onlink$`, 'm'));
    // IPv6 on flannel-v6.1
    assert.match(sec, /^ {2}flannel-v6\.1 {2}mac [0-9a-f:]{17} {2}addr fd00:10:244:[0-9a-f]+::\/128 {2}mtu 1430 {2}vxlan id 1 dstport 8472 nolearning$/m);
    assert.match(sec, new RegExp(`\\$ ip -6 neigh show dev flannel-v6\\.1\\n {4}${esc(net6)} lladdr ${mac6} PERMANENT\\n`));
    assert.match(sec, new RegExp(`\\$ bridge fdb show dev flannel-v6\\.1\\n {4}${mac6} dst ${esc(peer.ip6!)} self permanent\\n`));
    assert.match(sec, new RegExp(`^ {4}${esc(net6)}/64 via ${esc(net6)} dev flannel-v6\\.1 proto 222 metric 1024 onlink pref medium$`, 'm'));
    assert.match(sec, /^ {4}default via 2001:db8::1 dev eth0 /m);
    // pods with both addresses
    for (const p of me.pods) {
      assert.match(p.ip6 ?? '', /^fd00:10:244:[0-9a-f]+::\d+$/, `${p.name} has an IPv6 address`);
      assert.ok(sec.includes(`${p.name.replace(/^.*-(h\d+p\d+)$/, '$1')}=${p.ip},${p.ip6}`), `pod line for ${p.name} in:\n${sec}`);
    }
  }
  // both matrices, every pair reachable
  assert.match(stdout, /\nreachability \(ping, RTT in ms\)\n[\s\S]*\n2\/2 pairs reachable\n/);
  assert.match(stdout, /\nIPv6 reachability \(ping -6, RTT in ms\)\n[\s\S]*\n2\/2 pairs reachable over IPv6\n/);
  assert.ok(!/✗/.test(stdout), stdout);
}

type PageState = { tunnels: Array<{ state: string; probes: Array<{ from: string; ok: boolean; what: string }> }> };

/** The page's tunnel probes cover IPv6 too: a dropped ICMPv6 echo turns the tunnel from green to one-way, and back. */
async function pageProbesBothFamilies(stderr: string, st: State): Promise<void> {
  const url = /^Page: +(\S+)$/m.exec(stderr)?.[1];
  assert.ok(url, stderr);
  const until = async (what: string, cond: (s: PageState) => boolean): Promise<PageState> => {
    let s: PageState | null = null;
    for (let i = 0; i < 150; i++) {
      s = (await (await fetch(`${url}api/state`)).json()) as PageState;
      if (s.tunnels.length === 1 && cond(s)) return s;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.fail(`${what}: ${JSON.stringify(s?.tunnels)}`);
  };
  const pod2 = st.hosts[1]!.pods[0]!;
  let s = await until('tunnel ok over both families', (x) => x.tunnels[0]!.state === 'ok');
  assert.ok(s.tunnels[0]!.probes.some((p) => p.from === 'h1' && p.what.includes(`→ ${pod2.ip6}`)), JSON.stringify(s.tunnels));
  const rule = ['INPUT', '-p', 'icmpv6', '--icmpv6-type', 'echo-request', '-j', 'DROP'];
  await sh(['ip', 'netns', 'exec', pod2.name, 'ip6tables', '-A', ...rule]);
  try {
    s = await until('IPv6 drop seen', (x) => x.tunnels[0]!.state === 'partial');
    const toH2 = s.tunnels[0]!.probes.find((p) => p.from === 'h1')!;
    assert.equal(toH2.ok, false);
    assert.match(toH2.what, /\(IPv6 fails\)$/);
  } finally {
    await sh(['ip', 'netns', 'exec', pod2.name, 'ip6tables', '-D', ...rule]);
  }
  await until('tunnel ok again', (x) => x.tunnels[0]!.state === 'ok');
}

async function labCycle(store: 'local' | 'kube'): Promise<void> {
  const prefix = `ftsl6${randomBytes(2).toString('hex')}-`;
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-lab6-'));
  const common = ['--dir', dir, '--prefix', prefix];
  const rootLinks = await sh(['ip', '-br', 'link']);
  try {
    // the topology page only exists for the local (and etcd) store
    const up = await ctl(['lab', 'up', '--ipv6', '--hosts', '2', '--pods', '1', ...(store === 'kube' ? ['--no-ui'] : []), '--store', store, ...common]);
    assert.equal(up.code, 0, up.stderr + up.stdout);
    assert.match(up.stdout, /^lab \S+ {2}backend vxlan {2}store \w+ {2}network 10\.244\.0\.0\/16 {2}ipv6 network fd00:10:244::\/56 /);
    const st = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as State;
    assert.equal(st.ipv6, true);
    assert.deepEqual(st.hosts.map((h) => h.ip6), ['2001:db8::11', '2001:db8::12']);
    await assertTables(up.stdout, st);
    assert.match(up.stderr, new RegExp(`^Try v6: .* lab exec .* -- ping -6 -c 3 ${esc(st.hosts[1]!.pods[0]!.ip6!)}$`, 'm'));

    if (store === 'kube') {
      // flannel's v6 annotations, byte for byte, next to the v4 ones
      for (const [i, h] of st.hosts.entries()) {
        const mac = async (dev: string) => (JSON.parse(await sh(['ip', '-n', h.name, '-j', 'link', 'show', dev])) as Array<{ address: string }>)[0]!.address;
        const sec = up.stdout.split('\nhost ')[i + 1]!;
        assert.ok(sec.includes(`    flannel.alpha.coreos.com/backend-data: {"VNI":1,"VtepMAC":"${await mac('flannel.1')}"}\n`), sec);
        assert.ok(sec.includes(`    flannel.alpha.coreos.com/backend-v6-data: {"VNI":1,"VtepMAC":"${await mac('flannel-v6.1')}"}\n`), sec);
        assert.ok(sec.includes(`    flannel.alpha.coreos.com/public-ip: ${h.ip}\n`), sec);
        assert.ok(sec.includes(`    flannel.alpha.coreos.com/public-ipv6: ${h.ip6}\n`), sec);
        assert.match(sec, new RegExp(`FLANNEL_SUBNET=10\\.244\\.${i + 1}\\.1/24 {2}FLANNEL_IPV6_SUBNET=fd00:10:244:${i + 1}::1/64 `));
      }
    }

    if (store === 'local') await pageProbesBothFamilies(up.stderr, st);

    const status = await ctl(['lab', 'status', ...common]);
    assert.equal(status.code, 0, status.stderr + status.stdout);
    await assertTables(status.stdout, st);

    const down = await ctl(['lab', 'down', ...common]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(prefix)), []);
    // a zombie has exited; reaping it is up to its parent (init here, as the lab's processes are detached)
    for (const p of st.procs) assert.ok(!alive(p.pid) || procState(p.pid) === 'Z', `pid ${p.pid} (${p.what}) still running: state ${procState(p.pid)}`);
    assert.ok(!existsSync(dir), 'state dir removed');
    assert.equal(await sh(['ip', '-br', 'link']), rootLinks, 'root namespace interfaces unchanged');
  } finally {
    await ctl(['lab', 'down', ...common]);
    rmSync(dir, { recursive: true, force: true });
  }
}

test('lab up --ipv6 (local store): both families\' tables on flannel.1 and flannel-v6.1, pods with both addresses, v4 and v6 matrices all reachable; lab status the same; lab down cleans up', { skip }, async () => {
  await labCycle('local');
});

test('lab up --ipv6 --backend udp is refused (udp is IPv4-only, as in flannel) and makes nothing', { skip }, async () => {
  const prefix = `ftsl6${randomBytes(2).toString('hex')}-`;
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'fts-lab6-')), 'lab');
  try {
    const r = await ctl(['lab', 'up', '--ipv6', '--backend', 'udp', '--dir', dir, '--prefix', prefix]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--ipv6: the udp backend is IPv4-only/);
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(prefix)), []);
    assert.ok(!existsSync(dir));
  } finally {
    rmSync(path.dirname(dir), { recursive: true, force: true });
  }
});

const kubeBin = skip ? null : await kubeApiserverBinary();
test('lab up --ipv6 --store kube (real kube-apiserver, dual-stack spec.podCIDRs): flannel\'s v6 annotations exactly, both tables, both matrices; lab down cleans up', { skip: skip || kubeSkipReason(kubeBin) }, async () => {
  await labCycle('kube');
});
