// gradient_checkpointing: the UNet with enableGradientCheckpointing() (each resnet and transformer
// recomputed in the backward pass) gives the same loss and LoRA gradients as without, on every
// LoRA-capable layer — attention projections, resnet convs and time_emb_proj, and the time embedding
// itself, whose gradient reaches it only through the checkpoints' temb input. Inference is unchanged.
// The planned step with checkpointing is checked in test/webgpu/planned_step.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { MODEL_DIR } from '../helpers/fixtures.js';
import { UNet2DConditionModel } from '../../src/core/models/unet_2d_condition.js';
import { TrainableLora, downName, upName } from '../../src/training/lora_params.js';
import { Random } from '../../src/training/random.js';
import { initBackend } from '../../src/core/engine/backend.js';

await initBackend((process.env.LORA_STUDIO_BACKEND as 'wasm' | 'cpu' | undefined) ?? 'wasm');

test('gradient checkpointing: same loss and LoRA gradients on every layer (LoCon targets), same inference output', async () => {
  const unet = UNet2DConditionModel.fromPretrained(MODEL_DIR);
  const cfg = unet.config as { in_channels: number; cross_attention_dim: number; sample_size: number };
  // Every Linear and Conv2d, with random down AND up (a zero up would make the down gradients zero).
  const targets = unet.loraLayers().map((l) => ({ path: l.scope.path, inFeatures: l.inFeatures, outFeatures: l.outFeatures, kernelSize: l.kernelSize }));
  const rng = new Random(3);
  const rank = 2;
  const init = new Map(targets.map((t) => [t.path, { down: Float32Array.from(rng.normal([rank * t.inFeatures * t.kernelSize ** 2]), (v) => 0.2 * v), up: Float32Array.from(rng.normal([t.outFeatures * rank]), (v) => 0.2 * v) }]));
  const lora = TrainableLora.fromWeights(targets, rank, rank, init);
  const names = [...lora.params.keys()];
  const s = 8;
  const sample = tf.tensor4d(rng.normal([2 * s * s * cfg.in_channels]), [2, s, s, cfg.in_channels]);
  const t = tf.tensor1d([17, 640]);
  const ehs = tf.tensor3d(rng.normal([2 * 7 * cfg.cross_attention_dim]), [2, 7, cfg.cross_attention_dim]);
  const lossAndGrads = () =>
    tf.valueAndGrads((...ps: tf.Tensor[]) => unet.forward(sample, t, ehs, lora.lookup(new Map(names.map((n, i) => [n, ps[i]])))).square().mean() as tf.Scalar)(
      names.map((n) => lora.params.get(n)!),
    );
  const plain = lossAndGrads();
  const plainOut = unet.forward(sample, t, ehs, lora.lookup());
  unet.enableGradientCheckpointing();
  const ckpt = lossAndGrads();
  const ckptOut = unet.forward(sample, t, ehs, lora.lookup());
  // Bit-identical inference (checkpointing applies only while a gradient is taken).
  assert.deepEqual(await ckptOut.data(), await plainOut.data());
  // The recomputed forward runs the same kernels on the same inputs; only the order in which the
  // backward sums the gradients of a tensor used twice (skips, residuals, temb) may differ: float32
  // rounding, bounded by 1e-6 of the largest gradient (errors seen: ≤ 1e-7 of it). Relative to the whole
  // step, not per tensor: some gradients are rounding noise themselves (time_emb_proj before a GroupNorm
  // of one channel per group, which removes a per-channel offset: its true gradient is 0).
  const lossP = (await plain.value.data())[0];
  assert.ok(Math.abs((await ckpt.value.data())[0] - lossP) <= 1e-6 * Math.abs(lossP), 'loss');
  const grads = await Promise.all(names.map(async (_, i) => ({ a: (await ckpt.grads[i].data()) as Float32Array, b: (await plain.grads[i].data()) as Float32Array })));
  const largest = Math.max(...grads.map(({ b }) => b.reduce((m, v) => Math.max(m, Math.abs(v)), 0)));
  const scaleOf = (name: string) => grads[names.indexOf(name)].b.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  grads.forEach(({ a, b }, i) => {
    let err = 0;
    for (let k = 0; k < a.length; k++) err = Math.max(err, Math.abs(a[k] - b[k]));
    assert.ok(err <= 1e-6 * largest, `${names[i]}: checkpointed gradient differs by ${err} (largest gradient ${largest})`);
  });
  // Not vacuous: gradients through the checkpoints into resnets, a cross-attention and the time embedding
  // (reached only through the checkpoints' temb input) are there, 1e-4 of the largest or more (errors are held to 1e-6 of it).
  for (const path of ['time_embedding.linear_1', 'down_blocks.0.resnets.0.conv1', 'mid_block.resnets.1.time_emb_proj', 'mid_block.attentions.0.transformer_blocks.0.attn2.to_k']) {
    for (const name of [downName(path), upName(path)]) {
      assert.ok(names.includes(name), `${name} is a target`);
      assert.ok(scaleOf(name) > 1e-4 * largest, `${name}: gradient ${scaleOf(name)} through the checkpoints`);
    }
  }
  tf.dispose([ckpt.value, ...ckpt.grads, ckptOut]);
  // A checkpointed step of a plain LoRA (attention targets) leaves no tensor behind. (With LoCon targets
  // on wasm, the recomputed forward takes the LoRA conv kernels for frozen weights and caches their
  // transposes until the garbage collector frees them: wasm_ops.ts's FinalizationRegistry.)
  const attn = TrainableLora.gaussian(unet.loraTargets(), rank, rank, new Random(4));
  const attnNames = [...attn.params.keys()];
  const attnStep = () =>
    tf.valueAndGrads((...ps: tf.Tensor[]) => unet.forward(sample, t, ehs, attn.lookup(new Map(attnNames.map((n, i) => [n, ps[i]])))).square().mean() as tf.Scalar)(
      attnNames.map((n) => attn.params.get(n)!),
    );
  const first = attnStep();
  tf.dispose([first.value, ...first.grads]);
  const before = tf.memory().numTensors;
  const again = attnStep();
  tf.dispose([again.value, ...again.grads]);
  assert.equal(tf.memory().numTensors, before, 'the checkpointed step leaks no tensors');
  attn.dispose();
  tf.dispose([plain.value, ...plain.grads, plainOut, sample, t, ehs]);
  lora.dispose();
  unet.params.dispose();
});
