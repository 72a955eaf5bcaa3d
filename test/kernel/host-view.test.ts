// Privileged: interface discovery and sysctls through the kernel port answer
// for the network namespace the process runs in, not the root namespace.
//
// Isolation: a fresh namespace `ftshv-<pid>-<hex>` with dummy links, IPv4
// and IPv6 addresses and two default routes. The probe (host-view-probe.ts)
// runs inside it with `ip netns exec`; the test itself only runs `ip -n` and
// reads the root namespace (never changes it). The namespace is deleted in
// `after`, which runs even when setup or a test fails.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { privilegedSkip } from '../../src/testing/privileged.js';
import { RtNetlink } from '../../src/kernel/rtnetlink.js';
import { kernelHostView, type HostInterface } from '../../src/daemon/iface.js';
import { reapStaleNamespaces, sh, shOk } from '../helpers/netns-sync.js';

const NS_TAG = 'ftshv-';
const PREFIX = `${NS_TAG}${process.pid}-`;
const skip = privilegedSkip('creates a network namespace', ['ip']);

interface ProbeOut {
  interfaces: HostInterface[];
  defaultRoute: string | null;
  selected: { name: string; index: number; mtu: number; ifaceAddr: string };
  sysctl: { before: string | null; after: string | null; absent: string | null; missing: string };
}

describe('host view and sysctls through the kernel port, inside a network namespace', { skip }, () => {
  const ns = PREFIX + randomBytes(3).toString('hex');
  const ipn = (...a: string[]) => sh('ip', ['-n', ns, ...a]);
  const nsexec = (...a: string[]) => sh('ip', ['netns', 'exec', ns, ...a]);
  const probe = fileURLToPath(new URL('./host-view-probe.js', import.meta.url));
  const link = (name: string) => {
    if (!shOk('ip', ['-n', ns, 'link', 'add', name, 'type', 'dummy'])) ipn('link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`);
  };

  before(() => {
    reapStaleNamespaces(NS_TAG);
    sh('ip', ['netns', 'add', ns]);
    // IPv6 on, whatever the host's defaults (some containers disable it).
    nsexec('sh', '-c', 'for f in all default; do echo 0 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done');
    ipn('link', 'set', 'lo', 'up');
    link('hv0');
    link('hv1');
    link('hv2');
    ipn('link', 'set', 'hv0', 'mtu', '1400');
    ipn('link', 'set', 'hv1', 'mtu', '9000');
    ipn('addr', 'add', '198.51.100.10/24', 'dev', 'hv0');
    ipn('addr', 'add', '2001:db8:1::10/64', 'dev', 'hv0', 'nodad');
    // A link-local address of our own (the kernel's automatic one needs a carrier, which a veth without a live peer lacks).
    ipn('addr', 'add', 'fe80::10/64', 'dev', 'hv0', 'nodad');
    ipn('addr', 'add', '203.0.113.5/24', 'dev', 'hv1');
    ipn('addr', 'add', '192.0.2.9/24', 'dev', 'hv2');
    for (const d of ['hv0', 'hv1']) ipn('link', 'set', d, 'up'); // hv2 stays down
    for (const d of ['hv0p', 'hv1p']) shOk('ip', ['-n', ns, 'link', 'set', d, 'up']); // veth fallback: carrier
    ipn('route', 'add', 'default', 'via', '203.0.113.1', 'dev', 'hv1', 'metric', '100');
    ipn('route', 'add', 'default', 'via', '198.51.100.1', 'dev', 'hv0', 'metric', '50');
    ipn('route', 'add', 'default', 'dev', 'hv1', 'table', '100');
  });

  after(() => {
    shOk('ip', ['netns', 'del', ns]);
    assert.ok(!sh('ip', ['netns', 'list']).includes(ns), `namespace ${ns} must be gone`);
  });

  for (const mode of ['inline', 'worker', 'async'] as const) {
    test(`the namespace's links, addresses and default route, not the root's (${mode} socket)`, () => {
      // hv0 has a link-local fe80:: address; it must be seen by iproute2 and left out by the view.
      assert.match(ipn('-6', 'addr', 'show', 'dev', 'hv0'), /inet6 fe80::10\/64 scope link/);
      const out = JSON.parse(nsexec(process.execPath, probe, ...(mode === 'inline' ? [] : [`--${mode}`]))) as ProbeOut;
      const names = out.interfaces.map((i) => i.name).sort();
      const expected = ['hv0', 'hv1', 'hv2', 'lo', ...(names.includes('hv0p') ? ['hv0p', 'hv1p', 'hv2p'] : [])].sort();
      assert.deepEqual(names, expected, 'exactly the namespace\'s links');
      const by = (n: string) => out.interfaces.find((i) => i.name === n)!;
      const idx = (n: string) => Number(/^(\d+):/.exec(ipn('-o', 'link', 'show', 'dev', n))![1]);
      assert.deepEqual(by('hv0'), { name: 'hv0', index: idx('hv0'), mtu: 1400, up: true, ipv4: ['198.51.100.10'], ipv6: ['2001:db8:1::10'] });
      assert.equal(by('hv1').mtu, 9000);
      assert.ok(by('hv1').ipv6.every((a) => !a.startsWith('fe80')), 'no link-local addresses');
      assert.equal(by('hv2').up, false);
      assert.deepEqual(by('lo').ipv4, ['127.0.0.1']);
      assert.equal(out.defaultRoute, 'hv0', 'lowest metric in the main table');
      assert.deepEqual(out.selected, { name: 'hv0', index: idx('hv0'), mtu: 1400, ifaceAddr: '198.51.100.10' });
    });
  }

  test('sysctls are the namespace\'s: written there, the root namespace keeps its own', () => {
    const rootForward = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
    const want = rootForward === '1' ? '0' : '1';
    const out = JSON.parse(nsexec(process.execPath, probe, `--forward=${want}`)) as ProbeOut;
    assert.equal(out.sysctl.after, '2');
    assert.equal(nsexec('cat', '/proc/sys/net/ipv4/conf/hv1/rp_filter').trim(), '2');
    assert.equal(out.sysctl.absent, null, 'absent sysctl reads as null');
    assert.equal(out.sysctl.missing, 'ENOENT', 'absent sysctl cannot be written');
    assert.equal(nsexec('cat', '/proc/sys/net/ipv4/ip_forward').trim(), want);
    assert.equal(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), rootForward, 'root namespace untouched');
  });

  test('from the root namespace the same view does not see the namespace\'s links (read only)', async () => {
    const k = RtNetlink.open();
    try {
      const ifs = await kernelHostView(k).interfaces();
      assert.ok(ifs.length > 0);
      // Names may coincide (lo); the namespace's addresses must not appear.
      assert.ok(!ifs.some((i) => i.ipv4.includes('198.51.100.10') || i.ipv4.includes('203.0.113.5') || i.ipv6.includes('2001:db8:1::10')), 'the namespace\'s addresses are not the root\'s');
    } finally {
      k.close();
    }
  });
});
