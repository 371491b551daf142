// Ops arranged for tfjs-wasm's fast paths. Its BatchMatMul reaches XNNPACK only for an untransposed
// product of batch 1 and otherwise runs a naive loop (batch_mat_mul_impl.cc): measured on this machine
// (one thread, CPU time), [256,128]·[128,128] takes 1.2 ms untransposed and 9.6 ms with transposeB;
// [256,1024]·[1024,128] 7 ms and 72 ms. tfjs' own matMul gradient multiplies with transpose flags, so
// every product here — forward and backward — is an untransposed 2-D product (`matMul2d`), with explicit
// transposed copies: made once per frozen weight, in the graph for trainable ones (LoRA).
//
// Attention: small heads (tiny-shapes: 64 tokens × 16 dims) run batched over all heads — one naive
// batched product costs less than 32 XNNPACK calls and their slices; large heads (SD 1.5: 4096 tokens)
// run head by head through XNNPACK, which also keeps one head's T×T scores in memory at a time.
import * as tf from '@tensorflow/tfjs';
import { tfjsOps, type Ops } from './ops.js';

/** [in, out] copies of frozen [out, in] weights, freed once their weight is disposed and collected. */
const transposed = new WeakMap<tf.Tensor, tf.Tensor2D>();
const freeCopy = new FinalizationRegistry<tf.Tensor>((copy) => copy.dispose());

/** The transpose of a frozen 2-D tensor, made once. */
function frozenT(weight: tf.Tensor2D): tf.Tensor2D {
  let t = transposed.get(weight);
  if (!t || t.isDisposed) {
    t = tf.keep(tf.tidy(() => weight.transpose()));
    transposed.set(weight, t);
    freeCopy.register(weight, t);
  }
  return t;
}

/** a · b (2-D, untransposed) with gradients that are untransposed products too: dA = dY·bᵀ, dB = aᵀ·dY. */
const matMul2d = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [a, b, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: tf.matMul(a, b),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sa, sb] = saved as tf.Tensor2D[];
      return [tf.matMul(dy as tf.Tensor2D, sb.transpose()), tf.matMul(sa.transpose(), dy as tf.Tensor2D)];
    },
  };
}) as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/**
 * x [N, in] · wᵀ for a frozen weight w [out, in]: the forward multiplies by the cached [in, out] copy,
 * the input gradient dY·w by w itself; no gradient is made for w (frozen weights are constants).
 */
function frozenLinear(x: tf.Tensor2D, weight: tf.Tensor2D): tf.Tensor2D {
  const wt = frozenT(weight);
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: tf.matMul(args[0] as tf.Tensor2D, wt),
    gradFunc: (dy: tf.Tensor) => tf.matMul(dy as tf.Tensor2D, weight),
  }));
  return f(x) as tf.Tensor2D;
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

/**
 * Whether `t` was computed on the gradient tape now being recorded (a LoRA weight reshaped into a conv
 * kernel, say): such a weight needs its own gradient, so it must not take the frozen-weight paths.
 * The tape's new nodes are scanned once each (their output ids kept), so the check is amortised O(1).
 */
let scannedTape: unknown[] | undefined;
let scannedUpTo = 0;
const tapeOutputs = new Set<number>();
function onGradientTape(t: tf.Tensor): boolean {
  const tape = (tf.engine() as unknown as { state: { activeTape?: { outputs: tf.Tensor[] }[] } }).state.activeTape;
  if (!tape) return false;
  if (tape !== scannedTape) {
    scannedTape = tape;
    scannedUpTo = 0;
    tapeOutputs.clear();
  }
  for (; scannedUpTo < tape.length; scannedUpTo++) for (const o of tape[scannedUpTo].outputs) tapeOutputs.add(o.id);
  return tapeOutputs.has(t.id);
}

/** Heads at least this large (Tq·Tk·D multiply-adds) run one by one through XNNPACK; smaller ones batched. */
const HEAD_BY_HEAD_MACS = 1 << 20;

export const wasmOps: Ops = {
  ...tfjsOps,

  // tfjs-wasm's Conv2DBackpropInput is a naive loop: 1.16 s of a 1.6 s tiny-shapes training step, nine
  // times the forward conv. For stride 1 the input gradient is itself a forward convolution of dy
  // (padded by k−1−p) with the flipped filter, which runs through XNNPACK. Conv weights are frozen, so
  // the only gradient needed is the input's. A 1×1 convolution is a frozen linear layer.
  conv2d(x, weight, bias, stride, padding) {
    const k = weight.shape[0];
    if (weight instanceof tf.Variable || stride !== 1 || weight.shape[1] !== k || onGradientTape(weight)) return tfjsOps.conv2d(x, weight, bias, stride, padding);
    if (k === 1 && padding === 0) {
      return tf.tidy(() => {
        const [b, h, w, c] = x.shape;
        const out = weight.shape[3];
        // HWIO [1,1,in,out] → [out, in] once (frozenT caches it against the conv weight's reshape below).
        const y = frozenLinear(x.reshape([b * h * w, c]), frozenT(frozenReshape2d(weight)));
        return (bias ? y.add(bias) : y).reshape([b, h, w, out]) as tf.Tensor4D;
      });
    }
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
      const x2 = x.reshape([-1, inDim]) as tf.Tensor2D;
      let y: tf.Tensor2D = weight instanceof tf.Variable || onGradientTape(weight) ? matMul2d(x2, weight.transpose()) : frozenLinear(x2, weight);
      if (bias) y = y.add(bias);
      for (const a of adapters ?? []) {
        if (a.scale === 0) continue;
        // Adapters being trained are tensors of the tape (not Variables); loaded ones are frozen either way.
        const h = matMul2d(x2, a.down.transpose());
        y = y.add(matMul2d(h, a.up.transpose()).mul(a.scale));
      }
      return y.reshape([...x.shape.slice(0, -1), weight.shape[0]]);
    });
  },

  attention(q, k, v, heads, causal = false) {
    const [b, tq, hd] = q.shape;
    const tk = k.shape[1];
    const d = hd / heads;
    if (tq * tk * d < HEAD_BY_HEAD_MACS) return tfjsOps.attention(q, k, v, heads, causal);
    return tf.tidy(() => {
      const mask = causal ? tf.sub(1, tf.linalg.bandPart(tf.ones([tq, tk]), -1, 0)).mul(-1e9) : undefined;
      const rows: tf.Tensor[] = [];
      for (let i = 0; i < b; i++) {
        const cols: tf.Tensor[] = [];
        for (let h = 0; h < heads; h++) {
          const cut = (t: tf.Tensor3D, n: number) => t.slice([i, 0, h * d], [1, n, d]).reshape([n, d]) as tf.Tensor2D;
          let scores = matMul2d(cut(q, tq), cut(k, tk).transpose()).mul(1 / Math.sqrt(d));
          if (mask) scores = scores.add(mask);
          cols.push(matMul2d(tf.softmax(scores) as tf.Tensor2D, cut(v, tk)));
        }
        rows.push(tf.concat(cols, 1).expandDims(0));
      }
      return tf.concat(rows, 0) as tf.Tensor3D;
    });
  },
};

/** A frozen HWIO [1, 1, in, out] filter as its [in, out] matrix, made once. */
const reshaped = new WeakMap<tf.Tensor, tf.Tensor2D>();
function frozenReshape2d(weight: tf.Tensor4D): tf.Tensor2D {
  let t = reshaped.get(weight);
  if (!t || t.isDisposed) {
    t = tf.keep(weight.reshape([weight.shape[2], weight.shape[3]]) as tf.Tensor2D);
    reshaped.set(weight, t);
    freeCopy.register(weight, t);
  }
  return t;
}
