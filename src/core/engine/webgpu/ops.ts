// `Ops` on the project's WGSL kernels: what the models call when the backend is webgpu.
// Anything a kernel does not cover falls back to the stock implementation (tfjsOps).
import * as tf from '@tensorflow/tfjs';
import { setOps, tfjsOps, type LoraAdapter, type Ops } from '../ops.js';
import { conv2d, linearOp, registerMatmulKernels } from './matmul.js';
import { groupNorm, registerGroupNormKernels } from './group_norm.js';
import { attention, registerAttentionKernels } from './attention.js';

function lowRank(adapters: readonly LoraAdapter[] | undefined, x2: tf.Tensor2D): { h?: tf.Tensor2D; u?: tf.Tensor2D } {
  const active = (adapters ?? []).filter((a) => a.scale !== 0);
  if (active.length === 0) return {};
  // Several adapters stack into one low-rank term: h = x·[A1;A2]ᵀ, u = [s1·B1, s2·B2].
  const down = active.length === 1 ? active[0].down : tf.concat(active.map((a) => a.down), 0);
  const up = active.length === 1 ? active[0].up.mul(active[0].scale) : tf.concat(active.map((a) => a.up.mul(a.scale)), 1);
  return { h: tf.matMul(x2, down, false, true), u: up as tf.Tensor2D };
}

export const webgpuOps: Ops = {
  linear(x, weight, bias, adapters) {
    return tf.tidy(() => {
      const inDim = x.shape[x.rank - 1];
      const x2 = x.reshape([-1, inDim]) as tf.Tensor2D;
      const { h, u } = lowRank(adapters, x2);
      const y = linearOp(x2, weight, bias, h, u);
      return y.reshape([...x.shape.slice(0, -1), weight.shape[0]]);
    });
  },

  conv2d(x, weight, bias, stride, padding) {
    return conv2d(x, weight, bias, stride, padding);
  },

  groupNorm(x, groups, gamma, beta, eps, silu) {
    return groupNorm(x, groups, gamma, beta, eps, silu);
  },

  // LayerNorm runs on [tokens, channels] rows that stock kernels already handle at bandwidth; not ours yet.
  layerNorm: (...a) => tfjsOps.layerNorm(...a),

  attention(q, k, v, heads, causal = false) {
    return attention(q, k, v, heads, causal);
  },
};

let installed = false;
/** Registers the kernels and makes ops() return webgpuOps. Call once the webgpu backend is active. */
export function installWebgpuKernels(): void {
  if (tf.getBackend() !== 'webgpu') throw new Error(`installWebgpuKernels: the active backend is ${tf.getBackend()}, not webgpu`);
  if (!installed) {
    registerMatmulKernels();
    registerGroupNormKernels();
    registerAttentionKernels();
    installed = true;
  }
  setOps(webgpuOps);
}

/** Back to the stock kernels (the benchmark compares both). */
export function uninstallWebgpuKernels(): void {
  setOps(tfjsOps);
}
