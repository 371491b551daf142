// Ops arranged for tfjs-wasm's fast paths. Its BatchMatMul reaches XNNPACK only for an untransposed
// product of batch 1 and otherwise runs a naive loop (batch_mat_mul_impl.cc): a 4096×320 · 320×1280
// product takes 5.5 s that way and 0.33 s through XNNPACK. So linear multiplies by a transposed copy of
// the frozen weight (made once per weight), and attention runs head by head with 2-D products, which
// also keeps one head's T×T scores in memory at a time instead of all heads'.
import * as tf from '@tensorflow/tfjs';
import { tfjsOps, type Ops } from './ops.js';

/** [in, out] copies of frozen [out, in] weights, freed once their weight is disposed and collected. */
const transposed = new WeakMap<tf.Tensor, tf.Tensor2D>();
const freeCopy = new FinalizationRegistry<tf.Tensor>((copy) => copy.dispose());

function weightT(weight: tf.Tensor2D): tf.Tensor2D {
  // Trainable tensors (LoRA) change every step: transpose them inside the graph, never cache.
  if (weight instanceof tf.Variable) return weight.transpose();
  let t = transposed.get(weight);
  if (!t || t.isDisposed) {
    t = tf.keep(tf.tidy(() => weight.transpose()));
    transposed.set(weight, t);
    freeCopy.register(weight, t);
  }
  return t;
}

/** Rotated-180°, in/out-swapped copies of frozen HWIO conv filters: the filter of the input gradient. */
const flipped = new WeakMap<tf.Tensor, tf.Tensor4D>();

function flippedFilter(weight: tf.Tensor4D): tf.Tensor4D {
  let t = flipped.get(weight);
  if (!t || t.isDisposed) {
    t = tf.keep(tf.tidy(() => tf.reverse(weight, [0, 1]).transpose<tf.Tensor4D>([0, 1, 3, 2])));
    flipped.set(weight, t);
    freeCopy.register(weight, t);
  }
  return t;
}

export const wasmOps: Ops = {
  ...tfjsOps,

  // tfjs-wasm's Conv2DBackpropInput is a naive loop: 1.16 s of a 1.6 s tiny-shapes training step, nine
  // times the forward conv. For stride 1 the input gradient is itself a forward convolution of dy
  // (padded by k−1−p) with the flipped filter, which runs through XNNPACK. Conv weights are frozen, so
  // the only gradient needed is the input's.
  conv2d(x, weight, bias, stride, padding) {
    const k = weight.shape[0];
    if (stride !== 1 || k === 1 || weight.shape[1] !== k || weight instanceof tf.Variable) return tfjsOps.conv2d(x, weight, bias, stride, padding);
    const conv = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const input = args[0] as tf.Tensor4D;
      const padded = padding > 0 ? tf.pad(input, [[0, 0], [padding, padding], [padding, padding], [0, 0]]) : input;
      const value = tf.conv2d(padded, weight, 1, 'valid');
      const gradFunc = (dy: tf.Tensor) => {
        const q = k - 1 - padding;
        const dyPadded = q > 0 ? tf.pad(dy as tf.Tensor4D, [[0, 0], [q, q], [q, q], [0, 0]]) : (dy as tf.Tensor4D);
        return tf.conv2d(dyPadded, flippedFilter(weight), 1, 'valid');
      };
      return { value, gradFunc };
    });
    return tf.tidy(() => {
      const y = conv(x) as tf.Tensor4D;
      return bias ? y.add(bias) : y;
    });
  },

  linear(x, weight, bias, adapters) {
    return tf.tidy(() => {
      const inDim = x.shape[x.rank - 1];
      const x2 = x.reshape([-1, inDim]);
      let y = tf.matMul(x2, weightT(weight));
      if (bias) y = y.add(bias);
      for (const a of adapters ?? []) {
        if (a.scale === 0) continue;
        y = y.add(tf.matMul(tf.matMul(x2, a.down.transpose()), a.up.transpose()).mul(a.scale));
      }
      return y.reshape([...x.shape.slice(0, -1), weight.shape[0]]);
    });
  },

  attention(q, k, v, heads, causal = false) {
    return tf.tidy(() => {
      const [b, tq, hd] = q.shape;
      const tk = k.shape[1];
      const d = hd / heads;
      const mask = causal ? tf.sub(1, tf.linalg.bandPart(tf.ones([tq, tk]), -1, 0)).mul(-1e9) : undefined;
      const rows: tf.Tensor[] = [];
      for (let i = 0; i < b; i++) {
        const cols: tf.Tensor[] = [];
        for (let h = 0; h < heads; h++) {
          const cut = (t: tf.Tensor3D, n: number) => t.slice([i, 0, h * d], [1, n, d]).reshape([n, d]) as tf.Tensor2D;
          let scores = tf.matMul(cut(q, tq), cut(k, tk).transpose()).mul(1 / Math.sqrt(d));
          if (mask) scores = scores.add(mask);
          cols.push(tf.matMul(tf.softmax(scores), cut(v, tk)));
        }
        rows.push(tf.concat(cols, 1).expandDims(0));
      }
      return tf.concat(rows, 0) as tf.Tensor3D;
    });
  },
};
