// Privileged: on a host crowded with other devices' entries, our dumps return
// only our device's (the kernel filters them: NETLINK_GET_STRICT_CHK), and
// the VXLAN reconciler leaves alone what it does not own while adopting what
// real flannel left. Runs in a private namespace (see private-netns.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { privilegedSkip } from '../../src/testing/privileged.js';
import { RtNetlink } from '../../src/kernel/rtnetlink.js';
import * as C from '../../src/netlink/constants.js';
import * as R from '../../src/netlink/requests.js';
import { decodeNeighOrFdb, decodeRoute } from '../../src/netlink/rtnl.js';
import { parseIPv4Net } from '../../src/lease/ip.js';
import { reconcileVxlan, type ReconcileTarget } from '../../src/backend/vxlan/reconciler.js';
import type { PeerEntries } from '../../src/backend/vxlan/desired.js';
import { innerNetns, runInPrivateNetns } from './private-netns.js';
import { addUnderlayAndNoise, ipBatch, sh } from '../helpers/netns-sync.js';

const ENV = 'FTS_FILTERED_NS';
const NOISE = 2000;
const OURS = 10;

const mac = (i: number) => `0a:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;

function lines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .sort();
}

if (innerNetns(ENV)) {
  // Underlay, a busy "other" device, and flannel.1 with OURS peers.
  addUnderlayAndNoise('192.0.2.1/24', '198.18.0.1/15');
  const noise: string[] = [];
  for (let i = 0; i < NOISE; i++) {
    noise.push(`neigh add 198.18.${(i >> 8) + 1}.${i & 255} lladdr ${mac(i)} dev noise0 nud permanent`);
    noise.push(`route add 172.${16 + (i >> 8)}.${i & 255}.0/24 via 198.18.0.2 dev noise0`);
    noise.push(`route add 100.64.${i >> 8}.${i & 255}/32 dev noise0 table 100`);
  }
  ipBatch(noise);

  const k = RtNetlink.open();
  const vx = await k.createVxlan({ name: 'flannel.1', vni: 1, local: '192.0.2.1', linkIndex: (await k.getLinkByName('ul0'))!.index, mtu: 1450, mac: '0e:00:00:00:00:01' });
  await k.setLinkUp(vx.index);
  await k.addAddr(vx.index, '10.244.1.0/32');
  const peers: PeerEntries[] = [];
  for (let i = 2; i < 2 + OURS; i++) {
    peers.push({ id: `p${i}`, gw: `10.244.${i}.0`, dst: `10.244.${i}.0/24`, mac: mac(0x100 + i), publicIP: `192.0.2.${i}`, direct: false });
  }
  const target: ReconcileTarget = { dev: vx.index, extDev: (await k.getLinkByName('ul0'))!.index, network: parseIPv4Net('10.244.0.0/16') };
  const first = await reconcileVxlan(k, target, peers);
  assert.deepEqual(first.errors, []);

  test('the kernel filters: a raw dump for one device returns only its entries, marked NLM_F_DUMP_FILTERED where the kernel says so', () => {
    assert.equal(k.strictDumps, true, 'this kernel accepts NETLINK_GET_STRICT_CHK');
    const sock = k.socket;
    const neigh = sock.dump(R.dumpNeighsRequest(C.AF_INET, vx.index));
    assert.equal(neigh.length, OURS);
    assert.ok(neigh.every((m) => decodeNeighOrFdb(m).ifindex === vx.index && (m.header.flags & C.NLM_F_DUMP_FILTERED) !== 0));
    const fdb = sock.dump(R.dumpFdbRequest(vx.index));
    assert.equal(fdb.length, OURS);
    assert.ok(fdb.every((m) => decodeNeighOrFdb(m).ifindex === vx.index));
    const routes = sock.dump(R.dumpRoutesRequest(C.AF_INET, { table: C.RT_TABLE_MAIN, oif: vx.index }));
    assert.equal(routes.length, OURS);
    assert.ok(routes.every((m) => decodeRoute(m).oif === vx.index && (m.header.flags & C.NLM_F_DUMP_FILTERED) !== 0));
    // our protocol on the busy device: nothing, though it has NOISE routes
    const noiseDev = decodeRoute(sock.dump(R.dumpRoutesRequest(C.AF_INET, { table: 100 }))[0]!).oif!;
    assert.equal(sock.dump(R.dumpRoutesRequest(C.AF_INET, { table: C.RT_TABLE_MAIN, oif: noiseDev })).length, NOISE + 1);
    assert.equal(sock.dump(R.dumpRoutesRequest(C.AF_INET, { table: C.RT_TABLE_MAIN, oif: noiseDev, protocol: C.RTPROT_FLANNEL })).length, 0);
    // the same dumps unfiltered carry the whole host
    assert.ok(sock.dump(R.dumpNeighsRequest(C.AF_INET)).length >= NOISE + OURS);
    assert.ok(sock.dump(R.dumpRoutesRequest(C.AF_INET)).length >= 2 * NOISE + OURS);
  });

  test('RtNetlink lists the same entries with and without strict checking; only the strict socket is spared the noise', async () => {
    const legacy = RtNetlink.open({ strictCheck: false });
    try {
      assert.equal(legacy.strictDumps, false);
      const snap = async (x: RtNetlink) => ({
        neighs: (await x.listNeighs(vx.index)).map((n) => `${n.ip} ${n.mac}`).sort(),
        fdb: (await x.listFdb(vx.index)).map((f) => `${f.mac} ${f.dst}`).sort(),
        routes: (await x.listRoutes({ oif: vx.index })).map((r) => `${r.dst} ${r.gateway} ${r.protocol}`).sort(),
        noise: (await x.listRoutes({ table: 100 })).length,
      });
      const s0 = { ...k.dumpStats };
      const strict = await snap(k);
      const strictReceived = k.dumpStats.received - s0.received;
      const old = await snap(legacy);
      assert.deepEqual(strict, old);
      assert.equal(strict.neighs.length, OURS);
      assert.equal(strict.routes.length, OURS);
      assert.ok(strict.routes.every((r) => r.endsWith(` ${C.RTPROT_FLANNEL}`)));
      assert.equal(strict.noise, NOISE);
      // 3 x OURS for our device, NOISE for table 100 itself
      assert.equal(strictReceived, 3 * OURS + NOISE);
      // every neighbour, and every route of every table twice
      assert.ok(legacy.dumpStats.received >= NOISE + OURS + 2 * (2 * NOISE + OURS), `legacy received ${legacy.dumpStats.received}`);
      assert.equal(legacy.dumpStats.kernelFiltered, 0);
    } finally {
      legacy.close();
    }
  });

  test('reconcile leaves foreign entries on flannel.1 alone and adopts what real flannel left', async () => {
    // an operator's entries: a flood entry, a self FDB entry for an unknown
    // MAC, a static route inside the Network, a route outside it, and a
    // permanent neighbour outside the Network
    sh('bridge', ['fdb', 'append', '00:00:00:00:00:00', 'dev', 'flannel.1', 'dst', '192.0.2.77', 'self', 'permanent']);
    sh('bridge', ['fdb', 'add', '02:aa:bb:cc:dd:ee', 'dev', 'flannel.1', 'dst', '192.0.2.78', 'self', 'permanent']);
    sh('ip', ['route', 'add', '10.244.200.0/24', 'via', '10.244.200.0', 'dev', 'flannel.1', 'onlink', 'proto', 'static']);
    sh('ip', ['route', 'add', '172.31.5.0/24', 'dev', 'flannel.1']);
    sh('ip', ['neigh', 'add', '172.31.5.9', 'lladdr', '02:aa:bb:cc:dd:ef', 'dev', 'flannel.1', 'nud', 'permanent']);
    // what real flannel (proto boot) left: a route for a current peer whose
    // route we lost, and a stale peer's full set of entries
    sh('ip', ['route', 'del', '10.244.2.0/24', 'dev', 'flannel.1']);
    sh('ip', ['route', 'add', '10.244.2.0/24', 'via', '10.244.2.0', 'dev', 'flannel.1', 'onlink']);
    sh('ip', ['neigh', 'add', '10.244.99.0', 'lladdr', '0a:00:00:00:09:99', 'dev', 'flannel.1', 'nud', 'permanent']);
    sh('bridge', ['fdb', 'add', '0a:00:00:00:09:99', 'dev', 'flannel.1', 'dst', '192.0.2.99', 'self', 'permanent']);
    sh('ip', ['route', 'add', '10.244.99.0/24', 'via', '10.244.99.0', 'dev', 'flannel.1', 'onlink']);
    assert.match(sh('ip', ['route', 'show', 'proto', 'boot', 'dev', 'flannel.1']), /^10\.244\.2\.0\/24 via/m);

    const r = await reconcileVxlan(k, target, peers);
    assert.deepEqual(r.errors, []);
    assert.equal(r.changes, 4, 'adopt 10.244.2.0/24; delete the stale route, FDB entry and neighbour');

    const fdb = lines(sh('bridge', ['fdb', 'show', 'dev', 'flannel.1']));
    assert.ok(fdb.includes('00:00:00:00:00:00 dst 192.0.2.77 self permanent'), fdb.join('\n'));
    assert.ok(fdb.includes('02:aa:bb:cc:dd:ee dst 192.0.2.78 self permanent'), fdb.join('\n'));
    assert.ok(!fdb.some((l) => l.startsWith('0a:00:00:00:09:99')), 'the stale peer FDB entry went (its MAC was a neighbour we own)');
    const routes = lines(sh('ip', ['route', 'show', 'dev', 'flannel.1']));
    assert.ok(routes.includes('10.244.200.0/24 via 10.244.200.0 proto static onlink'), routes.join('\n'));
    assert.ok(routes.includes('172.31.5.0/24 scope link'), routes.join('\n'));
    assert.ok(routes.includes(`10.244.2.0/24 via 10.244.2.0 proto ${C.RTPROT_FLANNEL} onlink`), 'adopted: rewritten with our protocol');
    assert.ok(!routes.some((l) => l.startsWith('10.244.99.0/24')), 'stale old-flannel route deleted');
    assert.equal(routes.filter((l) => l.includes(`proto ${C.RTPROT_FLANNEL}`)).length, OURS);
    const neighs = lines(sh('ip', ['neigh', 'show', 'dev', 'flannel.1']));
    assert.ok(neighs.includes('172.31.5.9 lladdr 02:aa:bb:cc:dd:ef PERMANENT'), neighs.join('\n'));
    assert.ok(!neighs.some((l) => l.startsWith('10.244.99.0 ')));
    assert.equal(neighs.length, OURS + 1);

    const again = await reconcileVxlan(k, target, peers);
    assert.deepEqual(again, { changes: 0, errors: [] }, 'converged: foreign entries are not fought over');
  });
} else {
  runInPrivateNetns({
    title: 'filtered dumps and entry ownership against the real kernel (private netns)',
    prefix: 'ftsfd-',
    envVar: ENV,
    file: fileURLToPath(import.meta.url),
    skip: privilegedSkip('creates a network namespace', ['ip', 'bridge']),
  });
}
