// GroupNorm (+SiLU): our fused kernels against stock tfjs on the cpu backend, forward and input gradient.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { tfjsOps } from '../../src/core/engine/ops.js';
import { webgpuOps } from '../../src/core/engine/webgpu/ops.js';
import { webgpuOrSkip, randoms, onCpu, onGpu, errors } from './setup.js';

const skip = await webgpuOrSkip();

// Forward: each output is (x − mean)·rstd·γ + β with mean and variance summed over a group of up to
// ~2·10³ elements in a different order than tfjs' moments: f32 rounding gives ~1e-6 relative; 2e-5
// absolute on outputs of magnitude ≤ ~5 leaves margin. The input gradient subtracts two group means
// from dx̂ (cancellation): 5e-5.
const cases = [
  { B: 2, H: 5, W: 7, C: 12, G: 4, silu: true, mean: 3 },
  { B: 1, H: 9, W: 9, C: 8, G: 2, silu: false, mean: 0 },
  { B: 1, H: 1, W: 1, C: 6, G: 3, silu: true, mean: 0 },
  { B: 2, H: 8, W: 8, C: 10, G: 5, silu: true, mean: -2 },   // 10 channels: scalar (not vec4) path
  { B: 1, H: 40, W: 3, C: 64, G: 32, silu: false, mean: 1 },  // more than one 32-pixel chunk
];

for (const c of cases) {
  test(`groupNorm ${JSON.stringify(c)}`, { skip }, async () => {
    const n = c.B * c.H * c.W * c.C;
    const xs = randoms(n, 11).map((v) => v * 2 + c.mean);
    const gs = randoms(c.C, 12).map((v) => 1 + 0.5 * v);
    const bs = randoms(c.C, 13, 0.3);
    const dys = randoms(n, 14);
    const run = (ops: typeof tfjsOps) => () => {
      const x = tf.tensor4d(xs, [c.B, c.H, c.W, c.C]);
      const gamma = tf.tensor1d(gs);
      const beta = tf.tensor1d(bs);
      const f = (xx: tf.Tensor) => ops.groupNorm(xx as tf.Tensor4D, c.G, gamma, beta, 1e-5, c.silu);
      const y = f(x);
      const dx = tf.grad(f)(x, tf.tensor4d(dys, y.shape));
      return [y, dx];
    };
    const [ref, refDx] = await onCpu(run(tfjsOps));
    const [got, gotDx] = await onGpu(run(webgpuOps));
    const e = errors(got, ref);
    const ed = errors(gotDx, refDx);
    if (process.env.LORA_STUDIO_REPORT) console.log(`groupNorm ${JSON.stringify(c)}: fwd ${e.err.toExponential(2)} (|ref| ${e.scale.toFixed(2)}), dx ${ed.err.toExponential(2)} (|ref| ${ed.scale.toFixed(2)})`);
    assert.ok(e.err <= 2e-5, `forward: max abs error ${e.err}`);
    assert.ok(ed.err <= 5e-5, `input gradient: max abs error ${ed.err}`);
  });
}
