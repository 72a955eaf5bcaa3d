// /healthz and /readyz (spec §10.1; any method is accepted, as in flannel),
// plus /metrics (Prometheus) when a registry is given.
import http from 'node:http';
import type { Registry } from 'prom-client';

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHealthServer(host: string, port: number, isReady: () => boolean, metrics?: Registry): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/metrics' && metrics) {
      metrics.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
        (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(e.message),
      );
    } else if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('flanneld is running');
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
