// flannel's iptables rules, installed by flanneld inside a namespace host:
// the exact golden rules of flannel's e2e suite, repaired when deleted, not
// duplicated across restarts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { isRoot, Topology } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
let topo: Topology;
let f: FlanneldProc;

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 1, podsPerHost: 0 });
  await topo.startEtcd();
  await topo.etcdctl('put', '/coreos.com/network/config', '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
  f = topo.startFlanneld(topo.hosts[0]!, ['--ip-masq', '--iptables-resync=1']);
  await f.waitReady();
});

after(async () => {
  await topo?.destroy();
});

const save = async (table: string) =>
  (await topo.exec(topo.hosts[0]!.name, ['iptables-save', '-t', table]))
    .split('\n')
    .filter((l) => /FLANNEL|flanneld/.test(l) && !l.startsWith(':'));

test('--ip-masq and forward rules match flannel\'s golden rules', { skip }, async () => {
  const S = topo.subnetEnv(topo.hosts[0]!).FLANNEL_SUBNET.replace('.1/', '.0/');
  const N = '10.244.0.0/16';
  assert.deepEqual(await save('nat'), [
    '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
    '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
    `-A FLANNEL-POSTRTG -s ${S} -d ${N} -m comment --comment "flanneld masq" -j RETURN`,
    `-A FLANNEL-POSTRTG -s ${N} -d ${S} -m comment --comment "flanneld masq" -j RETURN`,
    `-A FLANNEL-POSTRTG ! -s ${N} -d ${S} -m comment --comment "flanneld masq" -j RETURN`,
    `-A FLANNEL-POSTRTG -s ${N} ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`,
    `-A FLANNEL-POSTRTG ! -s ${N} -d ${N} -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`,
  ]);
  assert.deepEqual(await save('filter'), [
    '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
    `-A FLANNEL-FWD -s ${N} -m comment --comment "flanneld forward" -j ACCEPT`,
    `-A FLANNEL-FWD -d ${N} -m comment --comment "flanneld forward" -j ACCEPT`,
  ]);
  assert.equal(topo.subnetEnv(topo.hosts[0]!).FLANNEL_IPMASQ, true);
});

test('a deleted rule is put back by the resync; a restart does not duplicate anything', { skip }, async () => {
  const h = topo.hosts[0]!.name;
  const before = await save('nat');
  await topo.exec(h, ['iptables', '-t', 'nat', '-D', 'FLANNEL-POSTRTG', '-m', 'mark', '--mark', '0x4000/0x4000', '-m', 'comment', '--comment', 'flanneld masq', '-j', 'RETURN']);
  assert.notDeepEqual(await save('nat'), before);
  const t0 = Date.now();
  while (JSON.stringify(await save('nat')) !== JSON.stringify(before)) {
    assert.ok(Date.now() - t0 < 5000, 'repaired within the resync period');
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(f.lines.some((l) => /missing; recreating them/.test(l.msg)));
  assert.equal(await f.stop(), 0);
  assert.deepEqual(await save('nat'), before, 'rules stay after stop');
  f = topo.startFlanneld(topo.hosts[0]!, ['--ip-masq', '--iptables-resync=1']);
  await f.waitReady();
  assert.deepEqual(await save('nat'), before, 'no duplicates after restart');
  assert.equal((await save('filter')).length, 3);
});
