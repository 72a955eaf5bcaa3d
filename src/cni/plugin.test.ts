// runPlugin() in-process. Delegation is exercised with small /bin/sh
// stand-ins for a delegate plugin in a temp CNI_PATH (they record their
// stdin and CNI_* environment); the real bridge/host-local/portmap plugins
// are exercised by test/cni/cni.test.ts.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runPlugin, withRouteGateways, type PluginOutcome } from './plugin.js';
import { ErrorCode } from './errors.js';

let root: string;
let bin: string;
let log: string;
let subnetFile: string;

const RESULT = '{"cniVersion":"1.0.0",  "ips":[{"address":"10.244.1.2/24","gateway":"10.244.1.1"}],"routes":[],"dns":{}}\n';

/** A fake delegate: records stdin, CNI_* env and whether the saved config existed, then runs `body`. */
function fakePlugin(name: string, body: string): void {
  const f = path.join(bin, name);
  writeFileSync(
    f,
    `#!/bin/sh
cat > "$FAKE_LOG/${name}.$CNI_COMMAND.stdin"
env | grep '^CNI_' | sort > "$FAKE_LOG/${name}.$CNI_COMMAND.env"
if [ -f "$FAKE_SAVED" ]; then echo yes > "$FAKE_LOG/${name}.$CNI_COMMAND.saved"; fi
${body}
`,
  );
  chmodSync(f, 0o755);
}

function recorded(name: string, cmd: string, what: 'stdin' | 'env' | 'saved'): string | null {
  const f = path.join(log, `${name}.${cmd}.${what}`);
  return existsSync(f) ? readFileSync(f, 'utf8') : null;
}

before(() => {
  root = mkdtempSync(path.join(tmpdir(), 'fts-cni-plugin-'));
  bin = path.join(root, 'bin');
  log = path.join(root, 'log');
  mkdirSync(bin);
  mkdirSync(log);
  subnetFile = path.join(root, 'subnet.env');
  writeFileSync(subnetFile, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
  fakePlugin('okplug', `printf '%s' '${RESULT.trim()}'; echo`);
  fakePlugin('errplug', `echo '{"cniVersion":"1.0.0","code":42,"msg":"no room","details":"bridge says no"}'; echo 'errplug stderr' >&2; exit 1`);
  fakePlugin('crashplug', `echo 'panic: something broke' >&2; exit 2`);
  fakePlugin('silentplug', `exit 3`);
  fakePlugin('junkplug', `case "$CNI_COMMAND" in ADD) echo 'this is not json';; esac`);
  fakePlugin('slowplug', `exec sleep 30`);
  // Fails its ADD after it has made something (as bridge does when iptables is missing); its DEL undoes it.
  fakePlugin('halfplug', `case "$CNI_COMMAND" in ADD) echo '{"cniVersion":"1.0.0","code":999,"msg":"failed to locate iptables"}'; exit 1;; esac`);
  fakePlugin('delfail', `case "$CNI_COMMAND" in ADD) echo '{"cniVersion":"1.0.0"}';; DEL) echo '{"code":11,"msg":"busy"}'; exit 1;; esac`);
  writeFileSync(path.join(bin, 'notexec'), '#!/bin/sh\n');
});

after(() => rmSync(root, { recursive: true, force: true }));

let seq = 0;
interface Call {
  cmd?: string;
  conf?: Record<string, unknown> | string;
  env?: Record<string, string | undefined>;
  cid?: string;
  timeoutMs?: number;
}

function dataDir(): string {
  return path.join(root, 'data');
}

async function call(c: Call): Promise<PluginOutcome & { cid: string; stderr: string }> {
  const cid = c.cid ?? `c${++seq}`;
  const conf =
    typeof c.conf === 'string'
      ? c.conf
      : JSON.stringify({ cniVersion: '1.0.0', name: 'cbr0', type: 'flannel', subnetFile, dataDir: dataDir(), delegate: { type: 'okplug' }, ...(c.conf ?? {}) });
  let stderr = '';
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    CNI_COMMAND: c.cmd ?? 'ADD',
    CNI_CONTAINERID: cid,
    CNI_NETNS: '/var/run/netns/nowhere',
    CNI_IFNAME: 'eth0',
    CNI_ARGS: 'K8S_POD_NAME=p1',
    CNI_PATH: `/nonexistent:${bin}`,
    FAKE_LOG: log,
    FAKE_SAVED: path.join(dataDir(), cid),
    ...c.env,
  };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const out = await runPlugin({ env, stdin: conf, delegateTimeoutMs: c.timeoutMs, stderr: (t) => (stderr += t) });
  return { ...out, cid, stderr };
}

function errorOf(out: PluginOutcome): { cniVersion: string; code: number; msg: string; details?: string } {
  assert.equal(out.exitCode, 1, `expected failure, got stdout ${out.stdout}`);
  return JSON.parse(out.stdout);
}

describe('commands and environment', () => {
  test('VERSION needs nothing else', async () => {
    const out = await runPlugin({ env: { CNI_COMMAND: 'VERSION' }, stdin: '' });
    assert.deepEqual(out, { exitCode: 0, stdout: '{"cniVersion":"1.0.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0"]}\n' });
  });

  test('missing CNI_COMMAND is code 4 naming it', async () => {
    const e = errorOf(await runPlugin({ env: {}, stdin: '{"name":"n"}' }));
    assert.equal(e.code, ErrorCode.InvalidEnvironmentVariables);
    assert.match(e.msg, /CNI_COMMAND/);
  });

  test('unknown CNI_COMMAND is code 4', async () => {
    const e = errorOf(await call({ cmd: 'GC' }));
    assert.equal(e.code, 4);
    assert.equal(e.msg, 'unknown CNI_COMMAND: GC');
  });

  test('missing variables are code 4 and all named; DEL does not need CNI_NETNS', async () => {
    const e = errorOf(await call({ env: { CNI_NETNS: undefined, CNI_PATH: '' } }));
    assert.equal(e.code, 4);
    assert.equal(e.msg, 'required env variables [CNI_NETNS,CNI_PATH] missing');
    const d = await call({ cmd: 'DEL', env: { CNI_NETNS: undefined } });
    assert.equal(d.exitCode, 0, d.stdout);
  });

  test('unsafe container ID or interface name is code 4', async () => {
    assert.equal(errorOf(await call({ cid: '../../etc/passwd' })).code, 4);
    assert.equal(errorOf(await call({ env: { CNI_IFNAME: 'a-very-long-ifname0' } })).code, 4);
  });

  test('malformed stdin is code 6, in the current version', async () => {
    const e = errorOf(await call({ conf: '{"cniVersion":"0.3.1","name":' }));
    assert.equal(e.code, ErrorCode.DecodingFailure);
    assert.match(e.details ?? '', /invalid JSON/);
    assert.equal(e.cniVersion, '1.0.0');
    const empty = errorOf(await call({ conf: '' }));
    assert.equal(empty.code, 6);
    assert.match(empty.details ?? '', /stdin is empty/);
  });

  test('errors carry the request cniVersion when it is supported', async () => {
    const e = errorOf(await call({ conf: { cniVersion: '0.3.1', subnetFile: path.join(root, 'absent.env') } }));
    assert.equal(e.cniVersion, '0.3.1');
    assert.equal(e.code, ErrorCode.TryAgainLater);
    assert.match(e.msg, /absent\.env does not exist/);
  });

  test('unsupported config version is code 1; CHECK on 0.3.1 is code 1', async () => {
    const e = errorOf(await call({ conf: { cniVersion: '9.9.9' } }));
    assert.equal(e.code, ErrorCode.IncompatibleVersion);
    assert.match(e.details ?? '', /config is "9\.9\.9"/);
    const c = errorOf(await call({ cmd: 'CHECK', conf: { cniVersion: '0.3.1' } }));
    assert.equal(c.code, 1);
    assert.match(c.msg, /does not allow CHECK/);
  });
});

describe('ADD', () => {
  test('saves the delegate config (0600 in a 0700 dir) before invoking it, prints its result unchanged', async () => {
    const out = await call({ conf: { runtimeConfig: { portMappings: [] } } });
    assert.equal(out.exitCode, 0, out.stdout);
    assert.equal(out.stdout, RESULT);
    const saved = path.join(dataDir(), out.cid);
    assert.equal(statSync(saved).mode & 0o777, 0o600);
    assert.equal(statSync(dataDir()).mode & 0o777, 0o700);
    assert.equal(recorded('okplug', 'ADD', 'saved'), 'yes\n', 'saved before the delegate ran');
    const sent = recorded('okplug', 'ADD', 'stdin')!;
    assert.equal(sent, readFileSync(saved, 'utf8'), 'the delegate got exactly the saved bytes');
    assert.equal(
      sent,
      '{"cniVersion":"1.0.0","ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},' +
        '"mtu":1450,"name":"cbr0","runtimeConfig":{"portMappings":[]},"type":"okplug"}',
    );
    const env = recorded('okplug', 'ADD', 'env')!;
    assert.match(env, /^CNI_COMMAND=ADD$/m);
    assert.match(env, new RegExp(`^CNI_CONTAINERID=${out.cid}$`, 'm'));
    assert.match(env, /^CNI_NETNS=\/var\/run\/netns\/nowhere$/m);
    assert.match(env, /^CNI_IFNAME=eth0$/m);
    assert.match(env, /^CNI_ARGS=K8S_POD_NAME=p1$/m);
    assert.match(env, new RegExp(`^CNI_PATH=/nonexistent:${bin}$`, 'm'));
  });

  test("a delegate's error JSON is passed through; the saved config is kept for the runtime's DEL", async () => {
    const out = await call({ conf: { delegate: { type: 'errplug' } } });
    assert.deepEqual(errorOf(out), { cniVersion: '1.0.0', code: 42, msg: 'no room', details: 'bridge says no' });
    assert.match(out.stderr, /errplug stderr/, "the delegate's stderr is let through");
    assert.equal(recorded('errplug', 'ADD', 'saved'), 'yes\n');
    assert.equal(existsSync(path.join(dataDir(), out.cid)), true);
  });

  test('a failed ADD keeps its undo: the DEL that follows runs the delegate DEL with the saved config, then removes it', async () => {
    const add = await call({ conf: { delegate: { type: 'halfplug' } } });
    assert.equal(errorOf(add).msg, 'failed to locate iptables');
    const saved = path.join(dataDir(), add.cid);
    assert.equal(existsSync(saved), true, 'saved config kept after the failed ADD');
    const savedText = readFileSync(saved, 'utf8');
    const del = await call({ cmd: 'DEL', cid: add.cid, conf: { delegate: { type: 'halfplug' } } });
    assert.deepEqual({ exitCode: del.exitCode, stdout: del.stdout }, { exitCode: 0, stdout: '' });
    assert.equal(recorded('halfplug', 'DEL', 'stdin'), savedText, 'the delegate was asked to undo its half-done ADD');
    assert.equal(existsSync(saved), false, 'removed once the DEL succeeded');
  });

  test('unknown delegate type is code 101 naming the plugin and path; nothing left saved', async () => {
    const out = await call({ conf: { delegate: { type: 'nosuchplugin' } } });
    const e = errorOf(out);
    assert.equal(e.code, ErrorCode.DelegateNotFound);
    assert.equal(e.msg, `failed to find plugin "nosuchplugin" in path [/nonexistent ${bin}]`);
    assert.equal(existsSync(path.join(dataDir(), out.cid)), false);
    assert.equal(errorOf(await call({ conf: { delegate: { type: 'notexec' } } })).code, 101, 'a non-executable file is not a plugin');
  });

  test('delegate failing without error JSON is code 102 with its stderr / exit status', async () => {
    const crash = errorOf(await call({ conf: { delegate: { type: 'crashplug' } } }));
    assert.equal(crash.code, ErrorCode.DelegateFailed);
    assert.match(crash.msg, /netplugin failed: .*panic: something broke/);
    const silent = errorOf(await call({ conf: { delegate: { type: 'silentplug' } } }));
    assert.equal(silent.code, 102);
    assert.equal(silent.msg, 'netplugin failed with no error message: exit status 3');
  });

  test('a hung delegate is killed after the timeout (code 102)', async () => {
    const t0 = Date.now();
    const out = await call({ conf: { delegate: { type: 'slowplug' } }, timeoutMs: 300 });
    const e = errorOf(out);
    assert.equal(e.code, 102);
    assert.match(e.msg, /timed out after 300 ms/);
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(existsSync(path.join(dataDir(), out.cid)), true, 'a killed delegate may have done anything: DEL must still reach it');
  });

  test('an unusable "successful" result is rolled back with DEL (code 102)', async () => {
    const out = await call({ conf: { delegate: { type: 'junkplug' } } });
    assert.equal(errorOf(out).code, 102);
    assert.ok(recorded('junkplug', 'DEL', 'stdin'), 'rollback DEL ran');
    assert.equal(existsSync(path.join(dataDir(), out.cid)), false);
  });

  test('invalid delegate config is code 7 and nothing is saved', async () => {
    const out = await call({ conf: { delegate: { name: 'x' } } });
    assert.equal(errorOf(out).code, ErrorCode.InvalidNetworkConfig);
    assert.equal(existsSync(path.join(dataDir(), out.cid)), false);
  });

  test('bad subnet.env content is code 100 naming the variable', async () => {
    const f = path.join(root, 'partial.env');
    writeFileSync(f, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPMASQ=true\n');
    const e = errorOf(await call({ conf: { subnetFile: f } }));
    assert.equal(e.code, ErrorCode.InvalidSubnetFile);
    assert.equal(e.msg, `${f} is missing FLANNEL_MTU`);
  });
});

describe('DEL and CHECK', () => {
  test('DEL runs the delegate with the saved config, then removes it; a second DEL is a no-op success', async () => {
    const add = await call({ conf: { delegate: { type: 'okplug', hairpinMode: true } } });
    assert.equal(add.exitCode, 0);
    const savedText = readFileSync(path.join(dataDir(), add.cid), 'utf8');
    // DEL's own config differs (e.g. subnet.env changed): the saved one is used.
    const del = await call({ cmd: 'DEL', cid: add.cid, conf: { delegate: { type: 'errplug' }, subnetFile: '/nonexistent' } });
    assert.deepEqual({ exitCode: del.exitCode, stdout: del.stdout }, { exitCode: 0, stdout: '' });
    assert.equal(recorded('okplug', 'DEL', 'stdin'), savedText);
    assert.match(recorded('okplug', 'DEL', 'env')!, /^CNI_COMMAND=DEL$/m);
    assert.equal(existsSync(path.join(dataDir(), add.cid)), false);
    const again = await call({ cmd: 'DEL', cid: add.cid });
    assert.deepEqual({ exitCode: again.exitCode, stdout: again.stdout }, { exitCode: 0, stdout: '' });
  });

  test('DEL for a container never added succeeds without running a delegate', async () => {
    rmSync(path.join(log, 'errplug.DEL.stdin'), { force: true });
    const out = await call({ cmd: 'DEL', conf: { delegate: { type: 'errplug' } } });
    assert.deepEqual({ exitCode: out.exitCode, stdout: out.stdout }, { exitCode: 0, stdout: '' });
    assert.equal(recorded('errplug', 'DEL', 'stdin'), null);
  });

  test('a failed delegate DEL keeps the saved config so DEL can be retried', async () => {
    const add = await call({ conf: { delegate: { type: 'delfail' } } });
    assert.equal(add.exitCode, 0, add.stdout);
    const del = await call({ cmd: 'DEL', cid: add.cid });
    assert.deepEqual(errorOf(del), { cniVersion: '1.0.0', code: 11, msg: 'busy' });
    assert.equal(existsSync(path.join(dataDir(), add.cid)), true);
  });

  test('a corrupt saved config is dropped on DEL (nothing a retry could fix)', async () => {
    const cid = `corrupt${++seq}`;
    mkdirSync(dataDir(), { recursive: true });
    writeFileSync(path.join(dataDir(), cid), '{not json');
    const out = await call({ cmd: 'DEL', cid });
    assert.equal(out.exitCode, 0, out.stdout);
    assert.match(out.stderr, /corrupt/);
    assert.equal(existsSync(path.join(dataDir(), cid)), false);
  });

  test('CHECK runs the delegate CHECK with the saved config plus prevResult', async () => {
    const add = await call({});
    const prevResult = JSON.parse(add.stdout);
    const chk = await call({ cmd: 'CHECK', cid: add.cid, conf: { prevResult } });
    assert.deepEqual({ exitCode: chk.exitCode, stdout: chk.stdout }, { exitCode: 0, stdout: '' });
    const sent = JSON.parse(recorded('okplug', 'CHECK', 'stdin')!);
    const saved = JSON.parse(readFileSync(path.join(dataDir(), add.cid), 'utf8'));
    assert.deepEqual(sent, { ...saved, prevResult });
    // With gateway-less routes, the delegate is told the route as installed.
    const prev2 = { cniVersion: '1.0.0', ips: [{ address: '10.244.1.2/24', gateway: '10.244.1.1' }], routes: [{ dst: '10.244.0.0/16' }] };
    const chk2 = await call({ cmd: 'CHECK', cid: add.cid, conf: { prevResult: prev2 } });
    assert.equal(chk2.exitCode, 0, chk2.stdout);
    assert.deepEqual(JSON.parse(recorded('okplug', 'CHECK', 'stdin')!).prevResult.routes, [{ dst: '10.244.0.0/16', gw: '10.244.1.1' }]);
  });

  test('withRouteGateways fills only gateway-less routes, per family', () => {
    const prev = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0' }],
      ips: [
        { interface: 0, address: '10.244.1.2/24', gateway: '10.244.1.1' },
        { interface: 0, address: 'fd00:1::2/64', gateway: 'fd00:1::1' },
      ],
      routes: [{ dst: '10.244.0.0/16' }, { dst: '0.0.0.0/0', gw: '10.244.1.254' }, { dst: 'fd00::/48' }, { dst: '192.168.0.0/16', gw: '' }],
    };
    assert.deepEqual(withRouteGateways(prev), {
      ...prev,
      routes: [
        { dst: '10.244.0.0/16', gw: '10.244.1.1' },
        { dst: '0.0.0.0/0', gw: '10.244.1.254' },
        { dst: 'fd00::/48', gw: 'fd00:1::1' },
        { dst: '192.168.0.0/16', gw: '10.244.1.1' },
      ],
    });
    assert.equal(prev.routes[0]!.gw, undefined, 'input untouched');
    const noGw = { ips: [{ address: '10.0.0.2/24' }], routes: [{ dst: '10.0.0.0/8' }] };
    assert.deepEqual(withRouteGateways(noGw), noGw);
    assert.equal(withRouteGateways('x'), 'x');
  });

  test('CHECK of an unknown container is code 3', async () => {
    const e = errorOf(await call({ cmd: 'CHECK', cid: 'never-added' }));
    assert.equal(e.code, ErrorCode.UnknownContainer);
    assert.match(e.msg, /never-added is unknown to flannel/);
  });

  test("CHECK passes the delegate's error through", async () => {
    const add = await call({});
    // Swap the saved delegate for one that fails.
    const f = path.join(dataDir(), add.cid);
    writeFileSync(f, readFileSync(f, 'utf8').replace('"type":"okplug"', '"type":"errplug"'));
    assert.equal(errorOf(await call({ cmd: 'CHECK', cid: add.cid })).code, 42);
  });
});
