// network_weights (kohya's --network_weights): training starts from an existing LoRA file. A 2-step run on
// tiny-sd (rank 4, lora_alpha 2: alpha ≠ rank, so the diffusers file's folded alpha is exercised) writes its
// checkpoint and both LoRA files; then
//   - the start read from each layout (kohya, diffusers, PEFT, ComfyUI's diffusion_model.<LDM> names) is the
//     checkpoint's weights bit for bit (every alpha ratio here is a power of two, so rescaling is exact);
//   - a run from the kohya file and one from the diffusers file take the same first step (loss and weights),
//     and not the step of a fresh LoRA;
//   - a LoRA file into a dora run gives a UNet whose output is the LoRA's (magnitude ‖W + ΔW‖);
//   - SDXL (tiny-sdxl): a kohya file with SGM names (as sd-scripts and the trainer write it) gives the same start
//     as the diffusers file of the same weights;
//   - a file of another rank, with modules the run does not train, or lacking some, is a config error naming
//     the file, the key and the setting that fits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { REPO } from '../helpers/fixtures.js';
import { configFromFlags } from '../../src/core/config/flags.js';
import { initBackend } from '../../src/core/engine/backend.js';
import type { BackendName } from '../../src/core/config/run_config.js';
import { train, TrainingError } from '../../src/training/loop.js';
import { MemoryEventSink } from '../../src/training/events.js';
import { loadCheckpoint } from '../../src/training/checkpoints.js';
import { loadStableDiffusion, disposeStableDiffusion, type StableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { loadLoras } from '../../src/core/pipeline/loras.js';
import { networkOptions, networkTargets, type NetworkChoice } from '../../src/training/network.js';
import { networkWeightsStart, NetworkWeightsError, type RunNetwork } from '../../src/training/network_weights.js';
import { TrainableLora, moduleKey } from '../../src/training/lora_params.js';
import { writeLoraFile, type LoraModuleToWrite } from '../../src/core/lora/lora_writer.js';
import { ldmUnetPaths } from '../../src/core/lora/formats.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../src/core/io/safetensors.js';
import { Random } from '../../src/training/random.js';

const BACKEND = (process.env.LORA_STUDIO_BACKEND ?? 'wasm') as BackendName;
const TINY_SD = path.join(REPO, 'test/fixtures/tiny-sd');
const TINY_SDXL = path.join(REPO, 'test/fixtures/tiny-sdxl');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'network-weights-'));
const LORA: NetworkChoice = { networkType: 'lora', trainTextEncoder: false, dropout: 0 };

async function run(out: string, flags: string[]) {
  const loaded = configFromFlags(
    [`--pretrained_model_name_or_path=${path.join(TINY_SD, 'model')}`, `--train_data_dir=${path.join(TINY_SD, 'dataset')}`, `--output_dir=${out}`, '--resolution=64', '--train_batch_size=2', '--rank=4', '--lora_alpha=2', '--seed=3', '--lr_warmup_steps=0', '--learning_rate=1e-2', `--backend=${BACKEND}`, ...flags],
    { cwd: REPO },
  );
  assert.ok(loaded.config, loaded.problems.map((p) => p.message).join('\n'));
  const events = new MemoryEventSink();
  const r = await train({ config: loaded.config!, events });
  const losses = events.events.flatMap((e) => (e.type === 'progress' ? [e.loss] : []));
  return { r, losses, log: events.logs };
}

function runNetwork(sd: StableDiffusion, choice: NetworkChoice, rank = 4, alpha = 2): RunNetwork {
  return { targets: networkTargets(sd, choice), rank, alpha, choice, options: networkOptions(sd, choice) };
}

function sameBits(a: Float32Array, b: Float32Array, label: string) {
  assert.equal(a.length, b.length, label);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.fail(`${label}[${i}]: ${b[i]} is not ${a[i]}`);
}

async function rejects(p: Promise<unknown>, message: RegExp, hint: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof NetworkWeightsError, String(e));
    assert.match(e.message, message);
    assert.match(e.hint, hint);
    return true;
  });
}

const first = await (async () => {
  await initBackend(BACKEND);
  return run(path.join(tmp, 'first'), ['--max_train_steps=2', '--checkpointing_steps=2']);
})();
const KOHYA = first.r.outputs!.kohya!;
const DIFFUSERS = first.r.outputs!.lora!;
const checkpoint = loadCheckpoint(path.join(tmp, 'first', 'checkpoint-2'));

test('the start read from a kohya, diffusers, PEFT or ComfyUI-layout file is the checkpoint the file was saved with, bit for bit', async () => {
  assert.equal(first.r.status, 'completed');
  const sd = loadStableDiffusion(path.join(TINY_SD, 'model'));
  try {
    const net = runNetwork(sd, LORA);
    const modules = new Map<string, LoraModuleToWrite>(
      net.targets.map((t) => {
        const w = checkpoint.lora.get(moduleKey(t))!;
        return [t.path, { down: w.down, up: w.up, rank: 4, alpha: 2, inFeatures: t.inFeatures, outFeatures: t.outFeatures }];
      }),
    );
    const peft = path.join(tmp, 'peft.safetensors');
    writeLoraFile(peft, 'peft', { components: new Map([['unet', modules]]) });
    // ComfyUI's LoraSave layout: diffusion_model.<LDM path>.lora_down/lora_up.weight + .alpha.
    const comfy = path.join(tmp, 'comfy.safetensors');
    const ldm = ldmUnetPaths(sd.unet.loraLayers().map((l) => l.path));
    const tensors = new Map<string, TensorToWrite>();
    for (const [p, m] of modules) {
      const name = `diffusion_model.${ldm.get(p)!}`;
      tensors.set(`${name}.lora_down.weight`, { dtype: 'F32', shape: [4, m.inFeatures], data: m.down });
      tensors.set(`${name}.lora_up.weight`, { dtype: 'F32', shape: [m.outFeatures, 4], data: m.up });
      tensors.set(`${name}.alpha`, { dtype: 'F32', shape: [], data: [2] });
    }
    writeSafetensors(comfy, tensors, {});

    for (const file of [KOHYA, DIFFUSERS, peft, comfy]) {
      const start = await networkWeightsStart(file, sd, net);
      assert.equal(start.weights.size, net.targets.length, file);
      for (const [key, w] of checkpoint.lora) {
        sameBits(w.down, start.weights.get(key)!.down, `${path.basename(file)} ${key} down`);
        sameBits(w.up, start.weights.get(key)!.up, `${path.basename(file)} ${key} up`);
      }
    }
    // The diffusers file has alpha folded into up (0.5·up, alpha = rank): the note says it was rescaled.
    assert.match((await networkWeightsStart(DIFFUSERS, sd, net)).notes.join('\n'), /alpha 4 ≠ this run's alpha 2: their up weights are scaled/);
  } finally {
    disposeStableDiffusion(sd);
  }
});

test('a run from the kohya file and one from the diffusers file take the same first step, which is not a fresh LoRA\'s', async () => {
  const fromKohya = await run(path.join(tmp, 'from-kohya'), ['--max_train_steps=1', `--network_weights=${KOHYA}`]);
  const fromDiffusers = await run(path.join(tmp, 'from-diffusers'), ['--max_train_steps=1', `--network_weights=${DIFFUSERS}`]);
  assert.equal(fromKohya.r.status, 'completed');
  assert.equal(fromDiffusers.r.status, 'completed');
  assert.ok(fromKohya.log.some((l) => /network_weights: \d+ modules from .*kohya keys, rank 4/.test(l)), fromKohya.log.join('\n'));
  // Same seed, same batch and noise: the step-1 loss depends only on the starting weights.
  assert.equal(fromKohya.losses[0], fromDiffusers.losses[0]);
  // The first run's step 1 started from the gaussian init at the same seed: another loss.
  assert.notEqual(fromKohya.losses[0], first.losses[0]);
  const a = SafetensorsFile.open(fromKohya.r.outputs!.kohya!);
  const b = SafetensorsFile.open(fromDiffusers.r.outputs!.kohya!);
  for (const name of a.names()) sameBits(a.readFloat32(name), b.readFloat32(name), `after one step: ${name}`);
  a.close();
  b.close();
});

test('a LoRA file into a dora run: the magnitude starts as ‖W + ΔW‖, so the UNet computes the file\'s LoRA', async () => {
  const sd = loadStableDiffusion(path.join(TINY_SD, 'model'));
  try {
    const choice: NetworkChoice = { networkType: 'dora', trainTextEncoder: false, dropout: 0 };
    const net = runNetwork(sd, choice);
    const start = await networkWeightsStart(KOHYA, sd, net);
    assert.match(start.notes.join('\n'), /have no DoRA magnitude in the file: each starts as ‖W \+ ΔW‖/);
    const dora = TrainableLora.fromWeights(net.targets, 4, 2, start.weights, net.options);
    const set = loadLoras(sd, [{ file: KOHYA, scale: 1 }]);
    const rng = new Random(5);
    const sample = tf.tensor4d(rng.normal([1 * 32 * 32 * 4]), [1, 32, 32, 4]);
    const context = tf.tensor3d(rng.normal([1 * 77 * 32]), [1, 77, 32]);
    const t = tf.tensor1d([500]);
    const withDora = sd.unet.forward(sample, t, context, dora.lookup());
    const withLora = sd.unet.forward(sample, t, context, set.lookup);
    const without = sd.unet.forward(sample, t, context);
    const diff = (x: tf.Tensor, y: tf.Tensor) => x.sub(y).abs().max().dataSync()[0];
    const effect = diff(withLora, without);
    const gap = diff(withDora, withLora);
    // f32 norms recomputed by the DoRA layer: g = m / ‖W + ΔW‖ is 1 within a few ulp, so the outputs agree to
    // ~1e-6 of their size (|out| ~ 1); the LoRA itself moves the output by far more.
    console.log(`dora start vs the file's LoRA: max |Δ| ${gap.toExponential(2)}; the LoRA's own effect ${effect.toExponential(2)}`);
    assert.ok(gap < 2e-5, `dora start vs the file's LoRA: ${gap}`);
    assert.ok(effect > 100 * 2e-5, `the LoRA barely changes the UNet (${effect}): the comparison proves nothing`);
    tf.dispose([sample, context, t, withDora, withLora, without]);
    set.dispose();
    dora.dispose();
  } finally {
    disposeStableDiffusion(sd);
  }
});

test('SDXL: a kohya file with SGM names gives the start its diffusers file gives', async () => {
  const sd = loadStableDiffusion(path.join(TINY_SDXL, 'model'));
  try {
    const net = runNetwork(sd, LORA, 4, 4);
    const rng = new Random(11);
    const modules = new Map<string, LoraModuleToWrite>(
      net.targets.map((t) => [t.path, { down: rng.normal([4 * t.inFeatures]), up: rng.normal([t.outFeatures * 4]), rank: 4, inFeatures: t.inFeatures, outFeatures: t.outFeatures }]),
    );
    const sgm = ldmUnetPaths(sd.unet.loraLayers().map((l) => l.path));
    const kohya = path.join(tmp, 'sdxl-kohya.safetensors');
    const diffusers = path.join(tmp, 'sdxl-diffusers.safetensors');
    writeLoraFile(kohya, 'kohya', { components: new Map([['unet', modules]]), unetSgmNames: sgm });
    writeLoraFile(diffusers, 'diffusers', { components: new Map([['unet', modules]]) });
    const keys = SafetensorsFile.open(kohya);
    assert.ok(keys.names().some((k) => k.startsWith('lora_unet_input_blocks_')), 'SGM names');
    keys.close();
    const a = await networkWeightsStart(kohya, sd, net);
    const b = await networkWeightsStart(diffusers, sd, net);
    for (const [key, m] of modules) {
      sameBits(m.down, a.weights.get(key)!.down, `kohya ${key} down`);
      sameBits(m.up, a.weights.get(key)!.up, `kohya ${key} up`);
      sameBits(m.down, b.weights.get(key)!.down, `diffusers ${key} down`);
      sameBits(m.up, b.weights.get(key)!.up, `diffusers ${key} up`);
    }
    // sd-scripts' SDXL files often carry text-encoder modules, which an SDXL run cannot train yet.
    const te = sd.textEncoder.loraLayers().find((l) => l.path.endsWith('self_attn.q_proj'))!;
    const withTe = path.join(tmp, 'sdxl-kohya-te.safetensors');
    const teModule = { down: new Float32Array(4 * te.inFeatures), up: new Float32Array(te.outFeatures * 4), rank: 4, inFeatures: te.inFeatures, outFeatures: te.outFeatures };
    writeLoraFile(withTe, 'kohya', { components: new Map([['unet', modules], ['text_encoder', new Map([[te.path, teModule]])]]), unetSgmNames: sgm });
    await rejects(networkWeightsStart(withTe, sd, net), /key "lora_te1_text_model_encoder_layers_\d+_self_attn_q_proj\.lora_down\.weight" adapts text encoder module/, /does not train SDXL's text encoders yet/);
  } finally {
    disposeStableDiffusion(sd);
  }
});

test('a LoCon + text-encoder run starts from a kohya file of those modules (3×3 conv kernels, lora_te_ names)', async () => {
  const sd = loadStableDiffusion(path.join(TINY_SD, 'model'));
  try {
    const net = runNetwork(sd, { networkType: 'locon', trainTextEncoder: true, dropout: 0 });
    const rng = new Random(13);
    const byComponent = new Map<'unet' | 'text_encoder', Map<string, LoraModuleToWrite>>([['unet', new Map()], ['text_encoder', new Map()]]);
    for (const t of net.targets) {
      const k = t.kernelSize ?? 1;
      byComponent.get(t.component ?? 'unet')!.set(t.path, { down: rng.normal([4 * t.inFeatures * k * k]), up: rng.normal([t.outFeatures * 4]), rank: 4, alpha: 2, inFeatures: t.inFeatures, outFeatures: t.outFeatures, ...(k > 1 ? { kernelSize: k } : {}), ...(t.conv ? { conv: true } : {}) });
    }
    assert.ok([...byComponent.get('unet')!.values()].some((m) => m.kernelSize === 3) && byComponent.get('text_encoder')!.size > 0);
    const file = path.join(tmp, 'locon-te.safetensors');
    writeLoraFile(file, 'kohya', { components: byComponent });
    const start = await networkWeightsStart(file, sd, net);
    for (const t of net.targets) {
      const m = byComponent.get(t.component ?? 'unet')!.get(t.path)!;
      sameBits(m.down, start.weights.get(moduleKey(t))!.down, `${moduleKey(t)} down`);
      sameBits(m.up, start.weights.get(moduleKey(t))!.up, `${moduleKey(t)} up`);
    }
    // diffusers' kohya LoCon fixture trains its 3×3 convs at conv_dim 2 beside dim 4: one run trains one rank.
    const locon = path.join(REPO, 'test/fixtures/lora-formats/kohya_locon.safetensors');
    await rejects(networkWeightsStart(locon, sd, runNetwork(sd, { ...LORA, networkType: 'locon' })), /has rank [24], but this run trains rank 4|has rank 2, but/, /the file's ranks differ per module \(2, 4\) and a run trains one rank/);
  } finally {
    disposeStableDiffusion(sd);
  }
});

test('a file that does not fit the run: another rank, modules the run does not train, modules missing, DoRA into LoRA', async () => {
  const sd = loadStableDiffusion(path.join(TINY_SD, 'model'));
  try {
    const kohyaKey = /key "lora_unet_[a-z0-9_]+\.lora_down\.weight"/;
    await rejects(networkWeightsStart(KOHYA, sd, runNetwork(sd, LORA, 8, 8)), new RegExp(`${KOHYA.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ${kohyaKey.source} has rank 4, but this run trains rank 8`), /set rank: 4 \(the file's\)/);
    // diffusers' own kohya-layout fixture adapts the text encoder's q/k/v/out and its MLPs.
    const unetTe = path.join(REPO, 'test/fixtures/lora-formats/kohya_unet_te.safetensors');
    await rejects(networkWeightsStart(unetTe, sd, runNetwork(sd, LORA)), /key "lora_te_text_model_encoder_layers_\d_[a-z0-9_]+\.lora_down\.weight" adapts text encoder module .* which this run does not train \(30 of the file's 78 modules/, /set train_text_encoder: true/);
    await rejects(networkWeightsStart(unetTe, sd, runNetwork(sd, { ...LORA, trainTextEncoder: true })), /adapts text encoder module "encoder\.layers\.\d\.mlp\.fc[12]", which this run does not train/, /trains the text encoder's q_proj\/k_proj\/v_proj\/out_proj only/);
    // A LoCon run from a plain LoRA: the convolutions have nothing to start from.
    await rejects(networkWeightsStart(KOHYA, sd, runNetwork(sd, { ...LORA, networkType: 'locon' })), /holds no LoRA for \d+ of the \d+ modules this run trains, e\.g\. UNet module "[^"]+(conv|proj|ff)[^"]*"/, /set network_type: lora or dora/);
    // A LoCon file into a LoRA run.
    const locon = path.join(REPO, 'test/fixtures/lora-formats/kohya_locon.safetensors');
    await rejects(networkWeightsStart(locon, sd, runNetwork(sd, LORA)), /adapts UNet module "[^"]+", which this run does not train/, /set network_type: locon/);
    // A DoRA file into a LoRA run: its magnitudes would be dropped.
    const doraFile = path.join(tmp, 'dora.safetensors');
    const net = runNetwork(sd, LORA);
    writeLoraFile(doraFile, 'peft', {
      components: new Map([['unet', new Map(net.targets.map((t) => [t.path, { down: new Float32Array(4 * t.inFeatures), up: new Float32Array(t.outFeatures * 4), magnitude: new Float32Array(t.outFeatures).fill(1), rank: 4, inFeatures: t.inFeatures, outFeatures: t.outFeatures }]))]]),
    });
    await rejects(networkWeightsStart(doraFile, sd, net), /key "unet\.[^"]+\.lora_A\.weight" is a DoRA module/, /set network_type: dora/);
  } finally {
    disposeStableDiffusion(sd);
  }
});

test('through train: a misfit file is a config error before any step, with the fix as its hint', async () => {
  const out = path.join(tmp, 'misfit');
  const { r } = await run(out, ['--max_train_steps=1', '--rank=8', '--lora_alpha=8', `--network_weights=${KOHYA}`]);
  assert.equal(r.status, 'failed');
  assert.equal(r.step, 0);
  assert.ok(r.error instanceof TrainingError);
  assert.equal(r.error.code, 'config');
  assert.match(r.error.message, /^network_weights: .* has rank 4, but this run trains rank 8/);
  assert.match(r.error.hint ?? '', /set rank: 4/);
  // The config's disk check names a file that is not there before anything loads.
  const missing = configFromFlags([`--pretrained_model_name_or_path=${path.join(TINY_SD, 'model')}`, `--train_data_dir=${path.join(TINY_SD, 'dataset')}`, `--output_dir=${out}`, `--network_weights=${path.join(tmp, 'nowhere.safetensors')}`], { cwd: REPO });
  assert.equal(missing.config, undefined);
  assert.ok(missing.problems.some((p) => /network_weights.*file not found: .*nowhere\.safetensors/.test(p.message)), missing.problems.map((p) => p.message).join('\n'));
  assert.ok(!fs.existsSync(path.join(out, 'pytorch_lora_weights.safetensors')));
});
