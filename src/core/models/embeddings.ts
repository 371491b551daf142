// Timestep embeddings, as diffusers' models/embeddings.py: the sinusoidal projection of the (float)
// timestep (`Timesteps` / get_timestep_embedding) and the MLP on top of it (`TimestepEmbedding`).
import * as tf from '@tensorflow/tfjs';
import { silu, type LoraLookup } from '../engine/ops.js';
import { Linear, type ModuleScope } from './layers.js';

/** 2π split in a short head (exact when multiplied by a small integer) and the rest, for range reduction. */
const TWO_PI_HEAD = 6.28125;
const TWO_PI_TAIL = 2 * Math.PI - TWO_PI_HEAD;

/**
 * Sinusoidal embeddings of float timesteps [N] → [N, dim], as get_timestep_embedding: frequencies
 * exp(-ln(maxPeriod)·i / (half - shift)), then [sin, cos] (or [cos, sin] with flipSinToCos), zero-padded
 * when dim is odd.
 */
export function timestepEmbedding(
  timesteps: tf.Tensor1D,
  dim: number,
  flipSinToCos: boolean,
  downscaleFreqShift: number,
  scale = 1,
  maxPeriod = 10000,
): tf.Tensor2D {
  return tf.tidy(() => {
    const half = Math.floor(dim / 2);
    // The frequencies are constants: computed here in float32 steps as torch does, so that the
    // argument t·f below is the same float32 product diffusers forms.
    const freqs = new Float32Array(half);
    const negLog = Math.fround(-Math.log(maxPeriod));
    const denom = Math.fround(half - downscaleFreqShift);
    for (let i = 0; i < half; i++) freqs[i] = Math.fround(Math.exp(Math.fround(Math.fround(negLog * i) / denom)));
    let arg = timesteps.toFloat().reshape([-1, 1]).mul(tf.tensor2d(freqs, [1, half]));
    if (scale !== 1) arg = arg.mul(scale);
    // Arguments reach ~1000 rad. GPU sin/cos are only accurate near [-π, π] (WGSL promises nothing
    // outside it), so reduce first: r = arg - k·2π with 2π in two parts, the first exact in k·head.
    const k = arg.div(2 * Math.PI).round();
    const r = arg.sub(k.mul(TWO_PI_HEAD)).sub(k.mul(TWO_PI_TAIL));
    const sin = tf.sin(r);
    const cos = tf.cos(r);
    let emb = flipSinToCos ? tf.concat([cos, sin], 1) : tf.concat([sin, cos], 1);
    if (dim % 2 === 1) emb = tf.pad(emb, [[0, 0], [0, 1]]);
    return emb as tf.Tensor2D;
  });
}

export type Activation = 'silu' | null;

/** Activation names diffusers' get_activation accepts that this engine implements. */
export function parseActivation(value: unknown, key: string): Activation {
  if (value === null || value === undefined) return null;
  if (value === 'silu' || value === 'swish') return 'silu';
  throw new Error(`config.json: ${key} = ${JSON.stringify(value)} is not supported (only "silu"/"swish" or null)`);
}

export const applyActivation = (x: tf.Tensor, act: Activation): tf.Tensor => (act === 'silu' ? silu(x) : x);

/** diffusers' TimestepEmbedding: linear_1 → act → linear_2 (→ post_act). */
export class TimestepEmbedding {
  readonly linear_1: Linear;
  readonly linear_2: Linear;

  constructor(
    scope: ModuleScope,
    inChannels: number,
    timeEmbedDim: number,
    readonly act: Activation = 'silu',
    readonly postAct: Activation = null,
  ) {
    this.linear_1 = new Linear(scope.child('linear_1'), inChannels, timeEmbedDim);
    this.linear_2 = new Linear(scope.child('linear_2'), timeEmbedDim, timeEmbedDim);
  }

  forward(sample: tf.Tensor2D, lora?: LoraLookup): tf.Tensor2D {
    return tf.tidy(() => {
      let h = applyActivation(this.linear_1.forward(sample, lora), this.act);
      h = this.linear_2.forward(h, lora);
      return applyActivation(h, this.postAct) as tf.Tensor2D;
    });
  }
}
