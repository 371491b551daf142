// The NaN/Inf guard (src/training/finite_guard.ts) in real runs on the tiny-sd fixture: lr 1e6 (issue 18's
// input) stops at step 1 naming the tensor, with no checkpoint of the blown-up state; a blow-up after a
// finite checkpoint keeps that checkpoint and says it was step 1; a checkpoint holding NaN (as older
// versions could write) is refused on resume naming the file; and the guard's own checks, directly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { REPO, FIXTURES, MODEL_DIR } from '../helpers/fixtures.js';
import { configFromFlags } from '../../src/core/config/flags.js';
import { initBackend } from '../../src/core/engine/backend.js';
import type { BackendName } from '../../src/core/config/run_config.js';
import { train } from '../../src/training/loop.js';
import { MemoryEventSink } from '../../src/training/events.js';
import { loadCheckpoint } from '../../src/training/checkpoints.js';
import { listCheckpoints, LORA_FILE, CHECKPOINT_FILES, RUN_LOCK_FILE } from '../../src/core/config/run_folder.js';
import { encodeSafetensors, readAllFloat32 } from '../../src/core/io/safetensors.js';
import { FiniteGuard, NonFiniteError, DIVERGED_LORA_WEIGHT } from '../../src/training/finite_guard.js';
import { TRAINER_EVENTS, type ErrorEvent } from '../../src/protocol/training.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'finite-'));
const backend = (process.env.LORA_STUDIO_BACKEND ?? 'wasm') as BackendName;

function config(out: string, flags: string[]) {
  const loaded = configFromFlags(
    [`--pretrained_model_name_or_path=${MODEL_DIR}`, `--train_data_dir=${path.join(FIXTURES, 'dataset')}`, `--output_dir=${out}`, '--resolution=32', '--train_batch_size=2', '--rank=2', '--seed=3', '--checkpointing_steps=1', `--backend=${backend}`, ...flags],
    { cwd: REPO },
  );
  assert.ok(loaded.config, loaded.problems.map((p) => p.message).join('\n'));
  return loaded.config!;
}

function errorOf(events: MemoryEventSink): ErrorEvent {
  const err = events.events.find((e) => e.type === 'error');
  assert.ok(err && err.type === 'error', JSON.stringify(events.events.map((e) => e.type)));
  assert.deepEqual(TRAINER_EVENTS.check(err), { ok: true, message: err });
  return err as ErrorEvent;
}

const allFinite = (file: string) => [...readAllFloat32(file).tensors.values()].every((t) => t.data.every(Number.isFinite));

test('lr 1e6: stopped at step 1, naming the tensor; no checkpoint or LoRA of the blown-up state is written', async () => {
  await initBackend(backend);
  const out = path.join(tmp, 'lr1e6');
  const events = new MemoryEventSink();
  const r = await train({ config: config(out, ['--max_train_steps=4', '--learning_rate=1e6', '--lr_warmup_steps=0']), events });
  assert.equal(r.status, 'failed');
  assert.equal(r.step, 0);
  const err = errorOf(events);
  assert.equal(err.code, 'nan_loss');
  // The first AdamW step moves every weight by ≈ lr = 1e6, past DIVERGED_LORA_WEIGHT (1e4).
  assert.match(err.message, /^the LoRA weight \S+\.lora\.(down|up)\.weight reached \d\.\d\de\+\d after the update \(beyond 1e\+4: the run diverged\) at step 1; training stopped and nothing of step 1 was saved: step 0 was the last finite state; no checkpoint was written before it$/);
  assert.match(err.hint ?? '', /lower learning_rate/);
  assert.deepEqual(listCheckpoints(out), []);
  assert.ok(!fs.existsSync(path.join(out, LORA_FILE)));
  assert.ok(!events.events.some((e) => e.type === 'progress' || e.type === 'finished'), 'step 1 is not reported as done');
  assert.ok(!fs.existsSync(path.join(out, RUN_LOCK_FILE)), 'the failed run released its lock');
});

test('a blow-up after a finite checkpoint keeps it and says step 1 was the last finite one; resuming a NaN checkpoint is refused', async () => {
  await initBackend(backend);
  const out = path.join(tmp, 'warmup');
  const events = new MemoryEventSink();
  // constant_with_warmup over 2 steps: lr 0 for step 1 (the weights stay the init: finite), 5e5 for step 2.
  const r = await train({ config: config(out, ['--max_train_steps=4', '--learning_rate=1e6', '--lr_scheduler=constant_with_warmup', '--lr_warmup_steps=2']), events });
  assert.equal(r.status, 'failed');
  assert.equal(r.step, 1);
  const err = errorOf(events);
  assert.equal(err.code, 'nan_loss');
  const cp1 = path.join(out, 'checkpoint-1');
  assert.ok(err.message.endsWith(`at step 2; training stopped and nothing of step 2 was saved: step 1 was the last finite state; the last checkpoint, checkpoint-1 (${cp1}), is finite and was kept`), err.message);
  assert.deepEqual(listCheckpoints(out).map((c) => c.step), [1]);
  assert.ok(allFinite(path.join(cp1, CHECKPOINT_FILES.lora)) && allFinite(path.join(cp1, CHECKPOINT_FILES.optimizer)));
  assert.equal(loadCheckpoint(cp1).step, 1);

  // A checkpoint holding NaN (what an older version saved after a blow-up) is named on resume, before the model loads.
  const bad = path.join(tmp, 'nan-checkpoint', 'checkpoint-1');
  fs.cpSync(cp1, bad, { recursive: true });
  const tensors = readAllFloat32(path.join(bad, LORA_FILE)).tensors;
  const [key, t] = [...tensors].find(([k]) => k.endsWith('lora.up.weight'))!;
  t.data[3] = NaN;
  fs.writeFileSync(path.join(bad, LORA_FILE), encodeSafetensors(tensors));
  const ev2 = new MemoryEventSink();
  const r2 = await train({ config: config(path.dirname(bad), ['--max_train_steps=4', '--learning_rate=1e-3', `--resume_from_checkpoint=${bad}`]), events: ev2 });
  assert.equal(r2.status, 'failed');
  const err2 = errorOf(ev2);
  assert.equal(err2.code, 'nan_loss');
  assert.equal(err2.message, `${bad}: the LoRA weight ${key.replace(/^unet\./, '')} holds NaN (at index 3); this checkpoint cannot be resumed — resume from an earlier checkpoint-<step> folder`);
});

test('the guard: a NaN loss, an Inf weight, a NaN AdamW moment — each named with its step and what was kept', async () => {
  await initBackend(backend);
  const g = new FiniteGuard(10, '/runs/x/checkpoint-10');
  assert.throws(() => g.checkStep(11, NaN, 3), (e: unknown) => e instanceof NonFiniteError && e.message === 'the loss became NaN (gradient norm 3.00e+0) at step 11; training stopped and nothing of step 11 was saved: step 10 was the last finite state; the last checkpoint, checkpoint-10 (/runs/x/checkpoint-10), is finite and was kept');
  assert.throws(() => g.checkStep(11, 0.5, Infinity), /gradient norm \+Inf\) at step 11/);
  g.checkStep(11, 0.5, 1);

  const ok = new Map([['a.lora.down.weight', tf.tensor([1, -2])], ['a.lora.up.weight', tf.tensor([DIVERGED_LORA_WEIGHT])]]);
  await g.checkWeights(11, ok);
  assert.equal(g.lastFiniteStep, 11);
  const inf = new Map([['a.lora.down.weight', tf.tensor([1, -Infinity])]]);
  await assert.rejects(g.checkWeights(12, inf), /^NonFiniteError: the LoRA weight a\.lora\.down\.weight became non-finite \(NaN or Inf\) after the update at step 12; .*step 11 was the last finite state/);
  const nan = new Map([['b.lora.up.weight', tf.tensor([0, NaN, 0])]]);
  await assert.rejects(g.checkWeights(12, nan), /b\.lora\.up\.weight became non-finite/);
  tf.dispose([...ok.values(), ...inf.values(), ...nan.values()]);

  g.checkpointWritten(11, '/runs/x/checkpoint-11');
  const modules = new Map([['a', { down: new Float32Array([1, 2]), up: new Float32Array([3, 4]), rank: 1, inFeatures: 2, outFeatures: 2 }]]);
  const moments = { step: 11, expAvg: new Map([['a.lora.down.weight', new Float32Array([0, 0])]]), expAvgSq: new Map([['a.lora.down.weight', new Float32Array([0, NaN])]]) };
  assert.throws(() => g.checkCheckpoint(11, modules, moments), (e: unknown) => e instanceof NonFiniteError && e.message === "the checkpoint's AdamW moment a.lora.down.weight.exp_avg_sq holds NaN (at index 1), so it was not written at step 11; training stopped and nothing of step 11 was saved: the last checkpoint, checkpoint-11 (/runs/x/checkpoint-11), is finite and was kept");
});
