// LoRA files: diffusers, PEFT and kohya layouts read against a model's targets, written back in the
// layouts other tools read, and combined with scales. Everything here is exact (no arithmetic beyond a
// multiplication by alpha/rank), so comparisons are bit-for-bit unless stated.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { SafetensorsFile, readAllFloat32, writeSafetensors, type TensorToWrite } from '../../src/core/io/safetensors.js';
import { ATTENTION_PROJECTIONS, guessPathFromKohya, kohyaName, loraTargetsFromUnetWeights, parseLoraKey } from '../../src/core/lora/formats.js';
import { LoraFileError, readLoraFile, writeDiffusersLora, writeKohyaLora, type LoraModule } from '../../src/core/lora/lora_file.js';
import { baseModelVersion, loraTrainingMetadata } from '../../src/core/lora/metadata.js';
import { LoraSet, parseLoraArg } from '../../src/core/lora/lora_set.js';
import { UNet2DConditionModel } from '../../src/core/models/unet_2d_condition.js';
import { FIXTURES, MODEL_DIR, TINY_SHAPES, manifest, useTestBackend } from '../helpers/fixtures.js';

const DIFFUSERS_LORA = path.join(FIXTURES, 'lora_diffusers/pytorch_lora_weights.safetensors');
const KOHYA_LORA = path.join(FIXTURES, 'lora_kohya.safetensors');
const unetWeights = (modelDir: string) => fs.readdirSync(path.join(modelDir, 'unet')).filter((f) => f.endsWith('.safetensors')).map((f) => path.join(modelDir, 'unet', f));
const TARGETS = loraTargetsFromUnetWeights(unetWeights(MODEL_DIR));
/** examples/tiny-shapes: a model with other widths (128 vs 64) and more attention blocks — "another model". */
const OTHER_TARGETS = loraTargetsFromUnetWeights(unetWeights(path.join(TINY_SHAPES, 'model')));
const OTHER_LORA = path.join(TINY_SHAPES, 'reference-lora/pytorch_lora_weights.safetensors');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-formats-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const tmpFile = (name: string) => path.join(tmp, name);

function header(file: string): Map<string, { dtype: string; shape: number[] }> {
  const f = SafetensorsFile.open(file);
  try {
    return new Map([...f.tensors].map(([k, t]) => [k, { dtype: t.dtype, shape: [...t.shape] }]));
  } finally {
    f.close();
  }
}

/** A file from raw tensors (name → [shape, values]) for the malformed/unusual cases. */
function writeRaw(name: string, tensors: Record<string, [number[], ArrayLike<number>]>, metadata?: Record<string, string>): string {
  const p = tmpFile(name);
  const m = new Map<string, TensorToWrite>(Object.entries(tensors).map(([k, [shape, data]]) => [k, { shape, data }]));
  writeSafetensors(p, m, metadata);
  return p;
}

/** The fixture's diffusers LoRA as raw tensors, renamed by `rename(path, part)`. */
function fixtureTensorsAs(rename: (modulePath: string, part: 'down' | 'up') => string, reshape?: (s: number[]) => number[]): Record<string, [number[], Float32Array]> {
  const out: Record<string, [number[], Float32Array]> = {};
  for (const [k, t] of readAllFloat32(DIFFUSERS_LORA).tensors) {
    const m = /^unet\.(.*)\.lora\.(down|up)\.weight$/.exec(k)!;
    out[rename(m[1], m[2] as 'down' | 'up')] = [reshape ? reshape(t.shape) : t.shape, t.data];
  }
  return out;
}

const sameModules = (a: Map<string, LoraModule>, b: Map<string, LoraModule>, label: string) => {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort(), `${label}: module paths`);
  for (const [p, m] of a) {
    const n = b.get(p)!;
    assert.deepEqual([m.rank, m.inFeatures, m.outFeatures], [n.rank, n.inFeatures, n.outFeatures], `${label}: ${p} dims`);
    assert.deepEqual(m.down, n.down, `${label}: ${p} down`);
    assert.deepEqual(m.up, n.up, `${label}: ${p} up`);
  }
};

test('targets come from the UNet header: the attention projections with [out, in] shapes', () => {
  const unet = header(unetWeights(MODEL_DIR)[0]);
  const expected = [...unet.keys()].filter((k) => /\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(k));
  assert.equal(TARGETS.length, expected.length);
  // The fixture's diffusers LoRA covers exactly these modules (n_keys = 2 per module).
  assert.equal(TARGETS.length * 2, manifest().files.lora_unet.meta.n_keys);
  for (const t of TARGETS) {
    assert.ok(ATTENTION_PROJECTIONS.some((p) => t.path.endsWith('.' + p)), t.path);
    assert.deepEqual(unet.get(`${t.path}.weight`)!.shape, [t.outFeatures, t.inFeatures], t.path);
  }
  // attn2's keys/values read the text encoder's states: their in-features are the cross-attention dim.
  const crossDim = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'unet/config.json'), 'utf8')).cross_attention_dim;
  for (const t of TARGETS.filter((t) => /attn2\.to_[kv]$/.test(t.path))) assert.equal(t.inFeatures, crossDim, t.path);
});

test('key names: kohya names are built from module paths; the guess back is for messages only', () => {
  const p = 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0';
  assert.equal(kohyaName(p), 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0');
  assert.equal(guessPathFromKohya(kohyaName(p, '')), p);
  assert.equal(guessPathFromKohya('mid_block_attentions_0_proj_in'), 'mid_block.attentions.0.proj_in');
  assert.deepEqual(parseLoraKey(`unet.${p}.lora.down.weight`), { kind: 'lora', format: 'diffusers', component: 'unet', module: p, naming: 'dotted', part: 'down' });
  assert.deepEqual(parseLoraKey(`base_model.model.${p}.lora_B.weight`), { kind: 'lora', format: 'peft', component: 'unet', module: p, naming: 'dotted', part: 'up' });
  assert.deepEqual(parseLoraKey('lora_te_text_model_encoder_layers_0_mlp_fc1.alpha'), {
    kind: 'lora', format: 'kohya', component: 'text_encoder', module: 'encoder_layers_0_mlp_fc1', naming: 'kohya', part: 'alpha',
  });
  // DoRA's magnitude, PEFT adapter-named keys, ComfyUI's LoraSave prefixes.
  assert.deepEqual(parseLoraKey(`unet.${p}.lora_magnitude_vector`), { kind: 'lora', format: 'peft', component: 'unet', module: p, naming: 'dotted', part: 'magnitude' });
  assert.deepEqual(parseLoraKey(`${p}.lora_A.default.weight`), { kind: 'lora', format: 'peft', component: 'unet', module: p, naming: 'dotted', part: 'down' });
  assert.deepEqual(parseLoraKey('diffusion_model.input_blocks.4.1.proj_in.lora_up.weight'), { kind: 'lora', format: 'kohya', component: 'unet', module: 'input_blocks.4.1.proj_in', naming: 'dotted', part: 'up' });
  assert.deepEqual(parseLoraKey('text_encoders.clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.lora_down.weight'), {
    kind: 'lora', format: 'kohya', component: 'text_encoder', module: 'encoder.layers.0.mlp.fc1', naming: 'dotted', part: 'down',
  });
  assert.equal(parseLoraKey('lora_unet_x.hada_w1_a').kind, 'unsupported');
  assert.equal(parseLoraKey('conv_in.weight').kind, 'unknown');
});

test('the diffusers fixture loads with alpha = rank and its exact values', () => {
  const w = readLoraFile(DIFFUSERS_LORA, TARGETS);
  assert.equal(w.format, 'diffusers');
  assert.equal(w.modules.size, TARGETS.length);
  assert.deepEqual(w.skipped, []);
  assert.deepEqual(w.warnings, []);
  assert.equal(w.metadata.format, 'pt');
  const raw = readAllFloat32(DIFFUSERS_LORA).tensors;
  for (const [p, m] of w.modules) {
    assert.equal(m.alpha, m.rank, p);
    assert.deepEqual(m.down, raw.get(`unet.${p}.lora.down.weight`)!.data);
    assert.deepEqual(m.up, raw.get(`unet.${p}.lora.up.weight`)!.data);
  }
});

test('the kohya fixture holds the same weights with alpha = r/2: effective scale 0.5, as golden lora_unet says', () => {
  const d = readLoraFile(DIFFUSERS_LORA, TARGETS);
  const k = readLoraFile(KOHYA_LORA, TARGETS);
  assert.equal(k.format, 'kohya');
  sameModules(d.modules, k.modules, 'kohya vs diffusers');
  for (const [p, m] of k.modules) assert.equal(m.alpha / m.rank, 0.5, p);
  // MANIFEST: lora_unet has out_scale0_5 (diffusers file at scale 0.5) and out_kohya_alpha2 (kohya file at scale 1).
  const tensors = manifest().files.lora_unet.tensors;
  assert.ok('out_scale0_5' in tensors && 'out_kohya_alpha2' in tensors);
});

test('LoraSet: effective scale = user scale · alpha / rank; several LoRAs; scale 0 drops; remove frees tensors', async () => {
  await useTestBackend();
  const before = tf.memory().numTensors;
  const set = new LoraSet();
  const lookup = set.lookup;
  const dName = set.add(readLoraFile(DIFFUSERS_LORA, TARGETS), 0.5);
  const kName = set.add(readLoraFile(KOHYA_LORA, TARGETS), 1, 'kohya');
  assert.equal(dName, 'pytorch_lora_weights');
  assert.throws(() => set.add(readLoraFile(KOHYA_LORA, TARGETS), 1, 'kohya'), /already loaded/);
  const p = TARGETS[0].path;
  const adapters = lookup(p);
  assert.equal(adapters.length, 2);
  // diffusers at user scale 0.5 (alpha = r) and kohya at 1 (alpha = r/2) are the same adapter.
  assert.deepEqual(adapters.map((a) => a.scale), [0.5, 0.5]);
  assert.deepEqual(await adapters[0].down.data(), await adapters[1].down.data());
  assert.deepEqual(await adapters[0].up.data(), await adapters[1].up.data());
  assert.deepEqual(adapters[0].down.shape, [readLoraFile(DIFFUSERS_LORA, TARGETS).modules.get(p)!.rank, TARGETS[0].inFeatures]);
  assert.deepEqual(adapters[0].up.shape, [TARGETS[0].outFeatures, adapters[0].down.shape[0]]);

  set.setScale(kName, -2);
  assert.deepEqual(lookup(p).map((a) => a.scale), [0.5, -1]);
  set.setScale(dName, 0);
  assert.deepEqual(lookup(p).map((a) => a.scale), [-1]);
  assert.deepEqual(lookup('not.a.module'), []);
  set.remove(dName);
  assert.deepEqual(set.names(), ['kohya']);
  assert.throws(() => set.setScale(dName, 1), /no LoRA named "pytorch_lora_weights"/);
  set.dispose();
  assert.equal(set.size, 0);
  assert.deepEqual(lookup(p), []);
  assert.equal(tf.memory().numTensors, before, 'every tensor the set made is disposed');
});

test('writeDiffusersLora writes the fixture layout exactly (keys, shapes, dtypes, format) and the same values', () => {
  const w = readLoraFile(DIFFUSERS_LORA, TARGETS);
  const out = tmpFile('diffusers/pytorch_lora_weights.safetensors');
  writeDiffusersLora(out, w.modules, loraTrainingMetadata({ rank: 4, alpha: 4, steps: 10, baseModelVersion: 'sd_v1', resolution: 32 }));
  assert.deepEqual([...header(out).entries()].sort(), [...header(DIFFUSERS_LORA).entries()].sort());
  const back = readLoraFile(out, TARGETS);
  sameModules(w.modules, back.modules, 'diffusers round trip');
  assert.equal(back.metadata.format, 'pt');
  assert.equal(back.metadata.ss_network_dim, '4');
  assert.equal(back.metadata.ss_base_model_version, 'sd_v1');
  assert.equal(back.metadata.ss_v2, 'False');
  assert.equal(back.metadata.ss_resolution, '(32, 32)');
  assert.equal(back.metadata['lora_studio.target_modules'], 'to_q,to_k,to_v,to_out.0');
  assert.ok(fs.readdirSync(path.dirname(out)).every((f) => !f.endsWith('.tmp')), 'no temporary file left behind');
});

test('a trained LoRA names its base model family as sd-scripts does, and none for an unknown UNet', () => {
  // cross_attention_dim from the models' unet/config.json: SD 1.5 768; SD 2.1 and SD 2 base 1024 (2.1 is
  // v-prediction); the tiny fixture 32.
  assert.equal(baseModelVersion({ cross_attention_dim: 768 }, false), 'sd_v1');
  assert.equal(baseModelVersion({ cross_attention_dim: 1024 }, false), 'sd_v2');
  assert.equal(baseModelVersion({ cross_attention_dim: 1024 }, true), 'sd_v2_v');
  assert.equal(baseModelVersion(JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'unet/config.json'), 'utf8')), false), undefined);
  assert.equal(loraTrainingMetadata({ rank: 4, alpha: 4, baseModelVersion: 'sd_v2_v' }).ss_v2, 'True');
});

test('writeKohyaLora writes the fixture kohya layout; diffusers → kohya → read and kohya → diffusers keep the LoRA', () => {
  const k = readLoraFile(KOHYA_LORA, TARGETS);
  const kOut = tmpFile('kohya.safetensors');
  writeKohyaLora(kOut, k.modules);
  assert.deepEqual([...header(kOut).entries()].sort(), [...header(KOHYA_LORA).entries()].sort());
  const kBack = readLoraFile(kOut, TARGETS);
  sameModules(k.modules, kBack.modules, 'kohya round trip');
  for (const [p, m] of kBack.modules) assert.equal(m.alpha, k.modules.get(p)!.alpha);

  const d = readLoraFile(DIFFUSERS_LORA, TARGETS);
  const dk = tmpFile('from-diffusers.safetensors');
  writeKohyaLora(dk, d.modules);
  const dkBack = readLoraFile(dk, TARGETS);
  assert.equal(dkBack.format, 'kohya');
  sameModules(d.modules, dkBack.modules, 'diffusers → kohya');
  for (const m of dkBack.modules.values()) assert.equal(m.alpha, m.rank);

  // diffusers has no alpha: alpha/rank = 0.5 is folded into up (exact: a multiplication by 0.5).
  const kd = tmpFile('from-kohya/pytorch_lora_weights.safetensors');
  writeDiffusersLora(kd, k.modules);
  const kdBack = readLoraFile(kd, TARGETS);
  for (const [p, m] of kdBack.modules) {
    const src = k.modules.get(p)!;
    assert.equal(m.alpha, m.rank);
    assert.deepEqual(m.down, src.down);
    assert.deepEqual(m.up, src.up.map((v) => v * 0.5));
  }
});

test('a LoRA for another model is an error naming the key (wrong shape, missing module, kohya names too)', () => {
  assert.throws(() => readLoraFile(DIFFUSERS_LORA, OTHER_TARGETS), (e: Error) => e instanceof LoraFileError && /key "unet\.[^"]+" .*another model/.test(e.message));
  // Modules both models have, other widths: the down weight does not fit.
  const shared = fixtureTensorsAs((p, part) => `unet.${p}.lora.${part}.weight`);
  for (const k of Object.keys(shared)) if (!OTHER_TARGETS.some((t) => k === `unet.${t.path}.lora.down.weight` || k === `unet.${t.path}.lora.up.weight`)) delete shared[k];
  assert.ok(Object.keys(shared).length > 0);
  assert.throws(
    () => readLoraFile(writeRaw('shared-modules.safetensors', shared), OTHER_TARGETS),
    (e: Error) => /key "unet\.down_blocks\.1\.attentions\.0\.transformer_blocks\.0\.attn1\.to_k\.lora\.down\.weight" has shape \[4,64\] but module .* takes 128 inputs/.test(e.message) && /another model/.test(e.message),
  );
  // The other model's LoRA has attentions this model lacks.
  const missing = OTHER_TARGETS.find((t) => !TARGETS.some((u) => u.path === t.path))!;
  assert.ok(missing, 'tiny-shapes has attention modules the fixture lacks');
  assert.throws(() => readLoraFile(OTHER_LORA, TARGETS), (e: Error) => /key "unet\..*" is for UNet module ".*", which this model does not have — is this a LoRA for another model\?/.test(e.message));
  // In kohya layout the error names the kohya key.
  const otherKohya = tmpFile('other-kohya.safetensors');
  writeKohyaLora(otherKohya, readLoraFile(OTHER_LORA, OTHER_TARGETS).modules);
  assert.throws(() => readLoraFile(otherKohya, TARGETS), (e: Error) => /key "lora_unet_\w+\.(alpha|lora_down\.weight|lora_up\.weight)" (is for UNet module|has shape)/.test(e.message));
});

test('incomplete or unusual files: down without up, rank mismatch, DoRA, unknown keys, all named', () => {
  const p = TARGETS[0].path;
  const { inFeatures: i, outFeatures: o } = TARGETS[0];
  const f1 = writeRaw('down-only.safetensors', { [`unet.${p}.lora.down.weight`]: [[4, i], new Float32Array(4 * i)] });
  assert.throws(() => readLoraFile(f1, TARGETS), new RegExp(`key "unet\\.${p.replace(/\./g, '\\.')}\\.lora\\.down\\.weight" has no matching up weight`));
  const f2 = writeRaw('rank-mismatch.safetensors', { [`unet.${p}.lora.down.weight`]: [[4, i], new Float32Array(4 * i)], [`unet.${p}.lora.up.weight`]: [[o, 2], new Float32Array(o * 2)] });
  assert.throws(() => readLoraFile(f2, TARGETS), /lora\.up\.weight" has rank 2 but its down weight/);
  const f3 = writeRaw('dora.safetensors', { [`unet.${p}.lora_A.weight`]: [[4, i], new Float32Array(4 * i)], [`unet.${p}.lora_B.weight`]: [[o, 4], new Float32Array(o * 4)], [`unet.${p}.lora_magnitude_vector`]: [[o], new Float32Array(o)] });
  const dora = readLoraFile(f3, TARGETS).modules.get(p)!;
  assert.equal(dora.magnitude?.length, o, 'DoRA magnitude read');
  const f3b = writeRaw('dora-in-axis.safetensors', { [`${kohyaName(p)}.lora_down.weight`]: [[4, i], new Float32Array(4 * i)], [`${kohyaName(p)}.lora_up.weight`]: [[o, 4], new Float32Array(o * 4)], [`${kohyaName(p)}.dora_scale`]: [[1, i], new Float32Array(i)] });
  assert.throws(() => readLoraFile(f3b, TARGETS), /dora_scale" has shape \[1,\d+\]; a DoRA magnitude here is one value per output channel/);
  const f3c = writeRaw('loha.safetensors', { [`${kohyaName(p)}.hada_w1_a`]: [[1], [0]] });
  assert.throws(() => readLoraFile(f3c, TARGETS), /belongs to a LoHa \(LyCORIS\) adapter/);
  const f4 = writeRaw('not-lora.safetensors', { 'conv_in.weight': [[1], [0]] });
  assert.throws(() => readLoraFile(f4, TARGETS), /key "conv_in\.weight" is not a LoRA weight name/);
  const f5 = writeRaw('te-only.safetensors', { 'lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight': [[1, 2], [0, 0]], 'lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight': [[2, 1], [0, 0]] });
  assert.throws(() => readLoraFile(f5, TARGETS), /holds no LoRA weights this model can use \(2 keys skipped: 2 text encoder LoRA keys skipped/);
  const f6 = writeRaw('conv3x3.safetensors', { [`${kohyaName(p)}.lora_down.weight`]: [[4, i, 3, 3], new Float32Array(4 * i * 9)], [`${kohyaName(p)}.lora_up.weight`]: [[o, 4, 1, 1], new Float32Array(o * 4)] });
  assert.throws(() => readLoraFile(f6, TARGETS), /has shape \[4,\d+,3,3\] but module .* takes \d+ inputs \(expected \[rank, \d+\]\)/);
});

test('an A1111 LoRA with text-encoder, proj_in/ff parts and 1×1-conv shapes: every UNet part loads; the text encoder part is skipped when no text encoder is given', () => {
  const tensors: Record<string, [number[], ArrayLike<number>]> = fixtureTensorsAs(
    (p, part) => `${kohyaName(p)}.lora_${part}.weight`,
    (s) => [...s, 1, 1], // conv-shaped [r, in, 1, 1] as sd-scripts writes for 1×1 convs
  );
  for (const t of TARGETS) tensors[`${kohyaName(t.path)}.alpha`] = [[], [1]];
  const te = 'lora_te_text_model_encoder_layers_0_self_attn_q_proj';
  Object.assign(tensors, { [`${te}.lora_down.weight`]: [[2, 32], new Float32Array(64)], [`${te}.lora_up.weight`]: [[32, 2], new Float32Array(64)], [`${te}.alpha`]: [[], [2]] });
  const block = TARGETS[0].path.replace(/\.transformer_blocks\..*$/, '');
  const proj = kohyaName(`${block}.proj_in`);
  const ff = kohyaName(`${block}.transformer_blocks.0.ff.net.2`);
  Object.assign(tensors, {
    [`${proj}.lora_down.weight`]: [[2, 64, 1, 1], new Float32Array(128)], [`${proj}.lora_up.weight`]: [[64, 2, 1, 1], new Float32Array(128)],
    [`${ff}.lora_down.weight`]: [[2, 256], new Float32Array(512)], [`${ff}.lora_up.weight`]: [[64, 2], new Float32Array(128)],
  });
  const file = writeRaw('a1111.safetensors', tensors, { ss_network_dim: '4' });
  // Every Linear/Conv2d of the fixture UNet (what the pipeline passes), from the model's own construction.
  const unet = UNet2DConditionModel.random(JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'unet/config.json'), 'utf8')));
  const all = unet.loraLayers().map((l) => ({ path: l.path, inFeatures: l.inFeatures, outFeatures: l.outFeatures, kernelSize: l.kernelSize }));
  unet.dispose();
  const w = readLoraFile(file, all);
  assert.equal(w.format, 'kohya');
  const d = readLoraFile(DIFFUSERS_LORA, TARGETS);
  const attention = new Map([...w.modules].filter(([p]) => d.modules.has(p)));
  sameModules(d.modules, attention, '1×1-conv kohya vs diffusers');
  for (const m of attention.values()) assert.equal(m.alpha, 1);
  assert.ok(w.modules.has(`${block}.proj_in`) && w.modules.has(`${block}.transformer_blocks.0.ff.net.2`), 'proj_in and ff applied');
  assert.equal(w.modules.size, TARGETS.length + 2);
  assert.equal(w.skipped.length, 3);
  assert.equal(w.warnings.length, 1);
  assert.match(w.warnings[0], /3 text encoder LoRA keys skipped — this model has no text encoder/);
});

test('PEFT layouts: lora_A/lora_B with base_model.model. prefix and adapter_config.json; diffusers header metadata; old processor keys', () => {
  const d = readLoraFile(DIFFUSERS_LORA, TARGETS);
  const dir = path.join(tmp, 'peft');
  fs.mkdirSync(dir, { recursive: true });
  const peft = fixtureTensorsAs((p, part) => `base_model.model.${p}.lora_${part === 'down' ? 'A' : 'B'}.weight`);
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), new Map(Object.entries(peft).map(([k, [shape, data]]) => [k, { shape, data }])));
  // alpha_pattern overrides lora_alpha for matching modules (PEFT's rule: the path ends with the pattern).
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ r: 4, lora_alpha: 2, alpha_pattern: { 'attn2.to_q': 8 } }));
  const w = readLoraFile(path.join(dir, 'adapter_model.safetensors'), TARGETS);
  assert.equal(w.format, 'peft');
  sameModules(d.modules, w.modules, 'peft vs diffusers');
  for (const [p, m] of w.modules) assert.equal(m.alpha, p.endsWith('attn2.to_q') ? 8 : 2, p);

  const packed = JSON.stringify({ 'unet.r': 4, 'unet.lora_alpha': 8, 'unet.use_rslora': false });
  const withMeta = writeRaw('unet-peft.safetensors', fixtureTensorsAs((p, part) => `unet.${p}.lora_${part === 'down' ? 'A' : 'B'}.weight`), { format: 'pt', lora_adapter_metadata: packed });
  for (const m of readLoraFile(withMeta, TARGETS).modules.values()) assert.equal(m.alpha, 8);

  const proc = fixtureTensorsAs((p, part) => {
    const [, attn, proj] = /^(.*)\.(to_q|to_k|to_v|to_out\.0)$/.exec(p)!;
    return `${attn}.processor.${proj === 'to_out.0' ? 'to_out' : proj}_lora.${part}.weight`;
  });
  const old = readLoraFile(writeRaw('processor.safetensors', proc), TARGETS);
  assert.equal(old.format, 'diffusers');
  sameModules(d.modules, old.modules, 'attention-processor keys vs diffusers');
});

test('ranks may differ per module', () => {
  const [a, b] = TARGETS;
  const mods = new Map<string, LoraModule>([
    [a.path, { rank: 2, inFeatures: a.inFeatures, outFeatures: a.outFeatures, alpha: 2, down: new Float32Array(2 * a.inFeatures).fill(1), up: new Float32Array(a.outFeatures * 2).fill(2) }],
    [b.path, { rank: 8, inFeatures: b.inFeatures, outFeatures: b.outFeatures, alpha: 4, down: new Float32Array(8 * b.inFeatures).fill(3), up: new Float32Array(b.outFeatures * 8).fill(4) }],
  ]);
  const file = tmpFile('mixed.safetensors');
  writeKohyaLora(file, mods);
  const w = readLoraFile(file, TARGETS);
  assert.deepEqual([...w.modules.values()].map((m) => [m.rank, m.alpha]), [[2, 2], [8, 4]]);
  assert.throws(() => writeDiffusersLora(tmpFile('bad.safetensors'), new Map([[a.path, { ...mods.get(a.path)!, rank: 3 }]])), /down has .* values/);
});

test('parseLoraArg: FILE[:SCALE], Windows drive letters kept', () => {
  assert.deepEqual(parseLoraArg('a.safetensors:0.7'), { file: 'a.safetensors', scale: 0.7 });
  assert.deepEqual(parseLoraArg('a.safetensors:-1'), { file: 'a.safetensors', scale: -1 });
  assert.deepEqual(parseLoraArg('a.safetensors'), { file: 'a.safetensors', scale: 1 });
  assert.deepEqual(parseLoraArg('C:\\loras\\a.safetensors'), { file: 'C:\\loras\\a.safetensors', scale: 1 });
  assert.deepEqual(parseLoraArg('C:\\loras\\a.safetensors:.5'), { file: 'C:\\loras\\a.safetensors', scale: 0.5 });
});
