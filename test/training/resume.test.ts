// Exact resume: a run stopped at a checkpoint and resumed ends with the same weights, bit for bit, as the
// same run done in one go. The config exercises every random draw and every piece of state a resume must
// carry: random crop and flip drawn every step (cache_latents false), noise offset, min-SNR weighting,
// v-prediction, gradient accumulation with a short last group per epoch, a warmup + cosine lr schedule,
// and the stop falls in the middle of an epoch.
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
import { readAllFloat32 } from '../../src/core/io/safetensors.js';
import { readMetrics } from '../../src/training/metrics.js';
import { listCheckpoints } from '../../src/core/config/run_folder.js';
import { TRAINER_EVENTS } from '../../src/protocol/training.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'resume-'));

function config(outputDir: string, extra: string[] = []) {
  const loaded = configFromFlags(
    [
      `--pretrained_model_name_or_path=${path.join(TINY_SHAPES, 'model')}`,
      `--train_data_dir=${path.join(TINY_SHAPES, 'dataset-corner')}`,
      `--output_dir=${outputDir}`,
      '--max_train_samples=6', '--resolution=48', '--random_flip', '--train_batch_size=2', '--gradient_accumulation_steps=2',
      '--max_train_steps=6', '--checkpointing_steps=100', '--learning_rate=1e-3', '--lr_scheduler=cosine', '--lr_warmup_steps=2',
      '--noise_offset=0.05', '--snr_gamma=5', '--prediction_type=v_prediction', '--cache_latents=false', '--seed=11', '--rank=2',
      `--backend=${process.env.LORA_STUDIO_BACKEND ?? 'wasm'}`,
      ...extra,
    ],
    { cwd: REPO },
  );
  assert.ok(loaded.config, loaded.problems.map((p) => p.message).join('\n'));
  return loaded.config!;
}

const tensorsOf = (file: string) => readAllFloat32(file).tensors;

test('stopped at step 3 of 6 and resumed: identical weights, metrics and optimizer history', async () => {
  await initBackend((process.env.LORA_STUDIO_BACKEND ?? 'wasm') as BackendName);
  const straightDir = path.join(tmp, 'straight');
  const straight = await train({ config: config(straightDir), events: new MemoryEventSink() });
  assert.equal(straight.status, 'completed');

  const splitDir = path.join(tmp, 'split');
  const first = new MemoryEventSink();
  const stopped = await train({ config: config(splitDir), events: first, hooks: { afterStep: (step, req) => step === 3 && req.apply({ type: 'stop' }) } });
  assert.equal(stopped.status, 'stopped');
  assert.equal(stopped.step, 3);
  assert.deepEqual(listCheckpoints(splitDir).map((c) => c.step), [3]);
  assert.ok(!fs.existsSync(path.join(splitDir, 'pytorch_lora_weights.safetensors')), 'a stopped run writes a checkpoint, not the final file');

  const second = new MemoryEventSink();
  const resumed = await train({ config: config(splitDir, ['--resume_from_checkpoint=latest']), events: second });
  assert.equal(resumed.status, 'completed');
  assert.equal(resumed.step, 6);
  const started = second.events.find((e) => e.type === 'started');
  assert.equal(started?.type === 'started' && started.startStep, 3);

  const a = tensorsOf(path.join(straightDir, 'pytorch_lora_weights.safetensors'));
  const b = tensorsOf(path.join(splitDir, 'pytorch_lora_weights.safetensors'));
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
  let moved = 0;
  for (const [k, t] of a) {
    assert.deepEqual(b.get(k)!.data, t.data, `${k} differs after resume`);
    if (k.endsWith('lora.up.weight')) moved = Math.max(moved, ...t.data.map(Math.abs));
  }
  assert.ok(moved > 0, 'training changed the weights');
  const strip = (rows: ReturnType<typeof readMetrics>) => rows.map((r) => [r.step, r.epoch, r.loss, r.lr, r.grad_norm]);
  assert.deepEqual(strip(readMetrics(path.join(splitDir, 'metrics.jsonl'))), strip(readMetrics(path.join(straightDir, 'metrics.jsonl'))));
  assert.equal(readMetrics(path.join(straightDir, 'metrics.jsonl')).length, 6);

  // Every event either run emitted is a valid protocol event.
  for (const e of [...first.events, ...second.events]) assert.deepEqual(TRAINER_EVENTS.check(e), { ok: true, message: e }, JSON.stringify(e));
  assert.deepEqual([...new Set(first.events.map((e) => e.type))], ['started', 'phase', 'progress', 'checkpoint', 'finished']);
});
