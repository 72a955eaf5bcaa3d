// Property-based fuzzing (issue 9) of Kubernetes-mode lease data: other
// nodes' annotations and podCIDRs (nodeToLease), our own node's annotations
// read back at start (storedVtepMac, storedPublicIPs, the annotation patch)
// and --kube-annotation-prefix. A bad node must be skipped with a reason, a
// good one must yield a lease that is valid and re-encodable; nothing throws.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FuzzTally, fc, fieldValueText, mutateText, deepJson, deepJsonText, describeThrown, NASTY_STRINGS } from '../../testing/fuzz.js';
import { ipv4NetAligned, ipv4NetContains, ipv6NetAligned, ipv6NetContains, parseIPv4Net, parseIPv6Net, unusablePublicIPv4, unusablePublicIPv6 } from '../../lease/ip.js';
import { encodeLeaseAttrs, sameAttrs } from '../../lease/lease.js';
import { desiredEntries } from '../../backend/vxlan/desired.js';
import { AnnotationPrefixError, annotationNames } from './annotations.js';
import { annotationPatch, desiredAnnotations, nodeToLease, storedPublicIPs, storedVtepMac, type KubeLeaseNetwork, type NodeView } from './node-lease.js';

const tally = new FuzzTally();
const A = annotationNames('flannel.alpha.coreos.com');

const NETS: KubeLeaseNetwork[] = [
  { enableIPv4: true, enableIPv6: false, network: parseIPv4Net('10.244.0.0/16'), ipv6Network: null },
  { enableIPv4: true, enableIPv6: true, network: parseIPv4Net('10.244.0.0/16'), ipv6Network: parseIPv6Net('fd00:10:244::/56') },
  { enableIPv4: true, enableIPv6: true, network: null, ipv6Network: null },
  { enableIPv4: false, enableIPv6: true, network: null, ipv6Network: parseIPv6Net('fd00::/48') },
];

const cidr = fc.oneof(
  fc.constantFrom('10.244.2.0/24', '10.244.2.7/24', '10.245.0.0/24', '10.0.0.0/8', '10.244.0.0/16', 'fd00:10:244:1::/64', 'fd00:10:244:1::5/64', 'fd01::/64', '::/0', '0.0.0.0/0'),
  fc.tuple(fc.ipV4(), fc.nat(40)).map(([ip, p]) => `${ip}/${p}`),
  fc.tuple(fc.ipV6(), fc.nat(140)).map(([ip, p]) => `${ip}/${p}`),
  fc.constantFrom(...NASTY_STRINGS),
  fc.string({ maxLength: 20 }),
);

const backendDataText = fc.oneof(
  fc.constantFrom('{"VNI":1,"VtepMAC":"02:00:00:00:00:aa"}', 'null', '', '{}', '{"vtepmac":"0A-00-00-00-00-01"}', '{"VtepMAC":"ff:ff:ff:ff:ff:ff"}'),
  mutateText(fc.constant('{"VNI":1,"VtepMAC":"02:00:00:00:00:aa"}')),
  fieldValueText,
  deepJson,
);

const ipText = fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom(...NASTY_STRINGS), fc.string({ maxLength: 16 }));

const annotations: fc.Arbitrary<Record<string, string>> = fc
  .record(
    {
      managed: fc.oneof(fc.constant('true'), fc.constantFrom('false', 'True', '', ' true')),
      type: fc.oneof(fc.constant('vxlan'), fc.string({ maxLength: 8 })),
      data: backendDataText,
      data6: backendDataText,
      ip: ipText,
      ip6: ipText,
      ow: ipText,
      ow6: ipText,
      nip: ipText,
      extra: fc.dictionary(fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom('__proto__', 'constructor')), fc.string({ maxLength: 10 }), { maxKeys: 3 }),
    },
    { requiredKeys: ['managed'] },
  )
  .map((r) => {
    const a: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const [k, v] of Object.entries(r.extra ?? {})) a[k] = v;
    a[A.subnetKubeManaged] = r.managed;
    if (r.type !== undefined) a[A.backendType] = r.type;
    if (r.data !== undefined) a[A.backendData] = r.data;
    if (r.data6 !== undefined) a[A.backendV6Data] = r.data6;
    if (r.ip !== undefined) a[A.backendPublicIP] = r.ip;
    if (r.ip6 !== undefined) a[A.backendPublicIPv6] = r.ip6;
    if (r.ow !== undefined) a[A.backendPublicIPOverwrite] = r.ow;
    if (r.ow6 !== undefined) a[A.backendPublicIPv6Overwrite] = r.ow6;
    if (r.nip !== undefined) a[A.nodePublicIP] = r.nip;
    return { ...a };
  });

const node: fc.Arbitrary<NodeView> = fc
  .record({ name: fc.string({ maxLength: 10 }), annotations, podCIDR: fc.option(cidr, { nil: undefined }), podCIDRs: fc.option(fc.array(cidr, { maxLength: 3 }), { nil: undefined }) })
  .map((n) => {
    const v: { -readonly [K in keyof NodeView]: NodeView[K] } = { name: n.name, annotations: n.annotations };
    if (n.podCIDR !== undefined) v.podCIDR = n.podCIDR;
    if (n.podCIDRs !== undefined) v.podCIDRs = n.podCIDRs;
    return v;
  });

test('nodeToLease: random nodes become valid, re-encodable leases or are skipped with a reason', (t) => {
  tally.check(
    t,
    'nodeToLease',
    0x6b8e,
    5000,
    fc.property(node, fc.constantFrom(...NETS), (n, net) => {
      let r: ReturnType<typeof nodeToLease>;
      try {
        r = nodeToLease(n, A, net);
      } catch (e) {
        assert.fail(`nodeToLease threw ${describeThrown(e)}`);
      }
      if (r.kind === 'unmanaged') return;
      if (r.kind === 'invalid') {
        assert.match(r.reason, /annotation |podCIDR|IPv6-only/, `reason names the field: ${r.reason}`);
        assert.ok(r.reason.length < 2000);
        return;
      }
      const l = r.lease;
      assert.ok(ipv4NetAligned(l.subnet));
      if (net.network) assert.ok(ipv4NetContains(net.network, l.subnet.ip) && l.subnet.prefix >= net.network.prefix);
      assert.equal(unusablePublicIPv4(l.attrs.publicIP), null);
      if (l.subnet6) {
        assert.ok(ipv6NetAligned(l.subnet6));
        if (net.ipv6Network) assert.ok(ipv6NetContains(net.ipv6Network, l.subnet6.ip));
        assert.ok(l.attrs.publicIPv6 !== null && unusablePublicIPv6(l.attrs.publicIPv6) === null);
      }
      // The lease travels on: compared, re-encoded, turned into kernel entries.
      assert.ok(sameAttrs(l.attrs, l.attrs));
      encodeLeaseAttrs(l.attrs);
      desiredEntries([l], null);
    }),
  );
});

test('own node annotations: stored MAC/IPs and the annotation patch never throw', (t) => {
  tally.check(
    t,
    'own annotations',
    0x0a11,
    3000,
    fc.property(annotations, (cur) => {
      const mac = storedVtepMac(cur, A.backendData);
      assert.ok(mac === null || typeof mac === 'string');
      const ips = storedPublicIPs(A, cur);
      assert.ok(ips.v4 === null || typeof ips.v4 === 'string');
      const want = desiredAnnotations(A, { publicIP: 0x0a000001, publicIPv6: 1n << 100n, backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '02:00:00:00:00:01' }, backendV6Data: { VNI: 1 } }, cur);
      const patch = annotationPatch(want, cur);
      if (patch) for (const v of Object.values(patch)) assert.equal(typeof v, 'string');
    }),
  );
});

test('--kube-annotation-prefix: any string gives annotation names or AnnotationPrefixError', (t) => {
  const prefix = fc.oneof(
    fc.string({ maxLength: 30 }),
    mutateText(fc.constantFrom('flannel.alpha.coreos.com', 'flannel.alpha.coreos.com/prefix', 'example.com/x-')),
    fc.domain(),
    fc.tuple(fc.domain(), fc.string({ maxLength: 8 })).map(([d, p]) => `${d}/${p}`),
  );
  tally.check(
    t,
    'annotationNames',
    0x9f1,
    3000,
    fc.property(prefix, (p) => {
      try {
        const names = annotationNames(p);
        for (const v of Object.values(names)) assert.match(v, /^[a-z0-9.-]+\/[a-z0-9_-]*$/, v);
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        assert.ok(e instanceof AnnotationPrefixError, describeThrown(e));
        assert.match(e.message, /^--kube-annotation-prefix: /);
      }
    }),
  );
});

test('regression: deeply nested backend-data is refused, not passed on to blow up JSON.stringify', () => {
  for (const kind of ['array', 'object'] as const) {
    const n: NodeView = {
      name: 'deep',
      podCIDR: '10.244.2.0/24',
      annotations: { [A.subnetKubeManaged]: 'true', [A.backendType]: 'vxlan', [A.backendPublicIP]: '192.0.2.2', [A.backendData]: deepJsonText(12_000, kind) },
    };
    const r = nodeToLease(n, A, NETS[0]!);
    assert.equal(r.kind, 'invalid');
    assert.match(r.kind === 'invalid' ? r.reason : '', /backend-data.*nested more than/);
    const n6: NodeView = {
      ...n,
      podCIDRs: ['10.244.2.0/24', 'fd00:10:244:1::/64'],
      annotations: { ...n.annotations, [A.backendData]: '{"VNI":1,"VtepMAC":"02:00:00:00:00:aa"}', [A.backendPublicIPv6]: 'fd00::1', [A.backendV6Data]: deepJsonText(12_000, kind) },
    };
    const r6 = nodeToLease(n6, A, NETS[1]!);
    assert.match(r6.kind === 'invalid' ? r6.reason : '', /backend-v6-data.*nested more than/);
  }
});

test('regression: a huge podCIDR or public-ip is quoted in the skip reason cut short, not whole', () => {
  const huge = 'x'.repeat(5000);
  for (const n of [
    { name: 'a', podCIDRs: [huge], annotations: { [A.subnetKubeManaged]: 'true' } },
    { name: 'b', podCIDRs: ['10.244.1.0/24', '10.244.2.0/24', huge], annotations: { [A.subnetKubeManaged]: 'true' } },
    { name: 'c', podCIDR: '10.244.1.0/24', annotations: { [A.subnetKubeManaged]: 'true', [A.backendPublicIP]: huge } },
  ]) {
    const r = nodeToLease(n, A, NETS[0]!);
    assert.equal(r.kind, 'invalid');
    assert.ok(r.kind === 'invalid' && r.reason.length < 300 && r.reason.includes('xxx…'), n.name);
  }
});

tally.reportTotal('kube node leases');
