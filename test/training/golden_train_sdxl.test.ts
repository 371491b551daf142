// Reproduces tiny-sdxl's golden/train_lora: four steps of diffusers' train_text_to_image_lora_sdxl.py (peft
// LoRA r=4 on to_q/to_k/to_v/to_out.0, AdamW, clip_grad_norm_) on the tiny SDXL model, from the recorded
// initial LoRA weights, latent draws, noise and timesteps. SDXL's parts are the trainer's own: both text
// encoders (penultimate states concatenated, pooled projection), time ids from each image's original size
// and crop (sdxlTimeIds, centerCropTopLeft), and the UNet's added conditioning in lossAndGrads.
// Tolerances as the SD golden's (golden_train.test.ts), for the same reasons.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { REPO, nchwToNhwc, assertClose } from '../helpers/fixtures.js';
import { initBackend } from '../../src/core/engine/backend.js';
import type { BackendName } from '../../src/core/config/run_config.js';
import { readAllFloat32 } from '../../src/core/io/safetensors.js';
import { readJson } from '../../src/core/io/diffusers_folder.js';
import { loadStableDiffusion, encodePrompts, disposeStableDiffusion, addedConditioning, disposeEmbeddings } from '../../src/core/pipeline/stable_diffusion.js';
import { sdxlTimeIds } from '../../src/core/models/unet_2d_condition.js';
import { DDPMScheduler } from '../../src/core/schedulers/ddpm.js';
import { TrainableLora, downName, upName } from '../../src/training/lora_params.js';
import { encodeLatents, lossAndGrads } from '../../src/training/train_step.js';
import { clipGradNorm } from '../../src/training/grad_clip.js';
import { AdamW } from '../../src/training/adamw.js';
import { decodeRgb } from '../../src/training/dataset.js';
import { centerCropTopLeft, resizedSize } from '../../src/training/image_transforms.js';

const SDXL = path.join(REPO, 'test/fixtures/tiny-sdxl');

test('four SDXL training steps match diffusers + peft (tiny-sdxl golden train_lora)', async () => {
  await initBackend((process.env.LORA_STUDIO_BACKEND ?? 'wasm') as BackendName);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const meta = (readJson(path.join(SDXL, 'MANIFEST.json')) as any).files.train_lora.meta;
  const g = readAllFloat32(path.join(SDXL, 'golden/train_lora.safetensors')).tensors;
  const T = (k: string) => tf.tensor(g.get(k)!.data, g.get(k)!.shape);
  const sd = loadStableDiffusion(path.join(SDXL, 'model'));
  const scheduler = new DDPMScheduler(sd.schedulerConfig);
  const targets = sd.unet.loraTargets();
  const init = new Map<string, { down: Float32Array; up: Float32Array }>();
  for (const t of targets) init.set(t.path, { down: g.get(`init.${t.path}.lora_A.weight`)!.data, up: g.get(`init.${t.path}.lora_B.weight`)!.data });
  const rank = g.get(`init.${targets[0].path}.lora_A.weight`)!.shape[0];
  const lora = TrainableLora.fromWeights(targets, rank, Number(/lora_alpha=(\d+)/.exec(meta.lora)![1]), init);
  const opt = new AdamW({ beta1: meta.betas[0], beta2: meta.betas[1], eps: meta.eps, weightDecay: meta.weight_decay });

  // Time ids: (original h, w) before the resize, the center crop's top-left in the resized image, target size.
  const res = meta.resolution as number;
  const timeIds = await Promise.all(
    ['img0.png', 'img1.png'].map(async (f) => {
      const im = await decodeRgb(path.join(SDXL, 'dataset', f));
      const r = resizedSize(im.width, im.height, res);
      return sdxlTimeIds([im.height, im.width], centerCropTopLeft(r.height, r.width, res), [res, res]);
    }),
  );
  assert.deepEqual(timeIds, [0, 1].map((i) => [...meta.original_sizes[i], ...meta.crop_top_lefts[i], res, res]));
  await assertClose(timeIds.flat(), g.get('add_time_ids')!.data, 0, 'add_time_ids');

  const text = encodePrompts(sd, meta.captions);
  await assertClose(text.embeds, T('prompt_embeds'), 1e-5, 'sdxl prompt_embeds', 1e-5);
  await assertClose(text.pooled!, T('pooled_prompt_embeds'), 1e-5, 'sdxl pooled_prompt_embeds', 1e-5);
  const added = addedConditioning(text.pooled!, timeIds);
  const pixels = nchwToNhwc(T('pixel_values')) as tf.Tensor4D;

  const losses: number[] = [];
  const norms: number[] = [];
  for (let k = 0; k < meta.steps; k++) {
    const eps = nchwToNhwc(T(`eps${k}`)) as tf.Tensor4D;
    const noise = nchwToNhwc(T(`noise${k}`)) as tf.Tensor4D;
    const latents = encodeLatents(sd.vae, pixels, eps);
    const step = await lossAndGrads(
      { unet: sd.unet, scheduler, lora, predictionType: meta.prediction_type, snrGamma: meta.snr_gamma },
      { latents, noise, timesteps: Int32Array.from(g.get(`timesteps${k}`)!.data), encoderHiddenStates: text.embeds, addedCond: added },
    );
    const clipped = await clipGradNorm(step.grads, meta.max_grad_norm);
    opt.update(lora.params, clipped.grads, meta.lr);
    losses.push(step.loss);
    norms.push(clipped.totalNorm);
    tf.dispose([eps, noise, latents, ...step.grads.values(), ...clipped.grads.values()]);
  }
  await assertClose(losses, meta.losses, 0, 'sdxl train losses', 1e-5);
  await assertClose(norms, meta.grad_norms_before_clip, 0, 'sdxl train grad norms', 1e-4);
  for (const t of targets) {
    await assertClose(lora.params.get(downName(t.path))!, T(`final.${t.path}.lora_A.weight`), 2e-5, `final ${t.path} down`);
    await assertClose(lora.params.get(upName(t.path))!, T(`final.${t.path}.lora_B.weight`), 2e-5, `final ${t.path} up`);
  }
  lora.dispose();
  opt.dispose();
  disposeEmbeddings(text);
  tf.dispose([pixels, added.timeIds]);
  disposeStableDiffusion(sd);
});
