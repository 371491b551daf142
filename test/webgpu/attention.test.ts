// Fused (flash-style) attention: forward and the gradients of q, k and v against stock tfjs on the cpu
// backend (which materialises the full score matrix and a softmax).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { tfjsOps } from '../../src/core/engine/ops.js';
import { webgpuOps } from '../../src/core/engine/webgpu/ops.js';
import { setAttentionSubgroups } from '../../src/core/engine/webgpu/attention.js';
import { webgpuOrSkip, randoms, onCpu, onGpu, errors } from './setup.js';

const skip = await webgpuOrSkip();

// Tolerances: outputs are convex combinations of v (|v| ≤ 1) with weights from an online softmax whose
// running max is rescaled per key block: f32 rounding ~1e-7 per term, over ≤ 200 keys: 1e-5 absolute.
// The gradients sum Tq or Tk products of magnitude ≤ ~1 in a different order (and dS = P∘(dP − Δ)
// subtracts nearly equal numbers): 5e-5 absolute.
const FWD_ATOL = 1e-5;
const GRAD_ATOL = 5e-5;

// Each case is four pipelines for lavapipe to JIT (5–10 s of CPU each without Mesa's shader cache): few
// cases, each covering several edges, one per head dim SD uses. The subgroup softmax (forward only) is
// checked on the first case, the one-thread-per-row softmax on all.
const cases = [
  { B: 1, H: 2, Tq: 70, Tk: 77, D: 40, causal: false },      // SD1.5 head dim; cross-attention to 77 text tokens, 2 query blocks
  { B: 2, H: 3, Tq: 77, Tk: 77, D: 64, causal: true },       // CLIP-like causal self-attention, odd token count, batch 2
  { B: 1, H: 2, Tq: 65, Tk: 19, D: 80, causal: false },      // fewer keys than one key block
  { B: 1, H: 1, Tq: 1, Tk: 130, D: 160, causal: false },     // one query, 5 key blocks (the last partial)
];

for (const [n, c] of cases.entries()) {
  for (const subgroups of n === 0 ? [true, false] : [false]) {
    test(`attention ${JSON.stringify(c)} subgroups=${subgroups}`, { skip }, async () => {
      setAttentionSubgroups(subgroups);
      const HD = c.H * c.D;
      // q scaled up so softmax is peaked (exercises the running-max rescaling), v ≤ 1.
      const qs = randoms(c.B * c.Tq * HD, 21, 2);
      const ks = randoms(c.B * c.Tk * HD, 22, 2);
      const vs = randoms(c.B * c.Tk * HD, 23);
      const dys = randoms(c.B * c.Tq * HD, 24);
      const run = (ops: typeof tfjsOps) => () => {
        const q = tf.tensor3d(qs, [c.B, c.Tq, HD]);
        const k = tf.tensor3d(ks, [c.B, c.Tk, HD]);
        const v = tf.tensor3d(vs, [c.B, c.Tk, HD]);
        const f = (a: tf.Tensor3D, b: tf.Tensor3D, d: tf.Tensor3D) => ops.attention(a, b, d, c.H, c.causal);
        const y = f(q, k, v);
        const grads = tf.grads(f as (...t: tf.Tensor[]) => tf.Tensor)([q, k, v], tf.tensor3d(dys, y.shape));
        return [y, ...grads];
      };
      const ref = await onCpu(run(tfjsOps));
      const got = await onGpu(run(webgpuOps));
      const names = ['out', 'dq', 'dk', 'dv'];
      for (let i = 0; i < 4; i++) {
        const e = errors(got[i], ref[i]);
        if (process.env.LORA_STUDIO_REPORT) console.log(`attention ${JSON.stringify(c)} sg=${subgroups} ${names[i]}: ${e.err.toExponential(2)} (|ref| ${e.scale.toFixed(2)})`);
        assert.ok(e.err <= (i === 0 ? FWD_ATOL : GRAD_ATOL), `${names[i]}: max abs error ${e.err}`);
      }
      setAttentionSubgroups('auto');
    });
  }
}
