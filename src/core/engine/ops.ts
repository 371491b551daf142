// The hot operations of every model, behind one small interface so a backend can swap in its own
// kernels (fused attention, group norm + SiLU, LoRA linear, …) without the models changing.
// Layout: activations are NHWC (tfjs' native conv layout) or [batch, tokens, channels];
// conv weights HWIO; linear weights as stored by PyTorch, [out, in].
import * as tf from '@tensorflow/tfjs';

/**
 * A low-rank adapter on one Linear or Conv2d layer: y += scale · up(down(x)).
 *
 * On a k×k Conv2d (LoCon), `down` is the PyTorch kernel [rank, in, k, k] flattened to [rank, in·k·k]
 * and runs as a convolution with the layer's own stride and padding; `up` is the 1×1 conv [out, rank].
 * With `magnitude` it is DoRA (PEFT's `lora_magnitude_vector`, LyCORIS' `dora_scale`); the layer
 * (models/layers.ts) applies that itself, so `Ops.linear` only ever receives plain adapters.
 */
export interface LoraAdapter {
  /** [rank, in·k·k] — diffusers' `lora.down.weight` / PEFT's `lora_A.weight` (k = 1 for Linear). */
  readonly down: tf.Tensor2D;
  /** [out, rank] — diffusers' `lora.up.weight` / PEFT's `lora_B.weight`. */
  readonly up: tf.Tensor2D;
  /** Already includes alpha / rank and the user's per-LoRA scale. */
  readonly scale: number;
  /** DoRA's magnitude m [out]: W' = m ⊙ (W + scale·up·down) / ‖W + scale·up·down‖ (norm per output channel). */
  readonly magnitude?: tf.Tensor1D;
  /** Training's LoRA dropout: applied to the layer's input before `down` (and before W in DoRA's rescaled term), as peft does. */
  readonly dropInput?: (x: tf.Tensor) => tf.Tensor;
}

export interface Ops {
  /** x [..., in] · weightᵀ + bias, plus each adapter's contribution. weight is [out, in]. */
  linear(x: tf.Tensor, weight: tf.Tensor2D, bias?: tf.Tensor1D, adapters?: readonly LoraAdapter[]): tf.Tensor;
  /** NHWC conv with HWIO weights; padding is symmetric, in pixels. */
  conv2d(x: tf.Tensor4D, weight: tf.Tensor4D, bias: tf.Tensor1D | undefined, stride: number, padding: number): tf.Tensor4D;
  /** GroupNorm over NHWC channels (PyTorch semantics: biased variance, eps inside the sqrt), optionally followed by SiLU. */
  groupNorm(x: tf.Tensor4D, groups: number, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number, silu: boolean): tf.Tensor4D;
  /** LayerNorm over the last axis. */
  layerNorm(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor;
  /**
   * Multi-head scaled dot-product attention. q [B, Tq, H·D], k and v [B, Tk, H·D] → [B, Tq, H·D].
   * `causal` masks future keys (CLIP's text encoder). Scores and softmax are f32.
   */
  attention(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, heads: number, causal?: boolean): tf.Tensor3D;
}

/** The reference implementation: stock tfjs ops, differentiable on every backend. */
export const tfjsOps: Ops = {
  linear(x, weight, bias, adapters) {
    return tf.tidy(() => {
      const inDim = x.shape[x.rank - 1];
      const outDim = weight.shape[0];
      // 2-D matMul: tfjs' matMul gradient fails when batch dims broadcast.
      const x2 = x.reshape([-1, inDim]);
      let y = tf.matMul(x2, weight, false, true);
      if (bias) y = y.add(bias);
      for (const a of adapters ?? []) {
        if (a.scale === 0) continue;
        const h = tf.matMul(x2, a.down, false, true);
        y = y.add(tf.matMul(h, a.up, false, true).mul(a.scale));
      }
      return y.reshape([...x.shape.slice(0, -1), outDim]);
    });
  },

  conv2d(x, weight, bias, stride, padding) {
    return tf.tidy(() => {
      const kh = weight.shape[0];
      let y: tf.Tensor4D;
      if (kh === 1 && padding === 0 && stride === 1) {
        // 1×1 conv as a matmul: faster on every backend and its gradient needs no conv kernels.
        const [b, h, w, c] = x.shape;
        const out = weight.shape[3];
        y = tf.matMul(x.reshape([b * h * w, c]), weight.reshape([c, out])).reshape([b, h, w, out]);
      } else {
        const padded = padding > 0 ? tf.pad(x, [[0, 0], [padding, padding], [padding, padding], [0, 0]]) : x;
        y = tf.conv2d(padded, weight, stride, 'valid');
      }
      return bias ? y.add(bias) : y;
    });
  },

  groupNorm(x, groups, gamma, beta, eps, silu) {
    return tf.tidy(() => {
      const [b, h, w, c] = x.shape;
      const g = x.reshape([b, h * w, groups, c / groups]);
      const { mean, variance } = tf.moments(g, [1, 3], true);
      const normed = g.sub(mean).div(variance.add(eps).sqrt()).reshape([b, h, w, c]);
      const y = normed.mul(gamma).add(beta) as tf.Tensor4D;
      return silu ? (y.mul(tf.sigmoid(y)) as tf.Tensor4D) : y;
    });
  },

  layerNorm(x, gamma, beta, eps) {
    return tf.tidy(() => {
      const { mean, variance } = tf.moments(x, -1, true);
      return x.sub(mean).div(variance.add(eps).sqrt()).mul(gamma).add(beta);
    });
  },

  attention(q, k, v, heads, causal = false) {
    return tf.tidy(() => {
      const [b, tq, hd] = q.shape;
      const tk = k.shape[1];
      const d = hd / heads;
      const split = (t: tf.Tensor3D, n: number) => t.reshape([b, n, heads, d]).transpose([0, 2, 1, 3]).reshape([b * heads, n, d]) as tf.Tensor3D;
      const qh = split(q, tq);
      const kh = split(k, tk);
      const vh = split(v, tk);
      let scores = tf.matMul(qh, kh, false, true).mul(1 / Math.sqrt(d));
      if (causal) {
        const mask = tf.linalg.bandPart(tf.ones([tq, tk]), -1, 0);
        scores = scores.add(tf.sub(1, mask).mul(-1e9));
      }
      const probs = tf.softmax(scores);
      const out = tf.matMul(probs, vh);
      return out.reshape([b, heads, tq, d]).transpose([0, 2, 1, 3]).reshape([b, tq, hd]) as tf.Tensor3D;
    });
  },
};

let active: Ops = tfjsOps;

/** The ops the models use now. A backend with its own kernels installs them with setOps at start-up. */
export function ops(): Ops {
  return active;
}

export function setOps(o: Ops): void {
  active = o;
}

export const silu = (x: tf.Tensor): tf.Tensor => tf.tidy(() => x.mul(tf.sigmoid(x)));

/** Finds the adapters attached to a module path (e.g. `down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`). */
export type LoraLookup = (modulePath: string) => readonly LoraAdapter[];
export const noLora: LoraLookup = () => [];
