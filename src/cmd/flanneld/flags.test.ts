import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FlagError, parseFlanneldFlags } from './flags.js';

const parse = (argv: string[], env: Record<string, string> = {}) => {
  const r = parseFlanneldFlags(argv, env);
  assert.equal(r.kind, 'flags');
  return (r as Extract<typeof r, { kind: 'flags' }>).flags;
};

test('defaults are flannel\'s', () => {
  const f = parse([]);
  assert.equal(f.etcdEndpoints, 'http://127.0.0.1:4001,http://127.0.0.1:2379');
  assert.equal(f.etcdPrefix, '/coreos.com/network');
  assert.equal(f.subnetFile, '/run/flannel/subnet.env');
  assert.equal(f.subnetLeaseRenewMargin, 60);
  assert.equal(f.healthzIp, '0.0.0.0');
  assert.equal(f.healthzPort, 0);
  assert.equal(f.iptablesForwardRules, true);
  assert.equal(f.ipMasq, false);
  assert.equal(f.netConfigPathSet, false);
});

test('Go flag syntax: -flag, --flag=value, repeatable --iface, bare booleans', () => {
  const f = parse(['-etcd-prefix', '/x/network', '--iface=eth0', '-iface', '10.0.0.1', '--ip-masq', '-healthz-port=8081', '--iptables-forward-rules=false', '-v', '3']);
  assert.equal(f.etcdPrefix, '/x/network');
  assert.deepEqual(f.iface, ['eth0', '10.0.0.1']);
  assert.equal(f.ipMasq, true);
  assert.equal(f.healthzPort, 8081);
  assert.equal(f.iptablesForwardRules, false);
  assert.equal(f.v, 3);
});

test('FLANNELD_* env fills flags not given on the command line; CLI wins; empty ignored', () => {
  const f = parse(['--etcd-prefix=/cli'], {
    FLANNELD_ETCD_PREFIX: '/env',
    FLANNELD_ETCD_ENDPOINTS: 'http://10.9.9.9:2379',
    FLANNELD_IFACE: 'eth1,eth2',
    FLANNELD_IP_MASQ: 'true',
    FLANNELD_SUBNET_FILE: '',
    FLANNELD_NET_CONFIG_PATH: '/tmp/x.json',
  });
  assert.equal(f.etcdPrefix, '/cli');
  assert.equal(f.etcdEndpoints, 'http://10.9.9.9:2379');
  assert.deepEqual(f.iface, ['eth1,eth2'], 'one value, no comma splitting');
  assert.equal(f.ipMasq, true);
  assert.equal(f.subnetFile, '/run/flannel/subnet.env');
  assert.equal(f.netConfigPathSet, true);
});

test('bad values name the flag', () => {
  assert.throws(() => parse(['--healthz-port', 'abc']), (e: unknown) => e instanceof FlagError && /healthz-port.*abc/.test(e.message));
  assert.throws(() => parse(['--no-such-flag']), (e: unknown) => e instanceof FlagError && /no-such-flag/.test(e.message));
  assert.throws(() => parse([], { FLANNELD_IP_MASQ: 'maybe' }), (e: unknown) => e instanceof FlagError && /ip-masq.*maybe/.test(e.message));
});

test('--help returns usage text', () => {
  const r = parseFlanneldFlags(['--help'], {});
  assert.equal(r.kind, 'help');
  assert.match((r as { text: string }).text, /--etcd-endpoints/);
});

test('--version: FLANNELD_* is not read (flannel prints its version first), FLANNELD_VERSION is no flag', () => {
  assert.equal(parse(['--version'], { FLANNELD_IP_MASQ: 'maybe', FLANNELD_HEALTHZ_PORT: 'x' }).version, true);
  assert.equal(parse(['-version', '--v=2'], { FLANNELD_IP_MASQ: 'maybe' }).version, true);
  assert.equal(parse([], { FLANNELD_VERSION: 'true' }).version, false);
  assert.throws(() => parse(['--version=false'], { FLANNELD_IP_MASQ: 'maybe' }), FlagError);
});
