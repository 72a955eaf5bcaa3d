// /healthz and /readyz (spec §10.1). Any method is accepted, as in flannel.
import http from 'node:http';

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHealthServer(host: string, port: number, isReady: () => boolean): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/healthz') {
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
