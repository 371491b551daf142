// Parity: the training side of DDPMScheduler against golden/ddpm_train — alphas_cumprod, add_noise
// (the noisy latents the UNet sees) and get_velocity (the v-prediction target) — with the scheduler
// built from the fixture model's own scheduler_config.json, as train_text_to_image_lora.py does
// (DDPMScheduler.from_pretrained(model, subfolder="scheduler") on a PNDM config).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { DiffusersFolder } from '../../src/core/io/diffusers_folder.js';
import { DDPMScheduler } from '../../src/core/schedulers/index.js';
import { MODEL_DIR, assertClose, golden, goldenTensor, nchwToNhwc, needs, nhwcToNchw, useTestBackend } from '../helpers/fixtures.js';

const scheduler = () => new DDPMScheduler(DiffusersFolder.open(MODEL_DIR).component('scheduler').config);

test('alphas_cumprod equals diffusers bit for bit', needs('ddpm_train'), async () => {
  // torch builds the betas with a float32 linspace (one rounding per value, FMA) and a cumprod that
  // accumulates in double: reproduced exactly, so the tolerance is 0.
  const ref = golden('ddpm_train').get('alphas_cumprod')!;
  const err = await assertClose(scheduler().alphasCumprod, ref.data, 0, 'ddpm_train: alphas_cumprod');
  assert.equal(err, 0);
});

test('add_noise and get_velocity match diffusers (NHWC, per-item timesteps)', needs('ddpm_train'), async () => {
  await useTestBackend();
  const g = golden('ddpm_train');
  const s = scheduler();
  const latents = nchwToNhwc(goldenTensor(g, 'latents'));
  const noise = nchwToNhwc(goldenTensor(g, 'noise'));
  const timesteps = tf.tensor1d(Array.from(g.get('timesteps')!.data), 'int32'); // [0, 499, 999]
  const noisy = nhwcToNchw(s.addNoise(latents, noise, timesteps));
  const velocity = nhwcToNchw(s.getVelocity(latents, noise, timesteps));
  // Two products and a sum per element, with √ᾱ and √(1 − ᾱ) rounded to float32 as torch does: the
  // result is identical up to the rounding of that sum (≤ 1 ulp; |values| ≤ 5 → ≤ 4.8e-7).
  await assertClose(noisy, goldenTensor(g, 'noisy'), 1e-6, 'ddpm_train: noisy');
  await assertClose(velocity, goldenTensor(g, 'velocity'), 1e-6, 'ddpm_train: velocity');
  s.dispose();
});

test('compute_snr agrees with ᾱ/(1 − ᾱ) from the golden alphas_cumprod', needs('ddpm_train'), () => {
  // An independent formula on the stored table, in double: SNR differs only by float32 rounding of
  // sqrt, division and square (a few ulp relative).
  const ac = golden('ddpm_train').get('alphas_cumprod')!.data;
  const ts = [0, 1, 250, 499, 750, 999];
  const snr = scheduler().computeSnr(ts);
  ts.forEach((t, i) => {
    const expected = ac[t] / (1 - ac[t]);
    assert.ok(Math.abs(snr[i] - expected) <= 1e-6 * expected, `snr(${t}) = ${snr[i]}, expected ${expected}`);
  });
  assert.throws(() => scheduler().computeSnr([1000]), /timestep 1000 is outside 0\.\.999/);
});
