// Single-file checkpoints (LDM / SGM layout): the SD 1.x key map against diffusers' own (the MANIFEST of
// fixtures/tiny-sd-single-file, written by diffusers' convert_diffusers_to_original_stable_diffusion.py and
// read back by its from_single_file), the tiny-sd goldens through a single file, SD 2.x-style (linear
// projections, OpenCLIP text encoder, v-prediction) and SDXL files made from folders with the inverse map,
// loaded back key by key, fp16 storage, and the errors for files that are no whole checkpoint.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { REPO, MODEL_DIR, assertClose, golden, goldenTensor, nchwToNhwc, nhwcToNchw, useTestBackend } from '../helpers/fixtures.js';
import { ldmTensors, writeLdmCheckpoint } from '../helpers/ldm_checkpoint.js';
import { readAllFloat32, writeSafetensors, type TensorToWrite } from '../../src/core/io/safetensors.js';
import { readJson } from '../../src/core/io/diffusers_folder.js';
import { describeSingleFile, inferFamily } from '../../src/core/io/single_file.js';
import { SingleFileCheckpoint, STANDARD_CONFIGS, unetFromSingleFile } from '../../src/core/models/from_single_file.js';
import { loadStableDiffusion, disposeStableDiffusion, type StableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { UNet2DConditionModel } from '../../src/core/models/unet_2d_condition.js';
import { AutoencoderKL } from '../../src/core/models/autoencoder_kl.js';
import { CLIPTextModel } from '../../src/core/models/clip_text_model.js';
import { CLIPTextModelWithProjection } from '../../src/core/models/clip_text_model_with_projection.js';
import type { Params } from '../../src/core/models/params.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'single-file-'));
const SDXL_MODEL = path.join(REPO, 'test/fixtures/tiny-sdxl/model');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const SF_MANIFEST = readJson(path.join(REPO, 'test/fixtures/tiny-sd-single-file/MANIFEST.json')) as any;
const SD1_FILE = path.join(tmp, 'tiny-sd.safetensors');
const SF_SD_TOKENIZER = (readJson(path.join(REPO, 'test/fixtures/tiny-sd/MANIFEST.json')) as { files: { tokenizer: { prompts: string[]; input_ids: number[][]; unpadded: number[][] } } }).files.tokenizer;

before(async () => {
  await useTestBackend();
  const map = new Map<string, string>();
  // What the fixture file holds besides the weights: CLIP's position_ids buffer and LDM's schedule buffers.
  const extra: Record<string, TensorToWrite> = {
    'cond_stage_model.transformer.text_model.embeddings.position_ids': { dtype: 'I64', shape: [1, 77], data: Array.from({ length: 77 }, (_, i) => i) },
    betas: { shape: [2], data: [0.00085, 0.012] },
  };
  writeLdmCheckpoint(MODEL_DIR, 'v1', ['unet', 'vae', 'text_encoder'], SD1_FILE, extra, map);
  sd1KeyMap = map;
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let sd1KeyMap: Map<string, string>;

/** Every parameter of `b` equals `a`'s, bit for bit. */
async function assertSameParams(a: Params, b: Params, label: string): Promise<void> {
  assert.deepEqual([...b.tensors.keys()].sort(), [...a.tensors.keys()].sort(), `${label}: same keys`);
  for (const [name, t] of a.tensors) {
    const [x, y] = await Promise.all([t.data(), b.get(name).data()]);
    assert.deepEqual(b.get(name).shape, t.shape, `${label}: ${name} shape`);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) assert.fail(`${label}: ${name}[${i}] ${y[i]} ≠ ${x[i]}`);
  }
}

test('the SD 1.x key map is diffusers\' own: every UNet and VAE key of the fixture file maps to the same diffusers name', () => {
  const reference = SF_MANIFEST.files['tiny-sd.safetensors'].unet_and_vae_key_map as Record<string, string>;
  const ours = new Map([...sd1KeyMap].filter(([k]) => k.startsWith('model.diffusion_model.') || k.startsWith('first_stage_model.')));
  assert.equal(ours.size, Object.keys(reference).length);
  for (const [ldm, diffusers] of Object.entries(reference)) assert.equal(ours.get(ldm), diffusers.replace('<reshaped> ', ''), ldm);
  const counts = SF_MANIFEST.files['tiny-sd.safetensors'].key_counts;
  assert.equal([...sd1KeyMap.keys()].filter((k) => k.startsWith('cond_stage_model.')).length + 1, counts['cond_stage_model.'], 'text encoder keys (+ position_ids)');
});

test('SD 1.x single file: family v1, the tiny-sd goldens hold (UNet, text encoder, VAE), weights identical to the folder', async () => {
  const summary = describeSingleFile(SD1_FILE);
  assert.equal(summary.family, 'v1');
  assert.match(summary.because, /cond_stage_model\.transformer\.text_model/);
  const sd = loadStableDiffusion(SD1_FILE, { config: MODEL_DIR });
  const folder = { unet: UNet2DConditionModel.fromPretrained(MODEL_DIR), vae: AutoencoderKL.fromPretrained(MODEL_DIR), textEncoder: CLIPTextModel.fromPretrained(MODEL_DIR) };
  try {
    await assertSameParams(folder.unet.params, sd.unet.params, 'unet');
    await assertSameParams(folder.vae.params, sd.vae.params, 'vae');
    await assertSameParams(folder.textEncoder.params, sd.textEncoder.params, 'text_encoder');
    const g = golden('unet');
    const out = tf.tidy(() => nhwcToNchw(sd.unet.forward(nchwToNhwc(goldenTensor(g, 'sample')) as tf.Tensor4D, goldenTensor(g, 'timesteps') as tf.Tensor1D, goldenTensor(g, 'encoder_hidden_states') as tf.Tensor3D)));
    // The UNet parity test's tolerance (same weights, same arithmetic).
    await assertClose(out, goldenTensor(g, 'out'), 1e-6, 'single-file unet out', 5e-6);
    const te = golden('text_encoder');
    const ids = tf.tidy(() => goldenTensor(te, 'input_ids').round().cast('int32')) as tf.Tensor2D;
    const enc = sd.textEncoder.forward(ids);
    await assertClose(enc.lastHiddenState, goldenTensor(te, 'last_hidden_state'), 1e-5, 'single-file text_encoder', 1e-5);
    const v = golden('vae');
    const decoded = sd.vae.decode(nchwToNhwc(goldenTensor(v, 'latents')) as tf.Tensor4D);
    await assertClose(nhwcToNchw(decoded), goldenTensor(v, 'decoded'), 1e-6, 'single-file vae decoded', 5e-6);
    tf.dispose([out, ids, decoded, ...Object.values(enc)]);
  } finally {
    disposeStableDiffusion(sd);
    Object.values(folder).forEach((m) => m.dispose());
  }
});

test('fp16 single file loads as f32 within fp16 rounding', async () => {
  const file = path.join(tmp, 'fp16.safetensors');
  const tensors = new Map<string, TensorToWrite>();
  // The UNet in fp16; the rest as it is (files often mix: an fp16 UNet with an fp32 VAE).
  for (const c of ['unet', 'vae', 'text_encoder'] as const) for (const [k, v] of ldmTensors(MODEL_DIR, 'v1', c)) tensors.set(k, c === 'unet' ? { ...v, dtype: 'F16' } : v);
  writeSafetensors(file, tensors);
  assert.deepEqual(describeSingleFile(file).dtypes, ['F16', 'F32']);
  const unet = unetFromSingleFile(SingleFileCheckpoint.open(file, { config: MODEL_DIR }));
  const ref = UNet2DConditionModel.fromPretrained(MODEL_DIR);
  let worst = 0;
  for (const [name, t] of ref.params.tensors) {
    // fp16 keeps 11 significant bits: relative error ≤ 2^-11, plus fp16's subnormal spacing near 0.
    const [x, y] = await Promise.all([t.data(), unet.params.get(name).data()]);
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]) - Math.abs(x[i]) * 2 ** -11 - 6e-8);
  }
  assert.ok(worst <= 0, `fp16 rounding bound exceeded by ${worst}`);
  unet.dispose();
  ref.dispose();
});

/** A diffusers folder of random weights for `configs` (component → config.json), as the tests' stand-in for SD 2.x. */
function randomFolder(dir: string, configs: Record<string, Record<string, unknown>>, index: Record<string, unknown>): void {
  const models: Record<string, { random: (c: Record<string, unknown>, seed: number) => { params: Params; dispose(): void }; file: string }> = {
    unet: { random: (c, s) => UNet2DConditionModel.random(c, s), file: 'diffusion_pytorch_model.safetensors' },
    vae: { random: (c, s) => AutoencoderKL.random(c, s), file: 'diffusion_pytorch_model.safetensors' },
    text_encoder: { random: (c, s) => CLIPTextModel.random(c, s), file: 'model.safetensors' },
  };
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'model_index.json'), JSON.stringify(index));
  for (const [name, config] of Object.entries(configs)) {
    fs.mkdirSync(path.join(dir, name), { recursive: true });
    fs.writeFileSync(path.join(dir, name, name === 'scheduler' ? 'scheduler_config.json' : 'config.json'), JSON.stringify(config));
    if (!models[name]) continue;
    const m = models[name].random(config, 1 + Object.keys(configs).indexOf(name));
    const out = new Map<string, TensorToWrite>();
    for (const [k, t] of m.params.tensors) {
      // Params hold conv weights HWIO; files hold OIHW.
      const oihw = t.rank === 4 ? tf.tidy(() => t.transpose([3, 2, 0, 1])) : t;
      out.set(k, { shape: oihw.shape, data: oihw.dataSync() as Float32Array });
      if (oihw !== t) oihw.dispose();
    }
    writeSafetensors(path.join(dir, name, models[name].file), out);
    m.dispose();
  }
}

test('SD 2.x-style single file (linear projections, OpenCLIP names, v-prediction): detected, round trip key by key, dropped layers ignored', async () => {
  const dir = path.join(tmp, 'sd2-folder');
  const hidden = 1024; // the context width that tells SD 2.x (OpenCLIP ViT-H)
  randomFolder(
    dir,
    {
      unet: { block_out_channels: [32, 64], down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'], cross_attention_dim: hidden, attention_head_dim: [2, 4], use_linear_projection: true, norm_num_groups: 8, layers_per_block: 2, sample_size: 8 },
      vae: { block_out_channels: [16, 32], down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'], up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'], norm_num_groups: 8, layers_per_block: 1 },
      text_encoder: { hidden_size: hidden, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 16, vocab_size: 64, hidden_act: 'gelu', projection_dim: 8 },
      scheduler: { ...STANDARD_CONFIGS.v2.scheduler },
    },
    { _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'], text_encoder: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'CLIPTokenizer'], scheduler: ['diffusers', 'DDIMScheduler'] },
  );
  fs.cpSync(path.join(MODEL_DIR, 'tokenizer'), path.join(dir, 'tokenizer'), { recursive: true });
  const file = path.join(tmp, 'sd2.safetensors');
  // SD 2.x files hold OpenCLIP's 24th layer and text_projection, which diffusers drops: one more layer here.
  const p = 'cond_stage_model.model.';
  const extra: Record<string, TensorToWrite> = { [`${p}text_projection`]: { shape: [hidden, 8], data: new Float32Array(hidden * 8) }, [`${p}transformer.resblocks.2.ln_1.weight`]: { shape: [hidden], data: new Float32Array(hidden) } };
  writeLdmCheckpoint(dir, 'v2', ['unet', 'vae', 'text_encoder'], file, extra);
  const names = [...readAllFloat32(file).tensors.keys()];
  assert.ok(names.includes(`${p}transformer.resblocks.0.attn.in_proj_weight`) && !names.some((n) => n.includes('q_proj')), 'q/k/v fused as OpenCLIP stores them');
  const ckpt = SingleFileCheckpoint.open(file, { config: dir });
  assert.equal(ckpt.family, 'v2');
  const sd = loadStableDiffusion(file, { config: dir });
  try {
    assert.equal(sd.schedulerConfig.prediction_type, 'v_prediction');
    assert.deepEqual(sd.unet.params.unused(), []);
    assert.equal(sd.unet.config.use_linear_projection, true);
    await assertSameParams(UNet2DConditionModel.fromPretrained(dir).params, sd.unet.params, 'sd2 unet');
    await assertSameParams(CLIPTextModel.fromPretrained(dir).params, sd.textEncoder.params, 'sd2 text_encoder');
    await assertSameParams(AutoencoderKL.fromPretrained(dir).params, sd.vae.params, 'sd2 vae');
  } finally {
    disposeStableDiffusion(sd);
  }
});

test('SDXL single file: detected as xl_base, UNet, VAE and both text encoders round trip key by key', async () => {
  const file = path.join(tmp, 'sdxl.safetensors');
  writeLdmCheckpoint(SDXL_MODEL, 'xl_base', ['unet', 'vae', 'text_encoder', 'text_encoder_2'], file);
  const summary = describeSingleFile(file);
  assert.equal(summary.family, 'xl_base');
  assert.ok(summary.components.text_encoder_2 > 0 && summary.components.unet > 0);
  const sd: StableDiffusion = loadStableDiffusion(file, { config: SDXL_MODEL });
  try {
    assert.ok(sd.textEncoder2 && sd.tokenizer2);
    await assertSameParams(UNet2DConditionModel.fromPretrained(SDXL_MODEL).params, sd.unet.params, 'sdxl unet');
    await assertSameParams(CLIPTextModel.fromPretrained(SDXL_MODEL).params, sd.textEncoder.params, 'sdxl text_encoder');
    await assertSameParams(CLIPTextModelWithProjection.fromPretrained(SDXL_MODEL).params, sd.textEncoder2.params, 'sdxl text_encoder_2');
    await assertSameParams(AutoencoderKL.fromPretrained(SDXL_MODEL).params, sd.vae.params, 'sdxl vae');
  } finally {
    disposeStableDiffusion(sd);
  }
});

test('the bundled standard configs build SD 1.5, SD 2.1 and SDXL base (parameter counts)', () => {
  const count = (m: Map<string, number[]>) => [...m.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
  assert.equal(count(UNet2DConditionModel.expectedParamShapes(STANDARD_CONFIGS.v1.unet)), 859_520_964);
  assert.equal(count(UNet2DConditionModel.expectedParamShapes(STANDARD_CONFIGS.v2.unet)), 865_910_724);
  assert.equal(count(UNet2DConditionModel.expectedParamShapes(STANDARD_CONFIGS.xl_base.unet)), 2_567_463_684);
  assert.equal(count(CLIPTextModel.expectedParamShapes(STANDARD_CONFIGS.v1.text_encoder)), 123_060_480);
  assert.equal(count(AutoencoderKL.expectedParamShapes(STANDARD_CONFIGS.xl_base.vae)), 83_653_863);
});

test('without a config folder the tokenizers are CLIP\'s bundled vocabulary with the family\'s pad token: diffusers\' ids for SD 1.x, SD 2.x and both of SDXL\'s', () => {
  // The tokenizer goldens: tiny-sd's (CLIP ViT-L, pad <|endoftext|>) and tiny-sdxl's two (ViT-L; OpenCLIP, pad "!").
  // SD 2.x's tokenizer is OpenCLIP's, the one SDXL's tokenizer_2 is (same files, pad "!"). Ids are integers: exact.
  const sd = SF_SD_TOKENIZER;
  const xl = readJson(path.join(REPO, 'test/fixtures/tiny-sdxl/MANIFEST.json')) as { files: { tokenizer: { prompts: string[]; input_ids_1: number[][]; input_ids_2: number[][] } } };
  const open = (family: 'v1' | 'v2' | 'xl_base') => {
    const file = path.join(tmp, `header-only-${family}.safetensors`);
    // The family is told from the header alone; the tokenizer needs no weights.
    const t = { shape: [1], data: [0] };
    const te = family === 'v1' ? 'cond_stage_model.transformer.text_model.embeddings.position_embedding.weight' : family === 'v2' ? 'cond_stage_model.model.ln_final.weight' : 'conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias';
    const toK: Record<string, TensorToWrite> = family === 'v2' ? { 'model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight': { shape: [4, 1024], data: new Float32Array(4096) } } : {};
    writeSafetensors(file, { 'model.diffusion_model.input_blocks.0.0.weight': { shape: [2, 4, 1, 1], data: new Float32Array(8) }, 'first_stage_model.encoder.conv_in.weight': t, [te]: t, ...toK });
    const ckpt = SingleFileCheckpoint.open(file);
    assert.equal(ckpt.family, family);
    return ckpt;
  };
  const v1 = open('v1').tokenizer('tokenizer');
  sd.prompts.forEach((p, i) => {
    assert.deepEqual(v1.encodeUnpadded(p), sd.unpadded[i], `v1 unpadded ${JSON.stringify(p)}`);
    assert.deepEqual(v1.encode(p), sd.input_ids[i], `v1 ${JSON.stringify(p)}`);
  });
  const v2 = open('v2').tokenizer('tokenizer');
  const xlBase = open('xl_base');
  const [t1, t2] = [xlBase.tokenizer('tokenizer'), xlBase.tokenizer('tokenizer_2')];
  assert.equal(v2.padTokenId, 0, 'SD 2.x pads with "!" (id 0)');
  xl.files.tokenizer.prompts.forEach((p, i) => {
    assert.deepEqual(t1.encode(p), xl.files.tokenizer.input_ids_1[i], `xl tokenizer ${JSON.stringify(p)}`);
    assert.deepEqual(t2.encode(p), xl.files.tokenizer.input_ids_2[i], `xl tokenizer_2 ${JSON.stringify(p)}`);
    assert.deepEqual(v2.encode(p), xl.files.tokenizer.input_ids_2[i], `v2 tokenizer ${JSON.stringify(p)}`);
  });
  assert.match(t2.data.source, /bundled, SDXL base tokenizer_2/);
});

test('files that are no whole checkpoint are refused saying what they are', () => {
  const write = (name: string, tensors: Record<string, TensorToWrite>) => {
    const f = path.join(tmp, name);
    writeSafetensors(f, tensors);
    return f;
  };
  const t = { shape: [2], data: [1, 2] };
  const open = (f: string) => () => SingleFileCheckpoint.open(f);
  assert.throws(open(write('lora.safetensors', { 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight': t })), /this is a LoRA file \(key "lora_unet_down_blocks_0/);
  assert.throws(open(write('unet.safetensors', { 'down_blocks.0.resnets.0.conv1.weight': t, 'conv_in.weight': t })), /a diffusers UNet alone/);
  assert.throws(open(write('vae.safetensors', { 'encoder.down.0.block.0.conv1.weight': t, 'decoder.up.0.block.0.conv1.weight': t })), /a VAE alone/);
  assert.throws(open(write('unet-ldm.safetensors', { 'model.diffusion_model.input_blocks.0.0.weight': { shape: [2, 4, 1, 1], data: new Float32Array(8) } })), /a UNet alone/);
  assert.throws(
    open(write('unknown.safetensors', { 'model.diffusion_model.input_blocks.0.0.weight': { shape: [2, 4, 1, 1], data: new Float32Array(8) }, 'first_stage_model.encoder.conv_in.weight': t, 'cond_stage_model.mystery.weight': t })),
    (e: Error) => /of no family this engine knows/.test(e.message) && e.message.includes('model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight') && e.message.includes('"cond_stage_model.mystery.weight"'),
  );
  assert.throws(open(write('inpaint.safetensors', { 'model.diffusion_model.input_blocks.0.0.weight': { shape: [2, 9, 1, 1], data: new Float32Array(18) }, 'first_stage_model.x': t })), /inpainting.*9 input channels/);
  // Truncated: the header promises more bytes than the file has.
  const whole = fs.readFileSync(SD1_FILE);
  const cut = path.join(tmp, 'truncated.safetensors');
  fs.writeFileSync(cut, whole.subarray(0, whole.length - 1000));
  assert.throws(open(cut), (e: Error) => e.message.includes(cut) && /truncat|end of|past the end|bytes/i.test(e.message));
  const ckpt = path.join(tmp, 'model.ckpt');
  fs.writeFileSync(ckpt, 'PK');
  assert.throws(open(ckpt), /safetensors/);
});

test('a single file whose weights do not fit the named config says which keys', () => {
  const otherConfig = path.join(tmp, 'sd2-folder'); // made by the SD 2.x test: another architecture
  // The shapes differ: the model's own check names each parameter by its diffusers name and the file.
  assert.throws(() => loadStableDiffusion(SD1_FILE, { config: otherConfig }), (e: Error) => e.message.includes(SD1_FILE) && /do not fit/.test(e.message) && /"encoder\.conv_in\.weight" has shape \[32,3,3,3\]/.test(e.message));
  // With the bundled SD 1.5 config the tiny file lacks most of SD 1.5's keys, and says so.
  assert.throws(() => unetFromSingleFile(SingleFileCheckpoint.open(SD1_FILE)), /the bundled v1 config.*the file lacks "model\.diffusion_model\./);
  assert.equal(inferFamily(readAllFloat32(SD1_FILE).tensors, SD1_FILE).family, 'v1');
});
