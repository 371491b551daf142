// `lora-studio inspect`: what a safetensors file is, read from its header. Expected figures come from the
// fixture's own config.json files and headers, not from constants.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SafetensorsFile, writeSafetensors } from '../../src/core/io/safetensors.js';
import { describeSafetensors, formatDescription } from '../../src/core/io/inspect.js';
import { FIXTURES, MODEL_DIR, TINY_SHAPES } from '../helpers/fixtures.js';

const config = (component: string) => JSON.parse(fs.readFileSync(path.join(MODEL_DIR, component, 'config.json'), 'utf8'));
const detail = (d: { details: [string, string][] }, name: string) => d.details.find(([k]) => k === name)?.[1];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'inspect-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function headerCounts(file: string) {
  const f = SafetensorsFile.open(file);
  try {
    let params = 0;
    for (const t of f.tensors.values()) params += t.shape.reduce((a, b) => a * b, 1);
    return { tensors: f.tensors.size, params, names: f.names() };
  } finally {
    f.close();
  }
}

test('a diffusers LoRA: layout, module count, rank, no alpha, metadata', () => {
  const file = path.join(FIXTURES, 'lora_diffusers/pytorch_lora_weights.safetensors');
  const d = describeSafetensors(file);
  const h = headerCounts(file);
  assert.equal(d.kind, 'lora');
  assert.equal(d.lora!.format, 'diffusers');
  assert.equal(d.lora!.modules.length, h.tensors / 2);
  assert.ok(d.lora!.modules.every((m) => m.component === 'unet' && m.alpha === undefined && m.rank === 4));
  assert.equal(d.parameters, h.params);
  assert.deepEqual(d.metadata, { format: 'pt' });
  const text = formatDescription(d);
  assert.match(text, /^pytorch_lora_weights\.safetensors — LoRA, diffusers layout/);
  assert.match(text, new RegExp(`modules: ${h.tensors / 2} UNet\n`));
  assert.match(text, /rank: 4\n/);
  assert.match(text, /alpha: none stored \(alpha = rank, scale 1\)/);
  // One line per transformer block: its attentions merged, the projections listed once in q, k, v, out order.
  assert.match(text, /\n {4}down_blocks\.1\.attentions\.0\.transformer_blocks\.0\.\{attn1,attn2\}: to_q to_k to_v to_out\.0\n/);
  assert.match(text, /metadata:\n {4}format: pt/);
});

test('a kohya LoRA: alpha and the scale it gives, module paths recovered for display', () => {
  const d = describeSafetensors(path.join(FIXTURES, 'lora_kohya.safetensors'));
  assert.equal(d.kind, 'lora');
  assert.equal(d.lora!.format, 'kohya');
  const diffusers = describeSafetensors(path.join(FIXTURES, 'lora_diffusers/pytorch_lora_weights.safetensors'));
  assert.deepEqual(d.lora!.modules.map((m) => m.path), diffusers.lora!.modules.map((m) => m.path));
  assert.ok(d.lora!.modules.every((m) => m.alpha === 2));
  const text = formatDescription(d);
  assert.match(text, /kohya\/A1111 layout/);
  assert.match(text, /alpha: 2 \(scale alpha\/rank: 0\.5\)/);
  assert.match(text, /metadata: none/);
});

test('a LoRA with text-encoder parts, mixed ranks and a long metadata value', () => {
  const file = path.join(tmp, 'mixed.safetensors');
  writeSafetensors(
    file,
    {
      'lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight': { shape: [2, 8], data: new Float32Array(16) },
      'lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight': { shape: [8, 2], data: new Float32Array(16) },
      'lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.alpha': { shape: [], data: [1] },
      'lora_unet_mid_block_attentions_0_proj_in.lora_down.weight': { dtype: 'F16', shape: [4, 8, 1, 1], data: new Float32Array(32) },
      'lora_unet_mid_block_attentions_0_proj_in.lora_up.weight': { dtype: 'F16', shape: [8, 4, 1, 1], data: new Float32Array(32) },
      'lora_unet_mid_block_attentions_0_proj_in.alpha': { shape: [], data: [4] },
      'lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': { shape: [2, 8], data: new Float32Array(16) },
      'lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight': { shape: [8, 2], data: new Float32Array(16) },
    },
    { ss_network_dim: '4', ss_tag_frequency: JSON.stringify({ tags: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`tag${i}`, i])) }) },
  );
  const d = describeSafetensors(file);
  assert.equal(d.kind, 'lora');
  assert.deepEqual(d.dtypes, { F32: 16 + 16 + 1 + 1 + 16 + 16, F16: 64 });
  const text = formatDescription(d);
  assert.match(text, /modules: 2 UNet, 1 text encoder\n/);
  assert.match(text, /rank: 2 \(2 modules\), 4 \(1 module\)/);
  assert.match(text, /alpha: 1 \(1 module\), 4 \(1 module\), none \(1 module\) \(scale alpha\/rank: 0\.5 \(1 module\), 1 \(2 modules\)\)/);
  assert.match(text, /mid_block\.attentions\.0: proj_in\n/);
  assert.match(text, /text encoder modules:\n {4}encoder\.layers\.0\.self_attn: q_proj/);
  assert.match(text, /ss_tag_frequency: \{"tags":.*… \(\d+ chars\)/);
});

test('the UNet file: recognised, figures from its shapes match config.json', () => {
  const file = path.join(MODEL_DIR, 'unet/diffusion_pytorch_model.safetensors');
  const c = config('unet');
  const d = describeSafetensors(file);
  assert.equal(d.kind, 'unet');
  assert.equal(d.parameters, headerCounts(file).params);
  assert.equal(detail(d, 'in channels'), String(c.in_channels));
  assert.equal(detail(d, 'block channels'), c.block_out_channels.join(', '));
  assert.equal(detail(d, 'cross-attention dim'), String(c.cross_attention_dim));
  const targets = headerCounts(file).names.filter((n) => /\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(n)).length;
  assert.equal(detail(d, 'LoRA targets'), `${targets} (to_q, to_k, to_v, to_out.0)`);
  const text = formatDescription(d);
  assert.match(text, /— UNet \(diffusers UNet2DConditionModel weights\)/);
  assert.match(text, new RegExp(`${d.parameters.toLocaleString('en-US')} parameters · F32`));
});

test('the VAE and the CLIP text encoder are recognised; an fp16 UNet shows its dtype', () => {
  const vae = describeSafetensors(path.join(MODEL_DIR, 'vae/diffusion_pytorch_model.safetensors'));
  assert.equal(vae.kind, 'vae');
  assert.equal(detail(vae, 'latent channels'), String(config('vae').latent_channels));
  assert.equal(detail(vae, 'block channels'), config('vae').block_out_channels.join(', '));
  assert.match(formatDescription(vae), /— VAE \(diffusers AutoencoderKL weights\)/);

  const te = describeSafetensors(path.join(MODEL_DIR, 'text_encoder/model.safetensors'));
  const c = config('text_encoder');
  assert.equal(te.kind, 'text_encoder');
  assert.equal(detail(te, 'hidden size'), String(c.hidden_size));
  assert.equal(detail(te, 'layers'), String(c.num_hidden_layers));
  assert.equal(detail(te, 'vocabulary'), String(c.vocab_size));
  assert.equal(detail(te, 'max tokens'), String(c.max_position_embeddings));
  assert.match(formatDescription(te), /— CLIP text encoder \(transformers CLIPTextModel weights\)/);

  const fp16 = describeSafetensors(path.join(TINY_SHAPES, 'model/unet/diffusion_pytorch_model.safetensors'));
  assert.equal(fp16.kind, 'unet');
  assert.deepEqual(Object.keys(fp16.dtypes), ['F16']);
});

test('unknown files and single-file checkpoints are named as such', () => {
  const unknown = path.join(tmp, 'unknown.safetensors');
  writeSafetensors(unknown, { 'layer.weight': { shape: [2], data: [1, 2] } });
  const u = describeSafetensors(unknown);
  assert.equal(u.kind, 'unknown');
  assert.match(formatDescription(u), /not a LoRA or a Stable Diffusion component/);
  const ckpt = path.join(tmp, 'sd15.safetensors');
  const t = { shape: [1], data: [0] };
  writeSafetensors(ckpt, { 'model.diffusion_model.input_blocks.0.0.weight': t, 'first_stage_model.x': t, 'cond_stage_model.transformer.text_model.embeddings.position_embedding.weight': t });
  const c = describeSafetensors(ckpt);
  assert.equal(c.kind, 'checkpoint');
  // inspect tells the family (and the keys that decided it) and the layout of each component.
  const text = formatDescription(c);
  assert.match(text, /single-file Stable Diffusion 1\.x checkpoint/);
  assert.match(text, /cond_stage_model\.transformer\.text_model/);
  assert.match(text, /model\.diffusion_model\.\* \(1 tensors, ldm names\)/);
  const other = path.join(tmp, 'unet-only.safetensors');
  writeSafetensors(other, { 'model.diffusion_model.input_blocks.0.0.weight': t });
  assert.match(formatDescription(describeSafetensors(other)), /cannot load: this holds a UNet alone/);
});
