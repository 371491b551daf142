// The UNet with LoRAs loaded from files, against diffusers' load_lora_weights + set_adapters:
// the diffusers file at scale 1 and 0.5, and the same weights in kohya layout with alpha = r/2
// (so its effective scale is 0.5 with no user scale). Tolerance: the base UNet's, atol 1e-6 + 5e-6·max|ref|:
// f32 rounding through ~50 layers summed in another order than torch; the LoRA adds two small matmuls
// per projection, well inside that. A wrong scale (e.g. alpha ignored) moves outputs by ~1e-2.
import { test } from 'node:test';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FIXTURES, MODEL_DIR, golden, goldenTensor, nchwToNhwc, nhwcToNchw, assertClose, useTestBackend } from '../helpers/fixtures.js';
import { UNet2DConditionModel } from '../../src/core/models/unet_2d_condition.js';
import { readLoraFile } from '../../src/core/lora/lora_file.js';
import { LoraSet } from '../../src/core/lora/lora_set.js';

test('lora_unet: UNet with LoRA at scale 1, 0.5 and kohya alpha = r/2 matches diffusers', async () => {
  await useTestBackend();
  const g = golden('lora_unet');
  const unet = UNet2DConditionModel.fromPretrained(path.join(MODEL_DIR, 'unet'));
  const sample = nchwToNhwc(goldenTensor(g, 'sample')) as tf.Tensor4D;
  const timesteps = goldenTensor(g, 'timesteps').toFloat() as tf.Tensor1D;
  const context = goldenTensor(g, 'encoder_hidden_states') as tf.Tensor3D;
  const targets = unet.loraTargets();
  const run = (set: LoraSet) => nhwcToNchw(unet.forward(sample, timesteps, context, set.lookup));

  const diffusers = readLoraFile(path.join(FIXTURES, 'lora_diffusers/pytorch_lora_weights.safetensors'), targets);
  for (const [scale, key] of [[1, 'out_scale1'], [0.5, 'out_scale0_5']] as const) {
    const set = new LoraSet();
    set.add(diffusers, scale, 'fixture');
    await assertClose(run(set), goldenTensor(g, key), 1e-6, `lora_unet ${key}`, 5e-6);
    set.dispose();
  }
  const kohya = readLoraFile(path.join(FIXTURES, 'lora_kohya.safetensors'), targets);
  const set = new LoraSet();
  set.add(kohya, 1, 'kohya');
  await assertClose(run(set), goldenTensor(g, 'out_kohya_alpha2'), 1e-6, 'lora_unet kohya alpha=r/2', 5e-6);
  set.dispose();
  unet.dispose();
});
