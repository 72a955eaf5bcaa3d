// Multi-host topology harness for end-to-end tests (and benchmarks) of the
// VXLAN overlay. Everything it builds lives in network namespaces whose names
// share a unique per-run prefix; the root namespace is never touched (veths
// are created from inside a namespace straight into another one, sysctls are
// set via `ip netns exec`).
//
// Layout for Topology.create({ hosts: 2, podsPerHost: 2 }) with prefix P:
//
//   P + 'ul'   underlay: bridge br0 192.0.2.1/24 (TEST-NET-1), etcd on :2379
//     ├─ vh1 ── eth0 in P + 'h1' (192.0.2.11/24, default via 192.0.2.1)
//     └─ vh2 ── eth0 in P + 'h2' (192.0.2.12/24, default via 192.0.2.1)
//   P + 'h1'   host: eth0, cni0 bridge (after wirePods), veth1..vethM
//
// With { ipv6: true } the underlay is dual-stack: br0 also has 2001:db8::1/64
// and each host's eth0 2001:db8::(10+index)/64 (documentation prefix, inside
// the namespaces only; `nodad`, so they are usable at once), with a v6
// default route via 2001:db8::1 and IPv6 forwarding on.
//     ├─ veth1 ── eth0 in P + 'h1p1'  (pod; subnet base + 11)
//     └─ veth2 ── eth0 in P + 'h1p2'  (pod; subnet base + 12)
//
// The test process stays in the root namespace and cannot reach any of these
// addresses; every interaction goes through `ip -n <ns>` / `ip netns exec`.
//
// Cleanup contract: every namespace is registered the moment `ip netns add`
// succeeds and every background process the moment it is spawned, so
// destroy() (idempotent) can undo a half-finished create(). A process 'exit'
// hook and SIGINT/SIGTERM/SIGHUP hooks do a best-effort synchronous cleanup for
// topologies that were never destroyed.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FlanneldProc } from './flanneld.js';
import { exitedAndDrained } from '../../src/testing/exited.js';

// ---------------------------------------------------------------------------
// Running commands: shared with the lab (src/lab/sh.ts)

export { run, sh, mapLimit, ShError, type ShOptions, type RunResult } from '../../src/lab/sh.js';
import { run, sh, mapLimit, type ShOptions, type RunResult } from '../../src/lab/sh.js';

/** Like Promise.all, but waits for every promise to settle before rethrowing the first error. */
async function allSettledOrThrow<T>(ps: Array<Promise<T>>): Promise<T[]> {
  const rs = await Promise.allSettled(ps);
  const bad = rs.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (bad) throw bad.reason;
  return rs.map((r) => (r as PromiseFulfilledResult<T>).value);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// IPv4 helpers (enough for the /8../30 subnets the tests use)

function ipToInt(ip: string): number {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`bad IPv4 address: ${ip}`);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Parses 'a.b.c.d/len' into the address, prefix length and network base. */
export function parseCidr(cidr: string): { addr: string; len: number; base: string } {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(cidr.trim());
  if (!m) throw new Error(`bad IPv4 CIDR: ${cidr}`);
  const len = Number(m[2]);
  if (len < 1 || len > 32) throw new Error(`bad prefix length in ${cidr}`);
  const mask = len === 32 ? 0xffffffff : ~(0xffffffff >>> len) >>> 0;
  return { addr: m[1]!, len, base: intToIp((ipToInt(m[1]!) & mask) >>> 0) };
}

/** Returns ip + n (no overflow checks beyond 32 bits). */
export function ipAdd(ip: string, n: number): string {
  return intToIp((ipToInt(ip) + n) >>> 0);
}

// ---------------------------------------------------------------------------
// Topology types

export interface Pod {
  /** Namespace name, e.g. 'fts1a2b-h1p1'. */
  name: string;
  /** Pod address without prefix length, e.g. '10.244.5.11'. */
  ip: string;
  /** Back-reference to the host (note: makes Pod/Host cyclic for JSON). */
  host: Host;
}

/** Pod-network wiring of a host, as passed to wirePodsWith(). */
export interface CniWiring {
  /** cni0 address with prefix length, e.g. '10.244.5.1/24'. */
  subnet: string;
  /** cni0 address without length ('10.244.5.1'); the pods' default gateway. */
  gateway: string;
  /** Network base of subnet ('10.244.5.0'). */
  base: string;
  prefixLen: number;
  mtu: number;
}

export interface Host {
  /** Namespace name, e.g. 'fts1a2b-h1'. */
  name: string;
  /** 1-based host index. */
  index: number;
  /** Underlay address on eth0, '192.0.2.(10+index)'. */
  ip: string;
  /** Underlay IPv6 address on eth0, '2001:db8::(10+index)' (with { ipv6: true } only). */
  ip6?: string;
  /** Filled by wirePods()/wirePodsWith(). */
  pods: Pod[];
  /** Set once pods are wired. */
  cni?: CniWiring;
}

/** Parsed subnet.env as written by flanneld. */
export interface SubnetEnv {
  FLANNEL_NETWORK: string;
  FLANNEL_SUBNET: string;
  FLANNEL_MTU: number;
  FLANNEL_IPMASQ: boolean;
  /** Every KEY=VALUE line, unparsed (includes IPv6 keys if present). */
  raw: Record<string, string>;
}

export interface PingResult {
  ok: boolean;
  /** RTT of the last reply in ms, or null if none. */
  rttMs: number | null;
}

export interface MeshResult extends PingResult {
  from: Pod;
  to: Pod;
}

/**
 * A long-running process started inside a namespace and tracked for cleanup.
 * stdout/stderr accumulate in the string fields.
 */
export interface BgProc {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly label: string;
  stdout: string;
  stderr: string;
  /** Resolves with the exit code (null if killed by a signal). */
  readonly exited: Promise<number | null>;
  /** true once the process has exited. */
  readonly done: boolean;
  /** SIGTERM, SIGKILL after graceMs (default 3000); resolves once gone. */
  stop(graceMs?: number): Promise<void>;
}

export const UNDERLAY_GW = '192.0.2.1';
export const UNDERLAY_GW6 = '2001:db8::1';
export const UNDERLAY_LEN6 = 64;
export const UNDERLAY_LEN = 24;
export const ETCD_CLIENT_URL = `http://${UNDERLAY_GW}:2379`;
export const ETCD_PEER_URL = `http://${UNDERLAY_GW}:2380`;

export interface TopologyOptions {
  hosts: number;
  podsPerHost: number;
  /** Namespace-name prefix; default 'fts' + 4 random hex + '-'. Must be unique per run. */
  prefix?: string;
  /** Dual-stack underlay: IPv6 addresses (2001:db8::/64) next to the IPv4 ones. */
  ipv6?: boolean;
}

// ---------------------------------------------------------------------------
// Process-wide emergency cleanup

const live = new Set<Topology>();
let hooksInstalled = false;
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function emergencyCleanup(): void {
  for (const t of [...live]) t.cleanupSync();
}

function onSignal(sig: NodeJS.Signals): void {
  emergencyCleanup();
  process.removeListener(sig, onSignal);
  // Re-raise so the default action (termination) happens unless someone else
  // also listens for this signal, in which case they decide.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', emergencyCleanup);
  for (const s of SIGNALS) process.on(s, onSignal);
}

function uninstallHooksIfIdle(): void {
  if (!hooksInstalled || live.size > 0) return;
  hooksInstalled = false;
  process.removeListener('exit', emergencyCleanup);
  for (const s of SIGNALS) process.removeListener(s, onSignal);
}

function alive(p: ChildProcess): boolean {
  return p.exitCode === null && p.signalCode === null;
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the process has exited. */
async function terminate(p: ChildProcess, graceMs = 3000): Promise<void> {
  if (!alive(p) || p.pid === undefined) return;
  const gone = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  const t = setTimeout(() => alive(p) && p.kill('SIGKILL'), graceMs);
  await gone;
  clearTimeout(t);
}

// ---------------------------------------------------------------------------

export class Topology {
  readonly prefix: string;
  readonly podsPerHost: number;
  readonly hosts: Host[] = [];
  /** Per-run scratch dir (etcd data, per-host subnet.env files). */
  readonly tmpDir: string;
  readonly etcdEndpoint = ETCD_CLIENT_URL;

  /** Namespaces created by this topology, in creation order. */
  private readonly namespaces: string[] = [];
  private readonly procs: Array<{ proc: ChildProcess; label: string }> = [];
  private destroying: Promise<void> | undefined;
  private etcd: BgProc | undefined;

  /** The underlay is dual-stack (TopologyOptions.ipv6). */
  readonly ipv6: boolean;

  private constructor(prefix: string, podsPerHost: number, ipv6 = false) {
    this.prefix = prefix;
    this.podsPerHost = podsPerHost;
    this.ipv6 = ipv6;
    this.tmpDir = mkdtempSync(path.join(tmpdir(), `${prefix}topo-`));
    live.add(this);
    installHooks();
  }

  get underlay(): string {
    return `${this.prefix}ul`;
  }

  /**
   * Builds the underlay and the host namespaces. On any failure everything
   * created so far is torn down before the error is rethrown.
   */
  static async create(o: TopologyOptions): Promise<Topology> {
    if (!Number.isInteger(o.hosts) || o.hosts < 1 || o.hosts > 200) throw new Error(`hosts must be 1..200, got ${o.hosts}`);
    if (!Number.isInteger(o.podsPerHost) || o.podsPerHost < 0 || o.podsPerHost > 200) throw new Error(`podsPerHost must be 0..200`);
    const prefix = o.prefix ?? `fts${randomBytes(2).toString('hex')}-`;
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{2,30}$/.test(prefix)) throw new Error(`bad namespace prefix: ${prefix}`);
    const t = new Topology(prefix, o.podsPerHost, o.ipv6 ?? false);
    try {
      await t.build(o.hosts);
    } catch (e) {
      await t.destroy().catch(() => undefined);
      throw e;
    }
    return t;
  }

  /** Deletes every namespace whose name starts with prefix (safety net). With
   *  killProcesses, first SIGKILLs the pids `ip netns pids` reports in them —
   *  use only with a prefix that is unique to your run. */
  static async sweep(prefix: string, opts: { killProcesses?: boolean } = {}): Promise<string[]> {
    if (prefix.length < 3) throw new Error(`refusing to sweep with a short prefix: '${prefix}'`);
    const names = (await listNamespaces()).filter((n) => n.startsWith(prefix));
    for (const n of names) {
      if (opts.killProcesses) {
        const pids = (await run(['ip', 'netns', 'pids', n])).stdout.split(/\s+/).filter(Boolean).map(Number);
        for (const pid of pids) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
      }
      await run(['ip', 'netns', 'del', n]);
    }
    return names;
  }

  // -------------------------------------------------------------------------
  // Construction

  private assertUsable(): void {
    if (this.destroying) throw new Error(`topology ${this.prefix} was destroyed`);
  }

  /** Guards every namespace-scoped command against ever targeting a foreign (or the root) namespace. */
  private own(ns: string): string {
    if (!ns.startsWith(this.prefix) || !this.namespaces.includes(ns)) throw new Error(`namespace ${ns} does not belong to topology ${this.prefix}`);
    return ns;
  }

  /** `ip -n <ns> ...args` */
  async ip(ns: string, ...args: string[]): Promise<string> {
    return sh(['ip', '-n', this.own(ns), ...args]);
  }

  /** Creates a namespace named prefix + suffix (lo up), tracked for cleanup like every other; returns its name. */
  async createNamespace(suffix: string): Promise<string> {
    const name = this.prefix + suffix;
    await this.addNs(name);
    return name;
  }

  private async addNs(name: string): Promise<void> {
    this.assertUsable();
    await sh(['ip', 'netns', 'add', name]);
    this.namespaces.push(name); // registered for cleanup as soon as it exists
    await sh(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
  }

  private async build(nHosts: number): Promise<void> {
    const ul = this.underlay;
    await this.addNs(ul);
    await this.ip(ul, 'link', 'add', 'br0', 'type', 'bridge');
    await this.ip(ul, 'addr', 'add', `${UNDERLAY_GW}/${UNDERLAY_LEN}`, 'dev', 'br0');
    if (this.ipv6) await this.ip(ul, 'addr', 'add', `${UNDERLAY_GW6}/${UNDERLAY_LEN6}`, 'dev', 'br0', 'nodad');
    await this.ip(ul, 'link', 'set', 'br0', 'up');
    const hosts: Host[] = [];
    for (let i = 1; i <= nHosts; i++) {
      hosts.push({ name: `${this.prefix}h${i}`, index: i, ip: ipAdd(UNDERLAY_GW, 9 + i), ...(this.ipv6 ? { ip6: `2001:db8::${10 + i}` } : {}), pods: [] });
    }
    this.hosts.push(...hosts);
    await allSettledOrThrow(hosts.map((h) => this.buildHost(h)));
  }

  private async buildHost(h: Host): Promise<void> {
    const ul = this.underlay;
    await this.addNs(h.name);
    const port = `vh${h.index}`;
    // Created from inside the underlay ns, peer moved straight into the host ns.
    await this.ip(ul, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.name);
    await this.ip(ul, 'link', 'set', port, 'master', 'br0', 'up');
    await this.ip(h.name, 'addr', 'add', `${h.ip}/${UNDERLAY_LEN}`, 'dev', 'eth0');
    await this.ip(h.name, 'link', 'set', 'eth0', 'up');
    await this.ip(h.name, 'route', 'add', 'default', 'via', UNDERLAY_GW, 'dev', 'eth0');
    await sh(['ip', 'netns', 'exec', h.name, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    if (h.ip6) {
      await this.ip(h.name, 'addr', 'add', `${h.ip6}/${UNDERLAY_LEN6}`, 'dev', 'eth0', 'nodad');
      await this.ip(h.name, '-6', 'route', 'add', 'default', 'via', UNDERLAY_GW6, 'dev', 'eth0');
      await sh(['ip', 'netns', 'exec', h.name, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
    }
  }

  // -------------------------------------------------------------------------
  // Processes

  /**
   * Starts `cmd` inside namespace ns (via `ip netns exec`, which execs, so the
   * pid is the command's own) and tracks it for destroy().
   */
  spawn(ns: string, cmd: string[], opts: { env?: Record<string, string>; label?: string } = {}): BgProc {
    this.assertUsable();
    const proc = spawn('ip', ['netns', 'exec', this.own(ns), ...cmd], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    return this.wrap(proc, opts.label ?? `${cmd[0]} in ${ns}`);
  }

  private wrap(proc: ChildProcess, label: string): BgProc {
    this.procs.push({ proc, label });
    const exited = exitedAndDrained(proc);
    const bg: BgProc = {
      proc,
      pid: proc.pid ?? -1,
      label,
      stdout: '',
      stderr: '',
      exited,
      get done() {
        return !alive(proc) || proc.pid === undefined;
      },
      stop: (graceMs?: number) => terminate(proc, graceMs),
    };
    proc.stdout?.on('data', (d: Buffer) => (bg.stdout += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (bg.stderr += d.toString()));
    return bg;
  }

  /** Runs a command inside namespace ns and returns its stdout (throws ShError). */
  async exec(ns: string, cmd: string[], opts: ShOptions = {}): Promise<string> {
    return sh(['ip', 'netns', 'exec', this.own(ns), ...cmd], opts);
  }

  /** Like exec() but never throws on non-zero exit. */
  async run(ns: string, cmd: string[], opts: ShOptions = {}): Promise<RunResult> {
    return run(['ip', 'netns', 'exec', this.own(ns), ...cmd], opts);
  }

  // -------------------------------------------------------------------------
  // etcd

  /**
   * Starts Debian's etcd in the underlay namespace on 192.0.2.1:2379/2380
   * (data dir under tmpDir) and waits until `etcdctl endpoint health` passes.
   * Returns the tracked process. Only one etcd per topology. `extraArgs` go
   * to etcd as they are (e.g. ['--max-txn-ops', '5000']).
   */
  async startEtcd(timeoutMs = 20_000, extraArgs: string[] = []): Promise<BgProc> {
    if (this.etcd) throw new Error('etcd already started');
    const dir = path.join(this.tmpDir, 'etcd');
    mkdirSync(dir, { recursive: true });
    const etcd = this.spawn(
      this.underlay,
      [
        'etcd', '--name', 'fts', '--data-dir', dir,
        '--listen-client-urls', ETCD_CLIENT_URL, '--advertise-client-urls', ETCD_CLIENT_URL,
        '--listen-peer-urls', ETCD_PEER_URL, '--initial-advertise-peer-urls', ETCD_PEER_URL,
        '--initial-cluster', `fts=${ETCD_PEER_URL}`, '--log-level', 'error', '--logger', 'zap',
        ...extraArgs,
      ],
      { label: 'etcd' },
    );
    this.etcd = etcd;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.run(this.underlay, ['etcdctl', '--endpoints', ETCD_CLIENT_URL, '--dial-timeout=1s', '--command-timeout=2s', 'endpoint', 'health'], {
        env: { ETCDCTL_API: '3' },
      });
      if (r.code === 0) return etcd;
      if (etcd.done) throw new Error(`etcd exited before becoming healthy:\n${etcd.stderr}`);
      if (Date.now() > deadline) throw new Error(`etcd not healthy after ${timeoutMs} ms: ${r.stderr}\n${etcd.stderr}`);
      await sleep(150);
    }
  }

  /**
   * Stops the etcd started by startEtcd() and waits until it is gone. With
   * wipe, its data dir is removed too: started again with startEtcd(), it
   * comes back empty, with the same cluster ID (as after a disk loss).
   */
  async stopEtcd(o: { wipe?: boolean } = {}): Promise<void> {
    const etcd = this.etcd;
    if (!etcd) throw new Error('etcd is not running');
    await etcd.stop();
    this.etcd = undefined;
    if (o.wipe) rmSync(path.join(this.tmpDir, 'etcd'), { recursive: true, force: true });
  }

  /** `etcdctl --endpoints http://192.0.2.1:2379 ...args` run in the underlay ns (API v3); returns stdout. */
  async etcdctl(...args: string[]): Promise<string> {
    return this.exec(this.underlay, ['etcdctl', '--endpoints', ETCD_CLIENT_URL, ...args], { env: { ETCDCTL_API: '3' } });
  }

  // -------------------------------------------------------------------------
  // flanneld

  /** Where startFlanneld() tells flanneld on `host` to write its subnet.env. */
  subnetFile(host: Host): string {
    return path.join(this.tmpDir, host.name, 'subnet.env');
  }

  /**
   * Starts flanneld (FLANNELD_ARGV: the tsc output unless FLANNELD_ENTRY says
   * otherwise) inside the host namespace with
   * --etcd-endpoints=http://192.0.2.1:2379 --subnet-file=<subnetFile(host)>
   * followed by extraArgs. The process is tracked and killed by destroy().
   */
  startFlanneld(host: Host, extraArgs: string[] = [], opts: { env?: Record<string, string> } = {}): FlanneldProc {
    this.assertUsable();
    const file = this.subnetFile(host);
    mkdirSync(path.dirname(file), { recursive: true });
    const f = new FlanneldProc([`--etcd-endpoints=${ETCD_CLIENT_URL}`, `--subnet-file=${file}`, ...extraArgs], {
      prefix: ['ip', 'netns', 'exec', this.own(host.name)],
      env: opts.env,
    });
    this.procs.push({ proc: f.proc, label: `flanneld ${host.name}` });
    return f;
  }

  /** Reads and parses subnetFile(host). Throws if missing or incomplete. */
  subnetEnv(host: Host): SubnetEnv {
    return parseSubnetEnv(readFileSync(this.subnetFile(host), 'utf8'));
  }

  // -------------------------------------------------------------------------
  // Pods

  /**
   * Wires host's pods from the subnet.env flanneld wrote (waits up to
   * timeoutMs for the file to appear): cni0 = FLANNEL_SUBNET, MTU = FLANNEL_MTU.
   */
  async wirePods(host: Host, timeoutMs = 10_000): Promise<Pod[]> {
    const file = this.subnetFile(host);
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(file)) {
      if (Date.now() > deadline) throw new Error(`${file} not written within ${timeoutMs} ms`);
      await sleep(100);
    }
    const env = this.subnetEnv(host);
    return this.wirePodsWith(host, { subnet: env.FLANNEL_SUBNET, mtu: env.FLANNEL_MTU });
  }

  /**
   * Lower-level wirePods: creates bridge cni0 with address `subnet` (the
   * gateway, e.g. '10.244.5.1/24') in the host ns and podsPerHost pod
   * namespaces <host>p1.., each with eth0 (peer veth<M> on cni0) addressed
   * base+10+M/len, MTU `mtu` on both veth ends, default route via the gateway.
   * Call once per host.
   */
  async wirePodsWith(host: Host, w: { subnet: string; mtu: number }): Promise<Pod[]> {
    this.assertUsable();
    if (host.cni) throw new Error(`pods of ${host.name} are already wired`);
    const { addr, len, base } = parseCidr(w.subnet);
    const cni: CniWiring = { subnet: `${addr}/${len}`, gateway: addr, base, prefixLen: len, mtu: w.mtu };
    host.cni = cni;
    const h = this.own(host.name);
    await this.ip(h, 'link', 'add', 'cni0', 'type', 'bridge');
    await this.ip(h, 'addr', 'add', cni.subnet, 'dev', 'cni0');
    await this.ip(h, 'link', 'set', 'cni0', 'mtu', String(w.mtu), 'up');
    const pods: Pod[] = [];
    for (let m = 1; m <= this.podsPerHost; m++) {
      const ip = ipAdd(base, 10 + m);
      if (ip === addr) throw new Error(`pod ${m} address ${ip} collides with gateway ${addr}`);
      pods.push({ name: `${host.name}p${m}`, ip, host });
    }
    await allSettledOrThrow(
      pods.map(async (p, i) => {
        const veth = `veth${i + 1}`;
        await this.addNs(p.name);
        await this.ip(h, 'link', 'add', veth, 'mtu', String(w.mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', String(w.mtu), 'netns', p.name);
        await this.ip(h, 'link', 'set', veth, 'master', 'cni0', 'up');
        await this.ip(p.name, 'addr', 'add', `${p.ip}/${len}`, 'dev', 'eth0');
        await this.ip(p.name, 'link', 'set', 'eth0', 'up');
        await this.ip(p.name, 'route', 'add', 'default', 'via', addr, 'dev', 'eth0');
      }),
    );
    host.pods.push(...pods);
    return pods;
  }

  /** All pods of all hosts, host by host. */
  get pods(): Pod[] {
    return this.hosts.flatMap((h) => h.pods);
  }

  // -------------------------------------------------------------------------
  // Probing

  /** iputils ping from namespace fromNs; ok = exit status 0, rttMs from the last `time=`. */
  async ping(fromNs: string, toIp: string, o: { count?: number; timeoutS?: number | undefined } = {}): Promise<PingResult> {
    const count = o.count ?? 1;
    const timeoutS = o.timeoutS ?? 2;
    const r = await this.run(fromNs, ['ping', '-n', '-q', '-c', String(count), '-W', String(timeoutS), ...(count > 1 ? ['-i', '0.2'] : []), toIp], {
      timeoutMs: (count * timeoutS + 5) * 1000,
    });
    // -q prints only the summary "rtt min/avg/max/mdev = a/b/c/d ms"; use avg.
    const m = /= [\d.]+\/([\d.]+)\/[\d.]+\/[\d.]+ ms/.exec(r.stdout) ?? /time=([\d.]+) ?ms/.exec(r.stdout);
    return { ok: r.code === 0, rttMs: m ? Number(m[1]) : null };
  }

  /** Pings every ordered pair of distinct pods (same host and cross host), `parallel` at a time. */
  async pingMesh(o: { parallel?: number; timeoutS?: number } = {}): Promise<MeshResult[]> {
    const pods = this.pods;
    const pairs: Array<[Pod, Pod]> = [];
    for (const a of pods) for (const b of pods) if (a !== b) pairs.push([a, b]);
    return mapLimit(pairs, o.parallel ?? 8, async ([from, to]) => ({ from, to, ...(await this.ping(from.name, to.ip, { timeoutS: o.timeoutS })) }));
  }

  /**
   * Captures on iface in ns with `tcpdump -i iface -nn -e -x -l --immediate-mode
   * [-c count] filter` while during() runs; returns tcpdump's stdout (one
   * header line per packet, followed by hex lines). tcpdump is listening
   * before during() starts, and is always stopped afterwards (after settleMs,
   * default 300, or as soon as it exits by itself once `count` packets are seen).
   */
  async capture(ns: string, iface: string, filter: string | string[], during: () => Promise<void>, o: { count?: number; settleMs?: number } = {}): Promise<string> {
    const args = ['tcpdump', '-i', iface, '-nn', '-e', '-x', '-l', '--immediate-mode'];
    if (o.count !== undefined) args.push('-c', String(o.count));
    args.push(...(typeof filter === 'string' ? (filter ? [filter] : []) : filter));
    const td = this.spawn(ns, args, { label: `tcpdump ${iface} in ${ns}` });
    try {
      const deadline = Date.now() + 10_000;
      while (!/listening on/.test(td.stderr)) {
        if (td.done) throw new Error(`tcpdump exited before listening:\n${td.stderr}`);
        if (Date.now() > deadline) throw new Error(`tcpdump not listening after 10 s:\n${td.stderr}`);
        await sleep(20);
      }
      await during();
      await Promise.race([td.exited, sleep(o.settleMs ?? 300)]);
    } finally {
      await td.stop(2000);
    }
    return td.stdout;
  }

  // -------------------------------------------------------------------------
  // Teardown

  /**
   * Kills every tracked process (SIGTERM, SIGKILL after 3 s), deletes every
   * namespace this topology created (pods, hosts, underlay) and the temp dir.
   * Idempotent: later calls return the first call's promise. Rejects with an
   * AggregateError if a namespace could not be deleted (after trying all).
   */
  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    await Promise.all(this.procs.map(({ proc }) => terminate(proc, 3000)));
    const errors: Error[] = [];
    for (const ns of [...this.namespaces].reverse()) {
      const r = await run(['ip', 'netns', 'del', ns]);
      if (r.code !== 0 && !/No such file/.test(r.stderr)) errors.push(new Error(`ip netns del ${ns}: ${r.stderr.trim()}`));
    }
    this.namespaces.length = 0;
    rmSync(this.tmpDir, { recursive: true, force: true });
    live.delete(this);
    uninstallHooksIfIdle();
    if (errors.length) throw new AggregateError(errors, `topology ${this.prefix}: cleanup incomplete`);
  }

  /** Synchronous best-effort cleanup, for process 'exit'/signal hooks only. */
  cleanupSync(): void {
    for (const { proc } of this.procs) {
      if (alive(proc) && proc.pid !== undefined) {
        try {
          process.kill(proc.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    for (const ns of [...this.namespaces].reverse()) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        /* best effort */
      }
    }
    this.namespaces.length = 0;
    try {
      rmSync(this.tmpDir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
    live.delete(this);
  }

  /** Namespaces currently registered for cleanup (copy). */
  get namespaceNames(): string[] {
    return [...this.namespaces];
  }

  /** Pids of tracked processes that are still running. */
  get livePids(): number[] {
    return this.procs.filter(({ proc }) => alive(proc) && proc.pid !== undefined).map(({ proc }) => proc.pid!);
  }
}

/** `ip netns list` names (without the "(id: N)" suffix). */
export async function listNamespaces(): Promise<string[]> {
  const out = await sh(['ip', 'netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

/** Parses subnet.env text (KEY=VALUE lines). Throws if a required key is missing. */
export function parseSubnetEnv(text: string): SubnetEnv {
  const raw: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*?)\s*$/.exec(line);
    if (m) raw[m[1]!] = m[2]!;
  }
  for (const k of ['FLANNEL_NETWORK', 'FLANNEL_SUBNET', 'FLANNEL_MTU', 'FLANNEL_IPMASQ']) {
    if (raw[k] === undefined) throw new Error(`subnet.env lacks ${k}:\n${text}`);
  }
  const mtu = Number(raw.FLANNEL_MTU);
  if (!Number.isInteger(mtu) || mtu <= 0) throw new Error(`bad FLANNEL_MTU: ${raw.FLANNEL_MTU}`);
  return {
    FLANNEL_NETWORK: raw.FLANNEL_NETWORK!,
    FLANNEL_SUBNET: raw.FLANNEL_SUBNET!,
    FLANNEL_MTU: mtu,
    FLANNEL_IPMASQ: raw.FLANNEL_IPMASQ === 'true',
    raw,
  };
}

/** true when running as root (namespaces need CAP_SYS_ADMIN / CAP_NET_ADMIN). */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}
