// The planned training step on SDXL (addition_embed_type text_time), on lavapipe: the UNet's added
// conditioning (pooled text embeddings and time ids) is a per-step input of the plan, so the four steps of
// tiny-sdxl's golden train_lora (diffusers' train_text_to_image_lora_sdxl.py) come out as the eager step's
// (test/training/golden_train_sdxl.test.ts), and 3 planned steps whose time ids change every step (another
// original size, another crop, a batch-1 shape re-planned) give the eager step's losses and weights.
// Skipped when there is no WebGPU adapter.
//
// Text and VAE encodings run on the cpu backend, as in planned_step.test.ts: they are not part of the planned
// step (the trainer caches them before it), and compiling their pipelines on lavapipe would cost minutes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { REPO, nchwToNhwc, assertClose } from '../helpers/fixtures.js';
import { readAllFloat32 } from '../../src/core/io/safetensors.js';
import { readJson } from '../../src/core/io/diffusers_folder.js';
import { loadStableDiffusion, encodePrompts, disposeStableDiffusion, disposeEmbeddings, type StableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { sdxlTimeIds } from '../../src/core/models/unet_2d_condition.js';
import { DDPMScheduler } from '../../src/core/schedulers/ddpm.js';
import { TrainableLora, downName, upName } from '../../src/training/lora_params.js';
import { diffusionLoss, type StepInputs } from '../../src/training/train_step.js';
import { AdamW } from '../../src/training/adamw.js';
import { PlannedLoraStep, stepShape } from '../../src/training/planned_step.js';
import { setOps, tfjsOps } from '../../src/core/engine/ops.js';
import { webgpuOps } from '../../src/core/engine/webgpu/ops.js';
import { webgpuOrSkip } from './setup.js';
import { assertSameWeights, stepBothAndCompare } from './planned_vs_eager.js';

const skip = await webgpuOrSkip();
const SDXL = path.join(REPO, 'test/fixtures/tiny-sdxl');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const meta = (readJson(path.join(SDXL, 'MANIFEST.json')) as any).files.train_lora.meta;
const g = readAllFloat32(path.join(SDXL, 'golden/train_lora.safetensors')).tensors;
const T = (k: string) => tf.tensor(g.get(k)!.data, g.get(k)!.shape);
const adam = { beta1: meta.betas[0], beta2: meta.betas[1], eps: meta.eps, weightDecay: meta.weight_decay };

/** The golden's four steps' inputs (latents from the recorded draws; text, pooled embeddings and time ids as the golden's). */
async function goldenInputs(): Promise<{ steps: StepInputs[]; shared: tf.Tensor[] }> {
  let mean: Float32Array, std: Float32Array, embeds: Float32Array, pooled: Float32Array;
  let latentShape: number[], embedsShape: number[], pooledShape: number[];
  let scale: number;
  await tf.setBackend('cpu');
  setOps(tfjsOps);
  try {
    const cpu = loadStableDiffusion(path.join(SDXL, 'model'));
    const text = encodePrompts(cpu, meta.captions);
    [embeds, pooled] = (await Promise.all([text.embeds.data(), text.pooled!.data()])) as Float32Array[];
    [embedsShape, pooledShape] = [text.embeds.shape, text.pooled!.shape];
    const pixels = nchwToNhwc(T('pixel_values')) as tf.Tensor4D;
    const d = cpu.vae.encode(pixels);
    [mean, std] = (await Promise.all([d.mean.data(), d.std.data()])) as Float32Array[];
    latentShape = d.mean.shape;
    scale = cpu.vae.config.scaling_factor as number;
    tf.dispose([pixels, d.mean, d.std]);
    disposeEmbeddings(text);
    disposeStableDiffusion(cpu);
  } finally {
    await tf.setBackend('webgpu');
    setOps(webgpuOps);
  }
  const ehs = tf.tensor3d(embeds, embedsShape as [number, number, number]);
  const textEmbeds = tf.tensor2d(pooled, pooledShape as [number, number]);
  const timeIds = tf.tensor2d(g.get('add_time_ids')!.data, g.get('add_time_ids')!.shape as [number, number]);
  const shape = latentShape as [number, number, number, number];
  const steps = Array.from({ length: meta.steps as number }, (_, k) => ({
    // encodeLatents' sample, (mean + std·eps)·scaling_factor, from the one encoding.
    latents: tf.tidy(() => tf.tensor4d(mean, shape).add(tf.tensor4d(std, shape).mul(nchwToNhwc(T(`eps${k}`)))).mul(scale) as tf.Tensor4D),
    noise: nchwToNhwc(T(`noise${k}`)) as tf.Tensor4D,
    timesteps: Int32Array.from(g.get(`timesteps${k}`)!.data),
    encoderHiddenStates: ehs,
    addedCond: { textEmbeds, timeIds },
  }));
  return { steps, shared: [ehs, textEmbeds, timeIds] };
}

function goldenLora(sd: StableDiffusion): TrainableLora {
  const targets = sd.unet.loraTargets();
  const init = new Map<string, { down: Float32Array; up: Float32Array }>();
  for (const t of targets) init.set(t.path, { down: g.get(`init.${t.path}.lora_A.weight`)!.data, up: g.get(`init.${t.path}.lora_B.weight`)!.data });
  const rank = g.get(`init.${targets[0].path}.lora_A.weight`)!.shape[0];
  return TrainableLora.fromWeights(targets, rank, Number(/lora_alpha=(\d+)/.exec(meta.lora)![1]), init);
}

test('planned SDXL step: four training steps match diffusers + peft (tiny-sdxl golden train_lora)', { skip }, async () => {
  const sd = loadStableDiffusion(path.join(SDXL, 'model'));
  const scheduler = new DDPMScheduler(sd.schedulerConfig);
  const lora = goldenLora(sd);
  const planned = new PlannedLoraStep({ unet: sd.unet, scheduler, lora, predictionType: meta.prediction_type, snrGamma: meta.snr_gamma }, adam, meta.max_grad_norm);
  const { steps, shared } = await goldenInputs();
  // The trainer plans before the first step from the config alone: the same key as the step's own inputs.
  const res = meta.resolution as number;
  const latent = steps[0].latents.shape[1];
  await planned.plan(stepShape(sd.unet, steps[0].latents.shape[0], latent, steps[0].encoderHiddenStates.shape[1]));
  assert.equal(res / latent, sd.vaeScaleFactor);
  const losses: number[] = [];
  const norms: number[] = [];
  for (const x of steps) {
    const r = await planned.step(x, meta.lr);
    losses.push(r.loss);
    norms.push(r.gradNorm);
  }
  assert.equal(planned.lastPlan!.shapes, 1, 'the step ran the plan made from stepShape');
  assert.equal(planned.submitsPerStep, 1);
  // The eager step's tolerances (golden_train_sdxl.test.ts), for its reasons: same kernels, only the flat
  // ‖g‖ and AdamW sum in another order.
  await assertClose(losses, meta.losses, 0, 'planned sdxl train losses', 1e-5);
  await assertClose(norms, meta.grad_norms_before_clip, 0, 'planned sdxl train grad norms', 1e-4);
  for (const t of sd.unet.loraTargets()) {
    await assertClose(lora.params.get(downName(t.path))!, T(`final.${t.path}.lora_A.weight`), 2e-5, `planned sdxl final ${t.path} down`);
    await assertClose(lora.params.get(upName(t.path))!, T(`final.${t.path}.lora_B.weight`), 2e-5, `planned sdxl final ${t.path} up`);
  }
  planned.dispose();
  lora.dispose();
  tf.dispose([...steps.flatMap((s) => [s.latents, s.noise]), ...shared]);
  disposeStableDiffusion(sd);
});

test('planned SDXL step: 3 steps with new time ids each give the eager losses and weights (a batch-1 shape re-planned)', { skip }, async () => {
  const sd = loadStableDiffusion(path.join(SDXL, 'model'));
  const scheduler = new DDPMScheduler(sd.schedulerConfig);
  const common = { unet: sd.unet, scheduler, predictionType: meta.prediction_type, snrGamma: meta.snr_gamma };
  const loraE = goldenLora(sd);
  const loraP = goldenLora(sd);
  const opt = new AdamW(adam);
  const planned = new PlannedLoraStep({ ...common, lora: loraP }, adam, meta.max_grad_norm);
  const { steps, shared } = await goldenInputs();
  const res = meta.resolution as number;
  // Each step's micro-conditioning is another image variant's (bucket crop, flip, original size): the plan
  // must read them from its inputs, not bake in the first step's.
  const ids = [
    g.get('add_time_ids')!.data,
    [...sdxlTimeIds([96, 80], [16, 0], [res, res]), ...sdxlTimeIds([64, 128], [0, 32], [res, res])],
    sdxlTimeIds([200, 150], [12, 7], [res, res]),
  ];
  const x0 = steps[0];
  const made: tf.Tensor[] = [];
  const withIds = (x: StepInputs, rows: ArrayLike<number>, batch = x.latents.shape[0]): StepInputs => {
    const cut = <R extends tf.Rank>(t: tf.Tensor<R>) => (batch === t.shape[0] ? t : (t.slice(0, batch) as tf.Tensor<R>));
    const y = {
      latents: cut(x.latents), noise: cut(x.noise), timesteps: x.timesteps.slice(0, batch), encoderHiddenStates: cut(x.encoderHiddenStates),
      addedCond: { textEmbeds: cut(x.addedCond!.textEmbeds), timeIds: tf.tensor2d(Float32Array.from(rows), [batch, 6]) },
    };
    made.push(y.addedCond.timeIds, ...(batch === x.latents.shape[0] ? [] : [y.latents, y.noise, y.encoderHiddenStates, y.addedCond.textEmbeds]));
    return y;
  };
  const inputs = [withIds(x0, ids[0]), withIds(steps[1], ids[1]), withIds(steps[2], ids[2], 1)];
  const lr = 1e-2; // ten times the golden's: the weights move visibly in 3 steps
  for (const [k, x] of inputs.entries()) {
    if (k === 1) {
      // The time ids matter to the loss (else the comparison below could not tell baked ids from written
      // ones): by more than ten times its 1e-5 tolerance (measured on lavapipe: 6.5e-4 relative).
      const lookup = loraE.lookup();
      const [a, b] = await Promise.all([x, withIds(steps[1], ids[0])].map((y) => tf.tidy(() => diffusionLoss(common, y, lookup)).data()));
      assert.ok(Math.abs(a[0] - b[0]) > 1e-4 * Math.abs(a[0]), `step 2's loss with its own time ids ${a[0]}, with step 1's ${b[0]}`);
    }
    await stepBothAndCompare(k, { ...common, lora: loraE }, opt, planned, x, lr, meta.max_grad_norm);
  }
  assert.equal(planned.lastPlan!.shapes, 2, 'the batch-1 step made a second plan');
  const init = goldenLora(sd);
  await assertSameWeights(loraP, loraE, init, lr);
  init.dispose();
  planned.dispose();
  opt.dispose();
  loraE.dispose();
  loraP.dispose();
  tf.dispose([...steps.flatMap((s) => [s.latents, s.noise]), ...shared, ...made]);
  disposeStableDiffusion(sd);
});
