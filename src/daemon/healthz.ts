// /healthz and /readyz (spec §10.1; any method is accepted, as in flannel),
// plus /metrics (Prometheus) when a registry is given.
//
// /healthz is liveness, as flannel's (the manifest's livenessProbe restarts
// the pod on anything but 200): it stays 200 "flanneld is running". Conditions
// flanneld works around (a dead kernel notification subscriber) are listed
// after that line, one "degraded: <name>: <message>" line each, so a person
// or a probe reading the body sees them; /metrics has them as flannel_condition.
import http from 'node:http';
import type { Registry } from 'prom-client';

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

export interface HealthCondition {
  readonly name: string;
  readonly message: string;
}

/** The /healthz body. */
export function healthzBody(conditions: readonly HealthCondition[]): string {
  return ['flanneld is running', ...conditions.map((c) => `degraded: ${c.name}: ${c.message}`)].join('\n');
}

export async function startHealthServer(
  host: string,
  port: number,
  isReady: () => boolean,
  metrics?: Registry,
  conditions: () => readonly HealthCondition[] = () => [],
): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/metrics' && metrics) {
      metrics.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
        (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(e.message),
      );
    } else if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end(healthzBody(conditions()));
    } else if (url === '/readyz') {
      if (isReady()) res.writeHead(200, { 'content-type': 'text/plain' }).end('flanneld is ready');
      else res.writeHead(503, { 'content-type': 'text/plain' }).end('flanneld is not ready yet');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        // Graceful with a 3 s cap, as flannel does.
        const t = setTimeout(() => {
          server.closeAllConnections();
          resolve();
        }, 3000);
        server.close(() => {
          clearTimeout(t);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}
