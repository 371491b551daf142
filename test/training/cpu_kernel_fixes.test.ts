import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { installCpuKernelFixes } from '../../src/core/engine/cpu_kernel_fixes.js';

test('cpu: the gradient of nearest 2× upsampling sums each 2×2 block, for every batch item', async () => {
  await tf.setBackend('cpu');
  installCpuKernelFixes();
  for (const [b, h, c] of [[1, 2, 1], [2, 2, 1], [3, 4, 5]]) {
    const x = tf.ones([b, h, h, c]);
    const r = tf.randomUniform([b, 2 * h, 2 * h, c], 0, 1, 'float32', 3);
    const g = tf.grad((t: tf.Tensor) => tf.image.resizeNearestNeighbor(t as tf.Tensor4D, [2 * h, 2 * h]).mul(r).sum())(x);
    const ref = tf.avgPool(r as tf.Tensor4D, 2, 2, 'valid').mul(4);
    const err = (await tf.max(tf.abs(g.sub(ref))).data())[0];
    // Sums of four values in [0, 1): float32 rounding only.
    assert.ok(err < 1e-6, `batch ${b}: max error ${err}`);
  }
  // Non-integer scale (3 → 7) with align_corners: compare with the forward pass's own index rule.
  const x = tf.tensor4d(Array.from({ length: 2 * 9 }, (_, i) => i), [2, 3, 3, 1]);
  for (const align of [false, true]) {
    const r = tf.randomUniform([2, 7, 7, 1], 0, 1, 'float32', 5);
    const g = await tf.grad((t: tf.Tensor) => tf.image.resizeNearestNeighbor(t as tf.Tensor4D, [7, 7], align).mul(r).sum())(x).data();
    // d/dx_i of Σ r·up(x) = Σ r over the outputs whose forward value came from x_i.
    const up = await tf.image.resizeNearestNeighbor(x, [7, 7], align).data();
    const rv = await r.data();
    const expect = new Float32Array(18);
    up.forEach((v, i) => (expect[v] += rv[i]));
    g.forEach((v, i) => assert.ok(Math.abs(v - expect[i]) < 1e-5, `align ${align} element ${i}: ${v} vs ${expect[i]}`));
  }
});
