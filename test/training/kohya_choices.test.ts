// One short run with what kohya users reach for: aspect-ratio buckets, a held-out validation split,
// two sample prompts in kohya's syntax, caption dropout and shuffling, lora_alpha ≠ rank. What a user
// would notice: the run completes; `started` lists the buckets; batches never mix sizes (the UNet would
// throw on a ragged stack); a validation loss is reported; each sample prompt gives its own image with its
// own settings; the kohya file carries alpha and the diffusers file has it folded in; ss_bucket_info.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { MODEL_DIR } from '../helpers/fixtures.js';
import { loadRunConfig } from '../../src/core/config/load.js';
import { initBackend } from '../../src/core/engine/backend.js';
import type { BackendName } from '../../src/core/config/run_config.js';
import { train } from '../../src/training/loop.js';
import { MemoryEventSink } from '../../src/training/events.js';
import { SafetensorsFile } from '../../src/core/io/safetensors.js';
import { TRAINER_EVENTS } from '../../src/protocol/training.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kohya-choices-'));

async function dataset(): Promise<string> {
  const dir = path.join(tmp, 'data');
  fs.mkdirSync(dir, { recursive: true });
  const shapes: [number, number, string][] = [[64, 64, 'red'], [96, 64, 'blue'], [96, 64, 'green'], [64, 96, 'yellow'], [64, 96, 'purple']];
  for (const [i, [w, h, colour]] of shapes.entries()) {
    await sharp({ create: { width: w, height: h, channels: 3, background: colour } }).png().toFile(path.join(dir, `img${i}.png`));
    fs.writeFileSync(path.join(dir, `img${i}.txt`), `sks, ${colour}, plain, ${w > h ? 'wide' : w < h ? 'tall' : 'square'}`);
  }
  return dir;
}

test('buckets, validation split, sample prompts, caption dropout/shuffle and lora_alpha in one run', async () => {
  await initBackend((process.env.LORA_STUDIO_BACKEND ?? 'wasm') as BackendName);
  const out = path.join(tmp, 'run');
  // A run config as a user writes it (the YAML path, where sample_prompts is a list).
  const yaml = [
    `pretrained_model_name_or_path: ${JSON.stringify(MODEL_DIR)}`, `train_data_dir: ${JSON.stringify(await dataset())}`, `output_dir: ${JSON.stringify(out)}`,
    'resolution: 64', 'train_batch_size: 2', 'rank: 4', 'lora_alpha: 2', 'seed: 5', 'lr_warmup_steps: 0', 'learning_rate: 1.0e-3', 'max_train_steps: 2',
    'save_formats: [diffusers, kohya]', 'enable_bucket: true', 'min_bucket_reso: 32', 'max_bucket_reso: 128', 'bucket_reso_steps: 16', 'validation_split: 0.2',
    'caption_dropout_rate: 0.5', 'shuffle_caption: true', 'keep_tokens: 1', `backend: ${process.env.LORA_STUDIO_BACKEND ?? 'wasm'}`,
    'sample_prompts:', '  - a blue square --n blurry --d 9 --s 2 --l 3 --ss euler', '  - a tall thing --s 2 --w 48 --h 80 --ss ddim',
  ].join('\n');
  const file = path.join(tmp, 'run.lora.yaml');
  fs.writeFileSync(file, yaml + '\n');
  const loaded = loadRunConfig(file);
  assert.ok(loaded.config, loaded.problems.map((p) => p.message).join('\n'));
  const events = new MemoryEventSink();
  const r = await train({ config: loaded.config!, events });
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  for (const e of events.events) assert.deepEqual(TRAINER_EVENTS.check(e), { ok: true, message: e }, JSON.stringify(e));

  const started = events.events.find((e) => e.type === 'started');
  assert.ok(started?.type === 'started');
  assert.equal(started.numValidationExamples, 1);
  assert.equal(started.numExamples, 4);
  // Square, wide and tall images in three buckets (sides multiples of 16, about 64² pixels).
  const buckets = started.buckets!;
  assert.equal(buckets.reduce((a, b) => a + b.count, 0), 4);
  for (const b of buckets) assert.ok(b.width % 16 === 0 && b.height % 16 === 0 && b.width * b.height <= 64 * 64, JSON.stringify(b));
  assert.ok(buckets.some((b) => b.width > b.height) || buckets.some((b) => b.width < b.height), 'non-square buckets');

  const val = events.events.filter((e) => e.type === 'validation_loss');
  assert.ok(val.length >= 1 && val.every((e) => e.type === 'validation_loss' && Number.isFinite(e.loss) && e.loss > 0 && e.numExamples === 1));

  const samples = events.events.filter((e) => e.type === 'sample');
  assert.deepEqual(samples.map((s) => s.type === 'sample' && [s.promptIndex, s.prompt, s.seed, s.steps, s.sampler, s.negativePrompt, s.guidanceScale]), [
    [0, 'a blue square', 9, 2, 'euler', 'blurry', 3],
    [1, 'a tall thing', 5, 2, 'ddim', undefined, 7.5],
  ]);
  const tall = samples[1].type === 'sample' ? samples[1] : undefined;
  assert.deepEqual([tall?.width, tall?.height], [48, 80]);
  const meta = await sharp(tall!.path).metadata();
  assert.deepEqual([meta.width, meta.height], [48, 80]);

  // alpha: the kohya file stores it; the diffusers file folds alpha / rank = 0.5 into lora.up.
  // The kohya copy is named after the output folder (output_name's default, as sd-scripts' --output_name).
  const kohya = SafetensorsFile.open(path.join(out, 'run.safetensors'));
  const diffusers = SafetensorsFile.open(path.join(out, 'pytorch_lora_weights.safetensors'));
  const alphaKey = kohya.names().find((n) => n.endsWith('.alpha'))!;
  assert.equal(kohya.readFloat32(alphaKey)[0], 2);
  const name = alphaKey.slice(0, -'.alpha'.length);
  const kUp = kohya.readFloat32(`${name}.lora_up.weight`);
  const dUpKey = diffusers.names().find((n) => n.endsWith('lora.up.weight') && n.replace(/^unet\./, 'lora_unet_').replace(/\.lora\.up\.weight$/, '').replace(/\./g, '_') === name)!;
  const dUp = diffusers.readFloat32(dUpKey);
  assert.ok(kUp.some((v) => v !== 0), 'the LoRA trained');
  for (let i = 0; i < kUp.length; i++) assert.ok(Math.abs(dUp[i] - 0.5 * kUp[i]) <= 1e-7 * Math.abs(kUp[i]) + 1e-12, `${dUpKey}[${i}]`);
  assert.equal(kohya.metadata.ss_network_alpha, '2');
  const info = JSON.parse(kohya.metadata.ss_bucket_info) as { buckets: Record<string, { resolution: number[]; count: number }> };
  assert.deepEqual(Object.values(info.buckets).map((b) => [...b.resolution, b.count]), buckets.map((b) => [b.width, b.height, b.count]));
  assert.equal(kohya.metadata.ss_enable_bucket, 'True');
});
