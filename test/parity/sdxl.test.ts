// SDXL against diffusers (fixtures/tiny-sdxl, made by diffusers' StableDiffusionXLPipeline; MANIFEST.json):
// both tokenizers, both text encoders (CLIPTextModel, CLIPTextModelWithProjection: penultimate states
// concatenated, pooled projection), the UNet with added conditioning (text_embeds + micro-conditioning
// time ids), the SDXL VAE, and the UNet with the fixture's LoRA. LORA_STUDIO_FIXTURES (an SDXL fixture) or
// LORA_STUDIO_SDXL_FIXTURES points it at another folder of that layout; every shape is read from its files.
//
// Tolerances are the SD parity suite's, for the same reasons (f32 on both sides, rounding in another
// summation order): text encoders atol 1e-5 + rtol 1e-5, UNet and VAE atol 1e-6 + rtol 5e-6 of max|ref|.
// A real mistake is far larger: time ids fed without the sinusoidal projection, or text_embeds after
// them instead of before, move the UNet output by > 1e-2 (the check below on swapping halves).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { CLIPTextModel } from '../../src/core/models/clip_text_model.js';
import { CLIPTextModelWithProjection } from '../../src/core/models/clip_text_model_with_projection.js';
import { UNet2DConditionModel } from '../../src/core/models/unet_2d_condition.js';
import { AutoencoderKL } from '../../src/core/models/autoencoder_kl.js';
import { CLIPTokenizer } from '../../src/core/tokenizer/clip_tokenizer.js';
import { readAllFloat32 } from '../../src/core/io/safetensors.js';
import { readJson } from '../../src/core/io/diffusers_folder.js';
import { readLoraFile } from '../../src/core/lora/lora_file.js';
import { LoraSet } from '../../src/core/lora/lora_set.js';
import { loadStableDiffusion, generate, disposeStableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { FIXTURES, IS_XL, REPO, assertClose, nchwToNhwc, nhwcToNchw, useTestBackend, type Golden } from '../helpers/fixtures.js';

// LORA_STUDIO_FIXTURES, when it names an SDXL fixture; else the project's tiny-sdxl.
const SDXL = path.resolve(process.env.LORA_STUDIO_SDXL_FIXTURES ?? (IS_XL ? FIXTURES : path.join(REPO, 'test/fixtures/tiny-sdxl')));
const MODEL = path.join(SDXL, 'model');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const MANIFEST = readJson(path.join(SDXL, 'MANIFEST.json')) as any;
const goldenOf = (name: string): Map<string, Golden> => readAllFloat32(path.join(SDXL, 'golden', `${name}.safetensors`)).tensors;
const T = (g: Map<string, Golden>, key: string): tf.Tensor => {
  const t = g.get(key);
  assert.ok(t, `golden tensor ${key} missing`);
  return tf.tensor(t.data, t.shape);
};

let unet: UNet2DConditionModel;
before(async () => {
  await useTestBackend();
  unet = UNet2DConditionModel.fromPretrained(MODEL);
});

test('both tokenizers give diffusers ids (tokenizer_2 pads with "!")', () => {
  const m = MANIFEST.files.tokenizer;
  const t1 = CLIPTokenizer.fromPretrained(path.join(MODEL, 'tokenizer'));
  const t2 = CLIPTokenizer.fromPretrained(path.join(MODEL, 'tokenizer_2'));
  assert.equal(t2.padTokenId, m.pad_token_id_2);
  (m.prompts as string[]).forEach((p, i) => {
    assert.deepEqual(t1.encode(p), m.input_ids_1[i], `tokenizer "${p}"`);
    assert.deepEqual(t2.encode(p), m.input_ids_2[i], `tokenizer_2 "${p}"`);
  });
});

test('text encoders match transformers: CLIPTextModel and CLIPTextModelWithProjection (v4 and v5 weight layouts)', async () => {
  const g = goldenOf('text_encoders');
  const te1 = CLIPTextModel.fromPretrained(MODEL);
  const te2 = CLIPTextModelWithProjection.fromPretrained(MODEL);
  assert.deepEqual(te1.params.unused(), []);
  assert.deepEqual(te2.params.unused(), []);
  const ids = (k: string) => tf.tidy(() => T(g, k).round().cast('int32')) as tf.Tensor2D;
  const ids1 = ids('input_ids_1');
  const ids2 = ids('input_ids_2');
  const o1 = te1.forward(ids1);
  const o2 = te2.forward(ids2);
  await assertClose(o1.penultimateHiddenState, T(g, 'penultimate_hidden_state_1'), 1e-5, 'text_encoder hidden_states[-2]', 1e-5);
  await assertClose(o1.lastHiddenState, T(g, 'last_hidden_state_1'), 1e-5, 'text_encoder last_hidden_state', 1e-5);
  await assertClose(o1.poolerOutput, T(g, 'pooler_output_1'), 1e-5, 'text_encoder pooler_output', 1e-5);
  await assertClose(o2.penultimateHiddenState, T(g, 'penultimate_hidden_state_2'), 1e-5, 'text_encoder_2 hidden_states[-2]', 1e-5);
  await assertClose(o2.lastHiddenState, T(g, 'last_hidden_state_2'), 1e-5, 'text_encoder_2 last_hidden_state', 1e-5);
  await assertClose(o2.textEmbeds, T(g, 'text_embeds_2'), 1e-5, 'text_encoder_2 text_embeds', 1e-5);
  const promptEmbeds = tf.concat([o1.penultimateHiddenState, o2.penultimateHiddenState], -1);
  await assertClose(promptEmbeds, T(g, 'prompt_embeds'), 1e-5, 'prompt_embeds', 1e-5);
  tf.dispose([ids1, ids2, promptEmbeds, ...Object.values(o1), ...Object.values(o2)]);
  te1.dispose();
  te2.dispose();
});

test('a text_projection.weight is refused by CLIPTextModel and required by CLIPTextModelWithProjection', () => {
  const config = readJson(path.join(MODEL, 'text_encoder_2', 'config.json')) as Record<string, unknown>;
  const te2 = CLIPTextModelWithProjection.random(config, 3);
  assert.throws(() => new CLIPTextModel(config, te2.params), /unexpected "text_projection\.weight"/);
  te2.params.tensors.get('text_projection.weight')!.dispose();
  te2.params.tensors.delete('text_projection.weight');
  assert.throws(() => new CLIPTextModelWithProjection(config, te2.params), /missing "text_projection\.weight" \(expected shape \[10,12\]\)/);
  te2.dispose();
});

function runUnet(g: Map<string, Golden>, set?: LoraSet, swapTextAndTime = false): tf.Tensor {
  return tf.tidy(() => {
    const sample = nchwToNhwc(T(g, 'sample')) as tf.Tensor4D;
    let textEmbeds = T(g, 'text_embeds') as tf.Tensor2D;
    if (swapTextAndTime) textEmbeds = textEmbeds.reverse(1);
    const out = unet.forward(sample, T(g, 'timesteps') as tf.Tensor1D, T(g, 'encoder_hidden_states') as tf.Tensor3D, set?.lookup, { textEmbeds, timeIds: T(g, 'time_ids') as tf.Tensor2D });
    return nhwcToNchw(out);
  });
}

test('UNet with addition_embed_type text_time matches diffusers (golden unet)', async () => {
  const g = goldenOf('unet');
  assert.equal(unet.config.addition_embed_type, 'text_time');
  const out = runUnet(g);
  await assertClose(out, T(g, 'out'), 1e-6, 'sdxl unet out', 5e-6);
  assert.deepEqual(unet.params.unused(), [], 'every tensor in the weights file is used');
  // The added conditioning matters: reversing the pooled embedding moves the output well past the tolerance.
  const wrong = runUnet(g, undefined, true);
  const moved = (await tf.max(tf.abs(wrong.sub(out))).data())[0];
  assert.ok(moved > 1e-3, `text_embeds change the output (${moved})`);
  tf.dispose([out, wrong]);
  assert.throws(() => unet.forward(tf.zeros([1, 8, 8, 4]) as tf.Tensor4D, tf.tensor1d([1]), tf.zeros([1, 77, 20]) as tf.Tensor3D), /needs text_embeds and time_ids/);
});

test('UNet with the SDXL LoRA at scale 1 and 0.5 matches diffusers (golden lora_unet)', async () => {
  const g = goldenOf('lora_unet');
  const lora = readLoraFile(path.join(SDXL, MANIFEST.files.lora_unet.meta.lora_file), unet.loraTargets());
  for (const [scale, key] of [[1, 'out_scale1'], [0.5, 'out_scale0_5']] as const) {
    const set = new LoraSet();
    set.add(lora, scale, 'fixture');
    const out = runUnet(g, set);
    await assertClose(out, T(g, key), 1e-6, `sdxl lora_unet ${key}`, 5e-6);
    out.dispose();
    set.dispose();
  }
});

test('SDXL VAE (scaling 0.13025, force_upcast) matches diffusers encode and decode (golden vae)', async () => {
  const g = goldenOf('vae');
  const vae = AutoencoderKL.fromPretrained(MODEL);
  assert.equal(vae.config.scaling_factor, MANIFEST.files.vae.meta.scaling_factor);
  const { mean, std } = vae.encode(nchwToNhwc(T(g, 'image')) as tf.Tensor4D);
  await assertClose(nhwcToNchw(mean), T(g, 'mean'), 1e-6, 'sdxl vae mean', 5e-6);
  await assertClose(nhwcToNchw(std), T(g, 'std'), 1e-6, 'sdxl vae std', 5e-6);
  const decoded = vae.decode(nchwToNhwc(T(g, 'latents')) as tf.Tensor4D);
  await assertClose(nhwcToNchw(decoded), T(g, 'decoded'), 1e-6, 'sdxl vae decoded', 5e-6);
  tf.dispose([mean, std, decoded]);
  vae.dispose();
});

test('4-step Euler generation, CFG 5, zero negative: matches StableDiffusionXLPipeline without and with the LoRA (golden pipeline_euler4)', async () => {
  const g = goldenOf('pipeline_euler4');
  const meta = MANIFEST.files.pipeline_euler4.meta;
  const sd = loadStableDiffusion(MODEL);
  try {
    assert.ok(sd.textEncoder2 && sd.forceZerosForEmptyPrompt);
    const latents = nchwToNhwc(T(g, 'latents')) as tf.Tensor4D;
    const common = { prompt: meta.prompt as string, steps: meta.steps as number, guidanceScale: meta.guidance_scale as number, width: meta.width as number, height: meta.height as number, latents };
    // No scheduler named: SDXL's default is Euler (the golden's EulerDiscreteScheduler).
    const plain = await generate(sd, common);
    // The image in [0, 1]; f32 rounding through 4 × 2 UNet passes, CFG ×5 and the VAE decoder: measured ≤ 2e-6 here; 2e-5 bound.
    await assertClose(plain.reshape([meta.height, meta.width, 3]), T(g, 'image'), 2e-5, 'sdxl pipeline image');
    const lora = new LoraSet();
    lora.add(readLoraFile(path.join(SDXL, 'lora_diffusers/pytorch_lora_weights.safetensors'), sd.unet.loraTargets()), 1, 'fixture');
    const withLora = await generate(sd, { ...common, lora: lora.lookup });
    await assertClose(withLora.reshape([meta.height, meta.width, 3]), T(g, 'image_lora'), 2e-5, 'sdxl pipeline image with LoRA');
    const emptyNegative = await generate(sd, { ...common, negativePrompt: '' });
    await assertClose(emptyNegative.reshape([meta.height, meta.width, 3]), T(g, 'image_negative_empty_string'), 2e-5, 'sdxl pipeline image, negative ""');
    tf.dispose([latents, plain, withLora, emptyNegative]);
    lora.dispose();
  } finally {
    disposeStableDiffusion(sd);
  }
});

test('an SDXL LoRA on an SD 1.x model is refused, naming the first key that does not fit', () => {
  const sd1 = UNet2DConditionModel.fromPretrained(path.join(REPO, 'test/fixtures/tiny-sd/model'));
  try {
    assert.throws(
      () => readLoraFile(path.join(SDXL, 'lora_diffusers/pytorch_lora_weights.safetensors'), sd1.loraTargets()),
      /key "unet\.down_blocks\.1\.attentions\.0\.transformer_blocks\.1\.attn1\.to_\w+\.lora_[AB]\.weight" is for UNet module .* which this model does not have — is this a LoRA for another model\?/,
    );
  } finally {
    sd1.dispose();
  }
});
