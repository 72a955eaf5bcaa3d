// The topology page (`flannelctl ui`, and the page `lab up` serves) in a real
// headless browser: Debian's chromium driven by puppeteer-core (which never
// downloads a browser of its own). Each lab uses its own namespace prefix and
// state dir. Screenshots are artifacts: they are written to a temp dir that
// the test prints and leaves in place; they are never committed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { FLANNELCTL } from '../helpers/flanneld.js';
import { startEtcd } from '../helpers/etcd.js';
import { alive } from '../../src/lab/lab.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { isRoot, listNamespaces } from '../helpers/netns.js';

const pexec = promisify(execFile);
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const noBrowser = existsSync(CHROMIUM) ? false : `needs Debian's chromium at ${CHROMIUM} (bash scripts/install-deps.sh installs it)`;
if (noBrowser) process.stderr.write(`\n*** ui.test: ${noBrowser}; the browser tests are SKIPPED ***\n\n`);
const skipLab = noBrowser || (isRoot() ? false : 'needs root (network namespaces)');

const NET_CONF = JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } });
const leaseValue = (ip: string, mac: string) => JSON.stringify({ PublicIP: ip, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });

async function ctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await pexec(process.execPath, [FLANNELCTL, ...args], { timeout: 120_000, maxBuffer: 16 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

function launch(): Promise<Browser> {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // root in a container: no user namespaces for chromium's sandbox
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
}

async function openPage(b: Browser, url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await b.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('requestfailed', (r) => {
    // the event stream is cut when the server stops; anything else is a bug
    if (!r.url().endsWith('/api/events')) errors.push(`request failed: ${r.url()}`);
  });
  page.on('request', (r) => {
    if (!r.url().startsWith(url) && !r.url().startsWith('data:')) errors.push(`the page loaded something from elsewhere: ${r.url()}`);
  });
  await page.setViewport({ width: 1400, height: 1000 });
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('body[data-live="live"]', { timeout: 10_000 });
  return { page, errors };
}

const count = (page: Page, sel: string) => page.$$eval(sel, (els) => els.length);

/** Starts `flannelctl ui` and returns its URL (from its first line). */
async function startUi(args: string[]): Promise<{ proc: ChildProcess; url: string; stderr: () => string }> {
  const proc = spawn(process.execPath, [FLANNELCTL, 'ui', '--listen', '127.0.0.1:0', '--interval', '0.5', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`flannelctl ui did not start:\n${err}`)), 15_000);
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /serving (http:\/\/\S+)/.exec(err);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`flannelctl ui exited (${code}):\n${err}`));
    });
  });
  return { proc, url, stderr: () => err };
}

async function stopProc(p: ChildProcess): Promise<number | null> {
  if (p.exitCode !== null) return p.exitCode;
  const exited = new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 5000);
  const c = await exited;
  clearTimeout(t);
  return c;
}

test('ui in the lab: every host and tunnel drawn, kernel tables on click, a stopped flanneld and a deleted lease show live', { skip: skipLab, timeout: 90_000 }, async (t) => {
  const t0 = Date.now();
  const lap = (what: string) => t.diagnostic(`${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const prefix = `ftsui${randomBytes(2).toString('hex')}-`;
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-ui-lab-'));
  const artifacts = mkdtempSync(path.join(tmpdir(), 'fts-ui-artifacts-'));
  const common = ['--dir', dir, '--prefix', prefix];
  let browser: Browser | null = null;
  let shown: Page | null = null;
  try {
    const up = await ctl(['lab', 'up', '--hosts', '3', '--pods', '1', '--store', 'local', ...common]);
    assert.equal(up.code, 0, up.stderr + up.stdout);
    lap('lab up');
    const url = /^Page: +(http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(up.stderr)?.[1];
    assert.ok(url, `lab up prints the page's URL:\n${up.stderr}`);
    assert.match(up.stdout, new RegExp(`^topology page ${url!.replace(/[.]/g, '\\.')}$`, 'm'));
    const state = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as {
      ui: { url: string; pid: number };
      procs: Array<{ pid: number; what: string }>;
      hosts: Array<{ name: string; ip: string }>;
    };
    assert.equal(state.ui.url, url);
    const status = await ctl(['lab', 'status', ...common]);
    assert.match(status.stdout, new RegExp(`topology page ${url!.replace(/[.]/g, '\\.')}`));
    assert.match(status.stderr, new RegExp(`^Page: +${url!.replace(/[.]/g, '\\.')}$`, 'm'));

    browser = await launch();
    const { page, errors } = await openPage(browser, url!);
    shown = page;
    lap('page loaded');
    // Every host and every tunnel, by their stable data attributes.
    await page.waitForFunction(() => document.querySelectorAll('[data-host][data-lease="present"]').length === 3, { timeout: 10_000 });
    assert.deepEqual(await page.$$eval('[data-host]', (els) => els.map((e) => e.getAttribute('data-host')).sort()), ['h1', 'h2', 'h3']);
    assert.deepEqual(await page.$$eval('[data-tunnel]', (els) => els.map((e) => e.getAttribute('data-tunnel')).sort()), ['h1~h2', 'h1~h3', 'h2~h3']);
    for (const h of ['h1', 'h2', 'h3']) {
      const text = await page.$eval(`[data-host="${h}"]`, (e) => e.textContent ?? '');
      assert.match(text, /subnet 10\.244\.\d+\.0\/24/, `${h}: subnet`);
      assert.match(text, /public 192\.0\.2\.1\d/, `${h}: public IP`);
      assert.match(text, /VTEP [0-9a-f]{2}(:[0-9a-f]{2}){5}/, `${h}: VTEP MAC`);
    }
    // The probes colour every tunnel green.
    await page.waitForFunction(() => [...document.querySelectorAll('[data-tunnel]')].every((e) => e.getAttribute('data-state') === 'ok'), { timeout: 15_000 });
    lap('every tunnel ok');

    // A click on h1 shows its kernel tables: flannel.1, two neighbours, two FDB entries, two onlink routes.
    await page.click('[data-host="h1"]');
    await page.waitForSelector('#kernel[data-for="h1"][data-loaded="true"]', { timeout: 10_000 });
    assert.match(await page.$eval('#kernel [data-table="device"]', (e) => e.textContent ?? ''), /flannel\.1 \(vxlan\) up[\s\S]*id 1 dstport 8472 local 192\.0\.2\.11 nolearning/);
    assert.equal(await count(page, '#kernel [data-table="neigh"] tr[data-row]'), 2);
    assert.equal(await count(page, '#kernel [data-table="fdb"] tr[data-row]'), 2);
    const fdb = await page.$eval('#kernel [data-table="fdb"]', (e) => e.textContent ?? '');
    assert.match(fdb, /192\.0\.2\.12/);
    assert.match(fdb, /192\.0\.2\.13/);
    const routes = await page.$$eval('#kernel [data-table="routes"] tr.flannel', (els) => els.map((e) => e.textContent ?? ''));
    assert.equal(routes.length, 2, routes.join('\n'));
    for (const r of routes) assert.match(r, /via 10\.244\.\d+\.0 dev flannel\.1 onlink/);
    lap('kernel tables of h1');

    // Stop h3's flanneld (by its recorded pid): the page shows it stopped.
    const h3 = state.hosts.find((h) => h.name === `${prefix}h3`)!;
    const f3 = state.procs.find((p) => p.what === `flanneld ${h3.name}`)!;
    process.kill(f3.pid, 'SIGTERM');
    await page.waitForSelector('[data-host="h3"][data-flanneld="stopped"]', { timeout: 10_000 });
    assert.match(await page.$eval('[data-host="h3"]', (e) => e.textContent ?? ''), /flanneld stopped/);
    lap('h3 shown stopped');
    const st2 = await ctl(['lab', 'status', ...common]);
    assert.equal(st2.code, 1, 'lab status fails while a flanneld is down');
    assert.match(st2.stdout, new RegExp(`flanneld NOT RUNNING \\(pid ${f3.pid} has exited\\); its log is ${path.join(dir, 'h3', 'flanneld.log').replace(/[.]/g, '\\.')}`));

    // Delete its lease through the store: the host greys out, its tunnels go down, and h1's kernel tables lose it.
    const store = LocalStore.open(path.join(dir, 'leases.db'));
    try {
      const entry = (await store.listSubnets()).entries.find((e) => (JSON.parse(e.value) as { PublicIP: string }).PublicIP === h3.ip);
      assert.ok(entry, 'h3 has a lease');
      await store.deleteSubnet(entry.name);
    } finally {
      await store.close();
    }
    await page.waitForSelector('[data-host="h3"][data-lease="gone"]', { timeout: 10_000 });
    await page.waitForFunction(
      () => ['h1~h3', 'h2~h3'].every((id) => document.querySelector(`[data-tunnel="${id}"]`)?.getAttribute('data-state') === 'down'),
      { timeout: 10_000 },
    );
    assert.equal(await page.$eval('[data-tunnel="h1~h2"]', (e) => e.getAttribute('data-state')), 'ok');
    await page.waitForFunction(() => document.querySelectorAll('#kernel[data-for="h1"] [data-table="fdb"] tr[data-row]').length === 1, { timeout: 10_000 });
    lap('lease deleted, page updated');
    assert.deepEqual(errors, []);

    const shot = path.join(artifacts, 'ui-lab.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${shot}`);
    process.stderr.write(`ui.test screenshot: ${shot}\n`);
    shown = null;
    await browser.close();
    browser = null;

    const down = await ctl(['lab', 'down', ...common]);
    assert.equal(down.code, 0, down.stderr);
    assert.ok(!alive(state.ui.pid), 'lab down stops the page');
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(prefix)), []);
    lap('lab down');
  } catch (e) {
    // what the page showed when it failed, as an artifact too
    if (shown) {
      const shot = path.join(artifacts, 'ui-lab-failed.png');
      await shown.screenshot({ path: shot, fullPage: true }).then(() => t.diagnostic(`screenshot of the failure: ${shot}`), () => undefined);
    }
    throw e;
  } finally {
    await browser?.close();
    await ctl(['lab', 'down', ...common]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ui on a local store (no lab): leases only, "no probe data", live adds and deletes', { skip: noBrowser, timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-ui-store-'));
  const db = path.join(dir, 'leases.db');
  const store = LocalStore.open(db);
  let browser: Browser | null = null;
  let ui: Awaited<ReturnType<typeof startUi>> | null = null;
  try {
    await store.setNetworkConfig(NET_CONF);
    await store.putSubnet('10.244.1.0-24', leaseValue('198.51.100.1', '0a:00:00:00:00:01'), 3600);
    await store.putSubnet('10.244.2.0-24', leaseValue('198.51.100.2', '0a:00:00:00:00:02'), 3600);
    ui = await startUi(['--store', `local:${db}`]);
    browser = await launch();
    const { page, errors } = await openPage(browser, ui.url);
    await page.waitForFunction(() => document.querySelectorAll('[data-host]').length === 2, { timeout: 10_000 });
    assert.deepEqual(await page.$$eval('[data-tunnel]', (els) => els.map((e) => [e.getAttribute('data-tunnel'), e.getAttribute('data-state')])), [['198.51.100.1~198.51.100.2', 'unknown']]);
    assert.match(await page.$eval('#probe-note', (e) => e.textContent ?? ''), /No probe data/);
    assert.match(await page.$eval('[data-host="198.51.100.2"]', (e) => e.textContent ?? ''), /subnet 10\.244\.2\.0\/24[\s\S]*VTEP 0a:00:00:00:00:02/);

    const v0 = Number(await page.$eval('body', (e) => e.getAttribute('data-version')));
    await store.putSubnet('10.244.3.0-24', leaseValue('198.51.100.3', '0a:00:00:00:00:03'), 3600);
    await page.waitForFunction(() => document.querySelectorAll('[data-host][data-lease="present"]').length === 3, { timeout: 10_000 });
    assert.equal(await count(page, '[data-tunnel]'), 3);
    assert.ok(Number(await page.$eval('body', (e) => e.getAttribute('data-version'))) > v0, 'the page got a new version from the event stream');

    await store.deleteSubnet('10.244.1.0-24');
    await page.waitForSelector('[data-host="198.51.100.1"][data-lease="gone"]', { timeout: 10_000 });
    assert.equal(await count(page, '[data-tunnel]'), 1, 'a gone host has no tunnels outside the lab');

    // Another machine's kernel cannot be read from here, and the page says so.
    await page.click('[data-host="198.51.100.2"]');
    await page.waitForSelector('#kernel[data-for="198.51.100.2"][data-loaded="unavailable"]', { timeout: 10_000 });
    assert.match(await page.$eval('#kernel', (e) => e.textContent ?? ''), /read only on the machine that runs this page/);
    assert.deepEqual(errors, []);
    t.diagnostic('store-mode page ok');
  } finally {
    await browser?.close();
    if (ui) assert.equal(await stopProc(ui.proc), 0, ui.stderr());
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ui on etcd: the event stream sends the state at once and again when a lease appears; foreign Host headers are refused', { timeout: 60_000 }, async () => {
  const etcd = await startEtcd();
  let ui: Awaited<ReturnType<typeof startUi>> | null = null;
  const ac = new AbortController();
  try {
    await etcd.client.put('/coreos.com/network/config').value(NET_CONF);
    await etcd.client.put('/coreos.com/network/subnets/10.244.1.0-24').value(leaseValue('198.51.100.1', '0a:00:00:00:00:01'));
    ui = await startUi(['--etcd-endpoints', etcd.endpoint]);
    const res = await fetch(`${ui.url}api/events`, { signal: ac.signal });
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = res.body!.getReader();
    let buf = '';
    const nextState = async (pred: (s: { hosts: Array<{ id: string }>; store: string }) => boolean) => {
      for (;;) {
        const i = buf.indexOf('\n\n');
        if (i >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = /^data: (.*)$/m.exec(ev)?.[1];
          if (/^event: state$/m.test(ev) && data) {
            const s = JSON.parse(data) as { hosts: Array<{ id: string }>; store: string };
            if (pred(s)) return s;
          }
          continue;
        }
        const { value, done } = await reader.read();
        if (done) throw new Error('event stream ended');
        buf += new TextDecoder().decode(value);
      }
    };
    const first = await nextState((s) => s.hosts.length === 1);
    assert.match(first.store, /^etcd /);
    await etcd.client.put('/coreos.com/network/subnets/10.244.2.0-24').value(leaseValue('198.51.100.2', '0a:00:00:00:00:02'));
    const second = await nextState((s) => s.hosts.length === 2);
    assert.deepEqual(second.hosts.map((h) => h.id), ['198.51.100.1', '198.51.100.2']);

    const page = await fetch(ui.url);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.doesNotMatch(html, /<(script|link|img)[^>]+(src|href)=/i, 'no external assets');
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    const port = new URL(ui.url).port;
    const foreign = await new Promise<number>((resolve, reject) => {
      // fetch() does not let us set Host; a raw request does
      import('node:http').then(({ request }) => {
        const r = request({ host: '127.0.0.1', port, path: '/api/state', headers: { host: `evil.example:${port}` } }, (x) => {
          x.resume();
          resolve(x.statusCode ?? 0);
        });
        r.on('error', reject);
        r.end();
      }, reject);
    });
    assert.equal(foreign, 403);
  } finally {
    ac.abort();
    if (ui) await stopProc(ui.proc);
    await etcd.stop();
  }
});

test('ui in an etcd lab without pods: the page reaches etcd in the underlay and probes host to host', { skip: isRoot() ? false : 'needs root (network namespaces)', timeout: 90_000 }, async () => {
  const prefix = `ftsui${randomBytes(2).toString('hex')}-`;
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-ui-lab-'));
  const common = ['--dir', dir, '--prefix', prefix];
  try {
    const up = await ctl(['lab', 'up', '--hosts', '2', '--pods', '0', '--store', 'etcd', ...common]);
    assert.equal(up.code, 0, up.stderr + up.stdout);
    assert.match(up.stderr, new RegExp(`^Leases: .* lab exec --dir ${dir.replace(/[.]/g, '\\.')} --prefix ${prefix} h1 -- .* leases --etcd-endpoints http://192\\.0\\.2\\.1:2379$`, 'm'));
    const url = /^Page: +(\S+)$/m.exec(up.stderr)?.[1];
    assert.ok(url, up.stderr);
    let s: { hosts: Array<{ id: string; lease: string }>; tunnels: Array<{ state: string; probes: Array<{ what: string }> }> } | null = null;
    for (let i = 0; i < 100; i++) {
      s = (await (await fetch(`${url}api/state`)).json()) as typeof s;
      if (s!.hosts.filter((h) => h.lease === 'present').length === 2 && s!.tunnels[0]?.state === 'ok') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(s!.hosts.map((h) => [h.id, h.lease]), [['h1', 'present'], ['h2', 'present']]);
    assert.equal(s!.tunnels[0]!.state, 'ok', JSON.stringify(s!.tunnels));
    assert.match(s!.tunnels[0]!.probes[0]!.what, /flannel address/);
    const k = (await (await fetch(`${url}api/hosts/h2/kernel`)).json()) as { available: boolean; neigh: unknown[] };
    assert.equal(k.available, true);
    assert.equal(k.neigh.length, 1);
  } finally {
    await ctl(['lab', 'down', ...common]);
    rmSync(dir, { recursive: true, force: true });
  }
});
