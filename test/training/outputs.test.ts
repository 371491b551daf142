// What a run leaves behind and says: the LoRA file (diffusers layout, the same keys and shapes as the
// fixture's diffusers-made file for this model, loadable through the engine, changing the UNet's output),
// the kohya export, header metadata, validation samples, and the failure paths (NaN loss, broken dataset).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { REPO, FIXTURES, MODEL_DIR, golden, goldenTensor, nchwToNhwc, maxAbsDiff } from '../helpers/fixtures.js';
import { configFromFlags } from '../../src/core/config/flags.js';
import { initBackend } from '../../src/core/engine/backend.js';
import type { BackendName } from '../../src/core/config/run_config.js';
import { train } from '../../src/training/loop.js';
import { MemoryEventSink } from '../../src/training/events.js';
import { listCheckpoints } from '../../src/core/config/run_folder.js';
import { SafetensorsFile } from '../../src/core/io/safetensors.js';
import { readLoraFile } from '../../src/core/lora/lora_file.js';
import { LoraSet } from '../../src/core/lora/lora_set.js';
import { UNet2DConditionModel } from '../../src/core/models/unet_2d_condition.js';
import { TRAINER_EVENTS } from '../../src/protocol/training.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'outputs-'));

function config(out: string, flags: string[], data = path.join(FIXTURES, 'dataset')) {
  const loaded = configFromFlags(
    [`--pretrained_model_name_or_path=${MODEL_DIR}`, `--train_data_dir=${data}`, `--output_dir=${out}`, '--resolution=64', '--train_batch_size=2', '--rank=4', '--seed=3', '--lr_warmup_steps=0', `--backend=${process.env.LORA_STUDIO_BACKEND ?? 'wasm'}`, ...flags],
    { cwd: REPO },
  );
  assert.ok(loaded.config, loaded.problems.map((p) => p.message).join('\n'));
  return loaded.config!;
}

test('the LoRA file has the fixture layout, loads through the engine and changes the UNet; kohya export, samples, metadata', async () => {
  await initBackend((process.env.LORA_STUDIO_BACKEND ?? 'wasm') as BackendName);
  const out = path.join(tmp, 'ok');
  const events = new MemoryEventSink();
  const r = await train({
    config: config(out, ['--max_train_steps=2', '--learning_rate=1e-2', '--validation_prompt=a red circle', '--num_validation_images=1', '--validation_epochs=1', '--checkpointing_steps=1', '--checkpoints_total_limit=1']),
    events,
  });
  assert.equal(r.status, 'completed');
  for (const e of events.events) assert.deepEqual(TRAINER_EVENTS.check(e), { ok: true, message: e }, JSON.stringify(e));

  const file = path.join(out, 'pytorch_lora_weights.safetensors');
  assert.equal(r.outputs?.lora, file);
  const ours = SafetensorsFile.open(file);
  const ref = SafetensorsFile.open(path.join(FIXTURES, 'lora_diffusers/pytorch_lora_weights.safetensors'));
  assert.deepEqual(ours.names().sort(), ref.names().sort());
  for (const k of ref.names()) assert.deepEqual(ours.info(k).shape, ref.info(k).shape, k);
  assert.equal(ours.metadata.format, 'pt');
  assert.equal(ours.metadata['lora_studio.step'], '2');
  assert.equal(ours.metadata.ss_network_dim, '4');
  assert.equal(JSON.parse(ours.metadata['lora_studio.run_config']).rank, 4);
  // The LoRA says which LoRA Studio made it; the tiny UNet (cross_attention_dim 32) is no SD family, so no
  // family is claimed (A1111 hides LoRAs whose ss_base_model_version differs from the loaded model's).
  assert.equal(ours.metadata['lora_studio.version'], JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')).version);
  assert.equal(ours.metadata.ss_base_model_version, undefined);
  assert.equal(ours.metadata.ss_v2, undefined);
  // The diffusers-keyed file claims no kohya network module (A1111 would list it as one and apply nothing);
  // the kohya copy, written by default (no --save_formats needed), does.
  assert.equal(ours.metadata.ss_network_module, undefined);
  // The kohya copy is named after the output folder (output_name's default, as sd-scripts' --output_name).
  assert.equal(r.outputs?.kohya, path.join(out, 'ok.safetensors'));
  const kohyaFile = SafetensorsFile.open(path.join(out, 'ok.safetensors'));
  const km = kohyaFile.metadata;
  // sd-scripts' minimum set (train_util.SS_METADATA_MINIMUM_KEYS) and the training facts, as train_network.py spells them.
  assert.equal(km.ss_network_module, 'networks.lora');
  assert.equal(km.ss_network_dim, '4');
  assert.equal(km.ss_network_alpha, '4');
  assert.deepEqual(JSON.parse(km.ss_network_args), {});
  assert.equal(km.ss_output_name, 'ok');
  assert.equal(km.ss_steps, '2');
  assert.equal(km.ss_resolution, '(64, 64)');
  assert.equal(km.ss_clip_skip, 'None', 'sd-scripts writes str(None) when --clip_skip is not given');
  assert.equal(km.ss_sd_model_name, 'model');
  // ss_dataset_dirs / ss_tag_frequency keyed by the dataset folder's base name: the fixture's two captions,
  // each one comma-free tag, counted once.
  assert.deepEqual(JSON.parse(km.ss_dataset_dirs), { dataset: { n_repeats: 1, img_count: 2 } });
  assert.deepEqual(JSON.parse(km.ss_tag_frequency), { dataset: { 'a red circle': 1, 'a blue square': 1 } });
  // ModelSpec 1.0.1 (sd-scripts' sai_model_spec.build_metadata); no architecture for a UNet of no known family.
  assert.equal(km['modelspec.sai_model_spec'], '1.0.1');
  assert.equal(km['modelspec.title'], 'ok');
  assert.equal(km['modelspec.resolution'], '64x64');
  assert.equal(km['modelspec.prediction_type'], 'epsilon');
  assert.match(km['modelspec.date'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(km['modelspec.architecture'], undefined);
  // sshs_model_hash: sha256 of the bytes after the header (sd-scripts' addnet_hash_safetensors), recomputed
  // here from the file itself; the file is under 1 MiB, so the legacy hash is of no bytes: sha256(b"")[:8].
  const bytes = fs.readFileSync(kohyaFile.path);
  const dataStart = 8 + Number(bytes.readBigUInt64LE(0));
  assert.equal(km.sshs_model_hash, crypto.createHash('sha256').update(bytes.subarray(dataStart)).digest('hex'));
  assert.equal(km.sshs_legacy_hash, 'e3b0c442');
  // No header value of a file users share names a local absolute path: not the output folder, the
  // dataset, the base model, the temp dir or the home folder (base names only).
  const local = [out, MODEL_DIR, path.dirname(MODEL_DIR), REPO, os.tmpdir(), os.homedir()].filter((p) => p.length > 1);
  for (const f of [ours, kohyaFile]) {
    for (const [k, v] of Object.entries(f.metadata)) for (const p of local) assert.ok(!v.includes(p), `${path.basename(f.path)} header ${k} contains the local path ${p}`);
  }
  assert.equal(JSON.parse(ours.metadata['lora_studio.run_config']).output_dir, 'ok');
  kohyaFile.close();
  ours.close();
  ref.close();

  const unet = UNet2DConditionModel.fromPretrained(path.join(MODEL_DIR, 'unet'));
  const targets = unet.loraTargets();
  const set = new LoraSet();
  const weights = readLoraFile(file, targets);
  assert.equal(weights.format, 'diffusers');
  assert.equal(weights.modules.size, targets.length);
  set.add(weights, 1);
  const g = golden('lora_unet');
  const sample = nchwToNhwc(goldenTensor(g, 'sample')) as tf.Tensor4D;
  const t = goldenTensor(g, 'timesteps') as tf.Tensor1D;
  const ehs = goldenTensor(g, 'encoder_hidden_states') as tf.Tensor3D;
  const base = unet.forward(sample, t, ehs);
  const withLora = unet.forward(sample, t, ehs, set.lookup);
  assert.ok((await maxAbsDiff(base, withLora)) > 1e-4, 'the trained LoRA changes the UNet output');
  // The kohya export means the same thing.
  const kohya = readLoraFile(path.join(out, 'ok.safetensors'), targets);
  assert.equal(kohya.format, 'kohya');
  const set2 = new LoraSet();
  set2.add(kohya, 1);
  const viaKohya = unet.forward(sample, t, ehs, set2.lookup);
  assert.ok((await maxAbsDiff(viaKohya, withLora)) < 1e-6);
  tf.dispose([sample, t, ehs, base, withLora, viaKohya]);
  set.dispose();
  set2.dispose();
  unet.dispose();

  // Validation images: after epoch 0 (step 1) and the final ones, as PNGs the sample events point to.
  const samples = events.events.filter((e) => e.type === 'sample');
  assert.equal(samples.length, 2);
  for (const s of samples) {
    assert.ok(s.type === 'sample' && fs.existsSync(s.path) && s.path.startsWith(path.join(out, 'samples')));
    const meta = await sharp(s.type === 'sample' ? s.path : '').metadata();
    assert.deepEqual([meta.width, meta.height], [64, 64]);
  }
  // checkpoints_total_limit 1: only the newest is kept, and the event says what was removed.
  assert.deepEqual(listCheckpoints(out).map((c) => c.step), [2]);
  const cps = events.events.filter((e) => e.type === 'checkpoint');
  assert.deepEqual(cps.map((c) => c.type === 'checkpoint' && c.removed.map((p) => path.basename(p))), [[], ['checkpoint-1']]);
});

test('weights that blow up stop the run with nan_loss and no checkpoint of the blown-up state', async () => {
  const out = path.join(tmp, 'nan');
  const events = new MemoryEventSink();
  // lr 1e30: the first update makes the weights ≈1e30. That state used to be saved as checkpoint-1 (the next
  // forward pass overflowed); the guard (finite_guard.ts) now stops at step 1 and saves nothing of it.
  const r = await train({ config: config(out, ['--max_train_steps=5', '--learning_rate=1e30', '--checkpointing_steps=1']), events });
  assert.equal(r.status, 'failed');
  const err = events.events.find((e) => e.type === 'error');
  assert.ok(err && err.type === 'error' && err.code === 'nan_loss', JSON.stringify(err));
  assert.deepEqual(TRAINER_EVENTS.check(err), { ok: true, message: err });
  assert.match(err.message, /at step 1; .*step 0 was the last finite state/);
  assert.equal(r.step, 0);
  assert.deepEqual(listCheckpoints(out).map((c) => c.step), [], 'no checkpoint holds the diverged weights');
  assert.ok(!fs.existsSync(path.join(out, 'pytorch_lora_weights.safetensors')));
  assert.ok(!events.events.some((e) => e.type === 'finished'));
});

test('a broken dataset fails before the model loads, naming every bad file', async () => {
  const data = path.join(tmp, 'bad-data');
  fs.mkdirSync(data);
  fs.copyFileSync(path.join(FIXTURES, 'dataset/img0.png'), path.join(data, 'a.png'));
  fs.writeFileSync(path.join(data, 'b.png'), 'not an image');
  fs.writeFileSync(path.join(data, 'a.txt'), 'a red circle');
  fs.writeFileSync(path.join(data, 'b.txt'), 'x');
  fs.copyFileSync(path.join(FIXTURES, 'dataset/img1.png'), path.join(data, 'c.png'));
  const events = new MemoryEventSink();
  const r = await train({ config: config(path.join(tmp, 'bad-out'), ['--max_train_steps=1'], data), events });
  assert.equal(r.status, 'failed');
  const err = events.events.find((e) => e.type === 'error');
  assert.ok(err && err.type === 'error' && err.code === 'dataset');
  assert.match(err.message, /b\.png: unreadable image/);
  assert.match(err.message, /c\.png: missing caption/);
  assert.ok(!events.logs.some((l) => l.startsWith('training:')), 'nothing trained');
});
