// The KernelNet contract, as a suite any implementation runs: the in-memory
// FakeKernel (fake-kernel.test.ts) and RtNetlink against a real kernel in a
// private network namespace (test/kernel/kernel-contract.test.ts). Backend
// unit tests trust the fake, so every rule here must hold for the kernel too:
// when the two disagree, this suite fails on one of them.
//
// Each case gets a fresh fixture: two plain, up devices ("underlay" with
// 192.0.2.1/24 and "other" with 198.51.100.1/24) and nothing else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BatchResult, KernelNet, Link, VxlanCreateSpec } from '../kernel/types.js';
import { NetlinkError } from '../netlink/errors.js';
import * as C from '../netlink/constants.js';

export interface KernelFixture {
  k: KernelNet;
  underlay: Link;
  other: Link;
  close(): Promise<void>;
}

const MAC_A = '6e:5a:1c:00:00:0a';
const MAC_B = '6e:5a:1c:00:00:0b';
const ZERO_MAC = '00:00:00:00:00:00';

async function rejectsCode(p: Promise<unknown>, code: string): Promise<NetlinkError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof NetlinkError, `expected a NetlinkError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

export function kernelContract(name: string, make: () => Promise<KernelFixture>): void {
  const withKernel = (title: string, fn: (f: KernelFixture) => Promise<void>): void =>
    void test(`${name} contract: ${title}`, async () => {
      const f = await make();
      try {
        await fn(f);
      } finally {
        await f.close();
      }
    });

  const vxSpec = (f: KernelFixture, over: Partial<VxlanCreateSpec> = {}): VxlanCreateSpec => ({
    name: 'flannel.1',
    vni: 1,
    local: '192.0.2.1',
    linkIndex: f.underlay.index,
    learning: false,
    gbp: false,
    mtu: 1400,
    mac: MAC_A,
    ...over,
  });

  /** flannel.1, up, with 10.244.1.0/32: ready for entries */
  async function vxlanUp(f: KernelFixture): Promise<Link> {
    const vx = await f.k.createVxlan(vxSpec(f));
    await f.k.setLinkUp(vx.index);
    await f.k.addAddr(vx.index, '10.244.1.0/32');
    return vx;
  }

  const fdbOf = async (f: KernelFixture, index: number) =>
    (await f.k.listFdb(index))
      .filter((e) => e.dst !== undefined)
      .map((e) => `${e.mac} ${e.dst}${e.permanent ? ' permanent' : ''}`)
      .sort();

  withKernel('createVxlan: a new device is down and has what was asked for', async (f) => {
    const vx = await f.k.createVxlan(vxSpec(f));
    assert.equal(vx.kind, 'vxlan');
    assert.equal(vx.up, false);
    assert.equal(vx.mtu, 1400);
    assert.equal(vx.mac, MAC_A);
    assert.deepEqual(
      { vni: vx.vxlan?.vni, port: vx.vxlan?.port, local: vx.vxlan?.local, linkIndex: vx.vxlan?.linkIndex, learning: vx.vxlan?.learning, gbp: vx.vxlan?.gbp },
      { vni: 1, port: 8472, local: '192.0.2.1', linkIndex: f.underlay.index, learning: false, gbp: false },
    );
    assert.equal((await f.k.getLinkByName('flannel.1'))?.index, vx.index);
    assert.equal((await f.k.getLinkByIndex(vx.index))?.name, 'flannel.1');
    assert.equal(await f.k.getLinkByName('flannel.99'), undefined);
  });

  withKernel('createVxlan: same parameters reuse the device, bringing MTU and MAC in line', async (f) => {
    const vx = await f.k.createVxlan(vxSpec(f));
    const again = await f.k.createVxlan(vxSpec(f, { mtu: 1450, mac: MAC_B }));
    assert.equal(again.index, vx.index);
    assert.equal(again.mtu, 1450);
    assert.equal(again.mac, MAC_B);
    const seen = await f.k.getLinkByIndex(vx.index);
    assert.equal(seen?.mtu, 1450);
    assert.equal(seen?.mac, MAC_B);
    // nothing asked about MTU/MAC: left as they are
    const { mtu: _m, mac: _a, ...bare } = vxSpec(f);
    const third = await f.k.createVxlan(bare);
    assert.equal(third.index, vx.index);
    assert.equal(third.mtu, 1450);
  });

  withKernel('createVxlan: different vni, port, learning, gbp or underlay is EEXIST and leaves the device alone', async (f) => {
    const vx = await f.k.createVxlan(vxSpec(f));
    for (const over of [{ vni: 2 }, { port: 4789 }, { learning: true }, { gbp: true }, { linkIndex: f.other.index, local: '198.51.100.1' }] as Partial<VxlanCreateSpec>[]) {
      const e = await rejectsCode(f.k.createVxlan(vxSpec(f, over)), 'EEXIST');
      assert.match(e.message, /differs/, JSON.stringify(over));
    }
    const now = await f.k.getLinkByIndex(vx.index);
    assert.equal(now?.vxlan?.vni, 1);
    assert.equal(now?.vxlan?.learning, false);
    assert.equal(now?.vxlan?.gbp, false);
    // a name taken by a device of another kind is EEXIST as well
    await rejectsCode(f.k.createVxlan(vxSpec(f, { name: f.other.name })), 'EEXIST');
  });

  withKernel('link changes: up, MTU, MAC; a missing device is ENODEV; deleting it twice succeeds', async (f) => {
    const vx = await f.k.createVxlan(vxSpec(f));
    await f.k.setLinkUp(vx.index);
    await f.k.setMtu(vx.index, 1300);
    assert.equal((await f.k.getLinkByIndex(vx.index))?.up, true);
    assert.equal((await f.k.getLinkByIndex(vx.index))?.mtu, 1300);
    await f.k.setLinkDown(vx.index);
    await f.k.setLinkAddress(vx.index, MAC_B);
    assert.equal((await f.k.getLinkByIndex(vx.index))?.up, false);
    assert.equal((await f.k.getLinkByIndex(vx.index))?.mac, MAC_B);
    await rejectsCode(f.k.setLinkUp(99999), 'ENODEV');
    await f.k.deleteLink(vx.index);
    await f.k.deleteLink(vx.index);
    assert.equal(await f.k.getLinkByIndex(vx.index), undefined);
  });

  withKernel('addresses: adding the same one twice and deleting an absent one succeed', async (f) => {
    const vx = await vxlanUp(f);
    await f.k.addAddr(vx.index, '10.244.1.0/32');
    assert.deepEqual((await f.k.listAddrs(vx.index)).map((a) => a.cidr), ['10.244.1.0/32']);
    await f.k.delAddr(vx.index, '10.244.1.0/32');
    await f.k.delAddr(vx.index, '10.244.1.0/32');
    assert.deepEqual(await f.k.listAddrs(vx.index), []);
  });

  withKernel('neighbours: replace overwrites, a repeat changes nothing, delete twice succeeds', async (f) => {
    const vx = await vxlanUp(f);
    const show = async () => (await f.k.listNeighs(vx.index)).map((n) => `${n.ip} ${n.mac} ${n.permanent ? 'permanent' : n.state}`);
    await f.k.replaceNeigh({ ifindex: vx.index, ip: '10.244.2.0', mac: MAC_A });
    await f.k.replaceNeigh({ ifindex: vx.index, ip: '10.244.2.0', mac: MAC_B });
    await f.k.replaceNeigh({ ifindex: vx.index, ip: '10.244.2.0', mac: MAC_B });
    assert.deepEqual(await show(), [`10.244.2.0 ${MAC_B} permanent`]);
    await f.k.delNeigh({ ifindex: vx.index, ip: '10.244.2.0' });
    await f.k.delNeigh({ ifindex: vx.index, ip: '10.244.2.0' });
    assert.deepEqual(await show(), []);
    await rejectsCode(f.k.replaceNeigh({ ifindex: 99999, ip: '10.244.2.0', mac: MAC_A }), 'ENODEV');
  });

  withKernel('FDB: replace moves a unicast MAC to a new dst; append never adds a second dst to it; zero-MAC flood entries take several', async (f) => {
    const vx = await vxlanUp(f);
    await f.k.replaceFdb({ ifindex: vx.index, mac: MAC_A, dst: '192.0.2.2' });
    await f.k.replaceFdb({ ifindex: vx.index, mac: MAC_A, dst: '192.0.2.3' });
    await f.k.replaceFdb({ ifindex: vx.index, mac: MAC_A, dst: '192.0.2.3' });
    assert.deepEqual(await fdbOf(f, vx.index), [`${MAC_A} 192.0.2.3 permanent`]);
    await f.k.appendFdb({ ifindex: vx.index, mac: MAC_A, dst: '192.0.2.4' });
    assert.deepEqual(await fdbOf(f, vx.index), [`${MAC_A} 192.0.2.3 permanent`]);
    await f.k.appendFdb({ ifindex: vx.index, mac: ZERO_MAC, dst: '192.0.2.5' });
    await f.k.appendFdb({ ifindex: vx.index, mac: ZERO_MAC, dst: '192.0.2.6' });
    await f.k.appendFdb({ ifindex: vx.index, mac: ZERO_MAC, dst: '192.0.2.6' });
    assert.deepEqual(await fdbOf(f, vx.index), [`${ZERO_MAC} 192.0.2.5 permanent`, `${ZERO_MAC} 192.0.2.6 permanent`, `${MAC_A} 192.0.2.3 permanent`]);
    await rejectsCode(f.k.replaceFdb({ ifindex: vx.index, mac: ZERO_MAC, dst: '192.0.2.7' }), 'EOPNOTSUPP');
    // delete removes exactly the mac -> dst pair; again is a success
    await f.k.delFdb({ ifindex: vx.index, mac: ZERO_MAC, dst: '192.0.2.5' });
    await f.k.delFdb({ ifindex: vx.index, mac: MAC_A, dst: '192.0.2.3' });
    await f.k.delFdb({ ifindex: vx.index, mac: MAC_A, dst: '192.0.2.3' });
    assert.deepEqual(await fdbOf(f, vx.index), [`${ZERO_MAC} 192.0.2.6 permanent`]);
    await rejectsCode(f.k.replaceFdb({ ifindex: 99999, mac: MAC_A, dst: '192.0.2.2' }), 'ENODEV');
  });

  withKernel('routes: replace overwrites by dst, carries RTPROT_FLANNEL, delete twice succeeds', async (f) => {
    const vx = await vxlanUp(f);
    await f.k.replaceRoute({ dst: '10.244.2.0/24', gw: '10.244.2.0', oif: vx.index, onlink: true });
    await f.k.replaceRoute({ dst: '10.244.2.0/24', gw: '10.244.2.1', oif: vx.index, onlink: true });
    const rs = await f.k.listRoutes({ oif: vx.index });
    assert.deepEqual(
      rs.map((r) => ({ dst: r.dst, gw: r.gateway, oif: r.oif, onlink: r.onlink, protocol: r.protocol, table: r.table })),
      [{ dst: '10.244.2.0/24', gw: '10.244.2.1', oif: vx.index, onlink: true, protocol: C.RTPROT_FLANNEL, table: C.RT_TABLE_MAIN }],
    );
    await f.k.delRoute({ dst: '10.244.2.0/24', gw: '10.244.2.1', oif: vx.index });
    await f.k.delRoute({ dst: '10.244.2.0/24', gw: '10.244.2.1', oif: vx.index });
    assert.deepEqual(await f.k.listRoutes({ oif: vx.index }), []);
  });

  withKernel('routes: protocol is kept, listed and honoured by deletes (a foreign route survives our delete)', async (f) => {
    const vx = await vxlanUp(f);
    await f.k.replaceRoute({ dst: '10.244.3.0/24', gw: '10.244.3.0', oif: vx.index, onlink: true, protocol: C.RTPROT_BOOT });
    await f.k.applyBatch([{ op: 'replaceRoute', route: { dst: '10.244.4.0/24', gw: '10.244.4.0', oif: vx.index, onlink: true } }]);
    const proto = async (p?: number) => (await f.k.listRoutes({ oif: vx.index, ...(p !== undefined ? { protocol: p } : {}) })).map((r) => `${r.dst} ${r.protocol}`).sort();
    assert.deepEqual(await proto(), ['10.244.3.0/24 3', `10.244.4.0/24 ${C.RTPROT_FLANNEL}`]);
    assert.deepEqual(await proto(C.RTPROT_FLANNEL), [`10.244.4.0/24 ${C.RTPROT_FLANNEL}`]);
    assert.deepEqual(await proto(C.RTPROT_BOOT), ['10.244.3.0/24 3']);
    await f.k.delRoute({ dst: '10.244.3.0/24', gw: '10.244.3.0', oif: vx.index, protocol: C.RTPROT_FLANNEL });
    assert.deepEqual(await proto(C.RTPROT_BOOT), ['10.244.3.0/24 3'], 'a delete limited to our protocol leaves the boot route');
    // replace adopts it: same dst, our mark
    await f.k.replaceRoute({ dst: '10.244.3.0/24', gw: '10.244.3.0', oif: vx.index, onlink: true });
    assert.deepEqual(await proto(), [`10.244.3.0/24 ${C.RTPROT_FLANNEL}`, `10.244.4.0/24 ${C.RTPROT_FLANNEL}`]);
  });

  withKernel('routes: an onlink route through a device that is down is ENETDOWN', async (f) => {
    const vx = await f.k.createVxlan(vxSpec(f));
    await rejectsCode(f.k.replaceRoute({ dst: '10.244.2.0/24', gw: '10.244.2.0', oif: vx.index, onlink: true }), 'ENETDOWN');
    await f.k.setLinkUp(vx.index);
    await f.k.replaceRoute({ dst: '10.244.2.0/24', gw: '10.244.2.0', oif: vx.index, onlink: true });
    assert.equal((await f.k.listRoutes({ oif: vx.index })).length, 1);
  });

  withKernel('routes: the table filter (main by default, one table, all)', async (f) => {
    await f.k.replaceRoute({ dst: '203.0.113.0/24', type: 'blackhole', table: 100 });
    await f.k.replaceRoute({ dst: '203.0.113.0/25', gw: '192.0.2.9', oif: f.underlay.index });
    const dsts = (rs: { dst: string; table: number }[]) => rs.filter((r) => r.dst.startsWith('203.0.113.')).map((r) => `${r.dst} ${r.table}`).sort();
    assert.deepEqual(dsts(await f.k.listRoutes()), ['203.0.113.0/25 254']);
    assert.deepEqual(dsts(await f.k.listRoutes({ table: 100 })), ['203.0.113.0/24 100']);
    assert.deepEqual(dsts(await f.k.listRoutes({ table: 'all' })), ['203.0.113.0/24 100', '203.0.113.0/25 254']);
    assert.deepEqual(await f.k.listRoutes({ table: 4000 }), [], 'a table that does not exist holds no routes');
    assert.deepEqual(await f.k.listRoutes({ oif: 99999 }), [], 'nor does a device that does not exist');
    await f.k.delRoute({ dst: '203.0.113.0/24', table: 100 });
    assert.deepEqual(dsts(await f.k.listRoutes({ table: 'all' })), ['203.0.113.0/25 254']);
  });

  withKernel('listing by ifindex returns only that device (neighbours, FDB, routes)', async (f) => {
    const vx = await vxlanUp(f);
    const vx2 = await f.k.createVxlan({ name: 'flannel.2', vni: 2, local: '192.0.2.1', linkIndex: f.underlay.index, mtu: 1400, mac: MAC_B });
    await f.k.setLinkUp(vx2.index);
    await f.k.applyBatch([
      { op: 'replaceNeigh', neigh: { ifindex: vx.index, ip: '10.244.2.0', mac: MAC_A } },
      { op: 'replaceNeigh', neigh: { ifindex: f.other.index, ip: '198.51.100.7', mac: MAC_B } },
      { op: 'replaceFdb', fdb: { ifindex: vx.index, mac: MAC_A, dst: '192.0.2.2' } },
      { op: 'replaceFdb', fdb: { ifindex: vx2.index, mac: MAC_B, dst: '192.0.2.3' } },
      { op: 'replaceRoute', route: { dst: '10.244.2.0/24', gw: '10.244.2.0', oif: vx.index, onlink: true } },
      { op: 'replaceRoute', route: { dst: '10.99.0.0/24', gw: '198.51.100.7', oif: f.other.index } },
    ]);
    assert.deepEqual((await f.k.listNeighs(vx.index)).map((n) => [n.ifindex, n.ip]), [[vx.index, '10.244.2.0']]);
    assert.deepEqual((await f.k.listNeighs(f.other.index)).filter((n) => n.permanent).map((n) => [n.ifindex, n.ip]), [[f.other.index, '198.51.100.7']]);
    const all = await f.k.listNeighs();
    assert.ok(all.some((n) => n.ifindex === vx.index) && all.some((n) => n.ifindex === f.other.index), 'no index: every device');
    assert.deepEqual(await fdbOf(f, vx.index), [`${MAC_A} 192.0.2.2 permanent`]);
    assert.deepEqual(await fdbOf(f, vx2.index), [`${MAC_B} 192.0.2.3 permanent`]);
    assert.ok((await f.k.listFdb()).some((e) => e.ifindex === vx2.index));
    assert.deepEqual((await f.k.listRoutes({ oif: vx.index })).map((r) => r.dst), ['10.244.2.0/24']);
    assert.deepEqual((await f.k.listRoutes({ oif: f.other.index })).filter((r) => r.gateway).map((r) => r.dst), ['10.99.0.0/24']);
    // deleting a device takes its entries with it
    await f.k.deleteLink(vx2.index);
    assert.deepEqual(await fdbOf(f, vx2.index), []);
  });

  withKernel('batch: per-item failures (missing device ENODEV, host bits EINVAL) do not stop the others', async (f) => {
    const vx = await vxlanUp(f);
    const r: BatchResult = await f.k.applyBatch([
      { op: 'replaceNeigh', neigh: { ifindex: vx.index, ip: '10.244.5.0', mac: MAC_A } },
      { op: 'replaceRoute', route: { dst: '10.244.6.0/24', gw: '10.244.6.0', oif: 99999, onlink: true } },
      { op: 'replaceRoute', route: { dst: '10.244.5.1/24', gw: '10.244.5.0', oif: vx.index, onlink: true } },
      { op: 'replaceFdb', fdb: { ifindex: vx.index, mac: MAC_A, dst: '192.0.2.5' } },
      { op: 'replaceRoute', route: { dst: '10.244.5.0/24', gw: '10.244.5.0', oif: vx.index, onlink: true } },
      { op: 'delNeigh', neigh: { ifindex: vx.index, ip: '10.244.77.0' } },
    ]);
    assert.equal(r.total, 6);
    assert.equal(r.succeeded, 4);
    assert.deepEqual(
      r.failures.map((x) => [x.index, x.error.code]),
      [
        [1, 'ENODEV'],
        [2, 'EINVAL'],
      ],
    );
    assert.deepEqual((await f.k.listNeighs(vx.index)).map((n) => n.ip), ['10.244.5.0']);
    assert.deepEqual(await fdbOf(f, vx.index), [`${MAC_A} 192.0.2.5 permanent`]);
    assert.deepEqual((await f.k.listRoutes({ oif: vx.index })).map((x) => x.dst), ['10.244.5.0/24']);
  });

  withKernel('batch: re-applying adds and deleting absent entries are all successes', async (f) => {
    const vx = await vxlanUp(f);
    const adds = [
      { op: 'replaceNeigh', neigh: { ifindex: vx.index, ip: '10.244.2.0', mac: MAC_A } },
      { op: 'replaceFdb', fdb: { ifindex: vx.index, mac: MAC_A, dst: '192.0.2.2' } },
      { op: 'replaceRoute', route: { dst: '10.244.2.0/24', gw: '10.244.2.0', oif: vx.index, onlink: true } },
    ] as const;
    const dels = [
      { op: 'delRoute', route: { dst: '10.244.2.0/24', gw: '10.244.2.0', oif: vx.index } },
      { op: 'delFdb', fdb: { ifindex: vx.index, mac: MAC_A, dst: '192.0.2.2' } },
      { op: 'delNeigh', neigh: { ifindex: vx.index, ip: '10.244.2.0' } },
    ] as const;
    for (const ops of [adds, adds, dels, dels]) {
      const r = await f.k.applyBatch([...ops]);
      assert.deepEqual(r.failures, []);
      assert.equal(r.succeeded, 3);
    }
    assert.deepEqual(await f.k.listNeighs(vx.index), []);
    assert.deepEqual(await fdbOf(f, vx.index), []);
    assert.deepEqual(await f.k.listRoutes({ oif: vx.index }), []);
  });
}
