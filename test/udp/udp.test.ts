// Privileged integration test of the UDP backend: two network namespaces
// joined by a veth (192.0.2.1/24 <-> 192.0.2.2/24), each running the backend
// in a fixture process (udp-node.ts) with a real RtNetlink kernel, and
// traffic between addresses of the two flannel subnets on `lo`.
//
// Isolation: namespaces are named `ftsudp<4 hex>-a/-b`; the veth is created
// from inside namespace a straight into b; every command runs via
// `ip netns exec` / `ip -n`, so nothing is sent or changed in the root
// namespace. `after` (which node:test runs even when setup or a test fails)
// and a process 'exit' hook kill the fixtures and delete the namespaces.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { UdpStats } from '../../src/backend/udp/udp.js';
import { hasCommand, privilegedSkip } from '../../src/testing/privileged.js';

const PREFIX = `ftsudp${randomBytes(2).toString('hex')}-`;
const NS_A = `${PREFIX}a`;
const NS_B = `${PREFIX}b`;
const FIXTURE = fileURLToPath(new URL('./udp-node.js', import.meta.url));

const skipReason = (): string | false => privilegedSkip('network namespaces, /dev/net/tun', ['ip', 'ping']);
const which = hasCommand;

const children = new Set<ChildProcess>();
const namespaces = new Set<string>();

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; it is killed by the cleanup too if the test is interrupted. */
function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      children.delete(child);
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    children.add(child);
  });
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function inNs(ns: string, ...argv: string[]): [string, string[]] {
  return ['ip', ['netns', 'exec', ns, ...argv]];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ------------------------------------------------------------ fixtures

interface Peer {
  subnet: string;
  publicIP: string;
}

class Node {
  private readonly lines: Record<string, unknown>[] = [];
  private readonly waiters: { type: string; resolve: (m: Record<string, unknown>) => void }[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<void>;
  private readonly failWaiters = new Set<(e: Error) => void>();

  constructor(
    readonly ns: string,
    readonly child: ChildProcess,
  ) {
    // 'close', not 'exit': the fixture's last lines are read before waiters are failed
    this.exited = new Promise((r) => child.once('close', () => r()));
    child.once('close', (code) => {
      for (const f of this.failWaiters) f(new Error(`${this.ns}: fixture exited (${code}); stderr:\n${this.stderr.join('\n')}`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let m: Record<string, unknown>;
      try {
        m = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      const i = this.waiters.findIndex((w) => w.type === m.type || m.type === 'error');
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
      else this.lines.push(m);
    });
    createInterface({ input: child.stderr! }).on('line', (l) => this.stderr.push(l));
  }

  static start(ns: string, args: Record<string, unknown>): Node {
    const [cmd, argv] = inNs(ns, process.execPath, FIXTURE, JSON.stringify(args));
    const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    child.once('exit', () => children.delete(child));
    return new Node(ns, child);
  }

  next(type: string, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    const i = this.lines.findIndex((m) => m.type === type || m.type === 'error');
    if (i >= 0) return Promise.resolve(this.lines.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const fail = (e: Error): void => {
        clearTimeout(timer);
        this.failWaiters.delete(fail);
        reject(e);
      };
      const timer = setTimeout(() => fail(new Error(`${this.ns}: no "${type}" within ${timeoutMs} ms; stderr:\n${this.stderr.join('\n')}`)), timeoutMs);
      this.failWaiters.add(fail);
      this.waiters.push({
        type,
        resolve: (m) => {
          clearTimeout(timer);
          this.failWaiters.delete(fail);
          if (m.type === 'error') reject(new Error(`${this.ns}: fixture failed: ${String(m.message)}\n${this.stderr.join('\n')}`));
          else resolve(m);
        },
      });
    });
  }

  send(line: string): void {
    this.child.stdin!.write(line + '\n');
  }

  async stats(): Promise<UdpStats & { recoveries: number }> {
    this.send('stats');
    const m = await this.next('stats');
    return { ...(m.stats as UdpStats), recoveries: m.recoveries as number };
  }

  async reconcile(peers: Peer[]): Promise<string[]> {
    this.send(`reconcile ${JSON.stringify(peers)}`);
    return (await this.next('reconciled')).errors as string[];
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.send('exit');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}


function cleanupSync(): void {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const ns of namespaces) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
    namespaces.delete(ns);
  }
}

process.once('exit', cleanupSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    cleanupSync();
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
  });
}

async function buildTopology(): Promise<void> {
  for (const ns of [NS_A, NS_B]) {
    sh('ip', ['netns', 'add', ns]);
    namespaces.add(ns);
  }
  // The veth is created inside A with its peer moved straight into B.
  sh(...inNs(NS_A, 'ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS_B));
  for (const [ns, addr, lo] of [
    [NS_A, '192.0.2.1/24', '10.244.1.1/32'],
    [NS_B, '192.0.2.2/24', '10.244.2.1/32'],
  ] as const) {
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', ns, 'addr', 'add', addr, 'dev', 'eth0']);
    sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', ns, 'addr', 'add', lo, 'dev', 'lo']);
  }
}

const PEER_OF_A: Peer = { subnet: '10.244.2.0/24', publicIP: '192.0.2.2' };
const PEER_OF_B: Peer = { subnet: '10.244.1.0/24', publicIP: '192.0.2.1' };

async function startPair(offload: boolean): Promise<[Node, Node, Record<string, unknown>, Record<string, unknown>]> {
  const a = Node.start(NS_A, { own: '10.244.1.0/24', iface: 'eth0', peers: [PEER_OF_A], offload });
  const b = Node.start(NS_B, { own: '10.244.2.0/24', iface: 'eth0', peers: [PEER_OF_B], offload });
  const [ra, rb] = await Promise.all([a.next('ready'), b.next('ready')]);
  return [a, b, ra, rb];
}

function pingLoss(out: string): number {
  const m = /(\d+(?:\.\d+)?)% packet loss/.exec(out);
  assert.ok(m, `no loss figure in ping output:\n${out}`);
  return Number(m[1]);
}

/** iperf3 TCP for `secs` from A to `server` (an address in B); Gbit/s. */
async function iperf(server: string, secs: number): Promise<number> {
  const [scmd, sargs] = inNs(NS_B, 'iperf3', '-s', '-1', '-B', server);
  const srv = spawn(scmd, sargs, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(srv);
  try {
    // iperf3 buffers its banner when not on a terminal: poll for the socket.
    for (let i = 0; ; i++) {
      const ss = await run(...inNs(NS_B, 'ss', '-Hltn', 'sport = :5201'));
      if (ss.stdout.includes('5201')) break;
      if (i > 50 || srv.exitCode !== null) throw new Error('iperf3 server did not start');
      await sleep(100);
    }
    const r = await run(...inNs(NS_A, 'iperf3', '-c', server, '-t', String(secs), '-J'), (secs + 20) * 1000);
    const j = JSON.parse(r.stdout) as { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
    assert.ok(j.end?.sum_received?.bits_per_second, `iperf3 to ${server} failed: ${j.error ?? r.stderr}`);
    return j.end.sum_received.bits_per_second / 1e9;
  } finally {
    srv.kill('SIGKILL');
    children.delete(srv);
  }
}

// ------------------------------------------------------------ tests

const skip = skipReason();

describe('UDP backend between two network namespaces', { skip }, () => {
  let a: Node;
  let b: Node;
  let readyA: Record<string, unknown>;

  before(async () => {
    await buildTopology();
    [a, b, readyA] = await startPair(true);
  });

  after(async () => {
    await Promise.allSettled([a?.stop(), b?.stop()]);
    cleanupSync();
  });

  test('flannel0: TUN, MTU 1472, subnet address /32, Network route; lease carries only PublicIP', async () => {
    assert.equal(readyA.device, 'flannel0');
    assert.equal(readyA.mtu, 1472);
    assert.deepEqual(readyA.attrs, { backendType: '' });
    assert.deepEqual(readyA.errors, []);
    const link = sh('ip', ['-n', NS_A, '-d', 'link', 'show', 'flannel0']);
    assert.match(link, /\btun\b/);
    assert.match(link, /mtu 1472\b/);
    assert.match(link, /\bUP\b/);
    assert.match(sh('ip', ['-n', NS_A, 'route']), /^10\.244\.0\.0\/16 dev flannel0 /m);
    assert.match(sh('ip', ['-n', NS_A, '-4', 'addr', 'show', 'flannel0']), /inet 10\.244\.1\.0\/32 /);
    assert.match(sh('ip', ['-n', NS_B, '-4', 'addr', 'show', 'flannel0']), /inet 10\.244\.2\.0\/32 /);
  });

  test('ping across the tunnel', async () => {
    const r = await run(...inNs(NS_A, 'ping', '-c', '3', '-i', '0.2', '-W', '2', '10.244.2.1'));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(pingLoss(r.stdout), 0);
    // Each side decrements the TTL once, as flannel: 64 - 2.
    assert.match(r.stdout, /ttl=62/);
  });

  test('on the wire: one UDP datagram to port 8285 carrying the bare inner IPv4 packet', { skip: which('tcpdump') ? false : 'needs tcpdump' }, async () => {
    const [cmd, args] = inNs(NS_B, 'tcpdump', '-i', 'eth0', '-nn', '-x', '-c', '1', '-l', 'udp port 8285 and src host 192.0.2.1');
    const td = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(td);
    let out = '';
    td.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('tcpdump did not start')), 10_000);
        td.stderr.on('data', (d: Buffer) => {
          if (d.toString().includes('listening on')) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      const exited = new Promise<void>((r) => td.once('exit', () => r()));
      await run(...inNs(NS_A, 'ping', '-c', '1', '-W', '2', '-I', '10.244.1.1', '10.244.2.1'));
      await Promise.race([exited, sleep(5000)]);
    } finally {
      td.kill('SIGKILL');
      children.delete(td);
    }
    assert.match(out, /192\.0\.2\.1\.8285 > 192\.0\.2\.2\.8285: UDP, length \d+/);
    const bytes = [...out.matchAll(/0x[0-9a-f]{4}:\s+((?:[0-9a-f]{4}\s?)+)/g)]
      .map((m) => m[1]!.replace(/\s+/g, ''))
      .join('')
      .match(/../g)!
      .map((h) => parseInt(h, 16));
    // outer IPv4 (20) + UDP (8), then the inner packet
    assert.equal(bytes[0], 0x45, 'outer IPv4');
    assert.equal(bytes[9], 17, 'outer protocol UDP');
    const inner = bytes.slice(28);
    assert.equal(inner[0], 0x45, 'payload starts with the inner IPv4 header');
    assert.deepEqual(inner.slice(12, 20), [10, 244, 1, 1, 10, 244, 2, 1], 'inner 10.244.1.1 -> 10.244.2.1');
    assert.equal(inner[9], 1, 'inner ICMP');
    const udpLen = (bytes[24]! << 8) | bytes[25]!;
    assert.equal(udpLen - 8, (inner[2]! << 8) | inner[3]!, 'UDP payload length = inner Total Length: no framing');
  });

  test('no route: Destination Net Unreachable from the TUN address', async () => {
    const before = await a.stats();
    const r = await run(...inNs(NS_A, 'ping', '-c', '1', '-W', '2', '10.244.99.1'));
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /From 10\.244\.1\.0 icmp_seq=1 Destination Net Unreachable/);
    // from a "pod" address too (source 10.244.1.1 on lo)
    const r2 = await run(...inNs(NS_A, 'ping', '-c', '1', '-W', '2', '-I', '10.244.1.1', '10.244.99.1'));
    assert.match(r2.stdout, /From 10\.244\.1\.0 icmp_seq=1 Destination Net Unreachable/);
    const s = await a.stats();
    assert.equal(s.icmpUnreachableSent, before.icmpUnreachableSent + 2);
    assert.equal(s.tunToUdp.drops.noRoute, before.tunToUdp.drops.noRoute + 2);
  });

  test('malformed and spoofed datagrams from the wire are dropped and counted', async () => {
    const before = await a.stats();
    // Sent from B (another port) to A's 8285: too short, IPv6, bad IHL,
    // Total Length beyond the datagram, TTL 1, and a packet claiming to come
    // from A itself (192.0.2.1).
    const script = `
      const dgram = require('node:dgram');
      const ip = (src, dst, ttl, ihl = 5, total = 28) => {
        const b = Buffer.alloc(28);
        b[0] = 0x40 | ihl; b.writeUInt16BE(total, 2); b[8] = ttl; b[9] = 1;
        b.writeUInt32BE(src, 12); b.writeUInt32BE(dst, 16); b[20] = 8;
        return b;
      };
      const A = 0xc0000201, POD = 0x0af40101, PEERPOD = 0x0af40201;
      const dgrams = [Buffer.alloc(10), Buffer.alloc(40, 0x60), ip(PEERPOD, POD, 64, 4), ip(PEERPOD, POD, 64, 5, 200), ip(PEERPOD, POD, 1), ip(A, POD, 64)];
      const s = dgram.createSocket('udp4');
      s.bind(9999, '192.0.2.2', async () => {
        for (const d of dgrams) await new Promise((r) => s.send(d, 8285, '192.0.2.1', r));
        s.close();
      });`;
    const r = await run(...inNs(NS_B, process.execPath, '-e', script));
    assert.equal(r.code, 0, r.stderr);
    let s = await a.stats();
    for (let i = 0; i < 20 && s.udpToTun.datagrams < before.udpToTun.datagrams + 6; i++) {
      await sleep(50);
      s = await a.stats();
    }
    const d = (k: keyof UdpStats['udpToTun']['drops']) => s.udpToTun.drops[k] - before.udpToTun.drops[k];
    assert.deepEqual(
      { short: d('short'), notIPv4: d('notIPv4'), badHeaderLen: d('badHeaderLen'), badTotalLen: d('badTotalLen'), ttlExpired: d('ttlExpired'), localSource: d('localSource') },
      { short: 1, notIPv4: 1, badHeaderLen: 1, badTotalLen: 1, ttlExpired: 1, localSource: 1 },
    );
    assert.equal(s.udpToTun.packets, before.udpToTun.packets, 'none reached the TUN');
    // and the data path is still fine
    assert.equal((await run(...inNs(NS_A, 'ping', '-c', '1', '-W', '2', '10.244.2.1'))).code, 0);
  });

  test('no loss at light load (ping -c 20 -i 0.05)', async () => {
    const r = await run(...inNs(NS_A, 'ping', '-c', '20', '-i', '0.05', '-W', '2', '10.244.2.1'));
    const loss = pingLoss(r.stdout);
    console.log(`# ping -c 20 -i 0.05 across the UDP tunnel: ${loss}% loss`);
    assert.equal(loss, 0, r.stdout);
  });

  test('route updates do not interrupt the data path', async () => {
    const ping = run(...inNs(NS_A, 'ping', '-c', '60', '-i', '0.02', '-W', '2', '10.244.2.1'));
    for (let i = 0; i < 10; i++) {
      const extra = { subnet: `10.244.${10 + i}.0/24`, publicIP: `192.0.2.${10 + i}` };
      assert.deepEqual(await a.reconcile([PEER_OF_A, extra]), []);
      await sleep(50);
    }
    assert.deepEqual(await a.reconcile([PEER_OF_A]), []);
    assert.deepEqual(await a.reconcile([PEER_OF_A]), [], 'idempotent');
    const r = await ping;
    assert.equal(pingLoss(r.stdout), 0, r.stdout);
    assert.equal((await a.stats()).routes, 1);
    // A removed peer is unreachable again.
    assert.deepEqual(await a.reconcile([]), []);
    await sleep(50);
    const gone = await run(...inNs(NS_A, 'ping', '-c', '1', '-W', '1', '10.244.2.1'));
    assert.match(gone.stdout, /Destination Net Unreachable/);
    assert.deepEqual(await a.reconcile([PEER_OF_A]), []);
    await sleep(50);
    assert.equal((await run(...inNs(NS_A, 'ping', '-c', '1', '-W', '2', '10.244.2.1'))).code, 0);
  });

  test('throughput: iperf3 TCP over the UDP tunnel vs the plain veth', { skip: which('iperf3') ? false : 'needs iperf3' }, async () => {
    const s0 = await a.stats();
    const tunnel = await iperf('10.244.2.1', 5);
    const s1 = await a.stats();
    const r1 = await b.stats();
    const veth = await iperf('192.0.2.2', 5);
    // For scale: the kernel's VXLAN over the same veth (a point-to-point vx0, MTU 1450).
    let vxlan = NaN;
    try {
      for (const [ns, local, remote, addr] of [
        [NS_A, '192.0.2.1', '192.0.2.2', '10.99.0.1/24'],
        [NS_B, '192.0.2.2', '192.0.2.1', '10.99.0.2/24'],
      ] as const) {
        sh('ip', ['-n', ns, 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '42', 'remote', remote, 'local', local, 'dev', 'eth0', 'dstport', '4789']);
        sh('ip', ['-n', ns, 'link', 'set', 'vx0', 'mtu', '1450', 'up']);
        sh('ip', ['-n', ns, 'addr', 'add', addr, 'dev', 'vx0']);
      }
      vxlan = await iperf('10.99.0.2', 5);
    } finally {
      for (const ns of [NS_A, NS_B]) await run('ip', ['-n', ns, 'link', 'del', 'vx0']);
    }
    console.log(
      `# iperf3 TCP 5 s: UDP tunnel ${tunnel.toFixed(2)} Gbit/s, plain veth ${veth.toFixed(2)} Gbit/s (tunnel = ${(tunnel / veth).toFixed(2)}x veth), ` +
        `kernel VXLAN ${vxlan.toFixed(2)} Gbit/s (tunnel = ${(tunnel / vxlan).toFixed(2)}x VXLAN)`,
    );
    const pkts = s1.tunToUdp.packets - s0.tunToUdp.packets;
    const reads = s1.tunToUdp.tunReads - s0.tunToUdp.tunReads;
    const sends = s1.tunToUdp.sendCalls - s0.tunToUdp.sendCalls;
    console.log(`# sender: ${pkts} datagrams from ${reads} TUN reads (${s1.tunToUdp.tsoPackets - s0.tunToUdp.tsoPackets} TSO) in ${sends} sendmmsg calls`);
    console.log(`# receiver: ${r1.udpToTun.packets} packets in ${r1.udpToTun.tunWrites} TUN writes (${r1.udpToTun.coalesced} coalesced), ${r1.udpToTun.recvCalls} recvmmsg calls`);
    assert.ok(tunnel > 0.1, `tunnel throughput ${tunnel} Gbit/s`);
    assert.equal(s1.tunToUdp.drops.sendError, 0);
    assert.equal(s1.tunToUdp.drops.badGso, 0);
    assert.equal(r1.udpToTun.drops.tunWriteError, 0);
    assert.equal(r1.udpToTun.drops.truncated, 0);
  });

  test('a deleted flannel0 is rebuilt and traffic flows again', async () => {
    sh('ip', ['-n', NS_A, 'link', 'del', 'flannel0']);
    let s = await a.stats();
    for (let i = 0; i < 50 && s.recoveries === 0; i++) {
      await sleep(100);
      s = await a.stats();
    }
    assert.equal(s.recoveries, 1);
    assert.match(sh('ip', ['-n', NS_A, 'route']), /^10\.244\.0\.0\/16 dev flannel0 /m);
    const r = await run(...inNs(NS_A, 'ping', '-c', '3', '-i', '0.2', '-W', '2', '10.244.2.1'));
    assert.equal(pingLoss(r.stdout), 0, r.stdout);
  });

  test('offloads on one side only: the other sees one inner packet per datagram, as a flannel peer would', async () => {
    await b.stop();
    b = Node.start(NS_B, { own: '10.244.2.0/24', iface: 'eth0', peers: [PEER_OF_B], offload: false });
    const rb = await b.next('ready');
    const off = rb.offloads as Record<string, boolean>;
    assert.deepEqual([off.tso, off.gso, off.gro], [false, false, false]);
    const r = await run(...inNs(NS_A, 'ping', '-c', '10', '-i', '0.05', '-W', '2', '10.244.2.1'));
    assert.equal(pingLoss(r.stdout), 0, r.stdout);
    if (which('iperf3')) {
      const gbps = await iperf('10.244.2.1', 3);
      const sa = await a.stats();
      const sb = await b.stats();
      console.log(`# iperf3 TCP 3 s, segmenting sender -> plain receiver: ${gbps.toFixed(2)} Gbit/s`);
      // B (no UDP_GRO) received every segment as its own datagram and wrote each alone.
      assert.equal(sb.udpToTun.coalesced, 0);
      assert.equal(sb.udpToTun.packets, sb.udpToTun.datagrams - Object.values(sb.udpToTun.drops).reduce((x, y) => x + y, 0));
      assert.equal(sb.udpToTun.tunWrites, sb.udpToTun.packets);
      assert.ok(sa.tunToUdp.tsoPackets > 0);
    }
  });

  test('without offloads on either side (one packet per read/write, as flannel): same behaviour, measured', async () => {
    await Promise.all([a.stop(), b.stop()]);
    assert.doesNotMatch(sh('ip', ['-n', NS_A, 'link']), /flannel0/, 'the TUN goes away with the process');
    [a, b] = await startPair(false);
    const r = await run(...inNs(NS_A, 'ping', '-c', '20', '-i', '0.05', '-W', '2', '10.244.2.1'));
    assert.equal(pingLoss(r.stdout), 0, r.stdout);
    if (which('iperf3')) {
      const gbps = await iperf('10.244.2.1', 5);
      const s = await a.stats();
      console.log(`# iperf3 TCP 5 s, offloads off: UDP tunnel ${gbps.toFixed(2)} Gbit/s (${s.tunToUdp.packets} datagrams in ${s.tunToUdp.sendCalls} sendmmsg calls)`);
      assert.equal(s.tunToUdp.tsoPackets, 0);
    }
  });
});
