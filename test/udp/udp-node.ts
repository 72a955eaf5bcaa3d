// Test fixture (not part of the product): runs one UdpBackend with a real
// RtNetlink kernel in the network namespace it was started in
// (`ip netns exec <ns> node udp-node.js '<json>'`).
//
// argv[2]: {"own":"10.244.1.0/24","iface":"eth0","peers":[{"subnet":"10.244.2.0/24","publicIP":"192.0.2.2"}],
//           "offload":true,"network":"10.244.0.0/16"}
// stdout, one JSON object per line: {"type":"ready",...}, {"type":"stats",...}, {"type":"reconciled",...}, {"type":"closed"}
// stdin commands, one per line: stats | reconcile <peers json> | exit

import { createInterface } from 'node:readline';
import { RtNetlink } from '../../src/kernel/index.js';
import { parseIPv4, parseIPv4Net } from '../../src/lease/ip.js';
import type { Lease } from '../../src/lease/lease.js';
import { stderrLogger } from '../../src/log/log.js';
import { parseNetworkConfig } from '../../src/subnet/config.js';
import { UdpBackend } from '../../src/backend/udp/udp.js';

interface Peer {
  subnet: string;
  publicIP: string;
}

interface Args {
  own: string;
  iface: string;
  peers: Peer[];
  offload?: boolean;
  network?: string;
  port?: number;
  batch?: number;
  socketBufferBytes?: number;
}

function lease(subnet: string, publicIP: string): Lease {
  return { subnet: parseIPv4Net(subnet), subnet6: null, attrs: { publicIP: parseIPv4(publicIP), publicIPv6: null, backendType: '' }, expiration: null };
}

function out(o: unknown): void {
  process.stdout.write(JSON.stringify(o) + '\n');
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as Args;
  const kernel = RtNetlink.open();
  const link = await kernel.getLinkByName(args.iface);
  if (!link) throw new Error(`no interface ${args.iface}`);
  const addr = (await kernel.listAddrs(link.index))[0];
  if (!addr) throw new Error(`${args.iface} has no IPv4 address`);
  const ifaceAddr = parseIPv4(addr.cidr.split('/')[0]!);
  const backendConf: Record<string, unknown> = { Type: 'udp' };
  if (args.port !== undefined) backendConf.Port = args.port;
  const config = parseNetworkConfig(JSON.stringify({ Network: args.network ?? '10.244.0.0/16', Backend: backendConf }));
  const log = stderrLogger(0, `udp-node ${args.own}`);
  // What the daemon does for a backend: reconciles one at a time, and a
  // reconcile when the backend kicks (its data path stopped).
  let peers: Lease[] = args.peers.map((p) => lease(p.subnet, p.publicIP));
  let chain: Promise<unknown> = Promise.resolve();
  const reconcile = (): Promise<Error[]> => {
    const p = chain.then(() => backend.reconcile(peers, []));
    chain = p.catch(() => undefined);
    return p;
  };
  const backend: UdpBackend = new UdpBackend(
    {
      config,
      log,
      extIface: { name: args.iface, index: link.index, mtu: link.mtu ?? 1500, ifaceAddr, publicIP: ifaceAddr },
      kick: () => void reconcile(),
    },
    { kernel, offload: args.offload ?? true, batch: args.batch, socketBufferBytes: args.socketBufferBytes },
  );
  const attrs = await backend.prepare();
  const { mtu } = await backend.activate(lease(args.own, addr.cidr.split('/')[0]!));
  const errors = await reconcile();
  out({ type: 'ready', mtu, attrs, device: backend.deviceName, offloads: backend.offloads, errors: errors.map((e) => e.message) });

  let closing = false;
  const shutdown = async (): Promise<void> => {
    if (closing) return;
    closing = true;
    await backend.close();
    kernel.close();
    out({ type: 'closed' });
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown());
  process.on('SIGINT', () => void shutdown());
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const [cmd, ...rest] = line.trim().split(' ');
    if (cmd === 'stats') out({ type: 'stats', stats: backend.stats(), recoveries: backend.recoveries });
    else if (cmd === 'reconcile') {
      peers = (JSON.parse(rest.join(' ')) as Peer[]).map((p) => lease(p.subnet, p.publicIP));
      void reconcile().then((errs) => out({ type: 'reconciled', errors: errs.map((e) => e.message) }));
    } else if (cmd === 'exit') void shutdown();
  });
  rl.on('close', () => void shutdown());
}

main().catch((e: unknown) => {
  out({ type: 'error', message: (e as Error).message });
  process.exit(1);
});
