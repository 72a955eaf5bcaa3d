// `flannelctl leases`: the operator's first view of the store.
import { publishedEdgeNetworks } from '../backend/vxlan/edge.js';
import { formatIPv4, formatIPv4Net } from '../lease/ip.js';
import { vtepMac } from '../lease/lease.js';
import type { LeaseStore } from '../store/store.js';
import { entryToLease } from '../subnet/manager.js';

export interface LeaseRow {
  subnet: string;
  publicIP: string;
  backend: string;
  vtepMac: string;
  /** segments served as an edge gateway, comma-separated; "" for none */
  edge: string;
  expires: string;
  problem?: string;
}

function humanTTL(s: number): string {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export async function leaseRows(store: LeaseStore): Promise<LeaseRow[]> {
  const { entries } = await store.listSubnets({ withTTL: true });
  const rows = entries.map((e): LeaseRow => {
    const expires = e.permanent ? 'never (reservation)' : e.ttlSeconds === null ? '?' : `in ${humanTTL(e.ttlSeconds)}`;
    const l = entryToLease(e);
    if (typeof l === 'string') return { subnet: e.name, publicIP: '-', backend: '-', vtepMac: '-', edge: '', expires, problem: l };
    return {
      subnet: e.name.replace('-', '/').replace(/&(.*)-(\d+)$/, ' $1/$2'),
      publicIP: formatIPv4(l.attrs.publicIP),
      backend: l.attrs.backendType || '(none: udp/alloc)',
      vtepMac: vtepMac(l.attrs) ?? '-',
      edge: publishedEdgeNetworks(l).nets.map(formatIPv4Net).join(','),
      expires,
    };
  });
  return rows.sort((a, b) => a.subnet.localeCompare(b.subnet, 'en', { numeric: true }));
}

export function renderTable(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function renderLeases(rows: LeaseRow[]): string {
  // the EDGE column only when some node is an edge gateway (issue 12)
  const withEdge = rows.some((r) => r.edge !== '');
  const table = renderTable(
    ['SUBNET', 'PUBLIC IP', 'BACKEND', 'VTEP MAC', ...(withEdge ? ['EDGE'] : []), 'EXPIRES'],
    rows.map((r) => [r.subnet, r.publicIP, r.backend, r.vtepMac, ...(withEdge ? [r.edge || '-'] : []), r.problem ? `${r.expires}  !! ${r.problem}` : r.expires]),
  );
  return rows.length === 0 ? table + '(no leases)\n' : table;
}
