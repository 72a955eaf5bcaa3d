// The container image, built without a registry (scripts/build-image.sh:
// debootstrap + this machine's Node + umoci) and checked from its OCI layers:
// `umoci unpack`, then chrooted in private mount/pid/network namespaces it
// must print flanneld's version, install the CNI plugin and the CNI config
// into temp dirs bound over /opt/cni/bin and /etc/cni/net.d, load its native
// addons, and run the daemon (VXLAN, local store, --ip-masq) until SIGTERM.
//
// Cold (first run on a machine: debootstrap, npm ci --omit=dev) it takes a
// few minutes; with the caches under ~/.cache/flannel-ts it takes seconds.
// Needs root. FLANNEL_TS_SKIP_IMAGE_TEST=1 skips it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { privilegedSkip } from '../../src/testing/privileged.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

function skip(): string | false {
  if (process.env.FLANNEL_TS_SKIP_IMAGE_TEST === '1') return 'FLANNEL_TS_SKIP_IMAGE_TEST=1';
  return privilegedSkip('debootstrap, chroot and namespaces', ['apt-get', 'chroot', 'unshare', 'tar']);
}

test('image: build without a registry, then check it from its OCI layers', { skip: skip(), timeout: 20 * 60_000 }, async (t) => {
  const t0 = Date.now();
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
    const p = spawn('bash', [path.join(REPO, 'scripts/build-image.sh'), '--check'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    p.on('error', (e) => (output += String(e)));
    p.on('close', (c) => resolve({ code: c, output }));
  });
  assert.equal(code, 0, `scripts/build-image.sh --check failed:\n${output}`);
  assert.match(output, /check passed/);
  for (const line of output.split('\n')) {
    if (/^\s*(size:|built in)|check passed|built in \d+ s|: cached/.test(line)) t.diagnostic(line.trim());
  }
  t.diagnostic(`build + check: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});
