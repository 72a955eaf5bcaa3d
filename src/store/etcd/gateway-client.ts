// A small client for etcd's own JSON gateway (grpc-gateway, served on the
// client port under /v3/ since etcd 3.4), over node:http / node:https with
// keep-alive. No gRPC, no protobuf: loading it costs what node:http costs,
// where the etcd3 package (grpc-js + protobufjs parsing .proto files at load)
// costs about 190 ms and 30 MB (bench/etcd-client.ts).
//
// What it does for its caller (gateway-store.ts):
// * several endpoints: a call that cannot reach one (refused, reset, no
//   answer within the dial timeout) moves on to the next, within its deadline;
// * a per-call deadline (default 10 s) over all attempts;
// * TLS with a client certificate (https endpoints);
// * username/password: a token from /v3/auth/authenticate, sent in the
//   Authorization header, one per endpoint (simple tokens are per member);
//   an "invalid auth token" answer re-authenticates once and retries;
// * watch: one streaming POST per watch; the caller gets each {"result":…}.
//
// JSON conventions of the gateway: bytes fields are base64, int64 fields are
// strings, and fields at their default (0, false, "", []) are left out.

import http from 'node:http';
import type * as HttpsModule from 'node:https';
import { createRequire } from 'node:module';

// node:https (and with it node:tls) only when an endpoint needs it: ~15 ms
// and 1 MB of start-up that a plain-http flanneld does not pay.
let httpsModule: typeof HttpsModule | null = null;
function https(): typeof HttpsModule {
  return (httpsModule ??= createRequire(import.meta.url)('node:https') as typeof HttpsModule);
}

export interface GatewayTls {
  key: Buffer;
  cert: Buffer;
  /** when absent, the system's roots */
  ca?: Buffer;
}

export interface GatewayClientOptions {
  endpoints: string[];
  tls?: GatewayTls;
  username?: string;
  password?: string;
  /** deadline of one call over all its attempts (default 10000) */
  callTimeoutMs?: number;
  /** how long one attempt may take to connect (default 5000) */
  dialTimeoutMs?: number;
}

/** gRPC status codes the gateway reports in {"code": N} */
export const GrpcCode = {
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  PermissionDenied: 7,
  OutOfRange: 11,
  Unimplemented: 12,
  Unavailable: 14,
  Unauthenticated: 16,
} as const;

export type GatewayErrorKind = 'connect' | 'timeout' | 'server' | 'protocol' | 'auth';

export class GatewayError extends Error {
  override name = 'GatewayError';
  constructor(
    message: string,
    readonly kind: GatewayErrorKind,
    /** the gRPC code of a server answer, when there was one */
    readonly code: number | null,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Server errors worth trying again: the cluster is busy, electing, or timing out. */
function retryableCode(code: number | null): boolean {
  return code !== GrpcCode.InvalidArgument && code !== GrpcCode.PermissionDenied && code !== GrpcCode.Unauthenticated && code !== GrpcCode.Unimplemented && code !== GrpcCode.NotFound;
}

export function isInvalidToken(code: number | null, message: string): boolean {
  return code === GrpcCode.Unauthenticated || /invalid auth token/.test(message);
}

export const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
export const unb64 = (s: string | undefined): string => (s ? Buffer.from(s, 'base64').toString('utf8') : '');

/** range_end for "every key with this prefix": the prefix with its last byte + 1 */
export function prefixEnd(prefix: string): string {
  const b = Buffer.from(prefix, 'utf8');
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const e = Buffer.from(b.subarray(0, i + 1));
      e[i]! += 1;
      return e.toString('base64');
    }
  }
  return Buffer.from([0]).toString('base64');
}

export interface ResponseHeader {
  cluster_id?: string;
  member_id?: string;
  revision?: string;
  raft_term?: string;
}

export interface JsonKv {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  version?: string;
  lease?: string;
}

export interface WatchResult {
  header?: ResponseHeader;
  watch_id?: string;
  created?: boolean;
  canceled?: boolean;
  compact_revision?: string;
  cancel_reason?: string;
  events?: Array<{ type?: 'PUT' | 'DELETE'; kv?: JsonKv; prev_kv?: JsonKv }>;
}

interface Endpoint {
  url: URL;
  /** token from /v3/auth/authenticate at this endpoint */
  token: string | null;
  authing: Promise<void> | null;
}

export class GatewayClient {
  private readonly endpoints: Endpoint[];
  private current = 0;
  private httpAgent: http.Agent | null = null;
  private httpsAgent: http.Agent | null = null;
  private readonly callTimeoutMs: number;
  private readonly dialTimeoutMs: number;
  private readonly requests = new Set<http.ClientRequest>();
  private closed = false;

  constructor(private readonly o: GatewayClientOptions) {
    if (o.endpoints.length === 0) throw new Error('etcd: no endpoints');
    this.endpoints = o.endpoints.map((e) => {
      let url: URL;
      try {
        url = new URL(e);
      } catch {
        throw new Error(`etcd endpoint "${e}" is not a URL (want http://host:port or https://host:port)`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`etcd endpoint "${e}": scheme must be http or https`);
      return { url, token: null, authing: null };
    });
    this.callTimeoutMs = o.callTimeoutMs ?? 10_000;
    this.dialTimeoutMs = o.dialTimeoutMs ?? 5000;
  }

  /** keep-alive agents, made on first use; https with the client certificate when TLS is configured (else the system's roots) */
  private agentFor(ep: Endpoint): http.Agent {
    if (ep.url.protocol === 'https:') {
      const tls = this.o.tls;
      return (this.httpsAgent ??= new (https().Agent)({ keepAlive: true, ...(tls ? { key: tls.key, cert: tls.cert, ...(tls.ca ? { ca: tls.ca } : {}) } : {}) }));
    }
    return (this.httpAgent ??= new http.Agent({ keepAlive: true }));
  }

  get endpointUrls(): string[] {
    return this.endpoints.map((e) => e.url.href);
  }

  /**
   * One unary call (POST /v3/<path>). Tries the current endpoint, then the
   * others on connection errors, until the deadline; re-authenticates once on
   * an invalid token.
   */
  async call<T>(path: string, body: unknown): Promise<T> {
    const deadline = Date.now() + this.callTimeoutMs;
    let last: GatewayError | null = null;
    // each endpoint twice at most: a stale keep-alive socket costs one attempt
    const attempts = this.endpoints.length * 2;
    for (let i = 0; i < attempts; i++) {
      if (this.closed) throw new GatewayError('client closed', 'connect', null, false);
      const left = deadline - Date.now();
      if (left <= 0) break;
      const ep = this.endpoints[this.current]!;
      try {
        return await this.withAuth(ep, deadline, (token) => this.post<T>(ep, path, body, token, left));
      } catch (e) {
        const err = e as GatewayError;
        const moveOn = () => {
          // next endpoint (unless another call moved on already)
          if (this.endpoints[this.current] === ep) this.current = (this.current + 1) % this.endpoints.length;
        };
        if (err.kind === 'timeout') moveOn();
        // A member that answers "unavailable" (no leader, lost quorum,
        // shutting down) is worth leaving when there are others, as etcd's own
        // client does; a lone member's answer goes to the caller.
        const unavailable = err.kind === 'server' && err.code === GrpcCode.Unavailable && this.endpoints.length > 1;
        if (err.kind !== 'connect' && !unavailable) throw err;
        last = err;
        moveOn();
        if (i + 1 < attempts && (i + 1) % this.endpoints.length === 0) await sleep(Math.min(200, Math.max(0, deadline - Date.now())));
      }
    }
    if (last?.kind === 'server') throw last;
    throw last
      ? new GatewayError(`${last.message} (no endpoint answered: ${this.endpoints.map((e) => e.url.host).join(', ')})`, 'connect', null, true, { cause: last })
      : new GatewayError(`deadline of ${this.callTimeoutMs} ms exceeded`, 'timeout', null, true);
  }

  /** Runs fn with this endpoint's token (authenticating first when needed); once more after an invalid-token answer. */
  private async withAuth<T>(ep: Endpoint, deadline: number, fn: (token: string | null) => Promise<T>): Promise<T> {
    if (!this.o.username) return fn(null);
    if (!ep.token) await this.authenticate(ep, deadline);
    try {
      return await fn(ep.token);
    } catch (e) {
      const err = e as GatewayError;
      if (err.kind !== 'server' || !isInvalidToken(err.code, err.message)) throw err;
      ep.token = null;
      await this.authenticate(ep, deadline);
      return fn(ep.token);
    }
  }

  /** One authentication per endpoint at a time: racing calls share it. */
  private authenticate(ep: Endpoint, deadline: number): Promise<void> {
    if (!ep.authing) {
      ep.authing = this.authenticateOnce(ep, deadline).finally(() => {
        ep.authing = null;
      });
    }
    return ep.authing;
  }

  private async authenticateOnce(ep: Endpoint, deadline: number): Promise<void> {
    try {
      const r = await this.post<{ token?: string }>(ep, 'auth/authenticate', { name: this.o.username, password: this.o.password ?? '' }, null, deadline - Date.now());
      if (!r.token) throw new GatewayError('authenticate: no token in the answer (is auth enabled on etcd?)', 'auth', null, false);
      ep.token = r.token;
    } catch (e) {
      const err = e as GatewayError;
      if (err.kind === 'server') throw new GatewayError(`authenticate as "${this.o.username}": ${err.message}`, 'auth', err.code, retryableCode(err.code) && err.code !== GrpcCode.InvalidArgument, { cause: err });
      throw err;
    }
  }

  /** Token for a stream at this endpoint (authenticating when needed). */
  async tokenFor(ep: Endpoint, fresh: boolean): Promise<string | null> {
    if (!this.o.username) return null;
    if (fresh) ep.token = null;
    if (!ep.token) await this.authenticate(ep, Date.now() + this.callTimeoutMs);
    return ep.token;
  }

  private request(ep: Endpoint, path: string, token: string | null, timeoutMs: number, onTimeout: () => void): http.ClientRequest {
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json' };
    if (token) headers.authorization = token;
    const mod = ep.url.protocol === 'https:' ? https() : http;
    const req = mod.request({
      protocol: ep.url.protocol,
      hostname: ep.url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: ep.url.port || (ep.url.protocol === 'https:' ? 443 : 80),
      path: `/v3/${path}`,
      method: 'POST',
      headers,
      agent: this.agentFor(ep),
    });
    this.requests.add(req);
    req.once('close', () => this.requests.delete(req));
    // Dial timeout: a member that is down but not refusing (blackholed) must
    // not take the whole deadline.
    req.once('socket', (s) => {
      if (!s.connecting) return;
      const t = setTimeout(() => {
        req.destroy(Object.assign(new Error(`no connection to ${ep.url.host} within ${this.dialTimeoutMs} ms`), { code: 'ETIMEDOUT' }));
      }, Math.min(this.dialTimeoutMs, timeoutMs));
      s.once('connect', () => clearTimeout(t));
      s.once('secureConnect', () => clearTimeout(t));
      s.once('close', () => clearTimeout(t));
    });
    if (Number.isFinite(timeoutMs)) {
      const t = setTimeout(onTimeout, timeoutMs);
      req.once('close', () => clearTimeout(t));
    }
    return req;
  }

  private post<T>(ep: Endpoint, path: string, body: unknown, token: string | null, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const done = (f: () => void) => {
        if (!settled) {
          settled = true;
          f();
        }
      };
      const req = this.request(ep, path, token, timeoutMs, () => {
        done(() => reject(new GatewayError(`${ep.url.host}: no answer within ${Math.round(timeoutMs)} ms`, 'timeout', GrpcCode.DeadlineExceeded, true)));
        req.destroy();
      });
      req.on('error', (e: NodeJS.ErrnoException) => done(() => reject(connectionError(ep, e))));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e: NodeJS.ErrnoException) => done(() => reject(connectionError(ep, e))));
        res.on('end', () =>
          done(() => {
            const text = Buffer.concat(chunks).toString('utf8');
            try {
              resolve(parseAnswer<T>(ep, res.statusCode ?? 0, text));
            } catch (e) {
              reject(e as Error);
            }
          }),
        );
      });
      req.end(JSON.stringify(body));
    });
  }

  /**
   * A watch stream: POST /v3/watch with the create request; every
   * newline-delimited {"result":…} goes to onResult. onEnd is called once,
   * when the stream ends for any reason other than cancel(): with the error,
   * or null when the server closed it cleanly. Endpoints are tried in turn
   * from the current one (the caller reconnects after onEnd).
   */
  watch(
    create: Record<string, unknown>,
    onResult: (r: WatchResult) => void,
    onEnd: (err: GatewayError | null) => void,
    /** idleMs: a stream silent for this long is taken for dead (a member gone without a reset) and ended */
    opts: { freshToken?: boolean; idleMs?: number } = {},
  ): { cancel(): void } {
    let cancelled = false;
    let req: http.ClientRequest | null = null;
    let ended = false;
    const end = (err: GatewayError | null) => {
      if (ended || cancelled) return;
      ended = true;
      onEnd(err);
    };
    const ep = this.endpoints[this.current]!;
    const moveOn = () => {
      if (this.endpoints[this.current] === ep) this.current = (this.current + 1) % this.endpoints.length;
    };
    void (async () => {
      let token: string | null;
      try {
        token = await this.tokenFor(ep, opts.freshToken ?? false);
      } catch (e) {
        if ((e as GatewayError).kind === 'connect') moveOn();
        end(e as GatewayError);
        return;
      }
      if (cancelled || this.closed) return;
      req = this.request(ep, 'watch', token, Infinity, () => undefined);
      req.on('error', (e: NodeJS.ErrnoException) => {
        const err = connectionError(ep, e);
        moveOn();
        end(err);
      });
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            try {
              parseAnswer(ep, res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'));
              end(new GatewayError(`${ep.url.host}: watch answered ${res.statusCode}`, 'protocol', null, true));
            } catch (e) {
              end(e as GatewayError);
            }
          });
          return;
        }
        res.socket.setKeepAlive(true, 10_000);
        res.setEncoding('utf8');
        let idle: NodeJS.Timeout | null = null;
        const arm = () => {
          if (!opts.idleMs) return;
          if (idle) clearTimeout(idle);
          idle = setTimeout(() => {
            end(new GatewayError(`${ep.url.host}: watch stream silent for ${Math.round(opts.idleMs! / 1000)} s`, 'connect', null, true));
            req?.destroy();
          }, opts.idleMs);
          idle.unref();
        };
        arm();
        res.once('close', () => {
          if (idle) clearTimeout(idle);
        });
        // The pieces of the message being received: a large one (5000 leases
        // from one transaction, megabytes) comes in many chunks, and only
        // each new chunk is searched for the newline that ends it.
        let parts: string[] = [];
        res.on('data', (chunk: string) => {
          arm();
          let start = 0;
          let nl: number;
          while ((nl = chunk.indexOf('\n', start)) >= 0) {
            parts.push(chunk.slice(start, nl));
            const line = (parts.length === 1 ? parts[0]! : parts.join('')).trim();
            parts = [];
            start = nl + 1;
            if (line) handle(line);
            if (ended || cancelled) return;
          }
          if (start < chunk.length) parts.push(start === 0 ? chunk : chunk.slice(start));
          // the gateway ends every message with a newline; a whole object without one is handled too
          if (parts.length > 0 && parts[parts.length - 1]!.trimEnd().endsWith('}')) {
            const text = parts.join('');
            try {
              JSON.parse(text);
              parts = [];
              handle(text.trim());
            } catch {
              /* incomplete: wait for more */
              parts = [text];
            }
          }
        });
        res.on('error', (e: NodeJS.ErrnoException) => end(connectionError(ep, e)));
        res.on('aborted', () => end(new GatewayError(`${ep.url.host}: watch stream aborted`, 'connect', null, true)));
        res.on('end', () => end(new GatewayError(`${ep.url.host}: watch stream closed by the server`, 'connect', null, true)));
      });
      req.end(JSON.stringify({ create_request: create }));
    })();
    const handle = (line: string) => {
      let msg: { result?: WatchResult; error?: { message?: string; code?: number } | string; message?: string; code?: number };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        end(new GatewayError(`${ep.url.host}: watch sent something that is not JSON: ${line.slice(0, 200)}`, 'protocol', null, true));
        req?.destroy();
        return;
      }
      if (msg.result) {
        onResult(msg.result);
        return;
      }
      // a stream error: {"error":{"grpc_code":…,"message":…}} (3.4) or {"code":…,"message":…}
      const e = typeof msg.error === 'object' && msg.error ? msg.error : msg;
      const message = (e as { message?: string }).message ?? (typeof msg.error === 'string' ? msg.error : line);
      const code = (e as { code?: number; grpc_code?: number }).code ?? (e as { grpc_code?: number }).grpc_code ?? null;
      end(new GatewayError(`${ep.url.host}: ${message}`, 'server', code, retryableCode(code)));
      req?.destroy();
    };
    return {
      cancel: () => {
        cancelled = true;
        req?.destroy();
      },
    };
  }

  close(): void {
    this.closed = true;
    for (const r of this.requests) r.destroy();
    this.requests.clear();
    this.httpAgent?.destroy();
    this.httpsAgent?.destroy();
  }
}

function connectionError(ep: Endpoint, e: NodeJS.ErrnoException): GatewayError {
  if (e instanceof GatewayError) return e;
  const code = e.code ?? '';
  // Every request error (refused, reset, unreachable, dial timeout, and TLS
  // failures such as a bad certificate) is a connection error: the next
  // endpoint may do better, and the caller keeps retrying as flannel does.
  const msg = `${ep.url.host}: ${e.message}${code && !e.message.includes(code) ? ` (${code})` : ''}`;
  return new GatewayError(msg, 'connect', null, true, { cause: e });
}

function parseAnswer<T>(ep: Endpoint, status: number, text: string): T {
  let json: { error?: string; message?: string; code?: number } | undefined;
  try {
    json = JSON.parse(text) as typeof json;
  } catch {
    const hint = /HTTP request to an HTTPS server/.test(text) ? ' (the endpoint wants https: give --etcd-keyfile and --etcd-certfile)' : '';
    throw new GatewayError(`${ep.url.host}: answered ${status} with no JSON: ${text.trim().slice(0, 200)}${hint}`, status === 404 ? 'protocol' : 'server', null, status !== 404);
  }
  if (status === 200 && json && json.code === undefined) return json as T;
  const code = typeof json?.code === 'number' ? json.code : null;
  const message = json?.message ?? json?.error ?? `HTTP ${status}`;
  if (status === 404 && code === null) throw new GatewayError(`${ep.url.host}: no etcd v3 JSON gateway here (HTTP 404; etcd 3.4 or later is needed)`, 'protocol', null, false);
  throw new GatewayError(message, 'server', code, retryableCode(code));
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
