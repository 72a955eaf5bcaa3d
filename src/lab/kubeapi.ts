// A real, single-node Kubernetes control plane for the lab and the tests:
// a dedicated etcd-server plus a kube-apiserver, with a throwaway PKI.
//
//   const api = await startKubeApi({ dir, binary });
//   await api.createNode('h1', { podCIDR: '10.244.1.0/24' });
//   await api.tokenKubeconfig('kube-flannel', 'flannel', '/x/flannel.kubeconfig');
//   await api.stop();
//
// What it makes, all under `dir`:
//
//   pki/            CA, apiserver serving cert, service-account key pair,
//                   admin client cert (CN=flannel-ts-admin, O=system:masters)
//   etcd/           etcd's data dir
//   etcd.log, kube-apiserver.log, forwarder.log   process output
//   admin.kubeconfig   admin credentials, server = `url`
//   apiserver.sock  (namespace mode only) see below
//
// Authorization is RBAC, never bypassed: only the admin identity is in
// system:masters, and identities made with tokenKubeconfig() get exactly the
// roles bound to their ServiceAccount.
//
// Network namespaces. With `netns`, etcd, the apiserver and a small forwarder
// run inside that namespace through `ip netns exec` (which execs, so the PIDs
// we see are the real processes' PIDs). The apiserver listens on `bindIP`
// there, so daemons in other namespaces of the same network reach it at
// `url`. This process lives in the root namespace and cannot reach that
// address, so the forwarder relays a Unix socket (a filesystem path, which is
// visible from every network namespace) to the apiserver, and this process
// serves a loopback TCP port that relays to the socket: `localUrl`. TLS runs
// end to end; the serving cert carries 127.0.0.1 for that reason. The
// namespace's `lo` must be up (etcd listens on 127.0.0.1 inside it).
//
// Process accounting. Every process started is reported through `onProcess`
// (PID, what it is, and a string its command line contains, to guard against
// PID reuse) and listed by `pids`, so a caller can record them and kill them
// after a crash; `detached: true` lets them outlive this process (the lab).
// Nothing here touches interfaces, routes or firewalls.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { CoreV1Api, KubeConfig, type V1Node } from '@kubernetes/client-node';
import { sh } from './sh.js';
import { FlannelError } from '../errors.js';

export const SERVICE_CLUSTER_IP_RANGE = '10.96.0.0/16';
export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';
export const ADMIN_USER = 'flannel-ts-admin';
/** Ports used inside a network namespace, where nothing else competes for them. */
export const NETNS_PORTS = { apiserver: 6443, etcdClient: 12379, etcdPeer: 12380 } as const;

export class KubeApiError extends FlannelError {
  static override readonly defaultCode: string = 'LAB_KUBE_API';
  override name = 'KubeApiError';
}

/** A process the launcher started. `mark` is a string its /proc/<pid>/cmdline contains. */
export interface KubeProcess {
  pid: number;
  what: 'etcd' | 'kube-apiserver' | 'forwarder';
  mark: string;
}

export interface KubeApiOptions {
  /** State directory (created if missing): PKI, etcd data, logs, kubeconfigs. */
  dir: string;
  /** Path of the kube-apiserver binary (see scripts/build-kube-apiserver.sh). */
  binary: string;
  /** Address the apiserver listens on and advertises; default 127.0.0.1. */
  bindIP?: string;
  /** Run everything inside this network namespace (its `lo` must be up). */
  netns?: string;
  /** Apiserver secure port; default a free loopback port, or 6443 in a namespace. */
  port?: number;
  /** etcd ports (on 127.0.0.1); default free ports, or 12379/12380 in a namespace. */
  etcdPorts?: { client: number; peer: number };
  /** etcd binary; default `etcd` (Debian's etcd-server). */
  etcdBinary?: string;
  /** Start processes in their own session so they outlive this process (the lab). Default false. */
  detached?: boolean;
  /** Called once for every process started, including apiserver restarts. */
  onProcess?: (p: KubeProcess) => void;
  /** How long to wait for /readyz; default 60 s. */
  readyTimeoutMs?: number;
}

export interface NodeSpecInput {
  podCIDR: string;
  podCIDRs?: string[];
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
}

/** A Kubernetes object as read from a manifest (only the header is typed). */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export interface RequestOptions {
  /** JSON-serialised unless it is already a string. */
  body?: unknown;
  /** Content-Type of the body; default application/json. */
  contentType?: string;
  query?: Record<string, string | undefined>;
  /** Credentials to use instead of the admin's. */
  kubeConfig?: KubeConfig;
}

/** An API response; requests never throw on HTTP status, only on transport errors. */
export interface KubeResponse<T = unknown> {
  status: number;
  body: T;
}

export interface KubeApi {
  /** https://<bindIP>:<port>: the apiserver as seen on its network (what daemons use). */
  readonly url: string;
  /** The apiserver as reachable from this process (== url unless in a namespace). */
  readonly localUrl: string;
  readonly bindIP: string;
  readonly port: number;
  readonly netns: string | undefined;
  readonly dir: string;
  readonly caFile: string;
  /** Admin kubeconfig file (server = url). */
  readonly adminKubeconfig: string;
  /** Admin credentials for this process (server = localUrl). */
  readonly kc: KubeConfig;
  readonly core: CoreV1Api;
  /** PIDs of the processes running now. */
  readonly pids: number[];
  /** Every process ever started, with its role and command-line mark. */
  readonly processes: KubeProcess[];
  /** Stop everything: SIGKILL the apiserver after ≤3 s of grace, then etcd. Idempotent. */
  stop(): Promise<void>;
  /** Kill only the apiserver and start it again on the same port and etcd; resolves when ready. */
  restartApiserver(): Promise<void>;
  /** Resolves when /readyz answers "ok"; rejects with the log tail after `timeoutMs`. */
  waitReady(timeoutMs?: number): Promise<void>;
  /** A raw API request (JSON), as admin unless `opts.kubeConfig` is given. */
  request<T = unknown>(method: string, apiPath: string, opts?: RequestOptions): Promise<KubeResponse<T>>;
  /**
   * Gets a token for an existing ServiceAccount (TokenRequest API) and writes a
   * kubeconfig with the server URL, the CA and that token. Returns the token.
   */
  tokenKubeconfig(
    namespace: string,
    serviceAccount: string,
    file: string,
    opts?: { server?: string; expirationSeconds?: number },
  ): Promise<string>;
  /**
   * Create-or-replace each object, in order, with strict field validation (an
   * unknown or duplicate field is an error). With dryRun nothing is persisted
   * (`dryRun=All`). Returns the objects the server sent back.
   */
  applyObjects(objs: KubeObject[], opts?: { dryRun?: boolean }): Promise<KubeObject[]>;
  createNode(name: string, spec: NodeSpecInput): Promise<V1Node>;
  /** Deletes a node; a missing node is not an error. */
  deleteNode(name: string): Promise<void>;
  /** The node, or null if there is none. */
  getNode(name: string): Promise<V1Node | null>;
}

// --------------------------------------------------------------------- PKI

interface Pki {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  saKey: string;
  saPub: string;
  adminCert: string;
  adminKey: string;
}

/** Writes a throwaway PKI with openssl (P-256 keys: fast to make, accepted everywhere). */
async function makePki(dir: string, bindIP: string): Promise<Pki> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const f = (n: string) => path.join(dir, n);
  const ossl = (...args: string[]) => sh(['openssl', ...args]);
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const days = ['-days', '3650'];
  await ossl('req', '-x509', ...newKey, '-keyout', f('ca.key'), '-out', f('ca.crt'), ...days, '-subj', '/CN=flannel-ts-kube-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  const leaf = async (name: string, subj: string, ext: string[]) => {
    await ossl('req', ...newKey, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', subj);
    writeFileSync(f(`${name}.ext`), [...ext, 'basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', ''].join('\n'));
    await ossl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}.crt`), ...days, '-extfile', f(`${name}.ext`));
    rmSync(f(`${name}.csr`));
  };
  const sans = [
    `IP:${bindIP}`,
    'IP:127.0.0.1',
    'IP:10.96.0.1', // the `kubernetes` Service's cluster IP in SERVICE_CLUSTER_IP_RANGE
    'DNS:localhost',
    'DNS:kubernetes',
    'DNS:kubernetes.default',
    'DNS:kubernetes.default.svc',
    'DNS:kubernetes.default.svc.cluster.local',
  ];
  await leaf('apiserver', '/CN=kube-apiserver', [`subjectAltName=${[...new Set(sans)].join(',')}`, 'extendedKeyUsage=serverAuth']);
  await leaf('admin', `/O=system:masters/CN=${ADMIN_USER}`, ['extendedKeyUsage=clientAuth']);
  await ossl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', f('sa.key'));
  await ossl('pkey', '-in', f('sa.key'), '-pubout', '-out', f('sa.pub'));
  return {
    caCert: f('ca.crt'), caKey: f('ca.key'),
    serverCert: f('apiserver.crt'), serverKey: f('apiserver.key'),
    saKey: f('sa.key'), saPub: f('sa.pub'),
    adminCert: f('admin.crt'), adminKey: f('admin.key'),
  };
}

// ---------------------------------------------------------------- helpers

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function logTail(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

const b64 = (file: string) => readFileSync(file).toString('base64');

/** A kubeconfig document (YAML; values are JSON-quoted, which YAML reads as double-quoted scalars). */
function kubeconfigText(server: string, caFile: string, user: string, cred: { token: string } | { cert: string; key: string }): string {
  const q = (v: string) => JSON.stringify(v);
  const auth = 'token' in cred
    ? [`    token: ${q(cred.token)}`]
    : [`    client-certificate-data: ${b64(cred.cert)}`, `    client-key-data: ${b64(cred.key)}`];
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: flannel-ts',
    '  cluster:',
    `    server: ${q(server)}`,
    `    certificate-authority-data: ${b64(caFile)}`,
    'users:',
    `- name: ${q(user)}`,
    '  user:',
    ...auth,
    'contexts:',
    '- name: flannel-ts',
    '  context:',
    '    cluster: flannel-ts',
    `    user: ${q(user)}`,
    'current-context: flannel-ts',
    '',
  ].join('\n');
}

function writePrivate(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text, { mode: 0o600 });
}

/** A child we started, with a promise for its end. */
interface Running {
  proc: ChildProcess;
  info: KubeProcess;
  exited: Promise<void>;
}

function isRunning(r: Running | undefined): r is Running {
  return !!r && r.proc.exitCode === null && r.proc.signalCode === null;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
async function terminate(r: Running | undefined, graceMs: number): Promise<void> {
  if (!isRunning(r)) return;
  r.proc.kill('SIGTERM');
  const t = setTimeout(() => r.proc.kill('SIGKILL'), graceMs);
  await r.exited;
  clearTimeout(t);
}

// The forwarder run inside the namespace: Unix socket → apiserver TCP port.
// CommonJS for `node -e`; argv: socket path, host, port.
const FORWARDER_JS = `
const net = require('net'), fs = require('fs');
const [sock, host, port] = process.argv.slice(1);
try { fs.unlinkSync(sock); } catch {}
net.createServer((c) => {
  const u = net.connect(Number(port), host);
  c.pipe(u).pipe(c);
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
}).listen(sock, () => fs.chmodSync(sock, 0o600));
`;

/**
 * Serves 127.0.0.1:<free port> in this process and relays each connection to
 * a Unix socket. Used to reach an apiserver inside a network namespace.
 */
export async function bridgeToUnixSocket(sock: string): Promise<{ port: number; close(): void }> {
  const conns = new Set<net.Socket>();
  const server = net.createServer((c) => {
    const u = net.connect(sock);
    conns.add(c);
    conns.add(u);
    c.pipe(u).pipe(c);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
    c.on('close', () => conns.delete(c));
    u.on('close', () => conns.delete(u));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.unref(); // it must never keep a test process alive by itself
  const a = server.address();
  return {
    port: typeof a === 'object' && a ? a.port : 0,
    close() {
      server.close();
      for (const c of conns) c.destroy();
    },
  };
}

// --------------------------------------------------------------- launcher

/** Makes the PKI, starts etcd and kube-apiserver, waits for /readyz. */
export async function startKubeApi(o: KubeApiOptions): Promise<KubeApi> {
  const dir = path.resolve(o.dir);
  const bindIP = o.bindIP ?? '127.0.0.1';
  const ns = o.netns;
  mkdirSync(dir, { recursive: true });
  const port = o.port ?? (ns ? NETNS_PORTS.apiserver : await freePort(bindIP));
  const etcdPorts = o.etcdPorts ?? (ns
    ? { client: NETNS_PORTS.etcdClient, peer: NETNS_PORTS.etcdPeer }
    : { client: await freePort('127.0.0.1'), peer: await freePort('127.0.0.1') });
  const url = `https://${bindIP}:${port}`;
  const pki = await makePki(path.join(dir, 'pki'), bindIP);
  const adminKubeconfig = path.join(dir, 'admin.kubeconfig');
  writePrivate(adminKubeconfig, kubeconfigText(url, pki.caCert, ADMIN_USER, { cert: pki.adminCert, key: pki.adminKey }));
  const sock = path.join(dir, 'apiserver.sock');

  const processes: KubeProcess[] = [];
  const running = new Map<KubeProcess['what'], Running>();
  const wrap = (argv: string[]) => (ns ? ['ip', 'netns', 'exec', ns, ...argv] : argv);

  /** Starts a process with its output appended to <dir>/<what>.log. */
  const start = (what: KubeProcess['what'], argv: string[]): Running => {
    const log = path.join(dir, `${what}.log`);
    const fd = openSync(log, 'a');
    try {
      writeSync(fd, `--- ${new Date().toISOString()} starting ${what}\n`);
      const full = wrap(argv);
      const proc = spawn(full[0]!, full.slice(1), { stdio: ['ignore', fd, fd], detached: o.detached ?? false });
      if (o.detached) proc.unref();
      const exited = new Promise<void>((resolve) => {
        proc.once('exit', () => resolve());
        proc.once('error', (e) => {
          writeFileSync(log, `cannot start ${full[0]}: ${e.message}\n`, { flag: 'a' });
          resolve();
        });
      });
      if (proc.pid === undefined) {
        const hint = what === 'etcd' ? " (install Debian's etcd-server)" : '';
        throw new KubeApiError(`cannot start ${what}: ${full[0]} could not be run${hint}; see ${log}`);
      }
      // The state dir is on every command line and is unique, so it is the mark.
      const info: KubeProcess = { pid: proc.pid, what, mark: dir };
      const r: Running = { proc, info, exited };
      running.set(what, r);
      processes.push(info);
      o.onProcess?.(info);
      return r;
    } finally {
      closeSync(fd);
    }
  };

  const etcdUrl = `http://127.0.0.1:${etcdPorts.client}`;
  const etcdPeer = `http://127.0.0.1:${etcdPorts.peer}`;
  const startEtcd = () =>
    start('etcd', [
      o.etcdBinary ?? 'etcd',
      '--name', 'kube', '--data-dir', path.join(dir, 'etcd'),
      '--listen-client-urls', etcdUrl, '--advertise-client-urls', etcdUrl,
      '--listen-peer-urls', etcdPeer, '--initial-advertise-peer-urls', etcdPeer,
      '--initial-cluster', `kube=${etcdPeer}`,
      '--log-level', 'warn', '--logger', 'zap',
    ]);

  // The flags kube-apiserver v1.37 needs for this job. Without the
  // --service-account-* trio it refuses to start; without a service range it
  // would pick 10.0.0.0/24 (ours must stay clear of the pod network
  // 10.244.0.0/16 and the lab underlay 192.0.2.0/24). The serving cert makes
  // --cert-dir (self-signed certs in /var/run/kubernetes) unnecessary.
  const apiserverArgv = [
    o.binary,
    `--etcd-servers=${etcdUrl}`,
    `--bind-address=${bindIP}`,
    `--advertise-address=${bindIP}`,
    `--secure-port=${port}`,
    // A loopback advertise address is refused by the default ("lease")
    // reconciler; we have no kubernetes Endpoints to maintain anyway.
    '--endpoint-reconciler-type=none',
    '--authorization-mode=RBAC',
    `--client-ca-file=${pki.caCert}`,
    `--tls-cert-file=${pki.serverCert}`,
    `--tls-private-key-file=${pki.serverKey}`,
    `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
    `--service-account-key-file=${pki.saPub}`,
    `--service-account-signing-key-file=${pki.saKey}`,
    `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
  ];
  const startApiserver = () => start('kube-apiserver', apiserverArgv);

  let bridge: { port: number; close(): void } | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      bridge?.close();
      await terminate(running.get('kube-apiserver'), 3000);
      await terminate(running.get('forwarder'), 1000);
      await terminate(running.get('etcd'), 5000);
    })());

  try {
    startEtcd();
    startApiserver();
    let localUrl = url;
    if (ns) {
      rmSync(sock, { force: true });
      start('forwarder', [process.execPath, '-e', FORWARDER_JS, sock, bindIP, String(port)]);
      for (let i = 0; !existsSync(sock); i++) {
        if (i > 100 || !isRunning(running.get('forwarder'))) {
          throw new KubeApiError(`the forwarder in namespace ${ns} did not create ${sock}:\n${logTail(path.join(dir, 'forwarder.log'))}`);
        }
        await sleep(50);
      }
      bridge = await bridgeToUnixSocket(sock);
      localUrl = `https://127.0.0.1:${bridge.port}`;
    }

    const kc = new KubeConfig();
    kc.loadFromString(kubeconfigText(localUrl, pki.caCert, ADMIN_USER, { cert: pki.adminCert, key: pki.adminKey }));
    const core = kc.makeApiClient(CoreV1Api);

    const request = async <T>(method: string, apiPath: string, ro: RequestOptions = {}): Promise<KubeResponse<T>> => {
      const cfg = ro.kubeConfig ?? kc;
      const server = cfg.getCurrentCluster()?.server;
      if (!server) throw new KubeApiError('kubeconfig has no current cluster');
      const u = new URL(server + apiPath);
      for (const [k, v] of Object.entries(ro.query ?? {})) if (v !== undefined) u.searchParams.set(k, v);
      const reqOpts: https.RequestOptions = { method, headers: { Accept: 'application/json' } };
      await cfg.applyToHTTPSOptions(reqOpts);
      const payload = ro.body === undefined ? undefined : typeof ro.body === 'string' ? ro.body : JSON.stringify(ro.body);
      if (payload !== undefined) (reqOpts.headers as Record<string, string>)['Content-Type'] = ro.contentType ?? 'application/json';
      return new Promise((resolve, reject) => {
        const req = https.request(u, reqOpts, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let body: unknown = text;
            try {
              body = JSON.parse(text);
            } catch {
              /* not JSON (e.g. /readyz) */
            }
            resolve({ status: res.statusCode ?? 0, body: body as T });
          });
        });
        req.setTimeout(30_000, () => req.destroy(new KubeApiError(`${method} ${apiPath}: no answer in 30 s`)));
        req.on('error', reject);
        req.end(payload);
      });
    };

    const waitReady = async (timeoutMs = o.readyTimeoutMs ?? 60_000): Promise<void> => {
      const t0 = Date.now();
      let last = '';
      for (;;) {
        for (const what of ['etcd', 'kube-apiserver'] as const) {
          if (!isRunning(running.get(what))) {
            throw new KubeApiError(`${what} exited before the apiserver was ready; last lines of ${path.join(dir, `${what}.log`)}:\n${logTail(path.join(dir, `${what}.log`))}`);
          }
        }
        try {
          const r = await request<string>('GET', '/readyz');
          if (r.status === 200) return;
          last = `HTTP ${r.status}: ${String(r.body).trim().split('\n').filter((l) => l.includes('failed')).join('; ')}`;
        } catch (e) {
          last = (e as Error).message;
        }
        if (Date.now() - t0 > timeoutMs) {
          throw new KubeApiError(
            `kube-apiserver was not ready within ${timeoutMs / 1000} s (last: ${last}); last lines of ${path.join(dir, 'kube-apiserver.log')}:\n${logTail(path.join(dir, 'kube-apiserver.log'))}`,
          );
        }
        await sleep(100);
      }
    };

    await waitReady();

    // Discovery: kind → resource path, per group/version, cached.
    const discovery = new Map<string, Map<string, { plural: string; namespaced: boolean }>>();
    const resourceFor = async (apiVersion: string, kind: string) => {
      let kinds = discovery.get(apiVersion);
      if (!kinds) {
        const r = await request<{ resources?: Array<{ name: string; kind: string; namespaced: boolean }> }>('GET', apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`);
        if (r.status !== 200) throw new KubeApiError(`discovery of ${apiVersion} failed: HTTP ${r.status}`);
        kinds = new Map();
        for (const res of r.body.resources ?? []) if (!res.name.includes('/')) kinds.set(res.kind, { plural: res.name, namespaced: res.namespaced });
        discovery.set(apiVersion, kinds);
      }
      const res = kinds.get(kind);
      if (!res) throw new KubeApiError(`the server has no kind ${kind} in ${apiVersion}`);
      return res;
    };
    const objectPath = async (obj: KubeObject, withName: boolean) => {
      const res = await resourceFor(obj.apiVersion, obj.kind);
      const base = obj.apiVersion.includes('/') ? `/apis/${obj.apiVersion}` : `/api/${obj.apiVersion}`;
      const nsPart = res.namespaced ? `/namespaces/${encodeURIComponent(obj.metadata.namespace ?? 'default')}` : '';
      return `${base}${nsPart}/${res.plural}${withName ? `/${encodeURIComponent(obj.metadata.name)}` : ''}`;
    };
    const describeErr = (what: string, r: KubeResponse) =>
      new KubeApiError(`${what}: HTTP ${r.status}: ${typeof r.body === 'object' && r.body && 'message' in r.body ? String((r.body as { message: unknown }).message) : String(r.body)}`);

    const applyObjects = async (objs: KubeObject[], ao: { dryRun?: boolean } = {}): Promise<KubeObject[]> => {
      const query = { fieldValidation: 'Strict', dryRun: ao.dryRun ? 'All' : undefined };
      const out: KubeObject[] = [];
      for (const obj of objs) {
        const what = `${obj.kind} ${obj.metadata.namespace ? `${obj.metadata.namespace}/` : ''}${obj.metadata.name}`;
        const created = await request<KubeObject>('POST', await objectPath(obj, false), { body: obj, query });
        if (created.status === 201 || created.status === 200) {
          out.push(created.body);
          continue;
        }
        if (created.status !== 409) throw describeErr(`create ${what}`, created);
        const itemPath = await objectPath(obj, true);
        const cur = await request<KubeObject>('GET', itemPath);
        if (cur.status !== 200) throw describeErr(`read ${what}`, cur);
        const body = { ...obj, metadata: { ...obj.metadata, resourceVersion: cur.body.metadata.resourceVersion } };
        const replaced = await request<KubeObject>('PUT', itemPath, { body, query });
        if (replaced.status !== 200 && replaced.status !== 201) throw describeErr(`replace ${what}`, replaced);
        out.push(replaced.body);
      }
      return out;
    };

    const tokenKubeconfig: KubeApi['tokenKubeconfig'] = async (namespace, serviceAccount, file, to = {}) => {
      const tr = await core.createNamespacedServiceAccountToken({
        name: serviceAccount,
        namespace,
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: [], expirationSeconds: to.expirationSeconds ?? 24 * 3600 } },
      });
      const token = tr.status?.token;
      if (!token) throw new KubeApiError(`TokenRequest for ${namespace}/${serviceAccount} returned no token`);
      writePrivate(file, kubeconfigText(to.server ?? url, pki.caCert, `system:serviceaccount:${namespace}:${serviceAccount}`, { token }));
      return token;
    };

    const getNode = async (name: string): Promise<V1Node | null> => {
      const r = await request<V1Node>('GET', `/api/v1/nodes/${encodeURIComponent(name)}`);
      if (r.status === 404) return null;
      if (r.status !== 200) throw describeErr(`get node ${name}`, r);
      return r.body;
    };

    const api: KubeApi = {
      url,
      localUrl,
      bindIP,
      port,
      netns: ns,
      dir,
      caFile: pki.caCert,
      adminKubeconfig,
      kc,
      core,
      get pids() {
        return [...running.values()].filter(isRunning).map((r) => r.info.pid);
      },
      processes,
      stop,
      async restartApiserver() {
        if (stopping) throw new KubeApiError('restartApiserver() after stop()');
        await terminate(running.get('kube-apiserver'), 3000);
        startApiserver();
        await waitReady();
      },
      waitReady,
      request,
      tokenKubeconfig,
      applyObjects,
      async createNode(name, spec) {
        return core.createNode({
          body: {
            apiVersion: 'v1',
            kind: 'Node',
            metadata: { name, ...(spec.annotations ? { annotations: spec.annotations } : {}), ...(spec.labels ? { labels: spec.labels } : {}) },
            spec: { podCIDR: spec.podCIDR, podCIDRs: spec.podCIDRs ?? [spec.podCIDR] },
          },
        });
      },
      async deleteNode(name) {
        const r = await request('DELETE', `/api/v1/nodes/${encodeURIComponent(name)}`);
        if (r.status !== 200 && r.status !== 202 && r.status !== 404) throw describeErr(`delete node ${name}`, r);
      },
      getNode,
    };
    return api;
  } catch (e) {
    await stop();
    throw e;
  }
}
