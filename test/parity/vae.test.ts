// AutoencoderKL against diffusers: encode (latent_dist mean and std) and decode on the fixture model,
// the trained tiny-shapes VAE (fp16 files) reconstructing its dataset images, checkpoints with the
// deprecated attention names, and the errors for bad weights or unsupported configs.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { AutoencoderKL, normalizeVaeConfig } from '../../src/core/models/autoencoder_kl.js';
import { randomParams } from '../../src/core/models/layers.js';
import { readAllFloat32, writeSafetensors, type TensorToWrite } from '../../src/core/io/safetensors.js';
import { readJson } from '../../src/core/io/diffusers_folder.js';
import { MODEL_DIR, TINY_SHAPES, assertClose, fixtureVae, golden, goldenTensor, manifest, nchwToNhwc, nhwcToNchw, useTestBackend } from '../helpers/fixtures.js';

const VAE_DIR = path.join(MODEL_DIR, 'vae');
const vaeConfig = () => readJson(path.join(VAE_DIR, 'config.json')) as Record<string, unknown>;

// Tolerance: atol 1e-6 + rtol 5e-6 of the largest reference value. float32 on both sides; the
// difference is rounding through the encoder/decoder (3×3 convs summing up to 9·C_in products, GroupNorm
// statistics over whole images, the single-head mid-block attention over all pixels) in another
// summation order than torch's. Measured: mean 1.4e-6 / 1.6e-6 / 1.3e-6 (cpu / wasm / webgpu), std
// ≤1.1e-6, decoded 3.3e-6 / 5.0e-6 / 3.6e-6 with max |ref| 0.99, 1.43 and 2.34. A norm eps of 1e-5 instead
// of 1e-6 moves them by 4.9e-5, 3.0e-5 and 1.6e-4.
const ATOL = 1e-6;
const RTOL = 5e-6;

let vae: AutoencoderKL;

before(async () => {
  await useTestBackend();
  vae = fixtureVae();
});

test('encode matches diffusers latent_dist mean and std (golden vae)', async () => {
  const g = golden('vae');
  const { mean, std } = vae.encode(nchwToNhwc(goldenTensor(g, 'image')) as tf.Tensor4D);
  await assertClose(nhwcToNchw(mean), goldenTensor(g, 'mean'), ATOL, 'vae mean', RTOL);
  await assertClose(nhwcToNchw(std), goldenTensor(g, 'std'), ATOL, 'vae std', RTOL);
  tf.dispose([mean, std]);
  assert.deepEqual(vae.params.unused(), [], 'every tensor in the weights file is used');
});

test('decode matches diffusers vae.decode (golden vae)', async () => {
  // The golden's `latents` went into vae.decode as they are (MANIFEST's scaling_factor is for callers).
  const g = golden('vae');
  const decoded = vae.decode(nchwToNhwc(goldenTensor(g, 'latents')) as tf.Tensor4D);
  await assertClose(nhwcToNchw(decoded), goldenTensor(g, 'decoded'), ATOL, 'vae decoded', RTOL);
  decoded.dispose();
});

test('config: scaling_factor from config.json, shift_factor null → 0', () => {
  assert.equal(vae.config.scaling_factor, manifest().files.vae.meta.scaling_factor);
  assert.equal(vae.config.shift_factor, 0);
  assert.equal(normalizeVaeConfig({ ...vaeConfig(), shift_factor: 0.1159 }).shift_factor, 0.1159);
});

/** Per image: [x, y, count] of the pixels whose darkest channel is below 0.75 (images in [-1, 1]). */
async function inkCentroids(images: tf.Tensor4D): Promise<[number, number, number][]> {
  const [, h, w] = images.shape;
  const stats = tf.tidy(() => {
    const ink = images.add(1).div(2).min(3).less(0.75).toFloat();
    const xs = tf.range(0, w).reshape([1, 1, w]);
    const ys = tf.range(0, h).reshape([1, h, 1]);
    const count = ink.sum([1, 2]);
    return tf.stack([ink.mul(xs).sum([1, 2]).div(count), ink.mul(ys).sum([1, 2]).div(count), count], 1);
  });
  const rows = (await stats.array()) as [number, number, number][];
  stats.dispose();
  return rows;
}

test('the trained tiny-shapes VAE (fp16 files, 3 levels) reconstructs the shapes of its dataset images', async () => {
  const model = AutoencoderKL.fromPretrained(path.join(TINY_SHAPES, 'model/vae'));
  try {
    assert.deepEqual(model.params.unused(), []);
    const dir = path.join(TINY_SHAPES, 'dataset-corner');
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.png')).sort().slice(0, 2);
    const pixels = await Promise.all(files.map((f) => sharp(path.join(dir, f)).removeAlpha().raw().toBuffer({ resolveWithObject: true })));
    const { width, height } = pixels[0].info;
    const image = tf.tidy(() => tf.tensor4d(Buffer.concat(pixels.map((p) => p.data)), [files.length, height, width, 3], 'int32').toFloat().div(127.5).sub(1) as tf.Tensor4D);
    const { mean, std } = model.encode(image);
    assert.deepEqual(mean.shape, [files.length, height / 4, width / 4, 4]);
    assert.deepEqual(std.shape, mean.shape);
    const recon = model.decode(mean);
    assert.deepEqual(recon.shape, image.shape);
    // This small VAE reconstructs shapes but not exact colours (its README says so; its decode matches
    // diffusers through the whole pipeline), so check what it does keep: where the shape is. Ink is
    // min channel < 0.75 in [0, 1], the metric of the model's reference LoRA; random weights put the
    // "ink" everywhere (centroid at the image centre).
    const [want, got] = [await inkCentroids(image), await inkCentroids(recon)];
    want.forEach(([x, y, n], i) => {
      const [rx, ry, rn] = got[i];
      assert.ok(Math.hypot(rx - x, ry - y) < 3, `${files[i]}: ink centroid (${x.toFixed(1)}, ${y.toFixed(1)}) reconstructed at (${rx.toFixed(1)}, ${ry.toFixed(1)})`);
      assert.ok(rn > n / 2 && rn < n * 2, `${files[i]}: ${n} ink pixels reconstructed as ${rn}`);
    });
    tf.dispose([image, mean, std, recon]);
  } finally {
    model.dispose();
  }
});

test('checkpoints with the deprecated attention names (query/key/value/proj_attn, 1×1 conv weights) load', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vae-old-'));
  try {
    const renamed = new Map<string, TensorToWrite>();
    const old: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
    for (const [name, t] of readAllFloat32(path.join(VAE_DIR, 'diffusion_pytorch_model.safetensors')).tensors) {
      const m = /^(.*\.attentions\.\d+)\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(name);
      if (!m) {
        renamed.set(name, t);
        continue;
      }
      // Older files stored some of these as [out, in, 1, 1] conv weights.
      const shape = m[3] === 'weight' && m[2] === 'to_q' ? [...t.shape, 1, 1] : t.shape;
      renamed.set(`${m[1]}.${old[m[2]]}.${m[3]}`, { shape, data: t.data });
    }
    writeSafetensors(path.join(tmp, 'diffusion_pytorch_model.safetensors'), renamed);
    fs.copyFileSync(path.join(VAE_DIR, 'config.json'), path.join(tmp, 'config.json'));
    const legacy = AutoencoderKL.fromPretrained(tmp);
    const z = tf.randomNormal([1, 8, 8, 4], 0, 1, 'float32', 3) as tf.Tensor4D;
    const a = legacy.decode(z);
    const b = vae.decode(z);
    // The same weights through the same ops: equal up to kernel non-determinism, which is nil on these backends.
    await assertClose(a, b, 1e-6, 'legacy names decode');
    tf.dispose([z, a, b]);
    legacy.dispose();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('a missing or wrong-shaped weight is an error naming the key', () => {
  const config = vaeConfig();
  const shapes = AutoencoderKL.expectedParamShapes(config);
  const params = randomParams(shapes, 1, 'vae-test.safetensors');
  const toV = shapes.get('decoder.mid_block.attentions.0.to_v.weight')!;
  const [c0, inCh] = shapes.get('encoder.conv_in.weight')!; // OIHW [block_out_channels[0], in_channels, 3, 3]
  params.tensors.get('decoder.mid_block.attentions.0.to_v.weight')!.dispose();
  params.tensors.delete('decoder.mid_block.attentions.0.to_v.weight');
  params.tensors.get('encoder.conv_in.weight')!.dispose();
  params.tensors.set('encoder.conv_in.weight', tf.zeros([3, 3, inCh + 1, c0])); // HWIO of [c0, in + 1, 3, 3]
  assert.throws(
    () => new AutoencoderKL(config, params),
    (e: Error) =>
      /vae-test\.safetensors/.test(e.message) &&
      e.message.includes(`missing "decoder.mid_block.attentions.0.to_v.weight" (expected shape ${JSON.stringify(toV)})`) &&
      e.message.includes(`"encoder.conv_in.weight" has shape [${c0},${inCh + 1},3,3] but config.json needs [${c0},${inCh},3,3]`),
  );
  params.dispose();
  // Without the mid-block attention and quant convs the same architecture needs fewer weights.
  const slim = AutoencoderKL.expectedParamShapes({ ...config, mid_block_add_attention: false, use_quant_conv: false, use_post_quant_conv: false });
  assert.ok(![...slim.keys()].some((k) => /attentions|quant_conv/.test(k)));
});

test('unsupported config values are refused naming the key', () => {
  const config = vaeConfig();
  const refuse = (patch: Record<string, unknown>, key: RegExp) => assert.throws(() => normalizeVaeConfig({ ...config, ...patch }), key);
  refuse({ down_block_types: ['DownEncoderBlock2D', 'AttnDownEncoderBlock2D'] }, /down_block_types.*AttnDownEncoderBlock2D/);
  refuse({ up_block_types: ['UpDecoderBlock2D'] }, /up_block_types/);
  refuse({ act_fn: 'relu' }, /act_fn/);
  refuse({ scaling_factor: null }, /scaling_factor/);
});
