// npm run build:bundle (also part of npm run build) — flanneld as an esbuild
// bundle in dist/bundle/. This is what the image's /opt/bin/flanneld and the
// systemd unit (through package.json's bin) run.
//   flanneld.mjs        the entry (what main.ts and its static imports need:
//                       flags and --version/--help)
//   chunk-*.mjs         code loaded by the entry's dynamic imports (the
//                       daemon, each store client), still loaded only when used
//   <name>.js           one per worker thread, at the name the code asks for:
//                       every `new Worker(new URL('./<name>.js', import.meta.url))`
//                       in src/ is found here and its ./<name>.ts beside it is
//                       bundled as dist/bundle/<name>.js, so a new or renamed
//                       worker file needs no change to this script. Two workers
//                       with the same file name in different directories would
//                       land on one path: that fails the build.
//   package.json        {"type":"module"}, so the .js workers are ESM wherever
//                       the directory is copied
// Native addons and heavy clients that read files next to their code stay
// external and are loaded from node_modules at run time, found from
// dist/bundle/ upwards (../../node_modules): koffi, better-sqlite3, etcd3
// (grpc's .proto files), @kubernetes/client-node, and prom-client (only with
// --healthz-port; see below).
// After the build every `new URL('./x.js', import.meta.url)` left in the
// output is checked to name a file that exists in dist/bundle/.
// Why: one file per load instead of ~100 (resolve, stat, read, compile each);
// see bench/startup.ts for what it buys.
import { build } from 'esbuild';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist/bundle');
// prom-client: run.ts loads it with `await import('prom-client')` and uses its
// named exports; bundled, a dynamic import of a CommonJS package gets only
// `default` (esbuild's splitting), so flanneld --healthz-port failed with
// "P.Registry is not a constructor". From node_modules, Node gives it the
// named exports, as with the tsc output.
const external = ['koffi', 'better-sqlite3', 'etcd3', '@kubernetes/client-node', 'prom-client'];
// CommonJS packages inside an ESM bundle call require() for Node built-ins.
const banner = { js: "import { createRequire as __fts_cr } from 'node:module'; const require = __fts_cr(import.meta.url);" };
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  external,
  banner,
  legalComments: 'none',
  logLevel: 'warning',
  absWorkingDir: root,
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
      if (name === 'flanneld' || name.startsWith('chunk-')) die(`worker name ${name}.js collides with the bundle's own files`);
      if (entries[name] && entries[name] !== src) die(`two workers would both be dist/bundle/${name}.js: ${entries[name]} and ${src}; rename one`);
      entries[name] = src;
    }
  }
  if (!Object.keys(entries).length) die('found no `new Worker(new URL(...))` in src/; has the pattern changed?');
  return entries;
}

const workers = workerEntries();
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
writeFileSync(path.join(out, 'package.json'), '{"type":"module"}\n');
await build({
  ...common,
  entryPoints: { flanneld: 'src/cmd/flanneld/main.ts' },
  splitting: true,
  outdir: out,
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunk-[hash]',
});
await build({ ...common, entryPoints: workers, outdir: out });

// Every worker URL in the output must name a file of the bundle.
const URL_RE = /new\s+URL\s*\(\s*(['"])\.\/([^'"]+)\1\s*,\s*import\.meta\.url\s*\)/g;
const missing = [];
for (const f of readdirSync(out)) {
  if (!/\.m?js$/.test(f)) continue;
  for (const m of readFileSync(path.join(out, f), 'utf8').matchAll(URL_RE)) {
    if (!existsSync(path.join(out, m[2]))) missing.push(`${f}: ./${m[2]}`);
  }
}
if (missing.length) die(`the bundle refers to files it does not have:\n  ${missing.join('\n  ')}`);
// A chunk that is nothing but a CommonJS package behind `export default` is
// one the code loads with import(): its named exports would be undefined.
for (const f of readdirSync(out)) {
  const m = /^export default (require_\w+)\(\);$/m.exec(readFileSync(path.join(out, f), 'utf8'));
  if (m) die(`${f} exports the CommonJS module ${m[1]} as default only; a dynamic import() of it loses its named exports: make that package external`);
}
console.log(`build-bundle: dist/bundle/flanneld.mjs, workers ${Object.keys(workers).map((n) => `${n}.js`).join(' ')}`);
