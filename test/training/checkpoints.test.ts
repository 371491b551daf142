import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { listCheckpoints, removeCheckpointTemporaries } from '../../src/core/config/run_folder.js';
import { saveCheckpoint, loadCheckpoint, pruneCheckpoints, resolveResume, CheckpointError, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, type TrainingState } from '../../src/training/checkpoints.js';
import { Random } from '../../src/training/random.js';
import { MetricsWriter, readMetrics } from '../../src/training/metrics.js';
import type { LoraModuleWeights } from '../../src/training/lora_params.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-'));

function sample(step: number) {
  const rng = new Random(step);
  rng.normal([5]);
  const lora = new Map<string, LoraModuleWeights>([
    ['down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q', { down: rng.normal([2, 3]), up: rng.normal([4, 2]), rank: 2, inFeatures: 3, outFeatures: 4 }],
  ]);
  const name = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight';
  const state: TrainingState = {
    format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, globalStep: step, epoch: 1, batchInEpoch: 2, seed: 7, rng: rng.getState(),
    rank: 2, alpha: 2, numExamples: 10, elapsedSeconds: 1.5, fingerprint: { rank: 2 },
  };
  return { lora, optimizer: { step, expAvg: new Map([[name, rng.normal([6])]]), expAvgSq: new Map([[name, rng.uniform([6])]]) }, state };
}

test('a checkpoint round-trips: weights, optimizer moments and step, generator state, data position', () => {
  const out = path.join(tmp, 'rt');
  const input = sample(3);
  const dir = saveCheckpoint(out, input);
  assert.equal(dir, path.join(out, 'checkpoint-3'));
  const c = loadCheckpoint(dir);
  assert.equal(c.step, 3);
  assert.deepEqual(c.state, JSON.parse(JSON.stringify(input.state)));
  const [p, m] = [...input.lora][0];
  assert.deepEqual(c.lora.get(p)!.down, m.down);
  assert.deepEqual(c.lora.get(p)!.upShape, [4, 2]);
  assert.equal(c.optimizer.step, 3);
  assert.deepEqual([...c.optimizer.expAvgSq.values()][0], [...input.optimizer.expAvgSq.values()][0]);
  // The restored generator continues exactly.
  const a = Random.fromState(c.state.rng).normal([9]);
  const b = Random.fromState(input.state.rng).normal([9]);
  assert.deepEqual(a, b);
  // Diffusers can load the folder as a LoRA: its keys are diffusers'.
  assert.ok(fs.existsSync(path.join(dir, 'pytorch_lora_weights.safetensors')));
});

test('checkpoints_total_limit keeps the newest; latest and paths resolve; half-written folders are ignored and cleaned', () => {
  const out = path.join(tmp, 'limit');
  for (const s of [10, 2, 30]) saveCheckpoint(out, sample(s));
  assert.deepEqual(listCheckpoints(out).map((c) => c.step), [2, 10, 30]);
  // A killed write leaves only a hidden temporary folder: not a checkpoint.
  fs.mkdirSync(path.join(out, '.checkpoint-40.tmp-999-1'));
  fs.writeFileSync(path.join(out, '.checkpoint-40.tmp-999-1', 'training_state.json'), '{"trunc');
  assert.equal(path.basename(resolveResume(out, 'latest')!), 'checkpoint-30');
  removeCheckpointTemporaries(out);
  assert.ok(!fs.existsSync(path.join(out, '.checkpoint-40.tmp-999-1')));
  const removed = pruneCheckpoints(out, 2);
  assert.deepEqual(removed.map((r) => path.basename(r)), ['checkpoint-2']);
  assert.deepEqual(listCheckpoints(out).map((c) => c.step), [10, 30]);
  assert.equal(resolveResume(out, path.join(out, 'checkpoint-10')), path.join(out, 'checkpoint-10'));
  assert.equal(resolveResume(out, 'checkpoint-10'), path.join(out, 'checkpoint-10'), 'a bare name is looked up in output_dir, as the guide does');
  assert.throws(() => resolveResume(out, 'checkpoint-99'), CheckpointError);
  assert.equal(resolveResume(path.join(tmp, 'empty'), 'latest'), undefined);
  // Saving an existing step replaces it.
  saveCheckpoint(out, sample(30));
  assert.deepEqual(listCheckpoints(out).map((c) => c.step), [10, 30]);
});

test('a damaged checkpoint is refused with the missing piece named', () => {
  const out = path.join(tmp, 'damaged');
  const dir = saveCheckpoint(out, sample(5));
  fs.rmSync(path.join(dir, 'optimizer.safetensors'));
  assert.throws(() => loadCheckpoint(dir), /optimizer\.safetensors is missing/);
  fs.writeFileSync(path.join(dir, 'optimizer.safetensors'), 'x');
  fs.writeFileSync(path.join(dir, 'training_state.json'), '{}');
  assert.throws(() => loadCheckpoint(dir), /not a LoRA Studio training state/);
});

test('metrics.jsonl: appended rows; on resume rows after the checkpoint are dropped and a torn line ignored', () => {
  const file = path.join(tmp, 'm', 'metrics.jsonl');
  const row = (step: number) => ({ step, epoch: 0, loss: step / 10, lr: 1e-3, grad_norm: 0.1, step_seconds: 1, elapsed_seconds: step, time: 't' });
  const w = new MetricsWriter(file);
  for (let s = 1; s <= 5; s++) w.append(row(s));
  w.close();
  fs.appendFileSync(file, '{"step": 6, "lo');
  assert.deepEqual(readMetrics(file).map((r) => r.step), [1, 2, 3, 4, 5]);
  const resumed = new MetricsWriter(file, 3);
  resumed.append(row(4));
  resumed.close();
  assert.deepEqual(readMetrics(file).map((r) => r.step), [1, 2, 3, 4]);
});
