// CLIP text encoder vs transformers' CLIPTextModel (golden `text_encoder`: input_ids → last_hidden_state,
// hidden_states[-2], pooler_output), on the backend named by LORA_STUDIO_BACKEND.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { CLIPTextModel, normalizeClipTextConfig } from '../../src/core/models/clip_text_model.js';
import { loadStableDiffusion, disposeStableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { readJson } from '../../src/core/io/diffusers_folder.js';
import { readAllFloat32, writeSafetensors } from '../../src/core/io/safetensors.js';
import { MODEL_DIR, TINY_SHAPES, fixtureTextEncoder, golden, goldenTensor, needs, useTestBackend, assertClose } from '../helpers/fixtures.js';

// Tolerance: everything is f32 on both sides; the error is rounding that accumulates through the layers
// (K ≤ intermediate_size dot products, softmax over ≤ 77 keys, LayerNorm's mean/variance over hidden_size)
// and is then amplified by each LayerNorm's 1/σ. On the fixture (5 layers, hidden 32) the measured error
// is ~1e-6 on cpu, wasm and webgpu (lavapipe) against values of magnitude ~1–4. 1e-5 absolute
// + 1e-5 × max|ref| leaves room for other summation orders (tiled GPU matmuls, XNNPACK) and deeper
// fixtures, while a real mistake (no causal mask, gelu for quick_gelu, LayerNorm eps 1e-6 for 1e-5)
// shows up as 2e-2 or more (measured).
const ATOL = 1e-5;
const RTOL = 1e-5;

// SD 1.x/2.x fixtures have golden text_encoder; SDXL fixtures golden text_encoders, whose `_1` tensors are the first encoder's (the second is sdxl.test.ts').
const [TE_GOLDEN, TE] = needs('text_encoder').skip ? ['text_encoders', '_1'] : ['text_encoder', ''];

let model: CLIPTextModel;
before(async () => {
  await useTestBackend();
  model = fixtureTextEncoder();
});
after(() => model?.dispose());

test('matches transformers: last_hidden_state, hidden_states[-2], pooler_output', needs(TE_GOLDEN), async () => {
  const g = golden(TE_GOLDEN);
  const ids = tf.tidy(() => goldenTensor(g, `input_ids${TE}`).round().cast('int32')) as tf.Tensor2D;
  const out = model.forward(ids);
  try {
    await assertClose(out.lastHiddenState, goldenTensor(g, `last_hidden_state${TE}`), ATOL, 'text_encoder last_hidden_state', RTOL);
    await assertClose(out.penultimateHiddenState, goldenTensor(g, `penultimate_hidden_state${TE}`), ATOL, 'text_encoder penultimate_hidden_state', RTOL);
    await assertClose(out.poolerOutput, goldenTensor(g, `pooler_output${TE}`), ATOL, 'text_encoder pooler_output', RTOL);
  } finally {
    tf.dispose([ids, out.lastHiddenState, out.penultimateHiddenState, out.poolerOutput]);
  }
});

test("legacy eos_token_id 2 pools at the ids' argmax, which is the same eos token here", needs(TE_GOLDEN), async () => {
  const g = golden(TE_GOLDEN);
  const legacy = new CLIPTextModel({ ...model.config, eos_token_id: 2 }, model.params);
  const ids = tf.tidy(() => goldenTensor(g, `input_ids${TE}`).round().cast('int32')) as tf.Tensor2D;
  const out = legacy.forward(ids);
  try {
    await assertClose(out.poolerOutput, goldenTensor(g, `pooler_output${TE}`), ATOL, 'text_encoder pooler_output (argmax rule)', RTOL);
  } finally {
    tf.dispose([ids, out.lastHiddenState, out.penultimateHiddenState, out.poolerOutput]);
  }
});

test('loads the same weights from the pipeline folder and from its text_encoder/ folder', async () => {
  const direct = CLIPTextModel.fromPretrained(path.join(MODEL_DIR, 'text_encoder'));
  try {
    assert.deepEqual(direct.config, model.config);
    for (const name of CLIPTextModel.expectedParamShapes(model.config).keys()) {
      // await data(), not arraySync(): WebGPU tensors cannot be read synchronously in Node.
      const diff = tf.tidy(() => tf.max(tf.abs(direct.params.get(name).sub(model.params.get(name)))));
      assert.equal((await diff.data())[0], 0, name);
      diff.dispose();
    }
  } finally {
    direct.dispose();
  }
});

test('loads fp16 weights (examples/tiny-shapes) as f32 and runs', async () => {
  const dir = path.join(TINY_SHAPES, 'model', 'text_encoder');
  const fp16 = CLIPTextModel.fromPretrained(dir);
  const ids = tf.tensor2d([[49406, 320, 1125, 49407, 49407]], [1, 5], 'int32');
  const out = fp16.forward(ids);
  try {
    const h = fp16.config.hidden_size;
    assert.equal(h, (readJson(path.join(dir, 'config.json')) as { hidden_size: number }).hidden_size);
    assert.deepEqual(out.lastHiddenState.shape, [1, 5, h]);
    assert.deepEqual(out.poolerOutput.shape, [1, h]);
    const pooled = await out.poolerOutput.data();
    const atEos = (await out.lastHiddenState.data()).slice(3 * h, 4 * h);
    assert.deepEqual([...pooled], [...atEos], 'pooled output is the hidden state at the first eos');
    assert.ok([...pooled].every(Number.isFinite));
  } finally {
    tf.dispose([ids, out.lastHiddenState, out.penultimateHiddenState, out.poolerOutput]);
    fp16.dispose();
  }
});

test('weights that do not fit config.json are refused, naming the keys', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clip-te-'));
  try {
    const config = readJson(path.join(MODEL_DIR, 'text_encoder', 'config.json')) as Record<string, number>;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, hidden_size: config.hidden_size * 2, num_hidden_layers: config.num_hidden_layers + 1 }));
    fs.copyFileSync(path.join(MODEL_DIR, 'text_encoder', 'model.safetensors'), path.join(dir, 'model.safetensors'));
    assert.throws(
      () => CLIPTextModel.fromPretrained(dir),
      (e: Error) => /missing "encoder\.layers\.\d+\.self_attn\.q_proj\.weight"/.test(e.message) && /"embeddings\.token_embedding\.weight" has shape \[\d+,\d+\] but config\.json needs \[\d+,\d+\]/.test(e.message) && e.message.includes(dir),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('config.json is read, not assumed', () => {
  const cfg = normalizeClipTextConfig(readJson(path.join(MODEL_DIR, 'text_encoder', 'config.json')) as Record<string, unknown>);
  assert.equal(CLIPTextModel.expectedParamShapes(cfg).size, 4 + cfg.num_hidden_layers * 16);
  assert.throws(() => normalizeClipTextConfig({ hidden_act: 'relu6' }), /hidden_act "relu6" is not supported/);
  assert.throws(() => normalizeClipTextConfig({ hidden_size: 30, num_attention_heads: 4 }), /not divisible/);
});

test('random() makes weights of the expected shapes (for benchmarks)', async () => {
  const rnd = CLIPTextModel.random(model.config, 3);
  const ids = tf.tensor2d([[49406, 320, 49407]], [1, 3], 'int32');
  const out = rnd.forward(ids);
  try {
    for (const [name, shape] of CLIPTextModel.expectedParamShapes(model.config)) assert.deepEqual(rnd.params.get(name).shape, shape, name);
    assert.deepEqual(out.penultimateHiddenState.shape, [1, 3, model.config.hidden_size]);
    assert.ok([...(await out.lastHiddenState.data())].every(Number.isFinite));
  } finally {
    tf.dispose([ids, out.lastHiddenState, out.penultimateHiddenState, out.poolerOutput]);
    rnd.dispose();
  }
});

test("loads transformers ≤ 4 files, whose names start with 'text_model.'", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clip-te-'));
  try {
    const src = path.join(MODEL_DIR, 'text_encoder');
    fs.copyFileSync(path.join(src, 'config.json'), path.join(dir, 'config.json'));
    const { tensors } = readAllFloat32(path.join(src, 'model.safetensors'));
    writeSafetensors(path.join(dir, 'model.safetensors'), new Map([...tensors].map(([k, t]) => [`text_model.${k}`, t])));
    const prefixed = CLIPTextModel.fromPretrained(dir);
    try {
      for (const name of CLIPTextModel.expectedParamShapes(model.config).keys()) {
        const diff = tf.tidy(() => tf.max(tf.abs(prefixed.params.get(name).sub(model.params.get(name)))));
        assert.equal((await diff.data())[0], 0, name);
        diff.dispose();
      }
    } finally {
      prefixed.dispose();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a key the config has no place for is refused by name; the position_ids buffer older transformers saved is not', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clip-te-'));
  try {
    const src = path.join(MODEL_DIR, 'text_encoder');
    const config = readJson(path.join(src, 'config.json')) as Record<string, number>;
    const { tensors } = readAllFloat32(path.join(src, 'model.safetensors'));
    const t = config.max_position_embeddings;
    const withBuffer = new Map([...tensors, ['embeddings.position_ids', { shape: [1, t], data: Float32Array.from({ length: t }, (_, i) => i) }]]);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    writeSafetensors(path.join(dir, 'model.safetensors'), withBuffer);
    CLIPTextModel.fromPretrained(dir).dispose();
    // The config says one layer fewer than the file has: the last layer's weights are left over.
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: config.num_hidden_layers - 1 }));
    const last = config.num_hidden_layers - 1;
    assert.throws(() => CLIPTextModel.fromPretrained(dir), (e: Error) => e.message.includes(`unexpected "encoder.layers.${last}.`) && !e.message.includes('position_ids'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('variant fp16 loads text_encoder/model.fp16.safetensors, in the pipeline as for the UNet and VAE', async () => {
  // A pipeline folder whose text encoder has both files: the fixture's f32 weights and an fp16 copy.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clip-te-'));
  try {
    fs.cpSync(MODEL_DIR, dir, { recursive: true });
    const te = path.join(dir, 'text_encoder');
    const { tensors } = readAllFloat32(path.join(te, 'model.safetensors'));
    const half = new Map([...tensors].map(([k, t]) => [k, { shape: t.shape, dtype: 'F16' as const, data: t.data }]));
    writeSafetensors(path.join(te, 'model.fp16.safetensors'), half);
    const name = 'encoder.layers.0.self_attn.q_proj.weight';
    // What the fp16 file holds, read back as f32: differs from the f32 file wherever rounding to fp16 moved a value.
    const stored = readAllFloat32(path.join(te, 'model.fp16.safetensors')).tensors.get(name)!.data;
    assert.ok(stored.some((v, i) => v !== tensors.get(name)!.data[i]), 'the fp16 copy must differ from the f32 weights for this test to tell them apart');

    const sd = loadStableDiffusion(dir, { variant: 'fp16' });
    const plain = CLIPTextModel.fromPretrained(dir);
    try {
      assert.match(sd.textEncoder.params.source, /model\.fp16\.safetensors$/);
      assert.deepEqual([...(await sd.textEncoder.params.get(name).data())], [...stored]);
      assert.match(plain.params.source, /text_encoder[/\\]model\.safetensors$/);
      assert.deepEqual([...(await plain.params.get(name).data())], [...tensors.get(name)!.data]);
    } finally {
      disposeStableDiffusion(sd);
      plain.dispose();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
