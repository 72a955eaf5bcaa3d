import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parseIPv4, parseIPv4Net } from '../../lease/ip.js';
import { encodeLeaseAttrs, type Lease } from '../../lease/lease.js';
import { MemoryLogger } from '../../testing/memory-logger.js';
import { ConfigError, parseNetworkConfig } from '../../subnet/config.js';
import type { HostPort, KernelNet } from '../../kernel/types.js';
import { FakeKernel } from '../../testing/fake-kernel.js';
import { BackendError } from '../backend.js';
import { parseUdpOptions } from './options.js';
import { desiredRoutes, UdpBackend } from './udp.js';

function lease(subnet: string, publicIP: string): Lease {
  return { subnet: parseIPv4Net(subnet), subnet6: null, attrs: { publicIP: parseIPv4(publicIP), publicIPv6: null, backendType: '' }, expiration: null };
}

/** Nothing in these tests may touch the kernel. */
const noKernel = new Proxy({} as KernelNet & HostPort, {
  get(_t, prop) {
    return () => Promise.reject(new Error(`unexpected kernel call ${String(prop)}`));
  },
});

function backend(backendJson = '{"Type":"udp"}', mtu = 1500): { b: UdpBackend; log: MemoryLogger } {
  const log = new MemoryLogger();
  const config = parseNetworkConfig(`{"Network":"10.244.0.0/16","Backend":${backendJson}}`);
  const b = new UdpBackend(
    { config, log, extIface: { name: 'eth0', index: 2, mtu, ifaceAddr: parseIPv4('192.0.2.1'), publicIP: parseIPv4('198.51.100.1') } },
    { kernel: noKernel },
  );
  return { b, log };
}

describe('options', () => {
  test('Port defaults to 8285 and is matched case-insensitively', () => {
    assert.equal(parseUdpOptions({ Type: 'udp' }).port, 8285);
    assert.equal(parseUdpOptions({ Type: 'udp', Port: 7890 }).port, 7890);
    assert.equal(parseUdpOptions({ type: 'udp', port: 7891 }).port, 7891);
    assert.equal(parseUdpOptions({ PORT: null }).port, 8285);
  });

  test('bad ports are ConfigErrors naming Backend.Port', () => {
    for (const bad of [0, -1, 65536, 8285.5, '8285', true, {}]) {
      assert.throws(() => parseUdpOptions({ Port: bad }), (e: unknown) => e instanceof ConfigError && /^Backend\.Port: /.test(e.message), String(bad));
    }
    assert.throws(() => backend('{"Type":"udp","Port":"x"}'), ConfigError);
  });
});

describe('UdpBackend without a kernel', () => {
  test('publishes only PublicIP, like flannel', async () => {
    const { b } = backend();
    const attrs = await b.prepare();
    assert.deepEqual(attrs, { backendType: '' });
    const json = encodeLeaseAttrs({ publicIP: parseIPv4('198.51.100.1'), publicIPv6: null, backendType: attrs.backendType });
    assert.equal(json, '{"PublicIP":"198.51.100.1","PublicIPv6":null}');
    assert.equal(b.type, 'udp');
  });

  test('MTU is the external MTU minus 28', () => {
    assert.equal(backend().b.mtu, 1472);
    assert.equal(backend('{"Type":"udp"}', 9001).b.mtu, 8973);
    assert.throws(() => backend('{"Type":"udp"}', 90), BackendError);
  });

  test('reconcile before activate stores the table and reports nothing; stats start at zero', async () => {
    const { b, log } = backend();
    assert.deepEqual(await b.reconcile([lease('10.244.2.0/24', '192.0.2.2')], []), []);
    assert.deepEqual(await b.reconcile([lease('10.244.2.0/24', '192.0.2.2')], []), []);
    const s = b.stats();
    assert.equal(s.routes, 1);
    assert.equal(s.tunToUdp.packets, 0);
    assert.equal(s.udpToTun.drops.short, 0);
    assert.equal(s.tunToUdp.drops.noRoute, 0);
    assert.equal(log.lines.filter((l) => /route 10\.244\.2\.0\/24 -> 192\.0\.2\.2:8285 added/.test(l.msg)).length, 1, 'logged once');
    await b.close();
  });
});

describe('UdpBackend on the fake kernel (TUN and sysctls through the port)', () => {
  // The fake's TUN has no real fd, so activation ends at the UDP socket: its
  // bind to an address this host does not have (TEST-NET-3) fails. Everything
  // before it went through the port; the TUN handle is closed on the way out.
  const ext = { name: 'eth0', index: 2, mtu: 1500, ifaceAddr: parseIPv4('203.0.113.254'), publicIP: parseIPv4('203.0.113.254') };
  const own = lease('10.244.1.0/24', '203.0.113.254');
  function onFake(k: FakeKernel): { b: UdpBackend; log: MemoryLogger } {
    const log = new MemoryLogger();
    const config = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}');
    return { b: new UdpBackend({ config, log, extIface: ext }, { kernel: k }), log };
  }

  /** Records the port calls that change the host, in order. */
  function record(k: FakeKernel): string[] {
    const calls: string[] = [];
    const obj = k as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
    for (const m of ['openTun', 'setSysctl', 'setMtu', 'addAddr', 'delAddr', 'setLinkUp', 'replaceRoute']) {
      const orig = obj[m]!.bind(k);
      obj[m] = (...a: unknown[]) => {
        calls.push(`${m} ${JSON.stringify(a)}`);
        return orig(...a);
      };
    }
    return calls;
  }

  test('the TUN comes from openTun, its sysctls from setSysctl, then MTU, address, up and route on it', async () => {
    const k = new FakeKernel();
    const calls = record(k);
    const { b } = onFake(k);
    await assert.rejects(b.activate(own), (e: unknown) => e instanceof BackendError && /bind UDP 203\.0\.113\.254:8285/.test((e as Error).message));
    assert.deepEqual(
      k.tuns.map((t) => [t.spec.name, t.spec.offload, t.name, t.closed]),
      [['flannel%d', true, 'flannel0', true]],
      'opened from the template, closed after the failure',
    );
    assert.deepEqual(k.sysctlWrites, [
      { key: 'net/ipv4/conf/flannel0/accept_local', value: '1' },
      { key: 'net/ipv6/conf/flannel0/disable_ipv6', value: '1' },
    ]);
    const idx = 10; // the fake kernel's first link index
    assert.deepEqual(calls, [
      'openTun [{"name":"flannel%d","offload":true}]',
      'setSysctl ["net/ipv4/conf/flannel0/accept_local","1"]',
      'setSysctl ["net/ipv6/conf/flannel0/disable_ipv6","1"]',
      `setMtu [${idx},1472]`,
      `addAddr [${idx},"10.244.1.0/32"]`,
      `setLinkUp [${idx}]`,
      `replaceRoute [{"dst":"10.244.0.0/16","oif":${idx}}]`,
    ]);
    assert.equal(await k.getLinkByName('flannel0'), undefined, 'a non-persistent TUN goes with its fd');
    await b.close();
  });

  test('a flannel0 TUN held by another process is refused; a non-TUN flannel0 is left alone', async () => {
    const k = new FakeKernel();
    const held = await k.openTun({ name: 'flannel0', offload: false });
    const { b } = onFake(k);
    await assert.rejects(b.activate(own), /flannel0 exists and is in use by another process/);
    held.close();

    const k2 = new FakeKernel();
    k2.addLink({ name: 'flannel0', kind: 'dummy' });
    const { b: b2, log } = onFake(k2);
    await assert.rejects(b2.activate(own), /bind UDP/);
    assert.equal(k2.tuns[0]!.name, 'flannel1');
    assert.ok(log.lines.some((l) => /flannel0 exists and is not a TUN device \(dummy\); leaving it alone/.test(l.msg)));
    await b.close();
    await b2.close();
  });

  test('a TUN that cannot be created (no /dev/net/tun, EPERM) is one BackendError', async () => {
    const k = new FakeKernel();
    k.failTun = () => 1;
    const { b } = onFake(k);
    await assert.rejects(b.activate(own), (e: unknown) => e instanceof BackendError && /cannot create the TUN device: TUNSETIFF flannel%d/.test((e as Error).message));
    assert.deepEqual(k.sysctlWrites, []);
    await b.close();
  });
});

describe('desiredRoutes', () => {
  const net = parseIPv4Net('10.244.0.0/16');

  test('subnet -> public IP, sorted, with unusable leases skipped and explained', () => {
    const { entries, skipped } = desiredRoutes(
      [
        lease('10.244.3.0/24', '192.0.2.3'),
        lease('10.244.2.0/24', '192.0.2.2'),
        lease('10.244.4.0/24', '127.0.0.1'),
        lease('10.244.5.0/24', '0.0.0.0'),
        lease('10.244.6.0/24', '239.1.1.1'),
        lease('10.99.0.0/24', '192.0.2.9'),
        lease('10.244.1.0/24', '192.0.2.1'),
      ],
      net,
      parseIPv4Net('10.244.1.0/24'),
    );
    assert.deepEqual(
      entries.map((e) => [e.net, e.prefix, e.peer]),
      [
        [parseIPv4('10.244.2.0'), 24, parseIPv4('192.0.2.2')],
        [parseIPv4('10.244.3.0'), 24, parseIPv4('192.0.2.3')],
      ],
    );
    assert.deepEqual(skipped.map((s) => s.id), ['10.244.4.0-24', '10.244.5.0-24', '10.244.6.0-24', '10.99.0.0-24', '10.244.1.0-24']);
    assert.match(skipped[0]!.reason, /loopback/);
  });

  test('leases of other backend types are not filtered (flannel does not)', () => {
    const vx: Lease = { ...lease('10.244.7.0/24', '192.0.2.7'), attrs: { publicIP: parseIPv4('192.0.2.7'), publicIPv6: null, backendType: 'vxlan', backendData: { VNI: 1 } } };
    assert.equal(desiredRoutes([vx], net, null).entries.length, 1);
  });
});
