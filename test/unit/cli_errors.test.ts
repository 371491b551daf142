// Bad inputs to the CLI end with a clear message and a non-zero exit, never a stack trace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { MODEL_DIR, REPO, TINY_SHAPES } from '../helpers/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-'));
const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), ...args], { encoding: 'utf8' });

test('a folder without model_index.json is refused with what to point at', () => {
  const r = cli('generate', '--model', tmp, '--prompt', 'x', '--out', path.join(tmp, 'a.png'), '--backend', 'cpu');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /no model_index\.json.*diffusers pipeline folder/s);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

test('a LoRA made for another model names the key that does not fit', () => {
  const other = path.join(TINY_SHAPES, 'reference-lora/pytorch_lora_weights.safetensors');
  const r = cli('generate', '--model', MODEL_DIR, '--prompt', 'x', '--lora', other, '--out', path.join(tmp, 'b.png'), '--backend', 'cpu', '--steps', '1');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /unet|lora/i);
  assert.match(r.stderr, /(down|mid|up)_blocks?\.[\w.]+/, 'names a module key');
});

test('a .ckpt file is refused with how to convert', () => {
  const ckpt = path.join(tmp, 'model.ckpt');
  fs.writeFileSync(ckpt, 'not really');
  for (const args of [['inspect', ckpt], ['generate', '--model', MODEL_DIR, '--prompt', 'x', '--lora', ckpt, '--out', path.join(tmp, 'c.png'), '--backend', 'cpu']]) {
    const r = cli(...args);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /pickle.*safetensors/s);
  }
});

test('a truncated safetensors file is a clear error', () => {
  const bad = path.join(tmp, 'cut.safetensors');
  const real = fs.readFileSync(path.join(MODEL_DIR, 'vae/diffusion_pytorch_model.safetensors'));
  fs.writeFileSync(bad, real.subarray(0, 5000));
  const r = cli('inspect', bad);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /cut\.safetensors.*(truncated|past the end)/s);
});

test('unknown options and missing arguments are reported together', () => {
  const r = cli('generate', '--prompt', 'x', '--scheduler', 'magic');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--model DIR\|ORG\/NAME is required/);
  assert.match(r.stderr, /--out FILE\.png is required/);
  assert.match(r.stderr, /--scheduler must be one of/);
});
