// The planned training step (src/training/planned_step.ts over src/core/engine/webgpu/plan/trace.ts) on
// lavapipe: it reproduces diffusers' four training steps (golden train_lora) like the eager step does, its
// replays agree with eager steps (same loss and LoRA weights after 3 steps, a new shape re-planned on the
// way), and the memory check refuses a plan the device cannot hold. Skipped when there is no WebGPU adapter.
//
// The images are encoded on the cpu backend: the VAE is not part of the planned step (the trainer encodes
// or caches latents before it), its webgpu output is checked by test/parity/vae.test.ts, and compiling the
// VAE encoder's pipelines on lavapipe would cost this file more than a minute.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { MODEL_DIR, FIXTURES, manifest, golden, goldenTensor, nchwToNhwc, assertClose, maxAbsDiff } from '../helpers/fixtures.js';
import { loadStableDiffusion, encodePrompts, disposeStableDiffusion, type StableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { DDPMScheduler } from '../../src/core/schedulers/ddpm.js';
import { TrainableLora, downName, upName } from '../../src/training/lora_params.js';
import type { StepInputs } from '../../src/training/train_step.js';
import { AdamW } from '../../src/training/adamw.js';
import { decodeRgb } from '../../src/training/dataset.js';
import { trainTransform } from '../../src/training/image_transforms.js';
import { Random } from '../../src/training/random.js';
import { PlannedLoraStep } from '../../src/training/planned_step.js';
import { setOps, tfjsOps } from '../../src/core/engine/ops.js';
import { webgpuOps } from '../../src/core/engine/webgpu/ops.js';
import { webgpuOrSkip } from './setup.js';
import { assertSameWeights, stepBothAndCompare } from './planned_vs_eager.js';

const skip = await webgpuOrSkip();
const spec = manifest().files.train_lora;
const meta = spec.meta;
const adam = { beta1: meta.betas[0], beta2: meta.betas[1], eps: meta.eps, weightDecay: meta.weight_decay };

/**
 * The golden's four steps' inputs: latents, noise, timesteps and text embeddings; the images and captions
 * encoded on the cpu backend by a cpu copy of the model (see above), then handed to webgpu.
 */
async function goldenInputs(): Promise<{ steps: StepInputs[]; ehs: tf.Tensor3D }> {
  const g = golden('train_lora');
  const images = await Promise.all(['img0.png', 'img1.png'].map((f) => decodeRgb(path.join(FIXTURES, 'dataset', f))));
  const res = spec.tensors.pixel_values[2];
  let mean: Float32Array;
  let std: Float32Array;
  let shape = [0, 0, 0, 0];
  let ehsShape = [0, 0, 0];
  let ehsData: Float32Array;
  let scale = 0;
  await tf.setBackend('cpu');
  setOps(tfjsOps);
  try {
    const cpu = loadStableDiffusion(MODEL_DIR);
    const { embeds } = encodePrompts(cpu, meta.captions);
    ehsData = (await embeds.data()) as Float32Array;
    ehsShape = embeds.shape;
    const pixels = tf.stack(images.map((im) => tf.tensor3d(trainTransform(im, { resolution: res, centerCrop: true, randomFlip: false }, new Random(0)), [res, res, 3]))) as tf.Tensor4D;
    const d = cpu.vae.encode(pixels);
    [mean, std] = (await Promise.all([d.mean.data(), d.std.data()])) as Float32Array[];
    shape = d.mean.shape;
    scale = cpu.vae.config.scaling_factor as number;
    tf.dispose([pixels, embeds, d.mean, d.std]);
    disposeStableDiffusion(cpu);
  } finally {
    await tf.setBackend('webgpu');
    setOps(webgpuOps);
  }
  const ehs = tf.tensor3d(ehsData, ehsShape as [number, number, number]);
  // encodeLatents' sample, (mean + std·eps)·scaling_factor, from the one encoding (the pixels are the same every step).
  const latents = Array.from({ length: meta.steps }, (_, k) =>
    tf.tidy(() => {
      const eps = nchwToNhwc(goldenTensor(g, `eps${k}`));
      return tf.tensor4d(mean, shape as [number, number, number, number]).add(tf.tensor4d(std, shape as [number, number, number, number]).mul(eps)).mul(scale) as tf.Tensor4D;
    }),
  );
  const steps = latents.map((l, k) => ({
    latents: l,
    noise: nchwToNhwc(goldenTensor(g, `noise${k}`)) as tf.Tensor4D,
    timesteps: Int32Array.from(g.get(`timesteps${k}`)!.data),
    encoderHiddenStates: ehs,
  }));
  return { steps, ehs };
}

function goldenLora(sd: StableDiffusion): TrainableLora {
  const g = golden('train_lora');
  const targets = sd.unet.loraTargets();
  const init = new Map<string, { down: Float32Array; up: Float32Array }>();
  for (const t of targets) init.set(t.path, { down: g.get(`init.${t.path}.lora_A.weight`)!.data, up: g.get(`init.${t.path}.lora_B.weight`)!.data });
  const rank = g.get(`init.${targets[0].path}.lora_A.weight`)!.shape[0];
  return TrainableLora.fromWeights(targets, rank, Number(/alpha=(\d+)/.exec(meta.lora)![1]), init);
}

const disposeInputs = (steps: StepInputs[]) => tf.dispose(steps.flatMap((s) => [s.latents, s.noise]));

test('planned step: four training steps match diffusers + peft (golden train_lora), replays included', { skip }, async () => {
  const g = golden('train_lora');
  const sd = loadStableDiffusion(MODEL_DIR);
  const scheduler = new DDPMScheduler(sd.schedulerConfig);
  const lora = goldenLora(sd);
  const planned = new PlannedLoraStep({ unet: sd.unet, scheduler, lora, predictionType: meta.prediction_type, snrGamma: meta.snr_gamma }, adam, meta.max_grad_norm);
  const { steps, ehs } = await goldenInputs();
  const losses: number[] = [];
  const norms: number[] = [];
  for (const x of steps) {
    const r = await planned.step(x, meta.lr);
    losses.push(r.loss);
    norms.push(r.gradNorm);
  }
  const stats = planned.lastPlan;
  // One plan for the one shape; its replays are one submit each.
  assert.ok(stats, 'the shape was planned');
  assert.equal(stats.shapes, 1);
  assert.equal(planned.submitsPerStep, 1);
  assert.ok(stats.dispatches > 0 && stats.memory.activationBytes < stats.memory.unplannedActivationBytes, `memory plan reuses buffers: ${JSON.stringify(stats.memory)}`);
  // Same tolerances, and the same reasons, as test/training/golden_train.test.ts (the eager step): the
  // planned step runs the eager step's kernels; only the flat ‖g‖ and AdamW sum in another order.
  await assertClose(losses, meta.losses, 0, 'planned train_lora losses', 1e-5);
  await assertClose(norms, meta.grad_norms_before_clip, 0, 'planned train_lora grad norms', 1e-4);
  for (const t of sd.unet.loraTargets()) {
    await assertClose(lora.params.get(downName(t.path))!, goldenTensor(g, `final.${t.path}.lora_A.weight`), 2e-5, `planned final ${t.path} down`);
    await assertClose(lora.params.get(upName(t.path))!, goldenTensor(g, `final.${t.path}.lora_B.weight`), 2e-5, `planned final ${t.path} up`);
  }
  planned.dispose();
  lora.dispose();
  disposeInputs(steps);
  ehs.dispose();
  disposeStableDiffusion(sd);
});

test('planned step: 3 steps give the loss and LoRA weights of 3 eager steps (v-prediction, min-SNR, a new shape re-planned)', { skip }, async () => {
  const sd = loadStableDiffusion(MODEL_DIR);
  const scheduler = new DDPMScheduler(sd.schedulerConfig);
  // The other loss branches than the golden's: v-prediction target, min-SNR γ weights (written per step).
  const common = { unet: sd.unet, scheduler, predictionType: 'v_prediction' as const, snrGamma: 5 };
  const loraE = goldenLora(sd);
  const loraP = goldenLora(sd);
  const opt = new AdamW(adam);
  const planned = new PlannedLoraStep({ ...common, lora: loraP }, adam, meta.max_grad_norm);
  const { steps, ehs } = await goldenInputs();
  // Step 3 is batch 1 (the first sample only): a shape the plan has not seen, traced again.
  const first = (x: StepInputs): StepInputs => ({ latents: x.latents.slice(0, 1), noise: x.noise.slice(0, 1), timesteps: x.timesteps.slice(0, 1), encoderHiddenStates: ehs.slice(0, 1) });
  const inputs = [steps[0], steps[1], first(steps[2])];
  const lr = 1e-2; // ten times the golden's: the weights move visibly in 3 steps
  for (const [k, x] of inputs.entries()) {
    await stepBothAndCompare(k, { ...common, lora: loraE }, opt, planned, x, lr, meta.max_grad_norm);
  }
  assert.equal(planned.lastPlan!.shapes, 2, 'the batch-1 step made a second plan');
  const init = goldenLora(sd);
  await assertSameWeights(loraP, loraE, init, lr);
  init.dispose();
  // Checkpoints read the optimizer state: the planned step's moments are AdamW's, under the same names.
  const se = await opt.exportState();
  const sp = await planned.exportState();
  assert.equal(sp.step, se.step);
  for (const [name, m] of se.expAvg) {
    assert.ok((await maxAbsDiff(sp.expAvg.get(name)!, m)) <= 1e-6 + 1e-3 * (await maxAbsDiff(m, new Float32Array(m.length))), `${name}: exp_avg`);
  }
  planned.dispose();
  opt.dispose();
  loraE.dispose();
  loraP.dispose();
  disposeInputs(steps);
  tf.dispose([ehs, inputs[2].latents, inputs[2].noise, inputs[2].encoderHiddenStates]);
  disposeStableDiffusion(sd);
});
