// The compiled flannel CNI plugin driven exactly as a container runtime
// drives it, with Debian's real reference plugins (bridge, host-local,
// portmap) from /usr/lib/cni, inside throw-away network namespaces:
//
//   <prefix>host   acts as the node: the plugin runs here (`ip netns exec`),
//                  so cni0, the host veths and iptables rules live here
//   <prefix>pod    the pod sandbox (CNI_NETNS=/var/run/netns/<prefix>pod)
//   <prefix>pod2   a second sandbox for the flannel → portmap chain
//
// Nothing is done in the root namespace: every command is `ip netns exec`
// or `ip -n`. Namespaces and temp dirs are removed in after() (and by an
// exit hook if the process dies first). Needs root; skipped otherwise.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildDelegateConf, parseFlannelSubnetEnv, parseNetConf } from '../../src/cni/config.js';
import { stableStringify } from '../../src/cni/json.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cmd/cni/main.js');
const CNI_BIN = '/usr/lib/cni';
const SUBNET_ENV = 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1410\nFLANNEL_IPMASQ=false\n';

function skipReason(): string | false {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'needs root to create network namespaces (skipped: not root)';
  for (const p of ['bridge', 'host-local', 'portmap']) {
    if (!existsSync(path.join(CNI_BIN, p))) return `needs the reference CNI plugins in ${CNI_BIN} (apt-get install containernetworking-plugins)`;
  }
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    execFileSync('iptables', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'needs iproute2 and iptables';
  }
  return false;
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runProc(argv: string[], o: { env?: NodeJS.ProcessEnv; stdin?: string; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const p = spawn(argv[0]!, argv.slice(1), { env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], timeout: o.timeoutMs ?? 60_000, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.stdin.on('error', () => {});
    p.on('error', (e) => (stderr += String(e)));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(o.stdin ?? '');
  });
}

async function sh(argv: string[]): Promise<string> {
  const r = await runProc(argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

describe('flannel CNI plugin with the real reference plugins (root, network namespaces)', { skip: skipReason() }, () => {
  const prefix = `ftscni${randomBytes(2).toString('hex')}-`;
  const hostNs = `${prefix}host`;
  const podNs = `${prefix}pod`;
  const pod2Ns = `${prefix}pod2`;
  const created: string[] = [];
  let tmp = '';
  let subnetFile = '';
  let dataDir = '';
  let ipamDir = '';

  const cleanupSync = () => {
    for (const ns of created.splice(0).reverse()) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        /* best effort */
      }
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  };

  before(async () => {
    process.once('exit', cleanupSync);
    tmp = mkdtempSync(path.join(tmpdir(), 'fts-cni-root-'));
    subnetFile = path.join(tmp, 'subnet.env');
    dataDir = path.join(tmp, 'flannel');
    ipamDir = path.join(tmp, 'ipam');
    writeFileSync(subnetFile, SUBNET_ENV);
    for (const ns of [hostNs, podNs, pod2Ns]) {
      await sh(['ip', 'netns', 'add', ns]);
      created.push(ns);
    }
    await sh(['ip', '-n', hostNs, 'link', 'set', 'lo', 'up']);
  });

  after(async () => {
    const errors: string[] = [];
    for (const ns of created.splice(0).reverse()) {
      const r = await runProc(['ip', 'netns', 'del', ns]);
      if (r.code !== 0) errors.push(`ip netns del ${ns}: ${r.stderr.trim()}`);
    }
    rmSync(tmp, { recursive: true, force: true });
    process.removeListener('exit', cleanupSync);
    assert.deepEqual(errors, [], 'namespaces removed');
  });

  /** The config a runtime would pass flannel (plus temp dirs so nothing lands in /run or /var/lib). */
  function flannelConf(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      cniVersion: '1.0.0',
      name: 'cbr0',
      type: 'flannel',
      subnetFile,
      dataDir,
      ipam: { dataDir: ipamDir },
      delegate: { hairpinMode: true, isDefaultGateway: true },
      ...extra,
    };
  }

  function cniEnv(cmd: string | undefined, cid: string, netns: string): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_CONTAINERID: cid,
      CNI_NETNS: `/var/run/netns/${netns}`,
      CNI_IFNAME: 'eth0',
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${cid}`,
      CNI_PATH: CNI_BIN,
    };
    if (cmd !== undefined) env.CNI_COMMAND = cmd;
    return env;
  }

  /** Runs the compiled plugin in the host namespace, as the runtime would exec it. */
  function flannel(cmd: string | undefined, cid: string, conf: Record<string, unknown> | string, netns = podNs, extraEnv: NodeJS.ProcessEnv = {}): Promise<Ran> {
    return runProc(['ip', 'netns', 'exec', hostNs, process.execPath, MAIN], {
      env: { ...cniEnv(cmd, cid, netns), ...extraEnv },
      stdin: typeof conf === 'string' ? conf : JSON.stringify(conf),
    });
  }

  /** Runs a reference plugin directly in the host namespace. */
  function plugin(type: string, cmd: string, cid: string, conf: Record<string, unknown> | string, netns = podNs): Promise<Ran> {
    return runProc(['ip', 'netns', 'exec', hostNs, path.join(CNI_BIN, type)], {
      env: cniEnv(cmd, cid, netns),
      stdin: typeof conf === 'string' ? conf : JSON.stringify(conf),
    });
  }

  function ok(r: Ran, what: string): void {
    assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }

  function cniError(r: Ran): { cniVersion: string; code: number; msg: string; details?: string } {
    assert.notEqual(r.code, 0, `expected failure, got ${r.stdout}`);
    assert.doesNotMatch(r.stdout + r.stderr, /^\s+at /m, 'no stack trace');
    return JSON.parse(r.stdout);
  }

  const nsExec = (ns: string, ...argv: string[]) => sh(['ip', 'netns', 'exec', ns, ...argv]);
  const leaseFiles = () => (existsSync(path.join(ipamDir, 'cbr0')) ? readdirSync(path.join(ipamDir, 'cbr0')).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : []);

  // --- ADD / CHECK / DEL -----------------------------------------------------

  const cid = 'ctr-main-0001';
  let result: { ips: Array<{ address: string; gateway?: string }>; interfaces: Array<{ name: string; sandbox?: string }>; routes: Array<{ dst: string; gw?: string }> };
  let podIP = '';

  test('ADD: pod gets an address from FLANNEL_SUBNET, routes, MTU; host gets cni0', async () => {
    const r = await flannel('ADD', cid, flannelConf());
    ok(r, 'flannel ADD');
    result = JSON.parse(r.stdout);
    assert.equal((result as unknown as { cniVersion: string }).cniVersion, '1.0.0');
    assert.equal(result.ips.length, 1);
    const [addr, len] = result.ips[0]!.address.split('/');
    assert.match(addr!, /^10\.244\.7\.\d+$/);
    assert.equal(len, '24');
    assert.notEqual(addr, '10.244.7.1');
    assert.equal(result.ips[0]!.gateway, '10.244.7.1');
    podIP = addr!;

    const podAddr = await sh(['ip', '-n', podNs, '-4', 'addr', 'show', 'eth0']);
    assert.match(podAddr, new RegExp(`inet ${podIP.replace(/\./g, '\\.')}/24 `));
    assert.match(podAddr, / mtu 1410 /);
    const routes = await sh(['ip', '-n', podNs, 'route']);
    assert.match(routes, /^default via 10\.244\.7\.1 dev eth0/m, 'isDefaultGateway');
    assert.match(routes, /^10\.244\.0\.0\/16 via 10\.244\.7\.1 dev eth0/m, 'route to FLANNEL_NETWORK');

    const cni0 = await sh(['ip', '-n', hostNs, '-4', 'addr', 'show', 'cni0']);
    assert.match(cni0, /inet 10\.244\.7\.1\/24 /);
    const hostVeth = result.interfaces.find((i) => !i.sandbox && i.name !== 'cni0')!.name;
    const veth = await sh(['ip', '-n', hostNs, '-d', 'link', 'show', hostVeth]);
    assert.match(veth, /master cni0/);
    assert.match(veth, /hairpin on/, 'hairpinMode passed through');
    assert.match(veth, / mtu 1410 /);

    // FLANNEL_IPMASQ=false → ipMasq=true: the bridge plugin masquerades (in the host ns).
    const nat = await nsExec(hostNs, 'iptables', '-t', 'nat', '-S');
    assert.match(nat, new RegExp(`-s ${podIP}/32 .*id: \\\\"${cid}\\\\"`));
    assert.match(nat, /-j MASQUERADE/);

    const saved = path.join(dataDir, cid);
    assert.equal(statSync(saved).mode & 0o777, 0o600);
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    assert.deepEqual(JSON.parse(readFileSync(saved, 'utf8')), {
      cniVersion: '1.0.0',
      hairpinMode: true,
      ipMasq: true,
      ipam: { dataDir: ipamDir, ranges: [[{ subnet: '10.244.7.0/24' }]], routes: [{ dst: '10.244.0.0/16' }], type: 'host-local' },
      isDefaultGateway: true,
      isGateway: true,
      mtu: 1410,
      name: 'cbr0',
      type: 'bridge',
    });
    assert.deepEqual(leaseFiles(), [podIP]);
    assert.equal(readFileSync(path.join(ipamDir, 'cbr0', podIP), 'utf8').split(/\r?\n/)[0], cid);

    // Nothing leaked into the root namespace (read-only look).
    const rootLinks = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
    assert.doesNotMatch(rootLinks, new RegExp(`: (${hostVeth}|cni0)[@:]`));
  });

  test('CHECK after ADD passes (delegate CHECK with prevResult)', async () => {
    assert.ok(result, 'ADD ran');
    const r = await flannel('CHECK', cid, flannelConf({ prevResult: result }));
    ok(r, 'flannel CHECK');
    assert.equal(r.stdout, '');
  });

  test('DEL removes the interface, releases the IP, removes the saved config; a second DEL succeeds', async () => {
    assert.ok(result, 'ADD ran');
    const r = await flannel('DEL', cid, flannelConf());
    ok(r, 'flannel DEL');
    assert.equal(r.stdout, '');
    const link = await runProc(['ip', '-n', podNs, 'link', 'show', 'eth0']);
    assert.notEqual(link.code, 0, 'eth0 is gone from the pod');
    assert.deepEqual(leaseFiles(), [], 'host-local lease released');
    assert.equal(existsSync(path.join(dataDir, cid)), false, 'saved delegate config removed');
    const nat = await nsExec(hostNs, 'iptables', '-t', 'nat', '-S');
    assert.doesNotMatch(nat, new RegExp(cid), 'masquerade rules removed');

    const again = await flannel('DEL', cid, flannelConf());
    ok(again, 'second flannel DEL');
    assert.equal(again.stdout, '');
    const chk = cniError(await flannel('CHECK', cid, flannelConf({ prevResult: result })));
    assert.equal(chk.code, 3, 'CHECK after DEL: container unknown');
  });

  test('a delegate ADD that fails after creating the veth keeps its undo: the DEL that follows calls bridge, which removes the veth', async () => {
    // bridge (ipMasq: FLANNEL_IPMASQ=false) creates cni0, the veth pair and
    // gets an IP from host-local, then needs iptables for the masquerade rule.
    // With a PATH that has `ip` but no iptables, that last step fails.
    const cidh = 'ctr-half-0003';
    const pod3Ns = `${prefix}pod3`;
    await sh(['ip', 'netns', 'add', pod3Ns]);
    created.push(pod3Ns);
    const noIptables = path.join(tmp, 'path-without-iptables');
    mkdirSync(noIptables);
    symlinkSync(execFileSync('sh', ['-c', 'command -v ip'], { encoding: 'utf8' }).trim(), path.join(noIptables, 'ip'));

    const add = cniError(await flannel('ADD', cidh, flannelConf(), pod3Ns, { PATH: noIptables }));
    assert.match(add.msg, /iptables/, add.msg);
    const podLink = await runProc(['ip', '-n', pod3Ns, 'link', 'show', 'eth0']);
    assert.equal(podLink.code, 0, 'bridge created the veth before it failed');
    assert.ok(existsSync(path.join(dataDir, cidh)), 'the saved delegate config is kept for DEL');

    // The runtime's DEL (with its normal PATH) must reach bridge with the saved config.
    const del = await flannel('DEL', cidh, flannelConf(), pod3Ns);
    const gone = await runProc(['ip', '-n', pod3Ns, 'link', 'show', 'eth0']);
    assert.notEqual(gone.code, 0, 'the veth is gone: bridge ran its DEL');
    if (del.code !== 0) {
      // bridge 1.1.1 removes the veth, then fails to remove the masquerade
      // chain its ADD never made. The error is bridge's own; the saved config
      // stays, and the runtime's retry of DEL succeeds (no veth: nothing to tear down).
      assert.match(cniError(del).msg, /iptables .*CNI-/);
      assert.ok(existsSync(path.join(dataDir, cidh)), 'kept until a DEL succeeds');
      ok(await flannel('DEL', cidh, flannelConf(), pod3Ns), 'flannel DEL, retried');
    }
    const hostVeths = await sh(['ip', '-n', hostNs, '-o', 'link', 'show', 'master', 'cni0']);
    assert.doesNotMatch(hostVeths, /veth/, 'no veth left on cni0');
    assert.equal(existsSync(path.join(dataDir, cidh)), false, 'saved config removed after the successful DEL');
    assert.deepEqual(leaseFiles(), [], 'no IP held for the container');
  });

  // --- conflist chain -------------------------------------------------------

  test('kube-flannel conflist (0.3.1): flannel then portmap with prevResult; DEL in reverse', async () => {
    const cidc = 'ctr-chain-0002';
    // Exactly what libcni hands each plugin of 10-flannel.conflist (name and
    // cniVersion injected from the list), plus temp dirs.
    const list = { name: 'cbr0', cniVersion: '0.3.1' };
    const fl = { ...list, type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true }, subnetFile, dataDir, ipam: { dataDir: ipamDir } };
    const portMappings = [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }];
    const pm = { ...list, type: 'portmap', capabilities: { portMappings: true }, runtimeConfig: { portMappings } };

    const add = await flannel('ADD', cidc, fl, pod2Ns);
    ok(add, 'flannel ADD (chain)');
    const prev = JSON.parse(add.stdout);
    assert.equal(prev.cniVersion, '0.3.1', "the delegate's result, in the config's version");
    assert.equal(prev.ips[0].version, '4');
    const ip = String(prev.ips[0].address).split('/')[0]!;

    const pAdd = await plugin('portmap', 'ADD', cidc, { ...pm, prevResult: prev }, pod2Ns);
    ok(pAdd, 'portmap ADD');
    assert.deepEqual(JSON.parse(pAdd.stdout).ips, prev.ips, 'portmap passes the result on');
    const nat = await nsExec(hostNs, 'iptables', '-t', 'nat', '-S');
    assert.match(nat, /--dport 18080/);
    assert.match(nat, new RegExp(`--to-destination ${ip.replace(/\./g, '\\.')}:80`));

    ok(await plugin('portmap', 'DEL', cidc, pm, pod2Ns), 'portmap DEL');
    ok(await flannel('DEL', cidc, fl, pod2Ns), 'flannel DEL (chain)');
    const natAfter = await nsExec(hostNs, 'iptables', '-t', 'nat', '-S');
    assert.doesNotMatch(natAfter, /--dport 18080/);
    assert.equal(existsSync(path.join(dataDir, cidc)), false);
    assert.deepEqual(leaseFiles(), []);
  });

  // --- errors -----------------------------------------------------------------

  test('error results: missing subnet.env, bad subnet.env, malformed stdin, no CNI_COMMAND, unknown delegate', async () => {
    const missing = path.join(tmp, 'no-such', 'subnet.env');
    const e1 = cniError(await flannel('ADD', 'ctr-err-1', flannelConf({ subnetFile: missing })));
    assert.deepEqual({ code: e1.code, msg: e1.msg }, { code: 11, msg: `subnet file ${missing} does not exist` });

    const partial = path.join(tmp, 'partial.env');
    writeFileSync(partial, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_IPMASQ=false\n');
    const e2 = cniError(await flannel('ADD', 'ctr-err-2', flannelConf({ subnetFile: partial })));
    assert.deepEqual({ code: e2.code, msg: e2.msg }, { code: 100, msg: `${partial} is missing FLANNEL_MTU` });

    const e3 = cniError(await flannel('ADD', 'ctr-err-3', '{"cniVersion":"1.0.0","name":"cbr0",'));
    assert.equal(e3.code, 6);
    assert.match(e3.details ?? '', /invalid JSON/);

    const e4 = cniError(await flannel(undefined, 'ctr-err-4', flannelConf()));
    assert.deepEqual({ code: e4.code, msg: e4.msg }, { code: 4, msg: 'required env variables [CNI_COMMAND] missing' });

    const e5 = cniError(await flannel('ADD', 'ctr-err-5', flannelConf({ delegate: { type: 'no-such-plugin' } })));
    assert.deepEqual({ code: e5.code, msg: e5.msg }, { code: 101, msg: `failed to find plugin "no-such-plugin" in path [${CNI_BIN}]` });
    assert.equal(existsSync(path.join(dataDir, 'ctr-err-5')), false, 'nothing saved: the delegate is not installed, so it never ran');

    // A delegate's own error is passed through unchanged: bridge refusing a bogus MTU
    // answers the same whether called by flannel or directly.
    const badConf = flannelConf({ delegate: { mtu: 'lots' } });
    const e6 = cniError(await flannel('ADD', 'ctr-err-6', badConf));
    const bridgeConf = stableStringify(buildDelegateConf(parseNetConf(JSON.stringify(badConf)), parseFlannelSubnetEnv(SUBNET_ENV, subnetFile)));
    const direct = cniError(await plugin('bridge', 'ADD', 'ctr-err-6', bridgeConf));
    assert.deepEqual({ code: e6.code, msg: e6.msg, details: e6.details }, { code: direct.code, msg: direct.msg, details: direct.details }, "the bridge plugin's own error");
    assert.equal(e6.cniVersion, '1.0.0');
    assert.match(e6.msg, /mtu/);
    // As flannel: a failed ADD keeps the saved config for DEL (the delegate may have made something).
    assert.equal(existsSync(path.join(dataDir, 'ctr-err-6')), true);
    const link = await runProc(['ip', '-n', podNs, 'link', 'show', 'eth0']);
    assert.notEqual(link.code, 0, 'no interface left behind');
  });

  // --- timing -----------------------------------------------------------------

  test('timing: 10 ADD+DEL cycles, flannel vs bridge called directly', async () => {
    const N = 10;
    const fconf = flannelConf();
    const bconf = JSON.parse(stableStringify(buildDelegateConf(parseNetConf(JSON.stringify(fconf)), parseFlannelSubnetEnv(SUBNET_ENV, subnetFile))));
    const ours: number[] = [];
    const direct: number[] = [];
    for (let i = 0; i < N; i++) {
      // Interleaved so both see the same machine state.
      let t = performance.now();
      ok(await flannel('ADD', `bench-f-${i}`, fconf), `flannel ADD #${i}`);
      ok(await flannel('DEL', `bench-f-${i}`, fconf), `flannel DEL #${i}`);
      ours.push(performance.now() - t);
      t = performance.now();
      ok(await plugin('bridge', 'ADD', `bench-b-${i}`, bconf), `bridge ADD #${i}`);
      ok(await plugin('bridge', 'DEL', `bench-b-${i}`, bconf), `bridge DEL #${i}`);
      direct.push(performance.now() - t);
    }
    assert.deepEqual(leaseFiles(), []);
    const mo = median(ours);
    const md = median(direct);
    console.log(`# CNI ADD+DEL median of ${N} (incl. ip netns exec): flannel-ts plugin ${mo.toFixed(1)} ms, bridge direct ${md.toFixed(1)} ms, ratio ${(mo / md).toFixed(2)}x (overhead ${(mo - md).toFixed(1)} ms)`);
  });
});
