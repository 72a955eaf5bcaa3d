// npm run build:bundle (also part of npm run build) — flanneld as an esbuild
// bundle in dist/bundle/. This is what the image's /opt/bin/flanneld and the
// systemd unit (through package.json's bin) run.
//   flanneld.cjs        the entry: src/cmd/flanneld/main.ts alone, which
//                       answers `--version` itself
//   <name>.cjs          one per dynamic import('./<name>.js') in main.ts (the
//                       flag parser flags.cjs, the daemon run.cjs), required
//                       only when needed, so --version reads no more than
//                       ~2 kB and --help no more than the flag parser. Inside
//                       each, code behind a further dynamic import (each store
//                       client) is parsed but not run until used. Modules
//                       both files use are in both (a few kB).
//   <name>.js           one per worker thread, at the name the code asks for:
//                       every `new Worker(new URL('./<name>.js', import.meta.url))`
//                       in src/ is found here and its ./<name>.ts beside it is
//                       bundled as dist/bundle/<name>.js, so a new or renamed
//                       worker file needs no change to this script. Two workers
//                       with the same file name in different directories would
//                       land on one path: that fails the build.
//   package.json        {"type":"commonjs"}, so the .js workers are CommonJS
//                       wherever the directory is copied
// Why CommonJS: on Node 20 the ESM loader costs each isolate (the main thread
// and every worker) more than the module code itself, all the more with a V8
// flag such as --max-semi-space-size, which makes node compile its own
// internal modules without their code cache. Measured against the ESM bundle
// with code splitting this replaces: spawn → subnet.env -16..-19 ms (etcd or
// local store, VXLAN), the same RSS (issue 11). And three files to load
// instead of ~100 against the tsc output.
// import.meta.url (worker URLs, createRequire) becomes the file URL of the
// bundle file itself, set first thing in each file.
// Native addons and heavy clients that read files next to their code stay
// external and are loaded from node_modules at run time, found from
// dist/bundle/ upwards (../../node_modules): koffi, better-sqlite3, etcd3
// (grpc's .proto files), @kubernetes/client-node (ESM only: it stays an
// import()), and prom-client (only with --healthz-port).
// The build fails on any esbuild warning, and when a `new URL('./x.js', …)`
// left in the output names no file of dist/bundle/.
import { build } from 'esbuild';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist/bundle');
const external = ['koffi', 'better-sqlite3', 'etcd3', '@kubernetes/client-node', 'prom-client'];
const IMPORT_META_URL = '__fts_import_meta_url';
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  external,
  define: { 'import.meta.url': IMPORT_META_URL },
  // "use strict" first: the sources are ES modules, strict throughout.
  banner: { js: `"use strict";\nconst ${IMPORT_META_URL} = require("node:url").pathToFileURL(__filename).href;` },
  legalComments: 'none',
  // Whitespace and comments out, names kept (no identifier mangling, so
  // errors and logs read the same). The source text stays in the heap for
  // lazy compilation: run.cjs's took 1.1 MB there (580 kB of text, held as
  // UTF-16 because a few comments were not ASCII), now 0.4 MB (issue 11).
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'silent',
  absWorkingDir: root,
  outdir: out,
};

const die = (msg) => {
  console.error(`build-bundle: ${msg}`);
  process.exit(1);
};

// `new Worker(new URL('./name.js', import.meta.url)` in TypeScript source,
// possibly across lines. The tsc output sits next to the .ts layout, so the
// URL names a sibling file.
const WORKER_RE = /new\s+Worker\s*\(\s*new\s+URL\s*\(\s*(['"])\.\/([\w.-]+)\.js\1\s*,\s*import\.meta\.url\s*\)/g;

function* sourceFiles(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* sourceFiles(p);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts')) yield p;
  }
}

/** { outputName: 'src/…/name.ts' } for every worker entry the code spawns. */
function workerEntries() {
  const entries = {};
  for (const file of sourceFiles(path.join(root, 'src'))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(WORKER_RE)) {
      const name = m[2];
      const src = path.relative(root, path.join(path.dirname(file), `${name}.ts`));
      if (!existsSync(path.join(root, src))) die(`${path.relative(root, file)} starts a worker from ./${name}.js, but there is no ${src}`);
      if (name === 'flanneld') die(`worker name ${name}.js collides with the bundle's entry`);
      if (entries[name] && entries[name] !== src) die(`two workers would both be dist/bundle/${name}.js: ${entries[name]} and ${src}; rename one`);
      entries[name] = src;
    }
  }
  if (!Object.keys(entries).length) die('found no `new Worker(new URL(...))` in src/; has the pattern changed?');
  return entries;
}

async function bundle(opts) {
  let r;
  try {
    r = await build({ ...common, ...opts });
  } catch (e) {
    die(`esbuild failed:\n${(e.errors ?? [e]).map((x) => `  ${x.text ?? x.message}${x.location ? ` (${x.location.file}:${x.location.line})` : ''}`).join('\n')}`);
  }
  if (r.warnings.length) die(`esbuild warnings:\n${r.warnings.map((w) => `  ${w.text}${w.location ? ` (${w.location.file}:${w.location.line})` : ''}`).join('\n')}`);
}

const ENTRY = 'src/cmd/flanneld/main.ts';
const workers = workerEntries();
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
writeFileSync(path.join(out, 'package.json'), '{"type":"commonjs"}\n');

// The entry; each relative import() in it becomes require('./<name>.cjs') of
// a file of its own (import() of a file is the ESM loader again).
const lazy = {};
await bundle({
  entryPoints: { flanneld: ENTRY },
  outExtension: { '.js': '.cjs' },
  supported: { 'dynamic-import': false },
  plugins: [
    {
      name: 'lazy-parts',
      setup(b) {
        b.onResolve({ filter: /^\.\/[\w-]+\.js$/ }, (args) => {
          if (args.kind !== 'dynamic-import' || path.relative(root, args.importer) !== ENTRY) return undefined;
          const name = path.basename(args.path, '.js');
          if (name === 'flanneld' || workers[name]) die(`${ENTRY}: import('${args.path}') would clash with another file of the bundle`);
          lazy[name] = path.relative(root, path.join(path.dirname(args.importer), `${name}.ts`));
          return { path: `./${name}.cjs`, external: true };
        });
      },
    },
  ],
});
if (!lazy.run) die(`${ENTRY} no longer imports ./run.js dynamically; check the bundle layout`);
await bundle({ entryPoints: lazy, outExtension: { '.js': '.cjs' } });
await bundle({ entryPoints: workers });

// Every worker URL in the output must name a file of the bundle.
const URL_RE = new RegExp(`new\\s+URL\\s*\\(\\s*(['"])\\./([^'"]+)\\1\\s*,\\s*(?:import\\.meta\\.url|${IMPORT_META_URL})\\s*\\)`, 'g');
const missing = [];
let urls = 0;
for (const f of readdirSync(out)) {
  if (!/\.c?js$/.test(f)) continue;
  for (const m of readFileSync(path.join(out, f), 'utf8').matchAll(URL_RE)) {
    urls++;
    if (!existsSync(path.join(out, m[2]))) missing.push(`${f}: ./${m[2]}`);
  }
}
if (missing.length) die(`the bundle refers to files it does not have:\n  ${missing.join('\n  ')}`);
if (urls < Object.keys(workers).length) die(`found ${urls} worker URLs in the output for ${Object.keys(workers).length} workers; has esbuild rewritten them?`);
console.log(`build-bundle: dist/bundle/flanneld.cjs, ${Object.keys(lazy).map((n) => `${n}.cjs`).join(' ')}, workers ${Object.keys(workers).map((n) => `${n}.js`).join(' ')}`);
