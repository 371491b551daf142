#!/usr/bin/env node
// Runs every test file under test/ (or those given) with Node's test runner, TypeScript through tsx.
// Each file runs in its own process, so each can pick its tfjs backend (LORA_STUDIO_BACKEND; the
// suite's default is wasm, the fast CPU path). With no arguments a second pass runs the model-level
// parity checks again on WebGPU (Mesa lavapipe in CI), as the project promises, and on the SDXL and
// single-file fixtures (LORA_STUDIO_FIXTURES).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const MODEL_LEVEL = ['test/parity/text_encoder.test.ts', 'test/parity/unet.test.ts', 'test/parity/vae.test.ts', 'test/parity/lora_unet.test.ts'];
const OTHER_FIXTURES = ['test/fixtures/tiny-sdxl', 'test/fixtures/tiny-sd-single-file'];

const args = process.argv.slice(2);
const roots = args.length ? args : ['test'];
const files = [];
const walk = (p) => {
  if (fs.statSync(p).isDirectory()) {
    for (const f of fs.readdirSync(p).sort()) if (f !== 'fixtures' && f !== 'node_modules') walk(path.join(p, f));
  } else if (/\.test\.(ts|mts)$/.test(p)) files.push(p);
};
roots.forEach(walk);

const run = (list, env) =>
  spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...list], { stdio: 'inherit', env: { ...process.env, ...env } }).status ?? 1;

let status = run(files, { LORA_STUDIO_BACKEND: process.env.LORA_STUDIO_BACKEND ?? 'wasm' });
if (!args.length && !process.env.LORA_STUDIO_BACKEND) {
  console.log('\n# model-level parity on webgpu');
  status = run(MODEL_LEVEL, { LORA_STUDIO_BACKEND: 'webgpu' }) || status;
}
// The same model-level files on the project's other fixture layouts (test/helpers/fixtures.ts reads each
// one's shapes and goldens): the SDXL model folder, and tiny-sd as one LDM-layout file.
if (!args.length && !process.env.LORA_STUDIO_FIXTURES) {
  for (const fixture of OTHER_FIXTURES) {
    console.log(`\n# model-level parity on ${fixture}`);
    status = run(MODEL_LEVEL, { LORA_STUDIO_BACKEND: process.env.LORA_STUDIO_BACKEND ?? 'wasm', LORA_STUDIO_FIXTURES: path.resolve(fixture) }) || status;
  }
}
process.exit(status);
