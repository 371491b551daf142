// UNet2DConditionModel against diffusers: the golden forward (fixture model; SDXL fixtures with their added
// conditioning), LoRA adapters threaded through every attention projection, gradients with respect to a
// LoRA weight, the trained tiny-shapes model (fp16 files), SD 1.5 / SD 2.1 architectures from their
// configs, and the errors for bad weights or unsupported configs. Module names and shapes come from the
// fixture's own config and files (helpers/fixtures.ts), never from one fixture's layout.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { UNet2DConditionModel, normalizeUNetConfig } from '../../src/core/models/unet_2d_condition.js';
import { Params } from '../../src/core/models/params.js';
import { randomParams } from '../../src/core/models/layers.js';
import { readAllFloat32 } from '../../src/core/io/safetensors.js';
import { readJson } from '../../src/core/io/diffusers_folder.js';
import type { LoraAdapter, LoraLookup } from '../../src/core/engine/ops.js';
import { FIXTURES, MODEL_DIR, TINY_SHAPES, addedCondOf, assertClose, fixtureUnet, golden, goldenTensor, nchwToNhwc, needs, nhwcToNchw, randomAddedCond, useTestBackend } from '../helpers/fixtures.js';

const UNET_DIR = path.join(MODEL_DIR, 'unet');
const unetConfig = () => readJson(path.join(UNET_DIR, 'config.json')) as Record<string, unknown>;

// Tolerance for whole-UNet outputs: atol 1e-6 + rtol 5e-6 of the largest reference value. Both sides are
// float32; the difference is rounding, accumulated through ~50 sequential layers (3×3 convs summing up
// to 9·C_in products, GroupNorm/LayerNorm statistics, softmax over the tokens) in a different summation
// order than torch's. Measured on the fixture: 2.8e-6 (cpu), 3.0e-6 (wasm), 2.9e-6 (webgpu/lavapipe)
// with max |ref| 1.77, i.e. ≤1.7e-6 relative. Real mistakes are far larger: a GroupNorm eps of 1e-5
// instead of 1e-6 in the transformers alone moves the output by 1.6e-5.
const ATOL = 1e-6;
const RTOL = 5e-6;

let unet: UNet2DConditionModel;

before(async () => {
  await useTestBackend();
  unet = fixtureUnet();
});

/** Runs the UNet on a golden's NCHW inputs and returns the NCHW output. */
function runGolden(g: ReturnType<typeof golden>, lora?: LoraLookup): tf.Tensor {
  return tf.tidy(() => {
    const sample = nchwToNhwc(goldenTensor(g, 'sample')) as tf.Tensor4D;
    const out = unet.forward(sample, goldenTensor(g, 'timesteps') as tf.Tensor1D, goldenTensor(g, 'encoder_hidden_states') as tf.Tensor3D, lora, addedCondOf(g));
    return nhwcToNchw(out);
  });
}

/** `unet.<path>.lora.down/up.weight` (diffusers' old names) or `unet.<path>.lora_A/lora_B.weight` (peft's, as diffusers writes today). */
const DIFFUSERS_LORA_KEY = /^unet\.(.*)\.(lora\.down|lora\.up|lora_A|lora_B)\.weight$/;
const UP_OF: Record<string, string> = { 'lora.down': 'lora.up', lora_A: 'lora_B' };

/** A LoraLookup over a diffusers-format LoRA file (no alphas: scale 1), read here by hand rather than by lora_file.ts. */
function diffusersLora(file: string, scale: number): { lookup: LoraLookup; adapters: Map<string, LoraAdapter> } {
  const adapters = new Map<string, LoraAdapter>();
  const { tensors } = readAllFloat32(file);
  for (const [key, t] of tensors) {
    const m = DIFFUSERS_LORA_KEY.exec(key);
    if (!m || !UP_OF[m[2]]) continue;
    const up = tensors.get(`unet.${m[1]}.${UP_OF[m[2]]}.weight`)!;
    adapters.set(m[1], { down: tf.tensor2d(t.data, t.shape as [number, number]), up: tf.tensor2d(up.data, up.shape as [number, number]), scale });
  }
  return { lookup: (p) => (adapters.has(p) ? [adapters.get(p)!] : []), adapters };
}

test('matches diffusers UNet2DConditionModel on the fixture model (golden unet)', needs('unet'), async () => {
  const g = golden('unet');
  const out = runGolden(g);
  await assertClose(out, goldenTensor(g, 'out'), ATOL, 'unet out', RTOL);
  out.dispose();
  assert.deepEqual(unet.params.unused(), [], 'every tensor in the weights file is used');
});

test('LoRA adapters reach every attention projection (golden lora_unet, scale 1)', needs('lora_unet', 'lora_diffusers'), async () => {
  const g = golden('lora_unet');
  const { lookup } = diffusersLora(path.join(FIXTURES, 'lora_diffusers/pytorch_lora_weights.safetensors'), 1);
  const out = runGolden(g, lookup);
  await assertClose(out, goldenTensor(g, 'out_scale1'), ATOL, 'unet out with LoRA', RTOL);
  out.dispose();
});

test('loraTargets are exactly the modules of diffusers LoRA file, with its shapes', needs('lora_diffusers'), () => {
  const targets = new Map(unet.loraTargets().map((t) => [t.path, t]));
  const { tensors } = readAllFloat32(path.join(FIXTURES, 'lora_diffusers/pytorch_lora_weights.safetensors'));
  const paths = new Set<string>();
  for (const [key, t] of tensors) {
    const m = DIFFUSERS_LORA_KEY.exec(key);
    assert.ok(m, `unexpected key ${key}`);
    paths.add(m[1]);
    const target = targets.get(m[1]);
    assert.ok(target, `${m[1]} is not a LoRA target`);
    if (UP_OF[m[2]]) assert.equal(t.shape[1], target.inFeatures, `${key} in features`);
    else assert.equal(t.shape[0], target.outFeatures, `${key} out features`);
  }
  assert.deepEqual([...targets.keys()].sort(), [...paths].sort());
  // Every transformer block's self- and cross-attention carries the four projections (diffusers' targets).
  const config = unet.config;
  const blocks = [...unet.params.tensors.keys()].filter((k) => /\.transformer_blocks\.\d+\.attn1\.to_q\.weight$/.test(k));
  assert.ok(blocks.length > 0 && config.down_block_types.some((t) => t.startsWith('CrossAttn')));
  assert.equal(targets.size, blocks.length * 2 * 4);
});

test('the gradient with respect to LoRA weights matches finite differences', async () => {
  // Small input (1×8×8, 8 tokens) so three forwards and a backward stay cheap on every backend.
  const channels = unet.config.in_channels;
  const sample = tf.randomNormal([1, 8, 8, channels], 0, 1, 'float32', 1) as tf.Tensor4D;
  const ehs = tf.randomNormal([1, 8, unet.config.blocks.crossAttentionDim[0]], 0, 1, 'float32', 2) as tf.Tensor3D;
  const added = randomAddedCond(unet, 1, 4);
  const t = tf.tensor1d([321]);
  const weights = tf.randomNormal([1, 8, 8, channels], 0, 1, 'float32', 3);
  // A cross-attention value projection on the way down and a self-attention output projection on the way
  // up (the first and last such targets of this model), so both directions of the UNet are checked.
  const targets = unet.loraTargets().map((x) => x.path);
  const target = targets.find((p) => /^down_blocks\..*\.attn2\.to_v$/.test(p))!;
  const target2 = targets.findLast((p) => /^up_blocks\..*\.attn1\.to_out\.0$/.test(p))!;
  assert.ok(target && target2, `LoRA targets of this UNet: ${targets.slice(0, 4).join(', ')}, …`);
  const info = new Map(unet.loraTargets().map((x) => [x.path, x]));
  const make = (p: string, seed: number) => [
    tf.randomNormal([4, info.get(p)!.inFeatures], 0, 0.3, 'float32', seed) as tf.Tensor2D,
    tf.randomNormal([info.get(p)!.outFeatures, 4], 0, 0.3, 'float32', seed + 1) as tf.Tensor2D,
  ];
  const [down1, up1] = make(target, 10);
  const [down2, up2] = make(target2, 20);
  const loss = (d1: tf.Tensor2D, u1: tf.Tensor2D, u2: tf.Tensor2D) => {
    const lookup: LoraLookup = (p) => (p === target ? [{ down: d1, up: u1, scale: 1 }] : p === target2 ? [{ down: down2, up: u2, scale: 1 }] : []);
    return unet.forward(sample, t, ehs, lookup, added).mul(weights).mean() as tf.Scalar;
  };
  const grads = tf.grads((d1: tf.Tensor, u1: tf.Tensor, u2: tf.Tensor) => loss(d1 as tf.Tensor2D, u1 as tf.Tensor2D, u2 as tf.Tensor2D))([down1, up1, up2]);
  const dirs = [down1, up1, up2].map((x, i) => tf.randomNormal(x.shape, 0, 1, 'float32', 30 + i) as tf.Tensor2D);
  const eps = 1e-2;
  for (let i = 0; i < 3; i++) {
    const shifted = (s: number) => [down1, up1, up2].map((x, j) => (j === i ? (x.add(dirs[i].mul(s)) as tf.Tensor2D) : x)) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
    const lp = (await loss(...shifted(eps)).data())[0];
    const lm = (await loss(...shifted(-eps)).data())[0];
    const numeric = (lp - lm) / (2 * eps);
    const analytic = (await grads[i].mul(dirs[i]).sum().data())[0];
    // Central differences are exact to O(eps²) here up to float32 noise in the loss (~1e-7 of it over
    // 2·eps); 2% + 1e-6 covers both and still fails for a missing or wrong-signed path.
    assert.ok(Math.abs(analytic) > 1e-5, `gradient ${i} is zero: the adapter does not reach the output`);
    assert.ok(Math.abs(numeric - analytic) <= 0.02 * Math.abs(analytic) + 1e-6, `gradient ${i}: analytic ${analytic} vs numeric ${numeric}`);
  }
  tf.dispose([sample, ehs, t, weights, down1, up1, down2, up2, ...grads, ...dirs, ...(added ? [added.textEmbeds, added.timeIds] : [])]);
});

test('loads and runs the trained tiny-shapes model (fp16 files, 3 levels)', async () => {
  const model = UNet2DConditionModel.fromPretrained(path.join(TINY_SHAPES, 'model/unet'));
  try {
    assert.deepEqual(model.config.block_out_channels, [64, 128, 128]);
    assert.deepEqual(model.params.unused(), []);
    // Down 1 and 2 have one transformer each, the mid block one, up 0 and 1 two each (layers_per_block + 1).
    assert.equal(model.loraTargets().length, 7 * 2 * 4);
    const size = model.config.sample_size as number;
    const out = tf.tidy(() =>
      model.forward(tf.randomNormal([1, size, size, 4], 0, 1, 'float32', 5) as tf.Tensor4D, tf.tensor1d([999]), tf.randomNormal([1, 77, 64], 0, 1, 'float32', 6) as tf.Tensor3D),
    );
    assert.deepEqual(out.shape, [1, size, size, 4]);
    const v = await out.data();
    assert.ok(v.every(Number.isFinite), 'finite output');
    out.dispose();
    // Odd latent sizes take diffusers' upsample_size path (upsampling to the skip connection's size).
    const odd = tf.tidy(() => model.forward(tf.zeros([1, 6, 10, 4]) as tf.Tensor4D, tf.tensor1d([500]), tf.zeros([1, 8, 64]) as tf.Tensor3D));
    assert.deepEqual(odd.shape, [1, 6, 10, 4]);
    odd.dispose();
  } finally {
    model.dispose();
  }
});

test('builds the SD 1.5 and SD 2.1 architectures from their configs (parameter counts)', () => {
  const count = (shapes: Map<string, number[]>) => [...shapes.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
  const sd15 = UNet2DConditionModel.expectedParamShapes({ cross_attention_dim: 768, attention_head_dim: 8, sample_size: 64 });
  assert.equal(count(sd15), 859_520_964);
  assert.deepEqual(sd15.get('down_blocks.0.attentions.0.proj_in.weight'), [320, 320, 1, 1]);
  assert.deepEqual(sd15.get('mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight'), [1280, 768]);
  const sd21 = UNet2DConditionModel.expectedParamShapes({
    cross_attention_dim: 1024,
    attention_head_dim: [5, 10, 20, 20],
    use_linear_projection: true,
    upcast_attention: true,
    sample_size: 96,
  });
  assert.equal(count(sd21), 865_910_724);
  assert.deepEqual(sd21.get('down_blocks.0.attentions.0.proj_in.weight'), [320, 320]);
  // SD 2.1: 5 heads of 64 channels at 320 channels (attention_head_dim lists heads, the naming quirk).
  assert.deepEqual(normalizeUNetConfig({ attention_head_dim: [5, 10, 20, 20] }).blocks.heads, [5, 10, 20, 20]);
});

test('the other supported config options build and run (random weights)', async () => {
  // No golden for these: the check is that the parameter layout follows the options and the forward runs.
  const base = { ...unetConfig(), block_out_channels: [32, 64], cross_attention_dim: 16 };
  const variants: Record<string, unknown>[] = [
    { resnet_time_scale_shift: 'scale_shift', use_linear_projection: true, transformer_layers_per_block: [1, 2], attention_head_dim: [2, 4], center_input_sample: true },
    { mid_block_type: 'UNetMidBlock2D', conv_in_kernel: 1, conv_out_kernel: 5, only_cross_attention: true, layers_per_block: [1, 2], time_embedding_dim: 64, timestep_post_act: 'silu' },
    { mid_block_type: null, num_attention_heads: 2, freq_shift: 1, flip_sin_to_cos: false, downsample_padding: 0 },
  ];
  for (const v of variants) {
    const config = { ...base, ...v };
    const shapes = UNet2DConditionModel.expectedParamShapes(config);
    if (v.resnet_time_scale_shift === 'scale_shift') assert.deepEqual(shapes.get('down_blocks.0.resnets.0.time_emb_proj.weight'), [64, 128]);
    if (v.use_linear_projection) assert.deepEqual(shapes.get('down_blocks.1.attentions.0.proj_in.weight'), [64, 64]);
    if (v.only_cross_attention) assert.deepEqual(shapes.get('down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.weight'), [64, 16]);
    if (v.mid_block_type === null) assert.ok(![...shapes.keys()].some((k) => k.startsWith('mid_block.')));
    const model = UNet2DConditionModel.random(config, 7);
    const out = tf.tidy(() => model.forward(tf.randomNormal([1, 8, 8, 4], 0, 1, 'float32', 8) as tf.Tensor4D, tf.tensor1d([250]), tf.randomNormal([1, 5, 16], 0, 1, 'float32', 9) as tf.Tensor3D, undefined, randomAddedCond(model, 1, 10)));
    assert.deepEqual(out.shape, [1, 8, 8, 4], JSON.stringify(v));
    assert.ok((await out.data()).every(Number.isFinite), `finite output for ${JSON.stringify(v)}`);
    out.dispose();
    model.dispose();
  }
});

test('a missing or wrong-shaped weight is an error naming the key', () => {
  const config = unetConfig();
  const shapes = UNet2DConditionModel.expectedParamShapes(config);
  const params = randomParams(shapes, 1, 'test.safetensors');
  // A resnet conv and a cross-attention key projection of this config (the last of each).
  const conv = [...shapes.keys()].findLast((k) => /^down_blocks\.\d+\.resnets\.\d+\.conv1\.weight$/.test(k))!;
  const toK = [...shapes.keys()].findLast((k) => /\.attn2\.to_k\.weight$/.test(k))!;
  const [out, inCtx] = shapes.get(toK)!;
  params.tensors.get(conv)!.dispose();
  params.tensors.delete(conv);
  params.tensors.get(toK)!.dispose();
  params.tensors.set(toK, tf.zeros([out, inCtx + 16]));
  const re = (s: string) => s.replace(/[.[\]()]/g, (c) => `\\${c}`);
  assert.throws(
    () => new UNet2DConditionModel(config, params),
    (e: Error) =>
      /test\.safetensors/.test(e.message) &&
      new RegExp(re(`missing "${conv}" (expected shape ${JSON.stringify(shapes.get(conv))})`)).test(e.message) &&
      new RegExp(re(`"${toK}" has shape [${out},${inCtx + 16}] but config.json needs [${out},${inCtx}]`)).test(e.message),
  );
  params.dispose();
  // The same check guards fromPretrained: the fixture's weights against a config that wants more layers.
  assert.throws(() => new UNet2DConditionModel({ ...config, layers_per_block: 3 }, Params.load([path.join(UNET_DIR, 'diffusion_pytorch_model.safetensors')])), /missing "down_blocks\.0\.resnets\.2\.norm1\.weight"/);
});

test('unsupported config values are refused naming the key', () => {
  const config = unetConfig();
  const refuse = (patch: Record<string, unknown>, key: RegExp) => assert.throws(() => normalizeUNetConfig({ ...config, ...patch }), key);
  refuse({ down_block_types: ['AttnDownBlock2D', 'CrossAttnDownBlock2D'] }, /down_block_types.*AttnDownBlock2D/);
  refuse({ up_block_types: ['CrossAttnUpBlock2D', 'SimpleCrossAttnUpBlock2D'] }, /up_block_types/);
  refuse({ mid_block_type: 'UNetMidBlock2DSimpleCrossAttn' }, /mid_block_type/);
  refuse({ class_embed_type: 'timestep' }, /class_embed_type/);
  refuse({ addition_embed_type: 'image' }, /addition_embed_type/);
  refuse({ addition_embed_type: 'text_time', addition_time_embed_dim: null }, /addition_time_embed_dim/);
  refuse({ time_embedding_type: 'fourier' }, /time_embedding_type/);
  refuse({ resnet_time_scale_shift: 'spatial' }, /resnet_time_scale_shift/);
  refuse({ act_fn: 'gelu' }, /act_fn/);
  refuse({ attention_head_dim: [8, 8, 8] }, /attention_head_dim.*3 entries/);
  refuse({ block_out_channels: [32] }, /block_out_channels/);
  refuse({ dual_cross_attention: true }, /dual_cross_attention/);
  assert.throws(() => UNet2DConditionModel.random({ ...config, attention_head_dim: 5 }), /channels cannot be split into 5 attention heads/);
});
