// The LoRA learns what diffusers' did: trained on tiny-shapes' dataset-corner (small shapes in the top-left
// corner) with the recipe of reference-lora/REFERENCE_LORA.json, generations move up and to the left.
// A short run (50 steps; the reference's curve starts at step 50 with the centroid moved from
// (28.1, 34.6) to (27.0, 31.8)); the centroid is measured on the same 12 captions and seeds, with and
// without the LoRA, with DPM++ 2M at 10 steps instead of 20 to keep the test short. Heavy: wasm by default.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, TINY_SHAPES } from '../helpers/fixtures.js';
import { configFromFlags } from '../../src/core/config/flags.js';
import { initBackend } from '../../src/core/engine/backend.js';
import type { BackendName } from '../../src/core/config/run_config.js';
import { train } from '../../src/training/loop.js';
import { MemoryEventSink } from '../../src/training/events.js';
import { loadStableDiffusion, disposeStableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { readLoraFile } from '../../src/core/lora/lora_file.js';
import { LoraSet } from '../../src/core/lora/lora_set.js';
import { generateShapes, meanCentroid } from './ink_centroid.js';

test('50 steps on dataset-corner move the generated shapes toward the top-left corner', async () => {
  await initBackend((process.env.LORA_STUDIO_BACKEND ?? 'wasm') as BackendName);
  const reference = JSON.parse(fs.readFileSync(path.join(TINY_SHAPES, 'reference-lora/REFERENCE_LORA.json'), 'utf8'));
  assert.match(reference.recipe, /r=4 alpha=4.*lr 1e-3 wd 1e-2.*batch 4; constant lr; max_grad_norm 1/);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'learns-'));
  const loaded = configFromFlags(
    [
      `--pretrained_model_name_or_path=${path.join(TINY_SHAPES, 'model')}`, `--train_data_dir=${path.join(TINY_SHAPES, 'dataset-corner')}`, `--output_dir=${out}`,
      '--resolution=64', '--center_crop', '--train_batch_size=4', '--rank=4', '--learning_rate=1e-3', '--adam_weight_decay=1e-2', '--adam_epsilon=1e-8',
      '--lr_scheduler=constant', '--lr_warmup_steps=0', '--max_grad_norm=1', '--max_train_steps=50', '--checkpointing_steps=1000', '--seed=0',
      `--backend=${process.env.LORA_STUDIO_BACKEND ?? 'wasm'}`,
    ],
    { cwd: REPO },
  );
  assert.ok(loaded.config, loaded.problems.map((p) => p.message).join('\n'));
  const events = new MemoryEventSink();
  const r = await train({ config: loaded.config!, events });
  assert.equal(r.status, 'completed');

  const sd = loadStableDiffusion(path.join(TINY_SHAPES, 'model'));
  const set = new LoraSet();
  set.add(readLoraFile(path.join(out, 'pytorch_lora_weights.safetensors'), sd.unet.loraTargets()), 1);
  // +0.5: REFERENCE_LORA.json measures at pixel centres (its dataset figure is the pixel-index mean + 0.5).
  const [bx, by] = meanCentroid(await generateShapes(sd, { steps: 10 })).map((v) => v + 0.5);
  const [lx, ly] = meanCentroid(await generateShapes(sd, { steps: 10, lora: set.lookup })).map((v) => v + 0.5);
  if (process.env.LORA_STUDIO_REPORT) console.log(`[learns] ink centroid base (${bx.toFixed(2)}, ${by.toFixed(2)}) → after 50 steps (${lx.toFixed(2)}, ${ly.toFixed(2)}); reference at 50 steps ${reference.curve[0].centroid.map((v: number) => v.toFixed(2)).join(', ')}`);
  set.dispose();
  disposeStableDiffusion(sd);
  // Both coordinates move toward the corner; the reference moved y by 2.8 px and x by 1.1 px at step 50.
  // Margins: y at least 1.5 px up, x at least 0.5 px left (one generation of 12 moving 6 px is 0.5 px).
  assert.ok(by - ly > 1.5, `centroid y ${by.toFixed(2)} → ${ly.toFixed(2)}: expected it to move up`);
  assert.ok(bx - lx > 0.5, `centroid x ${bx.toFixed(2)} → ${lx.toFixed(2)}: expected it to move left`);
});
