// Property-based fuzzing (issue 9) of the CNI plugin's stdin: the network
// configuration (parseNetConf, the version checks, the delegate config it
// renders) and the whole plugin (runPlugin) for ADD, DEL and CHECK. Any
// stdin must end in success or in a CNI error result: JSON on stdout with a
// numeric code and a msg (plus details) that say what is wrong, exit code 1;
// never an unexpected exception, and never code 5 (I/O failure, what
// asCniError makes of a crash) for a configuration problem.
//
// The plugin runs for real but cannot do harm: dataDir and subnetFile of any
// object on stdin are pointed into a temporary directory and CNI_PATH is an
// empty directory, so no delegate is ever found or executed.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FuzzTally, fc, anyCase, deepJson, deepJsonText, describeThrown, fieldValueText, jsonValue, mutateObject, mutateText, objectText, toJson } from '../testing/fuzz.js';
import { buildDelegateConf, parseFlannelSubnetEnv, parseNetConf, validateContainerID, type CompleteSubnetEnv } from './config.js';
import { CniError, ErrorCode, asCniError } from './errors.js';
import { stableStringify } from './json.js';
import { runPlugin } from './plugin.js';
import { checkAllowsCheck, checkConfigVersion } from './version.js';

const tally = new FuzzTally();

const VALID = {
  cniVersion: '1.0.0',
  name: 'cbr0',
  type: 'flannel',
  delegate: { hairpinMode: true, isDefaultGateway: true },
  ipam: { routes: [{ dst: '192.168.0.0/16' }] },
  runtimeConfig: { portMappings: [] },
};
const KEYS = ['cniVersion', 'name', 'type', 'subnetFile', 'dataDir', 'delegate', 'ipam', 'runtimeConfig', 'prevResult'];

const plausible: Record<string, fc.Arbitrary<unknown>> = {
  cniVersion: fc.constantFrom('1.0.0', '0.4.0', '0.3.1', '0.2.0', '0.1.0', '', '1.1.0', '1.0', 'v1.0.0', '01.0.0', '99999999999999999999.0.0'),
  name: fc.oneof(fc.constantFrom('cbr0', 'a', '-x', 'a b', '../x', 'x/y', 'ü', ''), fc.string({ maxLength: 10 })),
  type: fc.constantFrom('flannel', '', 'x/y'),
  subnetFile: fc.constantFrom('', 'relative.env'),
  dataDir: fc.constantFrom('', 'rel'),
  delegate: fc.oneof(
    fc.constantFrom({}, { type: 'bridge' }, { type: '' }, { type: '../bin/sh' }, { type: 3 }, { name: 'x' }, { ipam: {} }, { type: 'bridge', mtu: 'x', isGateway: 'yes' }, { type: '..' }),
    fc.dictionary(fc.oneof(fc.constantFrom('type', 'name', 'ipam', 'mtu', 'ipMasq', 'isGateway', 'runtimeConfig', '__proto__', 'cniVersion'), fc.string({ maxLength: 5 })), jsonValue(2), { maxKeys: 4 }),
  ),
  ipam: fc.oneof(
    fc.constantFrom({}, { type: 'host-local' }, { routes: null }, { routes: 'x' }, { routes: [1] }, { routes: [{}] }, { routes: [{ dst: 5 }] }, { ranges: 'x' }),
    fc.record({ routes: fc.array(fc.oneof(jsonValue(1), fc.record({ dst: jsonValue(1), gw: jsonValue(1) })), { maxLength: 3 }) }),
  ),
  runtimeConfig: fc.oneof(fc.constantFrom({}, { portMappings: [] }), jsonValue(2)),
  prevResult: fc.oneof(
    fc.constantFrom({ ips: [{ address: '10.244.1.2/24', gateway: '10.244.1.1' }], routes: [{ dst: '10.244.0.0/16' }] }, { routes: 'x', ips: [] }, { ips: 'x', routes: [] }),
    jsonValue(3),
  ),
};

/** What the runtime might write on stdin. */
const stdinText: fc.Arbitrary<string> = fc.oneof(
  { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('', ' ', '\n', 'null', '[]', '"x"', '{', '\u0000')) },
  { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
  { weight: 5, arbitrary: mutateObject(VALID, fc.oneof(fieldValueText, fc.constantFrom(...KEYS).chain((k) => plausible[k]!.map(toJson)))) },
  {
    weight: 5,
    arbitrary: fc
      .array(fc.constantFrom(...KEYS).chain((k) => fc.tuple(fc.oneof(fc.constant(k), anyCase(k)), fc.oneof({ weight: 4, arbitrary: plausible[k]!.map(toJson) }, { weight: 1, arbitrary: fieldValueText }))), { maxLength: 8 })
      .map((pairs) => objectText([['name', '"cbr0"'], ['cniVersion', '"1.0.0"'], ...pairs])),
  },
  { weight: 2, arbitrary: mutateText(fc.constant(JSON.stringify(VALID))) },
  { weight: 1, arbitrary: deepJson },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('delegate', 'ipam', 'runtimeConfig', 'prevResult', 'cniVersion', 'name', 'extra'), deepJson)
      .map(([k, d]) => objectText([['cniVersion', '"1.0.0"'], ['name', '"cbr0"'], [k, d.startsWith('[') ? `{"a":${d}}` : d]])),
  },
);

const ENV: CompleteSubnetEnv = {
  networks: [{ ip: 0x0af40000, prefix: 16 }],
  subnet: { ip: 0x0af40100, prefix: 24 },
  ipv6Networks: [],
  ipv6Subnet: null,
  mtu: 1450,
  ipMasq: true,
};

/** A CNI error result as the runtime sees it: JSON with a numeric code and a msg. */
function assertCniErrorJson(stdout: string, input: string): { code: number; msg: string; details?: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(stdout);
  } catch {
    assert.fail(`stdout is not JSON for stdin ${JSON.stringify(input.slice(0, 200))}: ${stdout.slice(0, 200)}`);
  }
  const e = doc as { cniVersion?: unknown; code?: unknown; msg?: unknown; details?: unknown };
  assert.equal(typeof e.cniVersion, 'string');
  assert.ok(typeof e.code === 'number' && Number.isInteger(e.code) && e.code > 0, `code ${String(e.code)}`);
  assert.ok(typeof e.msg === 'string' && e.msg !== '', 'msg');
  assert.ok(e.details === undefined || typeof e.details === 'string');
  const all = `${e.msg} ${typeof e.details === 'string' ? e.details : ''}`;
  assert.ok(all.length < 2000, `error is bounded (${all.length} chars)`);
  assert.ok(!/\n\s+at /.test(all), 'no stack trace in the error');
  return e as { code: number; msg: string; details?: string };
}

const CONFIG_CODES = new Set<number>([ErrorCode.IncompatibleVersion, ErrorCode.DecodingFailure, ErrorCode.InvalidNetworkConfig]);

test('parseNetConf -> version checks -> delegate config: a CniError with a config error code, or a renderable delegate config', (t) => {
  tally.check(
    t,
    'parseNetConf/buildDelegateConf',
    0xc41,
    5000,
    fc.property(stdinText, (text) => {
      try {
        const conf = parseNetConf(text);
        validateContainerID('fuzz-cid');
        checkConfigVersion(conf.cniVersion);
        checkAllowsCheck(conf.cniVersion);
        const d = buildDelegateConf(conf, ENV);
        assert.equal(typeof d.type, 'string');
        assert.equal(d.name, conf.name);
        const bytes = stableStringify(d);
        assert.ok(typeof JSON.parse(bytes) === 'object');
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        if (!(e instanceof CniError)) assert.fail(`stdin ${JSON.stringify(text.slice(0, 200))} threw ${describeThrown(e)}`);
        assert.ok(CONFIG_CODES.has(e.code), `code ${e.code} for a config problem: ${e.message}`);
        assertCniErrorJson(JSON.stringify(e.toJSON('1.0.0')), text);
      }
    }),
  );
});

// ------------------------------------------------------------ the whole plugin

let root: string;
let cniPath: string;
let dataDir: string;
let subnetFile: string;

before(() => {
  root = mkdtempSync(path.join(tmpdir(), 'fts-cni-fuzz-'));
  cniPath = path.join(root, 'bin'); // empty: no delegate can be found, none runs
  dataDir = path.join(root, 'data');
  subnetFile = path.join(root, 'subnet.env');
  mkdirSync(cniPath);
  writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
});
after(() => rmSync(root, { recursive: true, force: true }));

/** Points any object's dataDir/subnetFile at the sandbox (wrongly typed values are left to be refused). */
function sandboxed(text: string): string {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return text;
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return text;
  const o = doc as Record<string, unknown>;
  const dd = o.dataDir;
  const sf = o.subnetFile;
  if (dd === undefined || dd === null || typeof dd === 'string') o.dataDir = dataDir;
  if (sf === undefined || sf === null || typeof sf === 'string') o.subnetFile = subnetFile;
  try {
    return JSON.stringify(o);
  } catch {
    // Too deep to re-serialise: put the sandbox keys in front as text.
    if (/dataDir|subnetFile/i.test(text)) return '"too deep to sandbox"';
    const rest = text.trimStart().slice(1).trimStart();
    return `{"dataDir":${JSON.stringify(dataDir)},"subnetFile":${JSON.stringify(subnetFile)}${rest.startsWith('}') ? '' : ','}${rest}`;
  }
}

test('runPlugin ADD/DEL/CHECK on fuzzed stdin: success, or a CNI error result on stdout with exit code 1', async (t) => {
  const deepField = fc
    .tuple(fc.constantFrom('delegate', 'ipam', 'runtimeConfig', 'prevResult', 'extra'), deepJson)
    .map(([k, d]) => objectText([['cniVersion', '"1.0.0"'], ['name', '"cbr0"'], [k, `{"a":${d}}`]]));
  const stdin = fc.oneof(
    { weight: 6, arbitrary: stdinText.map(sandboxed) },
    { weight: 1, arbitrary: deepField.map(sandboxed) },
    { weight: 1, arbitrary: stdinText.filter((s) => !/dataDir|subnetFile/i.test(s) && !s.trimStart().startsWith('{')) },
  );
  let errors = 0;
  await tally.checkAsync(
    t,
    'runPlugin',
    0xadd,
    1500,
    fc.asyncProperty(stdin, fc.constantFrom('ADD', 'ADD', 'DEL', 'CHECK'), fc.constantFrom('eth0', 'eth0', 'eth0', 'eth0/x', ''), async (text, cmd, ifName) => {
      let out: Awaited<ReturnType<typeof runPlugin>>;
      try {
        out = await runPlugin({
          env: { CNI_COMMAND: cmd, CNI_CONTAINERID: 'fuzz-cid', CNI_NETNS: '/var/run/netns/fuzz', CNI_IFNAME: ifName, CNI_PATH: cniPath },
          stdin: text,
        });
      } catch (e) {
        assert.fail(`runPlugin threw for stdin ${JSON.stringify(text.slice(0, 200))}: ${describeThrown(e)}`);
      }
      if (out.exitCode === 0) {
        // Without a delegate only DEL (nothing saved: idempotent) can succeed.
        assert.equal(cmd, 'DEL');
        assert.equal(out.stdout, '');
        return;
      }
      errors++;
      assert.equal(out.exitCode, 1);
      const e = assertCniErrorJson(out.stdout, text);
      assert.notEqual(e.code, ErrorCode.IOFailure, `I/O failure (a crash turned error?) for stdin ${JSON.stringify(text.slice(0, 200))}: ${e.msg} ${e.details ?? ''}`);
      // The sandbox stays clean: nothing was saved for a delegate that never ran.
      assert.deepEqual(readdirSync(root).sort(), ['bin', 'subnet.env']);
    }),
  );
  t.diagnostic(`${errors} error results`);
});

// ------------------------------------------------------------ subnet.env (read by ADD)

test('subnet.env: any text parses to a complete env or a CniError 100 naming the variable', (t) => {
  const line = fc.oneof(
    fc.tuple(fc.constantFrom('FLANNEL_NETWORK', 'FLANNEL_SUBNET', 'FLANNEL_IPV6_NETWORK', 'FLANNEL_IPV6_SUBNET', 'FLANNEL_MTU', 'FLANNEL_IPMASQ', 'OTHER'), fc.oneof(fc.constantFrom('10.244.0.0/16', '10.244.1.1/24', 'fd00::/48', '1450', 'true', '', '99999999999', '10.0.0.0/16,10.1.0.0/16', 'x'), fc.string({ maxLength: 12 }))).map(([k, v]) => `${k}=${v}`),
    fc.string({ maxLength: 20 }),
  );
  tally.check(
    t,
    'parseFlannelSubnetEnv',
    0x5e1,
    3000,
    fc.property(fc.array(line, { maxLength: 8 }), (lines) => {
      try {
        const env = parseFlannelSubnetEnv(lines.join('\n'), '/run/flannel/subnet.env');
        assert.ok(env.networks.length + env.ipv6Networks.length > 0 && (env.subnet || env.ipv6Subnet));
        assert.ok(Number.isInteger(env.mtu) && env.mtu >= 0 && env.mtu <= 0xffffffff);
        buildDelegateConf(parseNetConf(JSON.stringify(VALID)), env);
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        assert.ok(e instanceof CniError, describeThrown(e));
        assert.equal(e.code, ErrorCode.InvalidSubnetFile);
        assert.match(e.msg, /FLANNEL_/);
      }
    }),
  );
});

test('regression inputs found by the fuzzer stay fixed', async () => {
  // stdin nested thousands deep: stableStringify/withRouteGateways recursion
  // used to overflow the stack, which the plugin reported as code 5 "Maximum
  // call stack size exceeded"; now a decoding error naming the field.
  for (const k of ['delegate', 'ipam', 'runtimeConfig', 'prevResult', 'extra']) {
    const text = objectText([['cniVersion', '"1.0.0"'], ['name', '"cbr0"'], ['dataDir', JSON.stringify(dataDir)], ['subnetFile', JSON.stringify(subnetFile)], [k, `{"a":${deepJsonText(12_000, 'array')}}`]]);
    assert.throws(() => parseNetConf(text), (e: unknown) => e instanceof CniError && e.code === ErrorCode.DecodingFailure && e.message.includes(`"${k}"`), k);
    const out = await runPlugin({ env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/x', CNI_IFNAME: 'eth0', CNI_PATH: cniPath }, stdin: text });
    assert.equal(out.exitCode, 1);
    assert.equal(assertCniErrorJson(out.stdout, text).code, ErrorCode.DecodingFailure);
  }
  assert.equal(asCniError(new CniError(7, 'x')).code, 7);
  // Values quoted from stdin are cut short (shrunk counterexample: a 5000-character cniVersion).
  for (const [k, v] of [['cniVersion', 'x'.repeat(5000)], ['name', `a${'!'.repeat(5000)}`], ['delegate', { type: `/${'x'.repeat(5000)}` }]] as const) {
    const text = JSON.stringify({ ...VALID, [k]: v });
    const e = (() => {
      try {
        const conf = parseNetConf(text);
        checkConfigVersion(conf.cniVersion);
        buildDelegateConf(conf, ENV);
      } catch (err) {
        return err;
      }
      return null;
    })();
    assert.ok(e instanceof CniError, k);
    assertCniErrorJson(JSON.stringify(e.toJSON('1.0.0')), text);
  }
});

tally.reportTotal('CNI stdin');
