// Privileged: the daemon's kernel notification feed (src/kernel/feed.ts) gets
// link changes and other people's deletions, and nothing else: the socket
// filter drops our own changes and all additions in the kernel. Runs in a
// private namespace (see private-netns.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { privilegedSkip } from '../../src/testing/privileged.js';
import { RtNetlink } from '../../src/kernel/rtnetlink.js';
import { NetlinkChangeFeed } from '../../src/kernel/feed.js';
import type { NetlinkEvent } from '../../src/netlink/subscriber.js';
import { innerNetns, runInPrivateNetns } from './private-netns.js';
import { addUnderlayAndNoise, sh } from '../helpers/netns-sync.js';

const ENV = 'FTS_NOTIFY_FILTER_NS';

const describe = (e: NetlinkEvent): string => {
  switch (e.kind) {
    case 'link':
      return `link ${e.action} ${e.link.name}`;
    case 'neigh':
      return `neigh ${e.action} ${e.neigh.ip}`;
    case 'fdb':
      return `fdb ${e.action} ${e.fdb.mac} ${e.fdb.dst ?? ''}`;
    case 'route':
      return `route ${e.action} ${e.route.dst}`;
    default:
      return `${e.kind} ${e.action}`;
  }
};

if (innerNetns(ENV)) {
  addUnderlayAndNoise('192.0.2.1/24', '198.18.0.1/15');
  const k = RtNetlink.open();
  const ul = (await k.getLinkByName('ul0'))!;
  const vx = await k.createVxlan({ name: 'flannel.1', vni: 1, local: '192.0.2.1', linkIndex: ul.index, mtu: 1450, mac: '0e:00:00:00:00:01' });
  await k.setLinkUp(vx.index);
  const seen: string[] = [];
  /** a copy (assertions on `seen` itself would narrow its type) */
  const got = (): string[] => [...seen];
  const marks = new Set<string>();
  let nextMark = 0;
  const feed = new NetlinkChangeFeed({ ownPort: () => k.ownPortId() });
  await feed.start(
    (e) => {
      if (e.kind === 'link' && e.link.name.startsWith('mark')) {
        if (e.action === 'del') marks.add(e.link.name);
      } else if (e.kind === 'link' || (e.kind === 'route' ? e.route.oif : e.kind === 'neigh' ? e.neigh.ifindex : e.kind === 'fdb' ? e.fdb.ifindex : 0) === vx.index) {
        // (a bridge going away deletes its own FDB entries: not flannel.1's business)
        seen.push(describe(e));
      }
    },
    () => seen.push('overrun'),
    (err) => seen.push(`lost: ${err.message}`),
  );
  /** Everything the kernel queued before this point has been delivered once the mark's deletion arrives. */
  const drained = async () => {
    const name = `mark${nextMark++}`;
    sh('ip', ['link', 'add', name, 'type', 'bridge']);
    sh('ip', ['link', 'del', name]);
    const deadline = Date.now() + 5000;
    while (!marks.has(name)) {
      if (Date.now() > deadline) throw new Error(`the marker ${name} never arrived; seen: ${seen.join('; ')}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const peer = (i: number) => ({ gw: `10.244.${i}.0`, dst: `10.244.${i}.0/24`, mac: `0a:00:00:00:00:0${i}`, dst4: `192.0.2.${10 + i}` });
  const ops = [2, 3, 4].flatMap((i) => {
    const p = peer(i);
    return [
      { op: 'replaceNeigh' as const, neigh: { ifindex: vx.index, ip: p.gw, mac: p.mac, permanent: true } },
      { op: 'replaceFdb' as const, fdb: { ifindex: vx.index, mac: p.mac, dst: p.dst4, self: true, permanent: true } },
      { op: 'replaceRoute' as const, route: { dst: p.dst, gw: p.gw, oif: vx.index, onlink: true } },
    ];
  });

  test('our own additions and anyone\'s additions never reach the feed; other people\'s deletions and link changes do', async () => {
    try {
      // ours: 9 additions, nothing delivered
      assert.deepEqual((await k.applyBatch(ops)).failures, []);
      // someone else's addition: not delivered either
      sh('ip', ['route', 'add', '10.244.9.0/24', 'via', '10.244.9.0', 'dev', 'flannel.1', 'onlink']);
      await drained();
      assert.deepEqual(got(), []);
      // someone else deletes one peer's route, neighbour and FDB entry: all three arrive
      sh('ip', ['route', 'del', '10.244.2.0/24', 'dev', 'flannel.1']);
      sh('ip', ['neigh', 'del', '10.244.2.0', 'dev', 'flannel.1']);
      sh('bridge', ['fdb', 'del', '0a:00:00:00:00:02', 'dst', '192.0.2.12', 'dev', 'flannel.1', 'self']);
      await drained();
      assert.deepEqual(got(), ['route del 10.244.2.0/24', 'neigh del 10.244.2.0', 'fdb del 0a:00:00:00:00:02 192.0.2.12']);
      seen.length = 0;
      // our own route deletion carries our port id: dropped (the vxlan driver reports FDB
      // deletions, and the kernel neighbour deletions, without the requester's port id: those
      // still come, and damage() tells them apart by whether a peer wants the entry)
      const p3 = peer(3);
      await k.applyBatch([
        { op: 'delRoute', route: { dst: p3.dst, gw: p3.gw, oif: vx.index } },
        { op: 'delFdb', fdb: { ifindex: vx.index, mac: p3.mac, dst: p3.dst4 } },
      ]);
      await drained();
      assert.ok(!got().some((x) => x.startsWith('route')), got().join('; '));
      seen.length = 0;
      // a link going away, whoever did it
      sh('ip', ['link', 'add', 'other0', 'type', 'bridge']);
      sh('ip', ['link', 'del', 'other0']);
      await drained();
      const links = got();
      assert.ok(links.includes('link new other0') && links.at(-1) === 'link del other0', links.join('; '));
      assert.ok(links.every((x) => x.endsWith(' other0')), links.join('; '));
    } finally {
      await feed.stop();
      k.close();
    }
  });
} else {
  runInPrivateNetns({
    title: 'kernel notification filter against the real kernel (private netns)',
    prefix: 'ftsnf-',
    envVar: ENV,
    file: fileURLToPath(import.meta.url),
    skip: privilegedSkip('creates a network namespace', ['ip', 'bridge']),
  });
}
