import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIPv4Net, parseIPv4, parseIPv4Net } from '../lease/ip.js';
import { leaseId, type LeaseAttrs } from '../lease/lease.js';
import { MemoryLogger } from '../testing/memory-logger.js';
import { MemoryStore } from '../testing/memory-store.js';
import { freeSubnets } from './allocator.js';
import { parseNetworkConfig } from './config.js';
import { SubnetError, SubnetManager } from './manager.js';

const CFG = '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}';
const attrs = (ip: string): LeaseAttrs => ({ publicIP: parseIPv4(ip), publicIPv6: null, backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '02:00:00:00:00:01' } });

function setup(config = CFG) {
  const store = new MemoryStore(config);
  const log = new MemoryLogger();
  const m = new SubnetManager(store, { log });
  return { store, log, m, cfg: parseNetworkConfig(config) };
}

test('allocator: walks Min..Max, skips taken, caps at 100 candidates', () => {
  const cfg = parseNetworkConfig(CFG);
  const free = freeSubnets(cfg, [parseIPv4Net('10.244.1.0/24'), parseIPv4Net('10.244.0.0/20')]);
  assert.equal(free.length, 100);
  assert.equal(formatIPv4Net(free[0]!), '10.244.16.0/24');
  const small = parseNetworkConfig('{"Network":"10.0.0.0/26"}');
  assert.deepEqual(freeSubnets(small, []).map(formatIPv4Net), ['10.0.0.16/28', '10.0.0.32/28', '10.0.0.48/28']);
});

test('acquire allocates inside [SubnetMin, SubnetMax] and writes flannel JSON with a 24h TTL', async () => {
  const { store, m, cfg } = setup();
  const l = await m.acquireLease(cfg, { attrs: attrs('192.0.2.1') });
  assert.equal(l.how, 'allocated');
  assert.equal(l.subnet.prefix, 24);
  assert.ok(l.subnet.ip >= cfg.subnetMin && l.subnet.ip <= cfg.subnetMax);
  const e = await store.getSubnet(leaseId(l));
  assert.equal(e!.value, '{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:01"}}');
  assert.ok(e!.ttlSeconds! > 86390 && e!.ttlSeconds! <= 86400);
  await store.close();
});

test('acquire reuses the lease carrying our public IP, with the new attributes', async () => {
  const { store, m, cfg } = setup();
  await store.putSubnet('10.244.7.0-24', '{"PublicIP":"192.0.2.9","PublicIPv6":null}', 100);
  const l = await m.acquireLease(cfg, { attrs: attrs('192.0.2.9') });
  assert.equal(l.how, 'reused-by-public-ip');
  assert.equal(leaseId(l), '10.244.7.0-24');
  assert.match((await store.getSubnet('10.244.7.0-24'))!.value, /"BackendType":"vxlan"/);
  assert.ok((await store.getSubnet('10.244.7.0-24'))!.ttlSeconds! > 86000, 'TTL refreshed to 24h');
  await store.close();
});

test('a reservation (no TTL) stays permanent when reused (documented behaviour, spec §3.7 ⚠)', async () => {
  const { store, m, cfg } = setup();
  await store.putSubnet('10.244.9.0-24', '{"PublicIP":"192.0.2.5","PublicIPv6":null}', null);
  const l = await m.acquireLease(cfg, { attrs: attrs('192.0.2.5') });
  assert.equal(leaseId(l), '10.244.9.0-24');
  assert.equal(l.expiration, null);
  assert.equal((await store.getSubnet('10.244.9.0-24'))!.permanent, true);
  await store.close();
});

test('an incompatible lease for our IP is deleted and a new one allocated', async () => {
  const { store, m, cfg } = setup('{"Network":"10.244.0.0/16","SubnetMin":"10.244.10.0","Backend":{"Type":"alloc"}}');
  await store.putSubnet('10.244.3.0-24', '{"PublicIP":"192.0.2.5","PublicIPv6":null}', 100);
  const l = await m.acquireLease(cfg, { attrs: attrs('192.0.2.5') });
  assert.equal(l.how, 'allocated');
  assert.equal(await store.getSubnet('10.244.3.0-24'), null);
  await store.close();
});

test('acquire prefers the previous subnet from subnet.env when free, ignores it when taken', async () => {
  const { store, m, cfg } = setup();
  const prev = { subnet: parseIPv4Net('10.244.42.0/24'), subnet6: null };
  const l = await m.acquireLease(cfg, { attrs: attrs('192.0.2.1'), previous: prev });
  assert.equal(l.how, 'reused-previous');
  assert.equal(leaseId(l), '10.244.42.0-24');
  const other = await m.acquireLease(cfg, { attrs: attrs('192.0.2.2'), previous: prev });
  assert.equal(other.how, 'allocated');
  assert.notEqual(leaseId(other), '10.244.42.0-24');
  await store.close();
});

test('a lost creation race is retried, not fatal', async () => {
  const { store, m, cfg } = setup();
  store.injectCreateConflicts = 3;
  const l = await m.acquireLease(cfg, { attrs: attrs('192.0.2.1') });
  assert.equal(l.how, 'allocated');
  assert.equal(store.injectCreateConflicts, 0);
  await store.close();
});

test('out of subnets is a clear error', async () => {
  const { store, m, cfg } = setup('{"Network":"10.0.0.0/26","Backend":{"Type":"alloc"}}');
  for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) await m.acquireLease(cfg, { attrs: attrs(ip) });
  await assert.rejects(
    m.acquireLease(cfg, { attrs: attrs('192.0.2.4') }),
    (e: unknown) => e instanceof SubnetError && /^out of subnets in Network 10\.0\.0\.0\/26: no free \/28 between SubnetMin 10\.0\.0\.16 and SubnetMax 10\.0\.0\.48 \(3 leases\)$/.test(e.message),
  );
  await store.close();
});

test('garbage under subnets/ is skipped with a warning naming the key', async () => {
  const { store, m, cfg, log } = setup();
  await store.putSubnet('not-a-key', 'whatever', 100);
  await store.putSubnet('10.244.5.0-24', '{{{', 100);
  const l = await m.acquireLease(cfg, { attrs: attrs('192.0.2.1') });
  assert.ok(l);
  assert.ok(log.lines.some((x) => x.level === 'warn' && x.msg.includes('not-a-key')));
  assert.ok(log.lines.some((x) => x.level === 'warn' && x.msg.includes('10.244.5.0-24') && x.msg.includes('not valid JSON')));
  await store.close();
});

test('an undecodable lease still occupies its subnet: the last free subnet being garbage is "out of subnets", warned once, not 100 lost races', async () => {
  // 10.0.0.0/26 with SubnetLen 28 has three subnets: .16, .32, .48
  const { store, m, cfg, log } = setup('{"Network":"10.0.0.0/26","Backend":{"Type":"alloc"}}');
  await store.putSubnet('10.0.0.16-28', '{not json', null);
  await store.putSubnet('10.0.0.32-28', '{"PublicIP":"192.0.2.2","PublicIPv6":null}', 100);
  const l = await m.acquireLease(cfg, { attrs: attrs('192.0.2.1') });
  assert.equal(leaseId(l), '10.0.0.48-28', 'the only really free subnet');
  assert.equal((await store.getSubnet('10.0.0.16-28'))!.value, '{not json', 'somebody else\'s garbage is left alone');
  await assert.rejects(m.acquireLease(cfg, { attrs: attrs('192.0.2.3') }), (e: unknown) => e instanceof SubnetError && /out of subnets/.test(e.message));
  const skips = log.lines.filter((x) => /skipping lease/.test(x.msg));
  assert.equal(skips.length, 2, 'once per acquisition');
  assert.match(skips[0]!.msg, /10\.0\.0\.16-28.*not valid JSON.*; its subnet stays taken$/);
  await store.close();
});

test('our own previous subnet (subnet.env) holding garbage is reclaimed, with one line', async () => {
  const { store, m, cfg, log } = setup();
  await store.putSubnet('10.244.42.0-24', '{not json', null);
  const l = await m.acquireLease(cfg, { attrs: attrs('192.0.2.1'), previous: { subnet: parseIPv4Net('10.244.42.0/24'), subnet6: null } });
  assert.equal(l.how, 'reused-previous');
  assert.equal(leaseId(l), '10.244.42.0-24');
  const e = (await store.getSubnet('10.244.42.0-24'))!;
  assert.equal(e.value, '{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:01"}}');
  assert.ok(e.ttlSeconds! > 86000, 'a normal 24 h lease again');
  const warns = log.lines.filter((x) => x.level === 'warn').map((x) => x.msg);
  assert.equal(warns.length, 1, JSON.stringify(warns));
  assert.match(warns[0]!, /^lease \/memory\/subnets\/10\.244\.42\.0-24 held data that does not decode \(lease value is not valid JSON.*\); it is our previous subnet \(from subnet\.env\), so it was reclaimed$/);
  // Without subnet.env pointing at it, the garbage is somebody's: another subnet is taken.
  const other = setup();
  await other.store.putSubnet('10.244.42.0-24', '{not json', null);
  const l2 = await other.m.acquireLease(other.cfg, { attrs: attrs('192.0.2.1'), previous: { subnet: parseIPv4Net('10.244.43.0/24'), subnet6: null } });
  assert.equal(leaseId(l2), '10.244.43.0-24');
  assert.equal((await other.store.getSubnet('10.244.42.0-24'))!.value, '{not json');
  await store.close();
  await other.store.close();
});

test('renewLease re-writes the same value with a fresh TTL', async () => {
  const { store, m, cfg } = setup();
  const l = await m.acquireLease(cfg, { attrs: attrs('192.0.2.1') });
  await store.putSubnet(leaseId(l), (await store.getSubnet(leaseId(l)))!.value, 5);
  const r = await m.renewLease(l);
  assert.ok(r.expiration!.getTime() > Date.now() + 86_000_000);
  assert.ok((await store.getSubnet(leaseId(l)))!.ttlSeconds! > 86000);
  await store.close();
});
