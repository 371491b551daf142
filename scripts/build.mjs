#!/usr/bin/env node
// Bundles with esbuild: each room of the product is its own bundle, sharing only typed protocol modules.
//   dist/cli.mjs        the engine + CLI (child process of the extension, or `lora-studio` on a terminal)
//   dist/bench.mjs      the GPU benchmark (npm run bench)
//   dist/extension.cjs  the VS Code extension host side
//   dist/server.cjs     the language server for *.lora.yaml
//   dist/webview/*.js   browser code: the training dashboard and the notebook renderer
// Options: --watch, --production (minified), --only=TEXT (bundles whose output path contains TEXT),
// --outdir=DIR (instead of dist/).
import * as esbuild from 'esbuild';
import fs from 'node:fs';

const watch = process.argv.includes('--watch');
const production = process.argv.includes('--production');
// Native and wasm-carrying packages stay outside the bundle and ship in node_modules.
const nodeExternals = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-backend-wasm', 'sharp', 'webgpu'];
// The version is package.json's, compiled in: src/core/config/version.ts reads package.json itself only when
// unbundled (tsx). In the CommonJS bundles that dead branch's import.meta is empty: `cjs` silences the warning.
const { version } = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const common = { bundle: true, sourcemap: !production, minify: production, logLevel: 'info', legalComments: 'none', define: { __LORA_STUDIO_VERSION__: JSON.stringify(version) } };
const cjs = { format: 'cjs', logOverride: { 'empty-import-meta': 'silent' } };

const bundles = [
  { entryPoints: ['src/cli/main.ts'], outfile: 'dist/cli.mjs', platform: 'node', format: 'esm', target: 'node20', external: nodeExternals,
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" } },
  // The GPU benchmark (bench/main.ts), bundled like the trainer: the GPU machine gets node + production
  // node_modules only (no tsx), see DEVELOPERS.md "GPU benchmarks".
  { entryPoints: ['bench/main.ts'], outfile: 'dist/bench.mjs', platform: 'node', format: 'esm', target: 'node20', external: nodeExternals,
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" } },
  { entryPoints: ['src/extension/extension.ts'], outfile: 'dist/extension.cjs', platform: 'node', ...cjs, target: 'node20', external: ['vscode'] },
  { entryPoints: ['src/server/server.ts'], outfile: 'dist/server.cjs', platform: 'node', ...cjs, target: 'node20' },
  { entryPoints: ['webview/dashboard/main.ts'], outfile: 'dist/webview/dashboard.js', platform: 'browser', format: 'iife', target: 'es2022' },
  { entryPoints: ['webview/dataset/main.ts'], outfile: 'dist/webview/dataset.js', platform: 'browser', format: 'iife', target: 'es2022' },
  { entryPoints: ['webview/compare/main.ts'], outfile: 'dist/webview/compare.js', platform: 'browser', format: 'iife', target: 'es2022' },
  { entryPoints: ['webview/renderer/main.ts'], outfile: 'dist/webview/renderer.js', platform: 'browser', format: 'esm', target: 'es2022' },
].filter((b) => fs.existsSync(b.entryPoints[0]));
// --only=bench builds just the bundles whose output path contains "bench" (the GPU machine needs only that one).
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
if (only) bundles.splice(0, bundles.length, ...bundles.filter((b) => b.outfile.includes(only)));
// --outdir=DIR writes the bundles there instead of dist/ (a test builds into test-output/).
const outdir = process.argv.find((a) => a.startsWith('--outdir='))?.slice('--outdir='.length);
if (outdir) for (const b of bundles) b.outfile = b.outfile.replace(/^dist\//, `${outdir}/`);

for (const b of bundles) {
  const options = { ...common, ...b };
  if (watch) await (await esbuild.context(options)).watch();
  else await esbuild.build(options);
}
