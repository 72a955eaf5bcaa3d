// flanneld's entry as a process: --version (answered before the flag parser
// loads), --help and a usage error, for the tsc output and, when built, the
// esbuild bundle that the image and the systemd unit run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VERSION } from '../../version.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const entries = [path.join(here, 'main.js'), path.resolve(here, '../../../bundle/flanneld.cjs')].filter((e) => existsSync(e));

function run(entry: string, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env }, timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

for (const entry of entries) {
  const name = path.relative(path.resolve(here, '../../..'), entry);

  test(`${name}: --version and -version print the version on stderr, whatever FLANNELD_* holds`, () => {
    for (const args of [['--version'], ['-version'], ['--version=true'], ['--version', '-v=1']]) {
      const r = run(entry, args, { FLANNELD_IP_MASQ: 'maybe', FLANNELD_HEALTHZ_PORT: 'x' });
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
      assert.equal(r.err, `${VERSION}\n`);
      assert.equal(r.out, '');
    }
  });

  test(`${name}: --help prints usage; a bad flag or variable exits 2`, () => {
    const h = run(entry, ['--help']);
    assert.equal(h.code, 0);
    assert.match(h.out, /--etcd-endpoints/);
    const bad = run(entry, ['--no-such-flag']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /no-such-flag/);
    const badEnv = run(entry, ['--iface=lo'], { FLANNELD_IP_MASQ: 'maybe' });
    assert.equal(badEnv.code, 2);
    assert.match(badEnv.err, /ip-masq.*maybe/);
  });
}
