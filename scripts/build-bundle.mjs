// npm run build:bundle — flanneld as an esbuild bundle in dist/bundle/:
//   flanneld.mjs        the entry (what main.ts and its static imports need:
//                       flags and --version/--help)
//   chunk-*.mjs         code loaded by the entry's dynamic imports (the
//                       daemon, each store client), still loaded only when used
//   netlink-worker.js, worker.js
//                       the worker threads, at the names the code asks for
//                       (new URL('./netlink-worker.js', import.meta.url))
//   package.json        {"type":"module"}, so the .js workers are ESM wherever
//                       the directory is copied
// Native addons and heavy clients that read files next to their code stay
// external and are loaded from node_modules as before: koffi, better-sqlite3,
// etcd3 (grpc's .proto files), @kubernetes/client-node.
// Why: one file per load instead of ~100 (resolve, stat, read, compile each);
// see bench/startup.ts for what it buys.
import { build } from 'esbuild';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist/bundle');
const external = ['koffi', 'better-sqlite3', 'etcd3', '@kubernetes/client-node'];
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
await build({
  ...common,
  entryPoints: {
    'netlink-worker': 'src/netlink/netlink-worker.ts',
    worker: 'src/backend/udp/worker.ts',
  },
  outdir: out,
});
