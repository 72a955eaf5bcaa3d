// `flannelctl lab`: a multi-host flannel overlay on one machine.
//
//   <prefix>ul          underlay: bridge br0 192.0.2.1/24 (TEST-NET-1); etcd with --store etcd
//   <prefix>h1..hN      hosts: eth0 192.0.2.(10+i)/24, one flanneld each
//   <prefix>h1p1..      pods, attached through the flannel CNI plugin
//                       (which delegates to the real bridge + host-local plugins)
//
// The default prefix is "ftslab-". Everything the lab makes lives in those
// namespaces or under its state directory, and the PIDs it starts are recorded
// there, so `lab down` can undo it even after a crash. The root namespace's
// interfaces, routes and firewall are never touched: veths are created from
// inside one namespace straight into another.
//
// The lab builds its hosts with ip(8), as an operator would by hand; the
// daemon itself (flanneld) programs the overlay through rtnetlink only.

import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEnvText } from '../subnet/subnet-env.js';
import { buildEdgeLan, EDGE_LAN, edgeFlanneldArgs, edgeHostCount, edgeReport, type LabEdge } from './edge.js';
import { LocalStore } from '../store/local/local-store.js';
import { mapLimit, run, sh } from './sh.js';
import { kubeApiserverBinary, nodeAnnotations, startLabKube } from './kube.js';
import { FlannelError } from '../errors.js';
import { renderReachMatrix } from './matrix.js';
import { cniResultIPv6, hostIp6, hostIPv6, hostReport6, IPV6_NETWORK, netConfIPv6, podCidr6, reachability6, renderHost6, renderMatrix6, underlayIPv6, waitIPv6Settled, type HostReport6, type Reach6 } from './ipv6.js';

export const DEFAULT_LAB_PREFIX = 'ftslab-';
export const DEFAULT_LAB_DIR = '/run/flannel-ts-lab';
export const UNDERLAY_IP = '192.0.2.1';
export const NETWORK = '10.244.0.0/16';
const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FLANNELD = path.join(DIST, 'cmd/flanneld/main.js');
const CNI_PLUGIN = path.join(DIST, 'cmd/cni/main.js');
export const FLANNELCTL = path.join(DIST, 'cmd/flannelctl/main.js');
const CNI_DIRS = ['/usr/lib/cni', '/opt/cni/bin'];

export class LabError extends FlannelError {
  static override readonly defaultCode: string = 'LAB';
  override name = 'LabError';
}

/** lab up refused before it created anything: nothing to clean up (and a running lab is left alone). */
export class LabRefused extends LabError {
  override name = 'LabRefused';
}

/** lab up was interrupted (SIGINT/SIGTERM): the caller removes what it made. */
export class LabInterrupted extends LabError {
  override name = 'LabInterrupted';
}

export type LabStore = 'local' | 'etcd' | 'kube';

export interface LabOptions {
  hosts: number;
  pods: number;
  /** --edge: an office LAN behind h1 (and h2) as edge gateways (src/lab/edge.ts) */
  edge?: boolean;
  backend: string;
  store: LabStore;
  dir: string;
  prefix: string;
  progress: (line: string) => void;
  /** serve the topology page on this address ("127.0.0.1:0": any free port); false: no page */
  ui?: string | false;
  /** aborted on SIGINT/SIGTERM: lab up stops at the next step and throws LabInterrupted */
  signal?: AbortSignal;
  /** how to call flannelctl in printed commands (default "flannelctl") */
  self?: string;
  /** dual-stack: an IPv6 underlay (2001:db8::/64), EnableIPv6 + IPv6Network, pods with both addresses (see ipv6.ts) */
  ipv6?: boolean;
}

export interface LabPod {
  name: string;
  ip: string | null;
  /** --ipv6: the pod's IPv6 address */
  ip6?: string | null;
}

export interface LabHost {
  name: string;
  index: number;
  ip: string;
  dir: string;
  pods: LabPod[];
  /** --ipv6: underlay IPv6 address on eth0 */
  ip6?: string;
}

export interface LabState {
  version: 1;
  prefix: string;
  dir: string;
  backend: string;
  store: LabStore;
  /** lab up --ipv6 (dual-stack) */
  ipv6?: boolean;
  createdAt: string;
  /** --store kube: where the control plane's files are (admin kubeconfig, apiserver.sock) */
  kube?: { dir: string; url: string; adminKubeconfig: string };
  /** the topology page `lab up` started */
  ui?: { url: string; pid: number };
  hosts: LabHost[];
  /** --edge: the office LAN (src/lab/edge.ts) */
  edge?: LabEdge;
  /** processes the lab started, with a word their command line must contain (guards against PID reuse) */
  procs: Array<{ pid: number; what: string; mark: string }>;
}

const stateFile = (dir: string) => path.join(dir, 'state.json');

export function loadState(dir: string): LabState | null {
  try {
    return JSON.parse(readFileSync(stateFile(dir), 'utf8')) as LabState;
  } catch {
    return null;
  }
}

function saveState(s: LabState): void {
  mkdirSync(s.dir, { recursive: true });
  writeFileSync(stateFile(s.dir), JSON.stringify(s, null, 2));
}

export async function labNamespaces(prefix: string): Promise<string[]> {
  const out = await run(['ip', 'netns', 'list']);
  return out.stdout
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(prefix));
}

export function findPlugin(name: string): string | null {
  for (const d of CNI_DIRS) if (existsSync(path.join(d, name))) return d;
  return null;
}

async function which(cmd: string): Promise<boolean> {
  return (await run(['sh', '-c', `command -v ${cmd}`])).code === 0;
}

/** Start a long-lived process detached from us, its output in a log file. */
function spawnDetached(argv: string[], log: string, env: Record<string, string> = {}): number {
  const fd = openSync(log, 'a');
  try {
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
    child.unref();
    if (!child.pid) throw new LabError(`could not start ${argv.join(' ')}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function netConf(backend: string, ipv6 = false): string {
  return JSON.stringify({ Network: NETWORK, ...(ipv6 ? netConfIPv6 : {}), Backend: { Type: backend } });
}

export async function labUp(o: LabOptions): Promise<LabState> {
  if (!Number.isInteger(o.hosts) || o.hosts < 1 || o.hosts > 50) throw new LabRefused(`--hosts: ${o.hosts} is out of range (1..50)`);
  if (!Number.isInteger(o.pods) || o.pods < 0 || o.pods > 50) throw new LabRefused(`--pods: ${o.pods} is out of range (0..50)`);
  if (o.edge && o.backend !== 'vxlan') throw new LabRefused(`--edge: the edge gateway is a vxlan feature; use --backend vxlan (not ${o.backend})`);
  const existing = await labNamespaces(o.prefix);
  if (loadState(o.dir) || existing.length > 0) {
    const self = o.self ?? 'flannelctl';
    throw new LabRefused(`a lab is already up (${existing.length} namespaces named ${o.prefix}*); see "${self} lab status${labFlags(o)}", or remove it with "${self} lab down${labFlags(o)}"`);
  }
  if (o.ipv6 && o.backend === 'udp') throw new LabRefused('--ipv6: the udp backend is IPv4-only (as in flannel); use --backend vxlan or host-gw');
  const cniDir = findPlugin('bridge');
  if (!cniDir || !findPlugin('host-local')) {
    throw new LabRefused('the CNI bridge and host-local plugins are not installed; install them with: apt-get install containernetworking-plugins');
  }
  if (o.store === 'etcd' && !((await which('etcd')) && (await which('etcdctl')))) {
    throw new LabRefused('--store etcd needs etcd-server and etcd-client; install them with: apt-get install etcd-server etcd-client');
  }
  if (o.store === 'kube' && !(await which('etcd'))) {
    throw new LabRefused('--store kube needs etcd-server (for the kube-apiserver); install it with: apt-get install etcd-server');
  }
  // Build (or find) the kube-apiserver before anything is created: the first
  // build takes minutes, and an error here must leave nothing behind.
  let kubeBinary: string | null = null;
  if (o.store === 'kube') {
    try {
      kubeBinary = await kubeApiserverBinary(o.progress);
    } catch (e) {
      throw new LabRefused((e as Error).message);
    }
  }
  const t0 = Date.now();
  // Interrupted (SIGINT/SIGTERM): stop before the next thing is made; a command
  // in flight is killed too. The caller then removes what was made.
  const check = () => {
    if (o.signal?.aborted) throw new LabInterrupted(`interrupted by ${String(o.signal.reason ?? 'a signal')}`);
  };
  const shOpts = o.signal ? { signal: o.signal } : {};
  const x = (argv: string[]) => {
    check();
    return sh(argv, shOpts);
  };
  check();
  const step = (n: number, total: number, what: string) => o.progress(`[${n}/${total}] ${what} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  const s: LabState = {
    version: 1,
    prefix: o.prefix,
    dir: o.dir,
    backend: o.backend,
    store: o.store,
    ...(o.ipv6 ? { ipv6: true } : {}),
    createdAt: new Date().toISOString(),
    hosts: [],
    procs: [],
  };
  rmSync(o.dir, { recursive: true, force: true });
  saveState(s);
  const ul = `${o.prefix}ul`;
  const ipn = (ns: string, ...a: string[]) => x(['ip', '-n', ns, ...a]);

  step(1, 5, `creating the underlay and ${o.hosts} hosts`);
  await x(['ip', 'netns', 'add', ul]);
  await ipn(ul, 'link', 'set', 'lo', 'up');
  await ipn(ul, 'link', 'add', 'br0', 'type', 'bridge');
  await ipn(ul, 'addr', 'add', `${UNDERLAY_IP}/24`, 'dev', 'br0');
  if (o.ipv6) await underlayIPv6(x, ul);
  await ipn(ul, 'link', 'set', 'br0', 'up');
  for (let i = 1; i <= o.hosts; i++) {
    const name = `${o.prefix}h${i}`;
    const h: LabHost = { name, index: i, ip: `192.0.2.${10 + i}`, ...(o.ipv6 ? { ip6: hostIp6(i) } : {}), dir: path.join(o.dir, `h${i}`), pods: [] };
    mkdirSync(h.dir, { recursive: true });
    await x(['ip', 'netns', 'add', name]);
    s.hosts.push(h);
    saveState(s);
    await ipn(ul, 'link', 'add', `vh${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name);
    await ipn(ul, 'link', 'set', `vh${i}`, 'master', 'br0', 'up');
    await ipn(name, 'link', 'set', 'lo', 'up');
    await ipn(name, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0');
    await ipn(name, 'link', 'set', 'eth0', 'up');
    await ipn(name, 'route', 'add', 'default', 'via', UNDERLAY_IP);
    await x(['ip', 'netns', 'exec', name, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    if (h.ip6) await hostIPv6(x, name, h.ip6);
  }

  if (o.edge) {
    const edgeHosts = s.hosts.slice(0, edgeHostCount(o.hosts)).map((h) => h.name);
    o.progress(`    office LAN ${EDGE_LAN} behind ${edgeHosts.map((n) => n.slice(o.prefix.length)).join(' and ')}`);
    s.edge = await buildEdgeLan(o.prefix, edgeHosts, async (ns) => {
      await x(['ip', 'netns', 'add', ns]);
      await ipn(ns, 'link', 'set', 'lo', 'up');
    }, ipn, NETWORK);
    saveState(s);
  }

  step(2, 5, o.store === 'kube' ? 'starting etcd and kube-apiserver in the underlay, creating the Node objects' : `starting the ${o.store} lease store`);
  let storeArgs: string[];
  const hostEnv = new Map<string, Record<string, string>>();
  if (o.store === 'kube') {
    const k = await startLabKube({
      dir: path.join(o.dir, 'kube'),
      binary: kubeBinary!,
      netns: ul,
      bindIP: UNDERLAY_IP,
      hosts: s.hosts,
      netConf: netConf(o.backend, o.ipv6),
      ...(o.ipv6 ? { podCidr6 } : {}),
      onProcess: (p) => {
        s.procs.push({ pid: p.pid, what: p.what, mark: p.mark });
        saveState(s);
      },
    });
    s.kube = { dir: k.dir, url: k.url, adminKubeconfig: k.adminKubeconfig };
    saveState(s);
    check();
    storeArgs = k.flanneldArgs;
    for (const h of s.hosts) hostEnv.set(h.name, { NODE_NAME: h.name });
  } else if (o.store === 'local') {
    const db = path.join(o.dir, 'leases.db');
    const st = LocalStore.open(db);
    await st.setNetworkConfig(netConf(o.backend, o.ipv6));
    await st.close();
    storeArgs = [`--store=local:${db}`];
  } else {
    const ep = `http://${UNDERLAY_IP}:2379`;
    const pid = spawnDetached(
      ['ip', 'netns', 'exec', ul, 'etcd', '--name', 'lab', '--data-dir', path.join(o.dir, 'etcd'), '--listen-client-urls', ep, '--advertise-client-urls', ep,
        '--listen-peer-urls', `http://${UNDERLAY_IP}:2380`, '--initial-advertise-peer-urls', `http://${UNDERLAY_IP}:2380`, '--initial-cluster', `lab=http://${UNDERLAY_IP}:2380`, '--log-level', 'error', '--logger', 'zap'],
      path.join(o.dir, 'etcd.log'),
    );
    s.procs.push({ pid, what: 'etcd', mark: 'etcd' });
    saveState(s);
    // The root namespace cannot reach the underlay: a relay in it serves etcd
    // on a Unix socket (a path, visible from every namespace) for the page.
    const relay = spawnDetached(['ip', 'netns', 'exec', ul, process.execPath, '-e', RELAY_JS, labEtcdSocket(o.dir), UNDERLAY_IP, '2379'], path.join(o.dir, 'etcd-relay.log'));
    s.procs.push({ pid: relay, what: 'etcd relay', mark: 'etcd.sock' });
    saveState(s);
    const etcdctl = (...a: string[]) => run(['ip', 'netns', 'exec', ul, 'etcdctl', '--endpoints', ep, ...a], { env: { ETCDCTL_API: '3' }, ...shOpts });
    for (let i = 0; ; i++) {
      check();
      if ((await etcdctl('endpoint', 'health')).code === 0) break;
      if (i > 100) throw new LabError(`etcd did not become healthy; see ${path.join(o.dir, 'etcd.log')}`);
      await sleep(100);
    }
    const put = await etcdctl('put', '/coreos.com/network/config', netConf(o.backend, o.ipv6));
    if (put.code !== 0) throw new LabError(`could not write the network config to etcd: ${put.stderr.trim()}`);
    storeArgs = [`--etcd-endpoints=${ep}`];
  }

  check();
  step(3, 5, `starting ${o.hosts} flanneld`);
  for (const h of s.hosts) {
    const pid = spawnDetached(
      ['ip', 'netns', 'exec', h.name, process.execPath, FLANNELD, ...storeArgs, `--subnet-file=${path.join(h.dir, 'subnet.env')}`, '--iface=eth0', '--log-format=text', ...(s.edge?.edgeHosts.some((e) => e.name === h.name) ? edgeFlanneldArgs() : [])],
      path.join(h.dir, 'flanneld.log'),
      hostEnv.get(h.name) ?? {},
    );
    s.procs.push({ pid, what: `flanneld ${h.name}`, mark: 'flanneld' });
  }
  saveState(s);
  for (const h of s.hosts) {
    const f = path.join(h.dir, 'subnet.env');
    for (let i = 0; !existsSync(f); i++) {
      check();
      if (i > 300) {
        const log = existsSync(path.join(h.dir, 'flanneld.log')) ? readFileSync(path.join(h.dir, 'flanneld.log'), 'utf8').trim().split('\n').slice(-5).join('\n') : '';
        throw new LabError(`flanneld on ${h.name} did not write ${f} within 30 s; last log lines:\n${log}`);
      }
      await sleep(100);
    }
  }

  step(4, 5, `attaching ${o.hosts * o.pods} pods through the flannel CNI plugin`);
  for (const h of s.hosts) {
    for (let j = 1; j <= o.pods; j++) {
      const pod = `${h.name}p${j}`;
      await x(['ip', 'netns', 'add', pod]);
      h.pods.push({ name: pod, ip: null });
      saveState(s);
      await ipn(pod, 'link', 'set', 'lo', 'up');
      const res = await cniInvoke(h, 'ADD', pod, cniDir);
      const ip = /"address":\s*"([\d.]+)\//.exec(res)?.[1] ?? null;
      h.pods[j - 1]!.ip = ip;
      if (o.ipv6) h.pods[j - 1]!.ip6 = cniResultIPv6(res);
      check();
    }
  }
  saveState(s);
  if (o.ipv6) {
    const slow = await waitIPv6Settled(s.hosts.flatMap((h) => [h.name, ...h.pods.map((p) => p.name)]));
    if (slow.length > 0) o.progress(`IPv6 addresses still tentative (duplicate address detection) in ${slow.join(', ')}`);
  }
  if (o.ui !== false && o.ui !== undefined) {
    if (o.store === 'kube') o.progress('(no topology page: it reads etcd or local stores, and a --store kube lab keeps its leases as Node objects)');
    else {
      const ui = await startLabUi(s, o.ui, check);
      if (typeof ui === 'string') o.progress(`the topology page did not start: ${ui}`);
      else {
        s.ui = ui;
        saveState(s);
      }
    }
  }
  check();
  step(5, 5, 'checking pod-to-pod reachability');
  return s;
}

// Relays a Unix socket to a TCP address; run inside the underlay namespace
// (`node -e`, argv: socket, host, port).
const RELAY_JS = `
const net = require('node:net'), fs = require('node:fs');
const [sock, host, port] = process.argv.slice(1);
fs.rmSync(sock, { force: true });
const server = net.createServer((a) => {
  const b = net.connect(Number(port), host);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.pipe(b);
  b.pipe(a);
});
server.listen(sock, () => fs.chmodSync(sock, 0o600));
for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => { fs.rmSync(sock, { force: true }); process.exit(0); });
`;

export const labEtcdSocket = (dir: string) => path.join(dir, 'etcd.sock');
/** Written by `flannelctl ui --lab <dir>` once it listens: its URL and PID. */
export const labUiFile = (dir: string) => path.join(dir, 'ui.json');

export function readLabUi(dir: string): { url: string; pid: number } | null {
  try {
    const u = JSON.parse(readFileSync(labUiFile(dir), 'utf8')) as { url?: unknown; pid?: unknown };
    return typeof u.url === 'string' && typeof u.pid === 'number' ? { url: u.url, pid: u.pid } : null;
  } catch {
    return null;
  }
}

/** Is the lab's page being served: the PID in ui.json is alive and is flannelctl. */
export function labUiStatus(s: LabState): { url: string; pid: number; running: boolean; log: string } | null {
  const u = readLabUi(s.dir) ?? s.ui ?? null;
  if (!u) return null;
  return { ...u, running: alive(u.pid) && cmdlineHas(u.pid, 'flannelctl'), log: path.join(s.dir, 'ui.log') };
}

/** Starts `flannelctl ui --lab <dir>` detached and waits for it to listen; a reason when it did not. */
async function startLabUi(s: LabState, listen: string, check: () => void): Promise<{ url: string; pid: number } | string> {
  const log = path.join(s.dir, 'ui.log');
  rmSync(labUiFile(s.dir), { force: true });
  const pid = spawnDetached([process.execPath, FLANNELCTL, 'ui', `--lab=${s.dir}`, '--listen', listen], log);
  // Recorded at once, so an interrupted lab up (or lab down) stops it too.
  s.procs.push({ pid, what: 'topology page', mark: 'flannelctl' });
  saveState(s);
  for (let i = 0; i < 150; i++) {
    check();
    const u = readLabUi(s.dir);
    if (u && u.pid === pid) return u;
    if (!alive(pid)) break;
    await sleep(100);
  }
  const tail = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' / ') : '';
  if (alive(pid)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  return tail || `it did not answer within 15 s (see ${log})`;
}

function cniConfig(h: Pick<LabHost, 'dir'>): string {
  // The kube-flannel conflist's flannel entry, with per-host paths so hosts don't share CNI state.
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: 'cbr0',
    type: 'flannel',
    subnetFile: path.join(h.dir, 'subnet.env'),
    dataDir: path.join(h.dir, 'cni'),
    delegate: { hairpinMode: true, isDefaultGateway: true },
    ipam: { dataDir: path.join(h.dir, 'ipam') },
  });
}

/** Run the flannel CNI plugin in host namespace h.name for pod namespace `pod`; its state lives under h.dir. */
export async function cniInvoke(h: Pick<LabHost, 'name' | 'dir'>, command: 'ADD' | 'DEL', pod: string, cniDir: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', h.name, process.execPath, CNI_PLUGIN], {
      env: { ...process.env, CNI_COMMAND: command, CNI_CONTAINERID: pod, CNI_NETNS: `/var/run/netns/${pod}`, CNI_IFNAME: 'eth0', CNI_PATH: cniDir },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new LabError(`CNI ${command} for ${pod} failed: ${out.trim() || err.trim()}`))));
    child.stdin.end(cniConfig(h));
  });
}

// ------------------------------------------------------------------ report

export interface HostReport {
  host: LabHost;
  subnet: string;
  mtu: string;
  /** one line on the backend's device: flannel.1 (vxlan), flannel0 (udp), or that host-gw has none */
  device: string;
  neigh: string[];
  fdb: string[];
  routes: string[];
  /** host-gw: the routes to peers' subnets via their public IPs */
  peerRoutes: string[];
  flanneld: FlanneldStatus;
  /** --ipv6 labs: flannel-v6.1, its entries and the v6 routes */
  v6?: HostReport6;
}

export interface FlanneldStatus {
  state: 'running' | 'stopped';
  /** null when the lab has no record of it (a crash before it was saved) */
  pid: number | null;
  log: string;
}

/** Is this host's flanneld running: its recorded PID is alive and is a flanneld. */
export function flanneldStatus(s: Pick<LabState, 'procs'>, h: Pick<LabHost, 'name' | 'dir'>): FlanneldStatus {
  const p = s.procs.find((x) => x.what === `flanneld ${h.name}`);
  const running = p !== undefined && alive(p.pid) && cmdlineHas(p.pid, 'flanneld');
  return { state: running ? 'running' : 'stopped', pid: p?.pid ?? null, log: path.join(h.dir, 'flanneld.log') };
}

const lines = (s: string) => s.trim().split('\n').map((l) => l.trim()).filter(Boolean);

export async function hostReport(h: LabHost, backend: string, s?: Pick<LabState, 'procs' | 'hosts' | 'ipv6'>): Promise<HostReport> {
  let subnet = '?';
  let mtu = '?';
  try {
    const env = parseEnvText(readFileSync(path.join(h.dir, 'subnet.env'), 'utf8'));
    subnet = env.get('FLANNEL_SUBNET') ?? '?';
    mtu = env.get('FLANNEL_MTU') ?? '?';
  } catch {
    /* flanneld not up */
  }
  const dev = backend === 'vxlan' ? 'flannel.1' : backend === 'udp' ? 'flannel0' : '';
  let device: string;
  let neigh: string[] = [];
  let fdb: string[] = [];
  if (dev) {
    const link = await run(['ip', '-n', h.name, '-d', 'link', 'show', dev]);
    const addr = await run(['ip', '-n', h.name, '-4', '-br', 'addr', 'show', dev]);
    if (link.code === 0) {
      const mac = /link\/ether (\S+)/.exec(link.stdout)?.[1];
      const vx = /vxlan id (\d+).*?dstport (\d+)( nolearning)?/.exec(link.stdout);
      const m = /mtu (\d+)/.exec(link.stdout)?.[1] ?? '?';
      const a = addr.stdout.trim().split(/\s+/).slice(2).join(' ') || '(none)';
      device =
        backend === 'udp'
          ? `${dev}  tun  addr ${a}  mtu ${m}  (flanneld reads and writes its packets, in UDP to port 8285)`
          : `${dev}  mac ${mac ?? '?'}  addr ${a}  mtu ${m}${vx ? `  vxlan id ${vx[1]} dstport ${vx[2]}${vx[3] ?? ''}` : ''}`;
    } else device = `${dev} is missing`;
    if (backend === 'vxlan') {
      neigh = lines((await run(['ip', '-n', h.name, 'neigh', 'show', 'dev', dev])).stdout);
      fdb = lines((await run(['bridge', '-n', h.name, 'fdb', 'show', 'dev', dev])).stdout);
    }
  } else device = "host-gw: no tunnel device; each peer's subnet is routed via the peer's public IP";
  const routes = lines((await run(['ip', '-n', h.name, 'route'])).stdout);
  const peers = new Set((s?.hosts ?? []).filter((x) => x.name !== h.name).map((x) => x.ip));
  const peerRoutes = backend === 'host-gw' ? routes.filter((r) => peers.has(/ via (\S+)/.exec(r)?.[1] ?? '')) : [];
  const flanneld = s ? flanneldStatus(s, h) : { state: 'stopped' as const, pid: null, log: path.join(h.dir, 'flanneld.log') };
  const v6 = s?.ipv6 ? { v6: await hostReport6(h.name, h.dir, backend) } : {};
  return { host: h, subnet, mtu, device, neigh, fdb, routes, peerRoutes, flanneld, ...v6 };
}

export interface Reach {
  from: string;
  to: string;
  ok: boolean;
  rttMs: number | null;
}

export async function reachability(s: LabState): Promise<Reach[]> {
  const pods = s.hosts.flatMap((h) => h.pods);
  const pairs = pods.flatMap((a) => pods.filter((b) => b !== a && b.ip).map((b) => ({ a, b })));
  return mapLimit(pairs, 8, async ({ a, b }) => {
    const r = await run(['ip', 'netns', 'exec', a.name, 'ping', '-c', '1', '-W', '1', '-q', b.ip!]);
    const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.stdout)?.[1];
    return { from: a.name, to: b.name, ok: r.code === 0, rttMs: rtt ? Number(rtt) : null };
  });
}

export type NodeInfo = Map<string, { annotations: Record<string, string>; condition: string }> | string;

function logTail(file: string, n: number): string[] {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).slice(-n);
  } catch {
    return [];
  }
}

export function renderReport(s: LabState, reports: HostReport[], reach: Reach[], nodes?: NodeInfo, reach6?: Reach6[]): string {
  const out: string[] = [];
  out.push(`lab ${s.prefix}*  backend ${s.backend}  store ${s.store}  network ${NETWORK}${s.ipv6 ? `  ipv6 network ${IPV6_NETWORK}` : ''}  state ${s.dir}`);
  if (s.kube) out.push(`kube-apiserver ${s.kube.url} (in ${s.prefix}ul)  admin kubeconfig ${s.kube.adminKubeconfig}`);
  const ui = labUiStatus(s);
  if (ui) out.push(ui.running ? `topology page ${ui.url}` : `topology page NOT RUNNING (pid ${ui.pid} has exited); its log is ${ui.log}`);
  for (const r of reports) {
    out.push('');
    out.push(`host ${r.host.name}  underlay ${r.host.ip}${r.host.ip6 ? ` ${r.host.ip6}` : ''}  FLANNEL_SUBNET=${r.subnet}${r.v6 ? `  FLANNEL_IPV6_SUBNET=${r.v6.subnet6}` : ''}  FLANNEL_MTU=${r.mtu}`);
    const f = r.flanneld;
    if (f.state === 'running') out.push(`  flanneld running (pid ${f.pid}), log ${f.log}`);
    else {
      out.push(`  flanneld NOT RUNNING (${f.pid === null ? 'no pid recorded' : `pid ${f.pid} has exited`}); its log is ${f.log}${existsSync(f.log) ? ', last lines:' : ''}`);
      out.push(...logTail(f.log, 5).map((l) => `    | ${l.length > 200 ? l.slice(0, 200) + '…' : l}`));
    }
    out.push(`  ${r.device}`);
    if (s.backend === 'host-gw') out.push(...(r.peerRoutes.length ? r.peerRoutes : ['(no routes to peers yet)']).map((l) => `    ${l}`));
    if (nodes !== undefined) {
      out.push(`  $ kubectl get node ${r.host.name} -o yaml  (flannel's annotations)`);
      if (typeof nodes === 'string') out.push(`    ${nodes}`);
      else {
        const n = nodes.get(r.host.name);
        if (!n) out.push('    (no Node object)');
        else {
          const ann = Object.entries(n.annotations).sort(([a], [b]) => a.localeCompare(b));
          out.push(...(ann.length ? ann.map(([k, v]) => `    ${k}: ${v}`) : ['    (none yet)']));
          out.push(`    ${n.condition}`);
        }
      }
    }
    if (s.backend === 'vxlan') {
      out.push('  $ ip neigh show dev flannel.1');
      out.push(...(r.neigh.length ? r.neigh : ['(none)']).map((l) => `    ${l}`));
      out.push('  $ bridge fdb show dev flannel.1');
      out.push(...(r.fdb.length ? r.fdb : ['(none)']).map((l) => `    ${l}`));
    }
    out.push('  $ ip route');
    out.push(...r.routes.map((l) => `    ${l}`));
    if (r.v6) out.push(...renderHost6(r.v6, s.backend));
    out.push(`  pods: ${r.host.pods.map((p) => `${p.name.slice(s.prefix.length)}=${p.ip ?? '?'}${s.ipv6 ? `,${p.ip6 ?? '?'}` : ''}`).join('  ') || '(none)'}`);
  }
  const pods = s.hosts.flatMap((h) => h.pods);
  if (pods.length > 1) {
    out.push('', ...renderReachMatrix(s.prefix, pods, reach, 'reachability (ping, RTT in ms)'));
    const ok = reach.filter((r) => r.ok).length;
    out.push(`${ok}/${reach.length} pairs reachable`);
  }
  if (s.ipv6) out.push(...renderMatrix6(s.prefix, pods, reach6 ?? []));
  return out.join('\n') + '\n';
}

export async function labStatus(s: LabState): Promise<{ text: string; reach: Reach[]; stopped: string[]; reach6?: Reach6[] }> {
  const reports = await Promise.all(s.hosts.map((h) => hostReport(h, s.backend, s)));
  const reach = await reachability(s);
  const reach6 = s.ipv6 ? await reachability6(s.hosts.flatMap((h) => h.pods)) : undefined;
  const nodes = s.store === 'kube' && s.kube ? await nodeAnnotations(s.kube.dir) : undefined;
  const stopped = reports.filter((r) => r.flanneld.state !== 'running').map((r) => r.host.name);
  let text = renderReport(s, reports, reach, nodes, reach6);
  if (s.edge) {
    // the office LAN (--edge): its unanswered pings count like the pods' (exit 1)
    const e = await edgeReport(s.prefix, s.edge, s.hosts);
    text += e.text;
    reach.push(...e.failed.map((f) => ({ from: f.from, to: f.to, ok: false, rttMs: null })));
  }
  return { text, reach, stopped, ...(reach6 ? { reach6 } : {}) };
}

/** ` --dir X --prefix Y` for the lab's own flags that differ from the defaults. */
export function labFlags(s: Pick<LabState, 'dir' | 'prefix'>): string {
  return `${s.dir !== DEFAULT_LAB_DIR ? ` --dir ${shellWord(s.dir)}` : ''}${s.prefix !== DEFAULT_LAB_PREFIX ? ` --prefix ${shellWord(s.prefix)}` : ''}`;
}

function shellWord(w: string): string {
  return /^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`;
}

/**
 * What to type next, as commands that work as printed: `self` is how this
 * flannelctl was run (e.g. "node dist/src/cmd/flannelctl/main.js" when it is
 * not on PATH), and the lab's --dir/--prefix are included when not the defaults.
 */
export function labHints(s: LabState, self: string): string[] {
  const f = labFlags(s);
  const out: string[] = [];
  const ui = labUiStatus(s);
  if (ui?.running) out.push(`Page:   ${ui.url}`);
  else if (s.store !== 'kube') out.push(`Page:   ${ui ? 'not running' : 'not started'}; serve it with: ${self} ui --lab ${shellWord(s.dir)} --listen 127.0.0.1:8480`);
  const pods = s.hosts.flatMap((h) => h.pods);
  const first = pods[0];
  const last = s.hosts.at(-1)?.pods[0];
  if (first && last?.ip) out.push(`Try:    ${self} lab exec${f} ${first.name.slice(s.prefix.length)} -- ping -c 3 ${last.ip}`);
  if (first && last?.ip6) out.push(`Try v6: ${self} lab exec${f} ${first.name.slice(s.prefix.length)} -- ping -6 -c 3 ${last.ip6}`);
  const h1 = s.hosts[0];
  if (s.store === 'local') {
    const db = shellWord(path.join(s.dir, 'leases.db'));
    out.push(`Leases: ${self} leases --store local:${db}`);
    if (h1) out.push(`Node:   ${self} lab exec${f} ${h1.name.slice(s.prefix.length)} -- ${self} status --store local:${db} --subnet-file ${shellWord(path.join(h1.dir, 'subnet.env'))}`);
  } else if (s.store === 'etcd' && h1) {
    // etcd listens in the underlay: the CLI reaches it from inside the lab.
    const ep = `--etcd-endpoints http://${UNDERLAY_IP}:2379`;
    out.push(`Leases: ${self} lab exec${f} ${h1.name.slice(s.prefix.length)} -- ${self} leases ${ep}`);
    out.push(`Node:   ${self} lab exec${f} ${h1.name.slice(s.prefix.length)} -- ${self} status ${ep} --subnet-file ${shellWord(path.join(h1.dir, 'subnet.env'))}`);
  } else if (s.kube && h1) {
    out.push(`Nodes:  ${self} lab exec${f} ${h1.name.slice(s.prefix.length)} -- kubectl --kubeconfig ${shellWord(s.kube.adminKubeconfig)} get nodes -o wide`);
  }
  out.push(`Status: ${self} lab status${f}`);
  out.push(`Remove: ${self} lab down${f}`);
  return out;
}

// -------------------------------------------------------------------- down

function cmdlineHas(pid: number, mark: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(mark);
  } catch {
    return false;
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Remove everything a lab made. Safe to run twice and after a crash. */
export async function labDown(dir: string, prefix: string, progress: (l: string) => void): Promise<{ killed: number; namespaces: number }> {
  const s = loadState(dir);
  const pids = new Set<number>();
  for (const p of s?.procs ?? []) if (cmdlineHas(p.pid, p.mark)) pids.add(p.pid);
  // A page started by hand (`flannelctl ui --lab <dir>`) records itself in ui.json.
  const ui = readLabUi(dir);
  if (ui && cmdlineHas(ui.pid, 'flannelctl')) pids.add(ui.pid);
  const nss = await labNamespaces(s?.prefix ?? prefix);
  // Anything still running inside the lab's namespaces (state lost in a crash) goes too.
  for (const ns of nss) {
    const r = await run(['ip', 'netns', 'pids', ns]);
    for (const l of r.stdout.split('\n')) if (/^\d+$/.test(l.trim())) pids.add(Number(l.trim()));
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  for (let i = 0; i < 30 && [...pids].some(alive); i++) await sleep(100);
  for (const pid of pids) {
    if (alive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  // pods, then hosts, then the underlay
  const order = (n: string) => (/p\d+$/.test(n) ? 0 : n.endsWith('ul') ? 2 : 1);
  for (const ns of [...nss].sort((a, b) => order(a) - order(b))) {
    const r = await run(['ip', 'netns', 'del', ns]);
    if (r.code !== 0 && (await labNamespaces(ns)).includes(ns)) throw new LabError(`could not delete namespace ${ns}: ${r.stderr.trim()}`);
  }
  rmSync(dir, { recursive: true, force: true });
  progress(`removed ${nss.length} namespaces, stopped ${pids.size} processes, deleted ${dir}`);
  return { killed: pids.size, namespaces: nss.length };
}

/** The namespace of a pod or host, by short (h1p1, h2) or full name. */
export function labNamespace(s: LabState, name: string): string | null {
  const names = [...s.hosts.flatMap((h) => [h.name, ...h.pods.map((p) => p.name)]), ...(s.edge?.lanHosts.map((l) => l.name) ?? [])];
  return names.find((n) => n === name || n === s.prefix + name) ?? null;
}
