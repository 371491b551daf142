// The GEMM-backed kernels (convolution forward, convolution input-gradient as a forward convolution,
// linear with fused LoRA) against stock tfjs on the cpu backend, for every tiling the benchmark tries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { tfjsOps, type LoraAdapter } from '../../src/core/engine/ops.js';
import { webgpuOps } from '../../src/core/engine/webgpu/ops.js';
import { setGemmTile } from '../../src/core/engine/webgpu/matmul.js';
import { DEFAULT_TILE, GEMM_TILES } from '../../src/core/engine/webgpu/wgsl/gemm.js';
import { webgpuOrSkip, randoms, onCpu, onGpu, errors } from './setup.js';

const skip = await webgpuOrSkip();

// Each output is a dot product of K ≤ ~300 terms of magnitude ≤ 1 summed in another order than the
// reference: f32 rounding ~K·6e-8·|terms| — 2e-5 absolute bounds it with margin for these sizes.
const ATOL = 2e-5;

const convCases = [
  { B: 2, H: 9, W: 7, C: 5, Co: 6, k: 3, s: 1, p: 1, bias: true },     // odd sizes
  { B: 1, H: 8, W: 8, C: 4, Co: 3, k: 3, s: 2, p: 1, bias: false },    // downsampler: stride 2
  { B: 1, H: 7, W: 9, C: 3, Co: 5, k: 3, s: 2, p: 1, bias: true },     // stride 2 on odd sizes
  { B: 1, H: 5, W: 6, C: 7, Co: 9, k: 1, s: 1, p: 0, bias: true },     // 1×1 conv
  { B: 1, H: 1, W: 1, C: 3, Co: 2, k: 1, s: 1, p: 0, bias: false },    // 1×1 image, 1×1 conv
  { B: 1, H: 6, W: 6, C: 70, Co: 67, k: 3, s: 1, p: 1, bias: true },   // more than one tile of N and K
  { B: 1, H: 4, W: 5, C: 2, Co: 3, k: 3, s: 1, p: 0, bias: false },    // no padding
];

// Every shape with the default tiling; the other tilings (and vec4 workgroup tiles, the GPU layout) on
// the two shapes that exercise partial tiles and strides — each shape is a pipeline for lavapipe to JIT.
const runs = [
  { name: 'default', tile: DEFAULT_TILE, vec4: false, cases: convCases },
  { name: 'default, vec4 tiles', tile: DEFAULT_TILE, vec4: true, cases: [convCases[2], convCases[5]] },
  ...Object.entries(GEMM_TILES).filter(([, t]) => JSON.stringify(t) !== JSON.stringify(DEFAULT_TILE)).map(([name, tile]) => ({ name, tile, vec4: false, cases: [convCases[2], convCases[5]] })),
];

for (const { name: tileName, tile, vec4, cases } of runs) {
  test(`conv2d forward and input gradient, tile ${tileName}`, { skip }, async () => {
    setGemmTile(tile, vec4);
    for (const c of cases) {
      const Ho = Math.floor((c.H + 2 * c.p - c.k) / c.s) + 1;
      const Wo = Math.floor((c.W + 2 * c.p - c.k) / c.s) + 1;
      const xs = randoms(c.B * c.H * c.W * c.C, 1);
      const ws = randoms(c.k * c.k * c.C * c.Co, 2, 0.5);
      const bs = randoms(c.Co, 3);
      const dys = randoms(c.B * Ho * Wo * c.Co, 4);
      const run = (ops: typeof tfjsOps) => () => {
        const x = tf.tensor4d(xs, [c.B, c.H, c.W, c.C]);
        const w = tf.tensor4d(ws, [c.k, c.k, c.C, c.Co]);
        const b = c.bias ? tf.tensor1d(bs) : undefined;
        const f = (xx: tf.Tensor) => ops.conv2d(xx as tf.Tensor4D, w, b, c.s, c.p);
        return [f(x), tf.grad(f)(x, tf.tensor4d(dys, [c.B, Ho, Wo, c.Co]))];
      };
      const [ref, refDx] = await onCpu(run(tfjsOps));
      const [got, gotDx] = await onGpu(run(webgpuOps));
      const e = errors(got, ref);
      const ed = errors(gotDx, refDx);
      if (process.env.LORA_STUDIO_REPORT) console.log(`conv ${tileName} ${JSON.stringify(c)}: fwd ${e.err.toExponential(2)}, dx ${ed.err.toExponential(2)}`);
      assert.ok(e.err <= ATOL, `${JSON.stringify(c)} forward: max abs error ${e.err}`);
      assert.ok(ed.err <= ATOL, `${JSON.stringify(c)} input gradient: max abs error ${ed.err}`);
    }
    setGemmTile(DEFAULT_TILE, 'auto');
  });
}

const linearCases = [
  { M: 37, K: 40, N: 33, ranks: [4], bias: true },
  { M: 1, K: 3, N: 5, ranks: [1], bias: false },
  { M: 70, K: 130, N: 67, ranks: [4, 2], bias: true },   // two adapters stacked
  { M: 9, K: 16, N: 8, ranks: [], bias: true },           // no adapter: the plain linear kernel
];

for (const c of linearCases) {
  test(`linear with LoRA ${JSON.stringify(c)}`, { skip }, async () => {
    const xs = randoms(c.M * c.K, 5);
    const ws = randoms(c.N * c.K, 6, 0.3);
    const bs = randoms(c.N, 7);
    const downs = c.ranks.map((r, i) => randoms(r * c.K, 30 + i, 0.3));
    const ups = c.ranks.map((r, i) => randoms(c.N * r, 40 + i, 0.3));
    const dys = randoms(c.M * c.N, 8);
    const run = (ops: typeof tfjsOps) => () => {
      const x = tf.tensor3d(xs, [1, c.M, c.K]);
      const w = tf.tensor2d(ws, [c.N, c.K]);
      const b = c.bias ? tf.tensor1d(bs) : undefined;
      const downT = c.ranks.map((r, i) => tf.tensor2d(downs[i], [r, c.K]));
      const upT = c.ranks.map((r, i) => tf.tensor2d(ups[i], [c.N, r]));
      const f = (xx: tf.Tensor, ...ab: tf.Tensor[]) => {
        const adapters: LoraAdapter[] = c.ranks.map((_, i) => ({ down: ab[2 * i] as tf.Tensor2D, up: ab[2 * i + 1] as tf.Tensor2D, scale: 0.75 + i }));
        return ops.linear(xx, w, b, adapters);
      };
      const params = c.ranks.flatMap((_, i) => [downT[i], upT[i]]);
      const y = f(x, ...params);
      const grads = tf.grads(f)([x, ...params], tf.tensor3d(dys, [1, c.M, c.N]));
      return [y, ...grads];
    };
    const ref = await onCpu(run(tfjsOps));
    const got = await onGpu(run(webgpuOps));
    for (let i = 0; i < ref.length; i++) {
      const e = errors(got[i], ref[i]);
      const name = i === 0 ? 'y' : i === 1 ? 'dx' : i % 2 === 0 ? `dDown${(i - 2) / 2}` : `dUp${(i - 3) / 2}`;
      if (process.env.LORA_STUDIO_REPORT) console.log(`linear ${JSON.stringify(c)} ${name}: ${e.err.toExponential(2)} (|ref| ${e.scale.toFixed(2)})`);
      // dDown/dUp sum over M ≤ 70 tokens of products up to ~3: 5e-5.
      assert.ok(e.err <= (i < 2 ? ATOL : 5e-5), `${name}: max abs error ${e.err}`);
    }
  });
}
