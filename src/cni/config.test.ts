import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatIPv4Net, formatIPv6Net } from '../lease/ip.js';
import { buildDelegateConf, DEFAULT_DATA_DIR, DEFAULT_SUBNET_FILE, loadFlannelSubnetEnv, parseFlannelSubnetEnv, parseNetConf, type CompleteSubnetEnv } from './config.js';
import { CniError, ErrorCode } from './errors.js';
import { stableStringify } from './json.js';

const ENV_V4 = 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n';
const ENV_DUAL =
  'FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.3.1/24\nFLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42:3::1/64\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=false\n';

function env(text: string): CompleteSubnetEnv {
  return parseFlannelSubnetEnv(text, '/run/flannel/subnet.env');
}

function render(conf: object, envText = ENV_V4): string {
  return stableStringify(buildDelegateConf(parseNetConf(JSON.stringify(conf)), env(envText)));
}

/** assert.throws with a CniError of this code whose text matches re. */
function throwsCni(fn: () => unknown, code: number, re?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CniError, `expected CniError, got ${String(e)}`);
    assert.equal(e.code, code, `code (${e.message})`);
    if (re) assert.match(`${e.msg} ${e.details}`, re);
    return true;
  });
}

describe('delegate config (ADD)', () => {
  test('kube-flannel.yml conflist entry, cniVersion 0.3.1: exact delegate JSON', () => {
    const conf = { cniVersion: '0.3.1', name: 'cbr0', type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true } };
    assert.equal(
      render(conf),
      '{"cniVersion":"0.3.1","hairpinMode":true,"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},' +
        '"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}',
    );
  });

  test('no delegate at all: bridge with every default; ipMasq = !FLANNEL_IPMASQ', () => {
    const d = buildDelegateConf(parseNetConf('{"cniVersion":"1.0.0","name":"n1","type":"flannel"}'), env(ENV_DUAL));
    assert.deepEqual(d, {
      name: 'n1',
      type: 'bridge',
      ipMasq: true,
      mtu: 1400,
      isGateway: true,
      cniVersion: '1.0.0',
      ipam: {
        type: 'host-local',
        ranges: [[{ subnet: '10.42.3.0/24' }], [{ subnet: '2001:cafe:42:3::/64' }]],
        routes: [{ dst: '10.42.0.0/16' }, { dst: '2001:cafe:42::/56' }],
      },
    });
  });

  test('user ipam: type kept, other keys pass through, user ranges replaced, user routes first', () => {
    const conf = {
      cniVersion: '0.4.0',
      name: 'n',
      type: 'flannel',
      ipam: { type: 'my-ipam', dataDir: '/tmp/x', ranges: [[{ subnet: '1.2.3.0/24' }]], routes: [{ dst: '192.168.0.0/16', gw: '10.244.1.254' }] },
    };
    assert.equal(
      render(conf),
      '{"cniVersion":"0.4.0","ipMasq":false,"ipam":{"dataDir":"/tmp/x","ranges":[[{"subnet":"10.244.1.0/24"}]],' +
        '"routes":[{"dst":"192.168.0.0/16","gw":"10.244.1.254"},{"dst":"10.244.0.0/16"}],"type":"my-ipam"},"isGateway":true,"mtu":1450,"name":"n","type":"bridge"}',
    );
  });

  test('user ipam with no type gets host-local', () => {
    const d = buildDelegateConf(parseNetConf('{"name":"n","ipam":{"dataDir":"/d"}}'), env(ENV_V4));
    assert.deepEqual(d.ipam, { dataDir: '/d', type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24' }]], routes: [{ dst: '10.244.0.0/16' }] });
  });

  test('user delegate keys win over flannel defaults; non-bridge gets no isGateway', () => {
    const d = buildDelegateConf(
      parseNetConf(JSON.stringify({ cniVersion: '1.0.0', name: 'n', delegate: { type: 'ipvlan', master: 'eth0', mtu: 9000, ipMasq: false } })),
      env(ENV_V4),
    );
    assert.equal(d.type, 'ipvlan');
    assert.equal(d.mtu, 9000);
    assert.equal(d.ipMasq, false);
    assert.equal(d.master, 'eth0');
    assert.equal('isGateway' in d, false);
    const b = buildDelegateConf(parseNetConf('{"name":"n","delegate":{"isGateway":false,"bridge":"mybr"}}'), env(ENV_V4));
    assert.equal(b.isGateway, false);
    assert.equal(b.bridge, 'mybr');
  });

  test('runtimeConfig is passed into the delegate; cniVersion only when given', () => {
    const rc = { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] };
    const d = buildDelegateConf(parseNetConf(JSON.stringify({ name: 'n', runtimeConfig: rc })), env(ENV_V4));
    assert.deepEqual(d.runtimeConfig, rc);
    assert.equal('cniVersion' in d, false);
  });

  test('IPv6-only subnet.env renders only the v6 range and route', () => {
    const d = buildDelegateConf(
      parseNetConf('{"cniVersion":"1.0.0","name":"n"}'),
      env('FLANNEL_IPV6_NETWORK=fd00:10::/48\nFLANNEL_IPV6_SUBNET=fd00:10:0:5::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n'),
    );
    assert.deepEqual(d.ipam, { type: 'host-local', ranges: [[{ subnet: 'fd00:10:0:5::/64' }]], routes: [{ dst: 'fd00:10::/48' }] });
  });

  test('comma-separated FLANNEL_NETWORK gives one route per distinct network', () => {
    const d = buildDelegateConf(
      parseNetConf('{"name":"n"}'),
      env('FLANNEL_NETWORK=10.244.0.0/16,10.245.0.0/16,10.244.0.0/16\nFLANNEL_SUBNET=10.244.9.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n'),
    );
    assert.deepEqual((d.ipam as { routes: unknown }).routes, [{ dst: '10.244.0.0/16' }, { dst: '10.245.0.0/16' }]);
  });

  test('the input config is not mutated', () => {
    const conf = parseNetConf('{"name":"n","delegate":{"hairpinMode":true},"ipam":{"routes":[{"dst":"1.0.0.0/8"}]}}');
    const before = JSON.stringify(conf.raw);
    buildDelegateConf(conf, env(ENV_V4));
    buildDelegateConf(conf, env(ENV_V4));
    assert.equal(JSON.stringify(conf.raw), before);
    assert.deepEqual(conf.delegate, { hairpinMode: true });
  });

  test('delegate validation (code 7)', () => {
    const bad = (delegate: unknown, re: RegExp) => throwsCni(() => buildDelegateConf(parseNetConf(JSON.stringify({ name: 'n', delegate })), env(ENV_V4)), ErrorCode.InvalidNetworkConfig, re);
    bad({ type: 5 }, /must have \(string\) 'type'/);
    bad({ name: 'x' }, /must not have 'name'/);
    bad({ ipam: {} }, /must not have 'ipam'/);
    bad({ type: '../../bin/sh' }, /invalid delegate plugin name/);
    bad({ type: '' }, /invalid delegate plugin name/);
  });

  test('bad ipam.routes is code 7', () => {
    throwsCni(() => buildDelegateConf(parseNetConf('{"name":"n","ipam":{"routes":"x"}}'), env(ENV_V4)), ErrorCode.InvalidNetworkConfig, /ipam\.routes/);
    throwsCni(() => buildDelegateConf(parseNetConf('{"name":"n","ipam":{"routes":[{"gw":"1.1.1.1"}]}}'), env(ENV_V4)), ErrorCode.InvalidNetworkConfig, /route 0/);
  });
});

describe('subnet.env', () => {
  test('FLANNEL_SUBNET is masked to the network; values parsed', () => {
    const e = env(ENV_DUAL);
    assert.equal(formatIPv4Net(e.subnet!), '10.42.3.0/24');
    assert.equal(formatIPv6Net(e.ipv6Subnet!), '2001:cafe:42:3::/64');
    assert.deepEqual(e.networks.map(formatIPv4Net), ['10.42.0.0/16']);
    assert.equal(e.mtu, 1400);
    assert.equal(e.ipMasq, false);
    assert.equal(env(ENV_V4).ipMasq, true);
  });

  test('missing variables are named (code 100)', () => {
    throwsCni(() => env('FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPMASQ=true\n'), ErrorCode.InvalidSubnetFile, /^\/run\/flannel\/subnet\.env is missing FLANNEL_MTU /);
    throwsCni(() => env(''), ErrorCode.InvalidSubnetFile, /is missing FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ/);
    throwsCni(() => env('FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n'), ErrorCode.InvalidSubnetFile, /is missing FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET /);
    throwsCni(() => env('FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n'), ErrorCode.InvalidSubnetFile, /is missing FLANNEL_IPMASQ/);
  });

  test('malformed values are named (code 100)', () => {
    throwsCni(() => env(ENV_V4.replace('10.244.1.1/24', '10.244.1.1')), ErrorCode.InvalidSubnetFile, /invalid FLANNEL_SUBNET "10\.244\.1\.1"/);
    throwsCni(() => env(ENV_V4.replace('10.244.0.0/16', '10.244.0.0/16,bogus')), ErrorCode.InvalidSubnetFile, /invalid FLANNEL_NETWORK/);
    throwsCni(() => env(ENV_V4.replace('1450', '14x0')), ErrorCode.InvalidSubnetFile, /invalid FLANNEL_MTU "14x0"/);
    throwsCni(() => env(ENV_V4.replace('1450', '-1')), ErrorCode.InvalidSubnetFile, /invalid FLANNEL_MTU/);
    throwsCni(() => env(ENV_DUAL.replace('2001:cafe:42:3::1/64', '2001:cafe:42:3::1/129')), ErrorCode.InvalidSubnetFile, /invalid FLANNEL_IPV6_SUBNET/);
  });

  test('file handling: missing → code 11 naming the file; unreadable → code 5; good file loads', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fts-cni-env-'));
    try {
      const f = path.join(dir, 'subnet.env');
      throwsCni(() => loadFlannelSubnetEnv(f), ErrorCode.TryAgainLater, new RegExp(`subnet file ${f} does not exist`));
      throwsCni(() => loadFlannelSubnetEnv(dir), ErrorCode.IOFailure, /failed to read subnet file/);
      writeFileSync(f, ENV_V4);
      chmodSync(f, 0o644);
      assert.equal(loadFlannelSubnetEnv(f).mtu, 1450);
      writeFileSync(f, 'FLANNEL_MTU=1450\n');
      throwsCni(() => loadFlannelSubnetEnv(f), ErrorCode.InvalidSubnetFile, new RegExp(`${f} is missing FLANNEL_NETWORK`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('network config decoding (stdin)', () => {
  test('defaults', () => {
    const c = parseNetConf('{"name":"cbr0","type":"flannel"}');
    assert.equal(c.subnetFile, DEFAULT_SUBNET_FILE);
    assert.equal(c.subnetFile, '/run/flannel/subnet.env');
    assert.equal(c.dataDir, DEFAULT_DATA_DIR);
    assert.equal(c.dataDir, '/var/lib/cni/flannel');
    assert.equal(c.cniVersion, '0.1.0');
    assert.equal(c.hasCniVersion, false);
    assert.equal(c.delegate, null);
  });

  test('decode failures are code 6 and say what is wrong', () => {
    throwsCni(() => parseNetConf(''), ErrorCode.DecodingFailure, /stdin is empty/);
    throwsCni(() => parseNetConf('  \n'), ErrorCode.DecodingFailure, /stdin is empty/);
    throwsCni(() => parseNetConf('{"name":"n",'), ErrorCode.DecodingFailure, /invalid JSON/);
    throwsCni(() => parseNetConf('[1,2]'), ErrorCode.DecodingFailure, /must be a JSON object, got array/);
    throwsCni(() => parseNetConf('"x"'), ErrorCode.DecodingFailure, /got string/);
    throwsCni(() => parseNetConf('{"name":"n","cniVersion":1}'), ErrorCode.DecodingFailure, /"cniVersion" must be a string, got number/);
    throwsCni(() => parseNetConf('{"name":"n","subnetFile":5}'), ErrorCode.DecodingFailure, /"subnetFile" must be a string/);
    throwsCni(() => parseNetConf('{"name":"n","dataDir":[]}'), ErrorCode.DecodingFailure, /"dataDir" must be a string, got array/);
    throwsCni(() => parseNetConf('{"name":"n","delegate":"bridge"}'), ErrorCode.DecodingFailure, /"delegate" must be an object, got string/);
    throwsCni(() => parseNetConf('{"name":"n","ipam":[]}'), ErrorCode.DecodingFailure, /"ipam" must be an object/);
    throwsCni(() => parseNetConf('{"name":"n","runtimeConfig":1}'), ErrorCode.DecodingFailure, /"runtimeConfig" must be an object/);
  });

  test('network name: missing or invalid is code 7', () => {
    throwsCni(() => parseNetConf('{"type":"flannel"}'), ErrorCode.InvalidNetworkConfig, /missing network name/);
    throwsCni(() => parseNetConf('{"name":""}'), ErrorCode.InvalidNetworkConfig, /missing network name/);
    throwsCni(() => parseNetConf('{"name":"a/b"}'), ErrorCode.InvalidNetworkConfig, /invalid characters/);
  });
});
