// Unit tests for the topology page's model (no root, no browser). The page
// itself is tested in a real browser in test/e2e/ui.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as C from '../netlink/constants.js';
import type { KernelSnapshot } from '../ctl/kernel-view.js';
import { buildState, kernelTables, summariseLease, tunnelState, type BuildInput, type LeaseSummary, type ProbeResult } from './model.js';
import { decodeLeaseAttrs } from '../lease/lease.js';
import { parseListen } from './server.js';

const lease = (n: number): LeaseSummary => ({ key: `10.244.${n}.0-24`, subnet: `10.244.${n}.0/24`, publicIP: `192.0.2.1${n}`, backend: 'vxlan', vtepMac: `0a:00:00:00:00:0${n}`, edgeNetworks: [] });
const probe = (from: string, to: string, ok: boolean): ProbeResult => ({ from, to, what: `${from}→${to}`, ok, rttMs: ok ? 0.1 : null, at: '2026-01-01T00:00:00Z' });

const base: BuildInput = {
  mode: 'store',
  title: 't',
  store: 's',
  backend: 'vxlan',
  network: '10.244.0.0/16',
  storeError: null,
  probeNote: '',
  leases: [],
  lastSeen: new Map(),
  known: [],
  probes: new Map(),
};

test('tunnel colour: both ways ok, one way, none, no data', () => {
  assert.equal(tunnelState([probe('a', 'b', true), probe('b', 'a', true)]), 'ok');
  assert.equal(tunnelState([probe('a', 'b', true), probe('b', 'a', false)]), 'partial');
  assert.equal(tunnelState([probe('a', 'b', false)]), 'fail');
  assert.equal(tunnelState([]), 'unknown');
});

test('outside the lab: hosts are the leases (by public IP), a gone lease greys its host and drops its tunnels', () => {
  const l1 = lease(1);
  const l2 = lease(2);
  const l3 = lease(3);
  const s = buildState({ ...base, leases: [l2, l1], lastSeen: new Map([[l1.publicIP, l1], [l2.publicIP, l2], [l3.publicIP, l3]]) });
  assert.deepEqual(s.hosts.map((h) => [h.id, h.lease, h.subnet]), [
    ['192.0.2.11', 'present', '10.244.1.0/24'],
    ['192.0.2.12', 'present', '10.244.2.0/24'],
    ['192.0.2.13', 'gone', '10.244.3.0/24'],
  ]);
  assert.deepEqual(s.tunnels.map((t) => [t.id, t.state]), [['192.0.2.11~192.0.2.12', 'unknown']]);
  assert.equal(s.hosts[0]!.kernel, false);
  const local = buildState({ ...base, leases: [l1], lastSeen: new Map([[l1.publicIP, l1]]), localIPs: new Set(['192.0.2.11']) });
  assert.equal(local.hosts[0]!.kernel, true, "this machine's own host is readable");
});

test('in the lab: every pair has a tunnel; probes colour it; a host without lease makes its tunnels "down"', () => {
  const known = [1, 2, 3].map((n) => ({ id: `h${n}`, name: `h${n}`, publicIP: `192.0.2.1${n}`, pods: [], kernel: true }));
  const probes = new Map([
    ['h1>h2', probe('h1', 'h2', true)],
    ['h2>h1', probe('h2', 'h1', true)],
    ['h1>h3', probe('h1', 'h3', false)],
  ]);
  const l3 = lease(3);
  const s = buildState({ ...base, mode: 'lab', known, leases: [lease(1), lease(2)], lastSeen: new Map([[l3.publicIP, l3]]), probes });
  assert.deepEqual(s.hosts.map((h) => [h.id, h.lease]), [['h1', 'present'], ['h2', 'present'], ['h3', 'gone']]);
  assert.deepEqual(s.tunnels.map((t) => [t.id, t.state]), [['h1~h2', 'ok'], ['h1~h3', 'down'], ['h2~h3', 'down']]);
  const none = buildState({ ...base, mode: 'lab', known, leases: [] });
  assert.deepEqual(none.hosts.map((h) => h.lease), ['none', 'none', 'none']);
});

test('kernel tables: the flannel device, its neighbours and FDB, and routes with the flannel ones marked', () => {
  const snap: KernelSnapshot = {
    links: [
      { family: 0, index: 2, name: 'eth0', type: 1, flags: 0, up: true, lowerUp: true, mtu: 1500, mac: '02:00:00:00:00:01', operState: 'up' },
      {
        family: 0, index: 5, name: 'flannel.1', type: 1, flags: 0, up: true, lowerUp: true, mtu: 1450, mac: '0a:00:00:00:00:01', operState: 'unknown', kind: 'vxlan',
        vxlan: { vni: 1, port: 8472, local: '192.0.2.11', learning: false, gbp: false, l2miss: false, l3miss: false },
      },
    ],
    addrs: [{ family: C.AF_INET, index: 5, prefixLen: 32, flags: 0, scope: 0, local: '10.244.1.0', address: '10.244.1.0', cidr: '10.244.1.0/32' }],
    routes: [
      { family: C.AF_INET, dst: '10.244.2.0/24', dstLen: 24, gateway: '10.244.2.0', oif: 5, table: C.RT_TABLE_MAIN, protocol: 3, scope: 0, type: C.RTN_UNICAST, flags: 4, onlink: true },
      { family: C.AF_INET, dst: '0.0.0.0/0', dstLen: 0, gateway: '192.0.2.1', oif: 2, table: C.RT_TABLE_MAIN, protocol: 3, scope: 0, type: C.RTN_UNICAST, flags: 0, onlink: false },
    ],
    neighs: [
      { family: C.AF_INET, ifindex: 5, ip: '10.244.2.0', mac: '0a:00:00:00:00:02', state: C.NUD_PERMANENT, flags: 0, permanent: true },
      { family: C.AF_INET, ifindex: 2, ip: '192.0.2.1', mac: '02:00:00:00:00:09', state: C.NUD_REACHABLE, flags: 0, permanent: false },
    ],
    fdb: [{ family: C.AF_BRIDGE, ifindex: 5, mac: '0a:00:00:00:00:02', dst: '192.0.2.12', state: C.NUD_PERMANENT, flags: 0, self: true, master: false, permanent: true }],
  };
  const k = kernelTables('h1', 'test', snap, 'vxlan', new Set(['192.0.2.12']));
  assert.equal(k.device?.name, 'flannel.1');
  assert.deepEqual(k.device?.addrs, ['10.244.1.0/32']);
  assert.deepEqual(k.neigh, [{ ip: '10.244.2.0', mac: '0a:00:00:00:00:02', state: 'PERMANENT' }]);
  assert.deepEqual(k.fdb, [{ mac: '0a:00:00:00:00:02', dst: '192.0.2.12', flags: 'self permanent' }]);
  assert.deepEqual(k.routes.filter((r) => r.flannel).map((r) => r.text), ['10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink']);

  const hg = kernelTables('h1', 'test', { ...snap, routes: [{ ...snap.routes[0]!, gateway: '192.0.2.12', oif: 2, onlink: false }] }, 'host-gw', new Set(['192.0.2.12']));
  assert.equal(hg.device, null);
  assert.match(hg.deviceNote ?? '', /host-gw has no device/);
  assert.deepEqual(hg.routes.map((r) => [r.text, r.flannel]), [['10.244.2.0/24 via 192.0.2.12 dev eth0', true]]);
});

test('--listen: host:port, [v6]:port, a bare port is loopback, :port is every address', () => {
  assert.deepEqual(parseListen('127.0.0.1:8480'), { host: '127.0.0.1', port: 8480 });
  assert.deepEqual(parseListen('8480'), { host: '127.0.0.1', port: 8480 });
  assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
  assert.deepEqual(parseListen(':9000'), { host: '0.0.0.0', port: 9000 });
  assert.throws(() => parseListen('localhost'), /not host:port/);
  assert.throws(() => parseListen('1.2.3.4:70000'), /out of range/);
});

test('ui: a lease\'s edge segments reach the host card (valid CIDRs only)', () => {
  const attrs = decodeLeaseAttrs('{"PublicIP":"192.0.2.11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:01"},"EdgeNetworks":["192.168.50.0/24",7]}');
  const l = summariseLease({ subnet: { ip: 0x0af40100, prefix: 24 }, subnet6: null, attrs, expiration: null });
  assert.deepEqual(l.edgeNetworks, ['192.168.50.0/24']);
  const s = buildState({ ...base, leases: [l, lease(2)] });
  assert.deepEqual(s.hosts.map((h) => h.edgeNetworks), [['192.168.50.0/24'], []]);
});
