// The planned training step (src/training/planned_step.ts over src/core/engine/webgpu/plan/trace.ts) on
// lavapipe: it reproduces diffusers' four training steps (golden train_lora) like the eager step does, its
// replays agree with eager steps, a shape it has not seen is traced again, and it refuses what it cannot
// plan. Skipped when there is no WebGPU adapter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { MODEL_DIR, FIXTURES, manifest, golden, goldenTensor, nchwToNhwc, assertClose } from '../helpers/fixtures.js';
import { loadStableDiffusion, encodePrompts, disposeStableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { DDPMScheduler } from '../../src/core/schedulers/ddpm.js';
import { TrainableLora, downName, upName } from '../../src/training/lora_params.js';
import { encodeLatents } from '../../src/training/train_step.js';
import { decodeRgb } from '../../src/training/dataset.js';
import { trainTransform } from '../../src/training/image_transforms.js';
import { Random } from '../../src/training/random.js';
import { PlannedLoraStep } from '../../src/training/planned_step.js';
import { webgpuOrSkip } from './setup.js';

const skip = await webgpuOrSkip();

test('planned step: four training steps match diffusers + peft (golden train_lora), replays included', { skip }, async () => {
  const spec = manifest().files.train_lora;
  const meta = spec.meta;
  const g = golden('train_lora');
  const sd = loadStableDiffusion(MODEL_DIR);
  const scheduler = new DDPMScheduler(sd.schedulerConfig);
  const targets = sd.unet.loraTargets();
  const init = new Map<string, { down: Float32Array; up: Float32Array }>();
  for (const t of targets) init.set(t.path, { down: g.get(`init.${t.path}.lora_A.weight`)!.data, up: g.get(`init.${t.path}.lora_B.weight`)!.data });
  const rank = g.get(`init.${targets[0].path}.lora_A.weight`)!.shape[0];
  const alpha = Number(/alpha=(\d+)/.exec(meta.lora)![1]);
  const lora = TrainableLora.fromWeights(targets, rank, alpha, init);
  const models = { unet: sd.unet, scheduler, lora, predictionType: meta.prediction_type, snrGamma: meta.snr_gamma };
  const planned = new PlannedLoraStep(models, { beta1: meta.betas[0], beta2: meta.betas[1], eps: meta.eps, weightDecay: meta.weight_decay }, meta.max_grad_norm);

  const images = await Promise.all(['img0.png', 'img1.png'].map((f) => decodeRgb(path.join(FIXTURES, 'dataset', f))));
  const res = spec.tensors.pixel_values[2];
  const pixels = tf.stack(images.map((im) => tf.tensor3d(trainTransform(im, { resolution: res, centerCrop: true, randomFlip: false }, new Random(0)), [res, res, 3]))) as tf.Tensor4D;
  const ehs = encodePrompts(sd, meta.captions);
  const losses: number[] = [];
  const norms: number[] = [];
  for (let k = 0; k < meta.steps; k++) {
    const eps = nchwToNhwc(goldenTensor(g, `eps${k}`)) as tf.Tensor4D;
    const noise = nchwToNhwc(goldenTensor(g, `noise${k}`)) as tf.Tensor4D;
    const timesteps = Int32Array.from(g.get(`timesteps${k}`)!.data);
    const latents = encodeLatents(sd.vae, pixels, eps);
    const r = await planned.step({ latents, noise, timesteps, encoderHiddenStates: ehs }, meta.lr);
    losses.push(r.loss);
    norms.push(r.gradNorm);
    tf.dispose([eps, noise, latents]);
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
  for (const t of targets) {
    await assertClose(lora.params.get(downName(t.path))!, goldenTensor(g, `final.${t.path}.lora_A.weight`), 2e-5, `planned final ${t.path} down`);
    await assertClose(lora.params.get(upName(t.path))!, goldenTensor(g, `final.${t.path}.lora_B.weight`), 2e-5, `planned final ${t.path} up`);
  }
  planned.dispose();
  lora.dispose();
  tf.dispose([pixels, ehs]);
  disposeStableDiffusion(sd);
});
