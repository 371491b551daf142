// What a trained LoRA's header says, key by key, as sd-scripts and ModelSpec spell it; the additional-networks
// hashes against goldens computed by sd-scripts' algorithm in Python (test/fixtures/lora-hashes/make_golden.py);
// and what save_precision does to the tensors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SafetensorsFile, type TensorToWrite } from '../../src/core/io/safetensors.js';
import { additionalNetworksHashes, baseModelVersion, loraTrainingMetadata, tagFrequency } from '../../src/core/lora/metadata.js';
import { loraTensors, unetLora, writeLoraFile, type LoraModuleToWrite } from '../../src/core/lora/lora_writer.js';
import { REPO } from '../helpers/fixtures.js';

const GOLDEN = JSON.parse(fs.readFileSync(path.join(REPO, 'test/fixtures/lora-hashes/golden.json'), 'utf8')) as {
  metadata: Record<string, string>;
} & Record<'fp16' | 'fp32' | 'bf16', { sshs_model_hash: string; sshs_legacy_hash: string; file_bytes: number }>;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-metadata-'));

/** make_golden.py's values: ((i · 7919) mod 1000) / 1000 − 0.5 in float32. */
function values(n: number): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = Math.fround(Math.fround(((i * 7919) % 1000) / 1000) - 0.5);
  return v;
}

test('sshs_model_hash and sshs_legacy_hash equal what sd-scripts computes, in fp16, fp32 and bf16', () => {
  const name = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q';
  for (const [precision, dtype] of [['fp16', 'F16'], ['fp32', 'F32'], ['bf16', 'BF16']] as const) {
    const tensors = new Map<string, TensorToWrite>([
      [`${name}.lora_down.weight`, { dtype, shape: [320, 1000], data: values(320 * 1000) }],
      [`${name}.lora_up.weight`, { dtype, shape: [1000, 320], data: values(1000 * 320) }],
      [`${name}.alpha`, { dtype, shape: [], data: [8] }],
    ]);
    // Exact: both are sha256 digests of byte strings that must be identical.
    assert.deepEqual(additionalNetworksHashes(tensors, GOLDEN.metadata), { sshs_model_hash: GOLDEN[precision].sshs_model_hash, sshs_legacy_hash: GOLDEN[precision].sshs_legacy_hash }, precision);
  }
  // Keys other than ss_* never change the hashes (sd-scripts drops them first), any ss_* key does (the header moves the data).
  const small = new Map<string, TensorToWrite>([['lora_unet_x.alpha', { shape: [], data: [1] }]]);
  const base = additionalNetworksHashes(small, { ss_network_dim: '4' });
  assert.deepEqual(additionalNetworksHashes(small, { ss_network_dim: '4', 'modelspec.title': 'renamed' }), base);
});

test('writeLoraFile adds the hashes when the metadata has ss_* keys, and none without metadata (no_metadata)', () => {
  const m: LoraModuleToWrite = { down: values(4 * 8), up: values(8 * 4), rank: 4, inFeatures: 8, outFeatures: 8, alpha: 2 };
  const lora = unetLora(new Map([['mid_block.attentions.0.transformer_blocks.0.attn1.to_q', m]]));
  const file = path.join(tmp, 'with.safetensors');
  writeLoraFile(file, 'kohya', lora, { metadata: { ss_network_dim: '4' } });
  const f = SafetensorsFile.open(file);
  assert.deepEqual(
    { sshs_model_hash: f.metadata.sshs_model_hash, sshs_legacy_hash: f.metadata.sshs_legacy_hash },
    additionalNetworksHashes(loraTensors('kohya', lora), { ss_network_dim: '4' }),
  );
  f.close();
  const bare = path.join(tmp, 'bare.safetensors');
  writeLoraFile(bare, 'kohya', lora);
  const b = SafetensorsFile.open(bare);
  assert.deepEqual(b.metadata, {}, 'a kohya file written without metadata has no __metadata__ at all');
  b.close();
});

test('save_precision: fp16 and bf16 files hold every tensor in that dtype, half the bytes, values within its rounding', () => {
  const m: LoraModuleToWrite = { down: values(4 * 64), up: values(64 * 4), rank: 4, inFeatures: 64, outFeatures: 64, alpha: 3 };
  const lora = unetLora(new Map([['mid_block.attentions.0.transformer_blocks.0.attn1.to_q', m]]));
  const sizes: Record<string, number> = {};
  for (const [precision, dtype, rel] of [['fp32', 'F32', 0], ['fp16', 'F16', 2 ** -11], ['bf16', 'BF16', 2 ** -8]] as const) {
    const file = path.join(tmp, `${precision}.safetensors`);
    writeLoraFile(file, 'kohya', lora, { precision });
    const f = SafetensorsFile.open(file);
    for (const n of f.names()) assert.equal(f.info(n).dtype, dtype, `${precision} ${n}`);
    const key = f.names().find((n) => n.endsWith('lora_down.weight'))!;
    const back = f.readFloat32(key);
    // Round to nearest: at most half a unit in the last place, 2^-11 (fp16) / 2^-8 (bf16) relative to |v| ≤ 0.5
    // (values here are ≥ 2^-10 in magnitude or 0, so fp16 stays normal).
    for (let i = 0; i < back.length; i++) assert.ok(Math.abs(back[i] - m.down[i]) <= rel * Math.abs(m.down[i]), `${precision} [${i}] ${back[i]} vs ${m.down[i]}`);
    assert.equal(f.readFloat32(key.replace('lora_down.weight', 'alpha'))[0], 3);
    sizes[precision] = f.names().reduce((s, n) => s + f.info(n).byteLength, 0);
    f.close();
  }
  assert.equal(sizes.fp16, sizes.fp32 / 2);
  assert.equal(sizes.bf16, sizes.fp32 / 2);
});

test('ss_base_model_version as sd-scripts spells it; ss_v2; modelspec architecture, implementation, resolution, prediction type', () => {
  // cross_attention_dim and addition_embed_type from the models' unet/config.json: SD 1.5 768; SD 2.x 1024;
  // SDXL base 2048 + text_time. sd-scripts: model_util.get_model_version_str_for_sd1_sd2, sdxl_model_util.MODEL_VERSION_SDXL_BASE_V1_0.
  assert.equal(baseModelVersion({ cross_attention_dim: 768 }, false), 'sd_v1');
  assert.equal(baseModelVersion({ cross_attention_dim: 1024 }, false), 'sd_v2');
  assert.equal(baseModelVersion({ cross_attention_dim: 1024 }, true), 'sd_v2_v');
  assert.equal(baseModelVersion({ cross_attention_dim: 2048, addition_embed_type: 'text_time' }, false), 'sdxl_base_v1-0');
  assert.equal(baseModelVersion({ cross_attention_dim: 32, addition_embed_type: 'text_time' }, false), undefined, 'the tiny SDXL is no SDXL family');
  const cases: [string, boolean, string, string, string, string][] = [
    // family, v-prediction → ss_v2, modelspec.architecture, implementation, prediction_type (sai_model_spec.py)
    ['sd_v1', false, 'False', 'stable-diffusion-v1/lora', 'diffusers', 'epsilon'],
    ['sd_v2', false, 'True', 'stable-diffusion-v2-512/lora', 'diffusers', 'epsilon'],
    ['sd_v2_v', true, 'True', 'stable-diffusion-v2-768-v/lora', 'diffusers', 'v'],
    ['sdxl_base_v1-0', false, 'False', 'stable-diffusion-xl-v1-base/lora', 'https://github.com/Stability-AI/generative-models', 'epsilon'],
  ];
  for (const [family, v, v2, arch, impl, pred] of cases) {
    const m = loraTrainingMetadata({ rank: 8, alpha: 4, baseModelVersion: family, vPrediction: v, resolution: 768, outputName: 'my_lora', version: '1.2.3', finishedAt: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)) });
    assert.equal(m.ss_base_model_version, family);
    assert.equal(m.ss_v2, v2, family);
    assert.equal(m['modelspec.architecture'], arch);
    assert.equal(m['modelspec.implementation'], impl);
    assert.equal(m['modelspec.prediction_type'], pred);
    assert.equal(m['modelspec.resolution'], '768x768');
    assert.equal(m['modelspec.title'], 'my_lora');
    assert.equal(m['modelspec.date'], '2026-01-02T03:04:05Z');
    assert.equal(m['modelspec.sai_model_spec'], '1.0.1');
    assert.equal(m['modelspec.implementation_version'], 'lora-studio/1.2.3');
    assert.equal(m.ss_network_module, 'networks.lora');
    assert.equal(m.ss_network_dim, '8');
    assert.equal(m.ss_network_alpha, '4');
    assert.equal(m.ss_network_args, '{}');
    assert.equal(m.ss_resolution, '(768, 768)');
    assert.equal(m.ss_clip_skip, 'None');
  }
  const skip = loraTrainingMetadata({ rank: 4, alpha: 4, clipSkip: 2, networkArgs: { conv_dim: 4, algo: 'locon' } });
  assert.equal(skip.ss_clip_skip, '2');
  assert.equal(skip['modelspec.encoder_layer'], '2');
  assert.deepEqual(JSON.parse(skip.ss_network_args), { conv_dim: 4, algo: 'locon' });
});

test("ss_tag_frequency counts comma-separated tags as sd-scripts' set_tag_frequency does; ss_dataset_dirs per folder", () => {
  assert.deepEqual(tagFrequency(['1girl, Red Hair,  smile', '1girl,,smile ', '']), { '1girl': 2, 'red hair': 1, smile: 2 });
  const m = loraTrainingMetadata({ rank: 4, alpha: 4, datasetDirs: [{ name: '10_shapes', imageCount: 3, captions: ['a, b', 'a'] }] });
  assert.deepEqual(JSON.parse(m.ss_dataset_dirs), { '10_shapes': { n_repeats: 1, img_count: 3 } });
  assert.deepEqual(JSON.parse(m.ss_tag_frequency), { '10_shapes': { a: 2, b: 1 } });
});
