// The model-level LoRA hooks (models/layers.ts): LoCon on Conv2d, LoRA on Linear, DoRA on both, each
// checked against the merged weight it stands for — what every tool that bakes a LoRA in computes:
//   LoRA:  W' = W + s·up·down                                   (kohya networks/lora.py LoRAModule.merge_to)
//   DoRA:  W' = m ⊙ (W + s·up·down) / ‖W + s·up·down‖_row       (peft/tuners/lora/dora.py, DoRA paper eq. 5)
// with the conv kernel's rows in PyTorch's (in, kh, kw) order. Tolerance 1e-5: f32 sums of ≤ 72 terms of O(1).
import { test } from 'node:test';

import * as tf from '@tensorflow/tfjs';
import { CheckedParams, Conv2d, Linear, ModuleScope } from '../../src/core/models/layers.js';
import { Params } from '../../src/core/models/params.js';
import { ops, type LoraAdapter } from '../../src/core/engine/ops.js';
import { assertClose, useTestBackend } from '../helpers/fixtures.js';

const rand = (shape: number[], seed: number) => tf.randomUniform(shape, -1, 1, 'float32', seed);

function buildConv(k: number, stride: number, padding: number, inC = 3, outC = 5) {
  const w = rand([k, k, inC, outC], 1); // HWIO, as Params stores convs
  const b = rand([outC], 2);
  const layer = new Conv2d(new ModuleScope(new CheckedParams(new Params(new Map<string, tf.Tensor>([['c.weight', w], ['c.bias', b]]), 'test'), 'test'), '').child('c'), inC, outC, k, stride, padding);
  return { layer, w, b };
}

/** W [out, in·k·k] (PyTorch order) from HWIO. */
const rowsOf = (hwio: tf.Tensor4D) => hwio.transpose([3, 2, 0, 1]).reshape([hwio.shape[3], -1]) as tf.Tensor2D;
const hwioOf = (rows: tf.Tensor2D, k: number, inC: number) => rows.reshape([rows.shape[0], inC, k, k]).transpose([2, 3, 1, 0]) as tf.Tensor4D;

test('Conv2d: a 3×3 LoCon adapter (down a 3×3 conv, up 1×1) equals the merged kernel W + s·up·down', async () => {
  await useTestBackend();
  for (const [stride, padding] of [
    [1, 1],
    [2, 1],
  ]) {
    const { layer, w, b } = buildConv(3, stride, padding);
    const a: LoraAdapter = { down: rand([2, 3 * 9], 3) as tf.Tensor2D, up: rand([5, 2], 4) as tf.Tensor2D, scale: 0.5 };
    const x = rand([2, 7, 7, 3], 5) as tf.Tensor4D;
    const merged = hwioOf(rowsOf(w as tf.Tensor4D).add(tf.matMul(a.up, a.down).mul(0.5)) as tf.Tensor2D, 3, 3);
    const want = ops().conv2d(x, merged, b as tf.Tensor1D, stride, padding);
    await assertClose(layer.forward(x, (p) => (p === 'c' ? [a] : [])), want, 1e-5, `3×3 LoCon stride ${stride}`);
    // Another path's adapters are not applied.
    await assertClose(layer.forward(x, (p) => (p === 'other' ? [a] : [])), ops().conv2d(x, w as tf.Tensor4D, b as tf.Tensor1D, stride, padding), 0, 'not my path');
  }
});

test('Conv2d: DoRA (magnitude per output channel) equals m ⊙ merged / ‖merged‖ over (in, kh, kw)', async () => {
  await useTestBackend();
  const { layer, w, b } = buildConv(3, 1, 1);
  const mag = rand([5], 6).abs().add(0.5) as tf.Tensor1D;
  const a: LoraAdapter = { down: rand([2, 27], 7) as tf.Tensor2D, up: rand([5, 2], 8) as tf.Tensor2D, scale: 0.7, magnitude: mag };
  const x = rand([1, 6, 6, 3], 9) as tf.Tensor4D;
  const merged = rowsOf(w as tf.Tensor4D).add(tf.matMul(a.up, a.down).mul(0.7)) as tf.Tensor2D;
  const dora = merged.mul(mag.div(merged.square().sum(1).sqrt()).reshape([5, 1])) as tf.Tensor2D;
  const want = ops().conv2d(x, hwioOf(dora, 3, 3), b as tf.Tensor1D, 1, 1);
  await assertClose(layer.forward(x, () => [a]), want, 1e-5, 'conv DoRA');
});

test('Linear: DoRA plus a plain LoRA on the same layer, as PEFT sums adapters', async () => {
  await useTestBackend();
  const w = rand([4, 6], 10) as tf.Tensor2D;
  const bias = rand([4], 11) as tf.Tensor1D;
  const layer = new Linear(new ModuleScope(new CheckedParams(new Params(new Map<string, tf.Tensor>([['l.weight', w], ['l.bias', bias]]), 'test'), 'test'), '').child('l'), 6, 4);
  const mag = rand([4], 12).abs().add(0.5) as tf.Tensor1D;
  const dora: LoraAdapter = { down: rand([3, 6], 13) as tf.Tensor2D, up: rand([4, 3], 14) as tf.Tensor2D, scale: 1.5, magnitude: mag };
  const plain: LoraAdapter = { down: rand([2, 6], 15) as tf.Tensor2D, up: rand([4, 2], 16) as tf.Tensor2D, scale: 0.25 };
  const x = rand([2, 3, 6], 17);
  const merged = w.add(tf.matMul(dora.up, dora.down).mul(1.5));
  const doraW = merged.mul(mag.div(merged.square().sum(1).sqrt()).reshape([4, 1]));
  // PEFT: base + dora term + plain term, i.e. the DoRA weight plus the plain adapter's delta.
  const want = ops().linear(x, doraW.add(tf.matMul(plain.up, plain.down).mul(0.25)) as tf.Tensor2D, bias);
  await assertClose(layer.forward(x, () => [dora, plain]), want, 1e-5, 'linear DoRA + LoRA');
});

test("DoRA's weight norm is detached from the gradient (PEFT: weight_norm.detach())", async () => {
  await useTestBackend();
  const w = rand([3, 4], 20) as tf.Tensor2D;
  const layer = new Linear(new ModuleScope(new CheckedParams(new Params(new Map<string, tf.Tensor>([['l.weight', w]]), 'test'), 'test'), '').child('l'), 4, 3, false);
  const x = rand([5, 4], 21);
  const down = rand([2, 4], 22) as tf.Tensor2D;
  const mag = rand([3], 23).abs().add(0.5) as tf.Tensor1D;
  const up0 = rand([3, 2], 24) as tf.Tensor2D;
  const gotGrad = tf.grad((up: tf.Tensor) => layer.forward(x, () => [{ down, up: up as tf.Tensor2D, scale: 1, magnitude: mag }]).sum())(up0);
  // With the norm n held constant: y = (m/n) ⊙ (W x + up·down·x) ⇒ ∂Σy/∂up = (m/n) ⊗ Σ_rows(down·x).
  const merged = w.add(tf.matMul(up0, down));
  const g = mag.div(merged.square().sum(1).sqrt());
  const want = g.reshape([3, 1]).mul(tf.matMul(x, down, false, true).sum(0).reshape([1, 2]));
  await assertClose(gotGrad, want, 1e-5, 'grad wrt up with detached norm');
});
