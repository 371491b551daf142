// The UNet with LoRAs loaded from files, against diffusers' load_lora_weights + set_adapters:
// the diffusers file at scale 1 and 0.5, and the same weights in kohya layout with alpha = r/2
// (so its effective scale is 0.5 with no user scale). Tolerance: the base UNet's, atol 1e-6 + 5e-6·max|ref|:
// f32 rounding through ~50 layers summed in another order than torch; the LoRA adds two small matmuls
// per projection, well inside that. A wrong scale (e.g. alpha ignored) moves outputs by ~1e-2.
import { test, before, after } from 'node:test';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FIXTURES, addedCondOf, fixtureUnet, golden, goldenTensor, nchwToNhwc, needs, nhwcToNchw, assertClose, useTestBackend } from '../helpers/fixtures.js';
import type { UNet2DConditionModel } from '../../src/core/models/unet_2d_condition.js';
import { readLoraFile } from '../../src/core/lora/lora_file.js';
import { LoraSet } from '../../src/core/lora/lora_set.js';

let unet: UNet2DConditionModel;
before(async () => {
  await useTestBackend();
  unet = fixtureUnet();
});
after(() => unet?.dispose());

/** The UNet on golden lora_unet's inputs (with SDXL's added conditioning when the golden has it), NCHW. */
function run(set: LoraSet): tf.Tensor {
  return tf.tidy(() => {
    const g = golden('lora_unet');
    const out = unet.forward(nchwToNhwc(goldenTensor(g, 'sample')) as tf.Tensor4D, goldenTensor(g, 'timesteps').toFloat() as tf.Tensor1D, goldenTensor(g, 'encoder_hidden_states') as tf.Tensor3D, set.lookup, addedCondOf(g));
    return nhwcToNchw(out);
  });
}

test('lora_unet: UNet with the diffusers LoRA file at scale 1 and 0.5 matches diffusers', needs('lora_unet', 'lora_diffusers'), async () => {
  const g = golden('lora_unet');
  const diffusers = readLoraFile(path.join(FIXTURES, 'lora_diffusers/pytorch_lora_weights.safetensors'), unet.loraTargets());
  for (const [scale, key] of [[1, 'out_scale1'], [0.5, 'out_scale0_5']] as const) {
    const set = new LoraSet();
    set.add(diffusers, scale, 'fixture');
    const out = run(set);
    await assertClose(out, goldenTensor(g, key), 1e-6, `lora_unet ${key}`, 5e-6);
    out.dispose();
    set.dispose();
  }
});

test('lora_unet: the same LoRA in kohya layout with alpha = r/2 matches diffusers', needs('lora_unet', 'lora_kohya.safetensors'), async () => {
  const g = golden('lora_unet');
  const kohya = readLoraFile(path.join(FIXTURES, 'lora_kohya.safetensors'), unet.loraTargets());
  const set = new LoraSet();
  set.add(kohya, 1, 'kohya');
  const out = run(set);
  await assertClose(out, goldenTensor(g, 'out_kohya_alpha2'), 1e-6, 'lora_unet kohya alpha=r/2', 5e-6);
  out.dispose();
  set.dispose();
});
