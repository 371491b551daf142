#!/usr/bin/env node
// The README's main job: build, train the example LoRA on the bundled tiny model, then generate the same
// prompts and seeds without and with the LoRA and put them side by side in before-after.png.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import YAML from 'yaml';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const config = path.join(root, 'examples/tiny-shapes.lora.yaml');
const run = (args) => {
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

run([path.join(root, 'scripts/build.mjs')]);
run([path.join(root, 'dist/cli.mjs'), 'train', config]);

const cfg = YAML.parse(fs.readFileSync(config, 'utf8'));
const out = path.resolve(path.dirname(config), cfg.output_dir);
const model = path.resolve(path.dirname(config), cfg.pretrained_model_name_or_path);
const lora = path.join(out, 'pytorch_lora_weights.safetensors');
const prompts = ['a red circle', 'a green square', 'a blue triangle', 'a yellow circle'];
const rows = [[], []];
fs.mkdirSync(path.join(out, 'demo'), { recursive: true });
prompts.forEach((prompt, i) => {
  for (const [row, extra] of [[0, []], [1, ['--lora', lora]]]) {
    const file = path.join(out, 'demo', `${row ? 'after' : 'before'}-${i}.png`);
    run([path.join(root, 'dist/cli.mjs'), 'generate', '--model', model, '--prompt', prompt, '--seed', String(i),
      '--scheduler', 'dpmpp-2m', '--steps', '20', '--guidance', '5', '--backend', cfg.backend ?? 'auto', ...extra, '--out', file]);
    rows[row].push(file);
  }
});
const size = 64;
const scale = 3;
const composites = rows.flatMap((files, r) => files.map((f, c) => ({ input: f, left: c * size, top: r * size })));
const grid = await sharp({ create: { width: size * prompts.length, height: size * 2, channels: 3, background: '#fff' } }).composite(composites).png().toBuffer();
await sharp(grid).resize(size * prompts.length * scale, size * 2 * scale, { kernel: 'nearest' }).toFile(path.join(out, 'before-after.png'));
console.log(`\nLoRA: ${lora}\nbefore (top row) / after (bottom row): ${path.join(out, 'before-after.png')}`);
