#!/usr/bin/env node
// The `lora-studio` command: the bundled trainer/engine CLI (build it first with `npm run build`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const bundle = fileURLToPath(new URL('../dist/cli.mjs', import.meta.url));
if (!existsSync(bundle)) {
  console.error('lora-studio: dist/cli.mjs is missing — run `npm run build` in the project folder first.');
  process.exit(1);
}
await import(bundle);
