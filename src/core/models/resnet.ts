// diffusers' models/resnet.py ResnetBlock2D and models/downsampling.py / upsampling.py Downsample2D /
// Upsample2D (the `use_conv=True` forms the UNet and the VAE use). NHWC activations.
import * as tf from '@tensorflow/tfjs';
import { silu, type LoraLookup } from '../engine/ops.js';
import { Conv2d, GroupNorm, Linear, type ModuleScope } from './layers.js';

/**
 * How the time embedding enters a ResnetBlock2D: 'default' adds it before norm2, 'scale_shift' applies
 * it as (1 + scale)·norm2(h) + shift; the VAE's blocks have no time embedding ('group' there).
 */
export type TimeEmbeddingNorm = 'default' | 'scale_shift';

export interface ResnetBlock2DOptions {
  inChannels: number;
  outChannels?: number;
  /** null: no time embedding (VAE). */
  tembChannels: number | null;
  groups: number;
  groupsOut?: number;
  eps: number;
  timeEmbeddingNorm?: TimeEmbeddingNorm;
  outputScaleFactor?: number;
}

/** norm1 → SiLU → conv1 (+ time embedding) → norm2 → SiLU → conv2, plus a (1×1 conv) shortcut. */
export class ResnetBlock2D {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly time_emb_proj?: Linear;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly conv_shortcut?: Conv2d;
  readonly timeEmbeddingNorm: TimeEmbeddingNorm;
  readonly outputScaleFactor: number;

  constructor(readonly scope: ModuleScope, o: ResnetBlock2DOptions) {
    const out = o.outChannels ?? o.inChannels;
    this.timeEmbeddingNorm = o.timeEmbeddingNorm ?? 'default';
    this.outputScaleFactor = o.outputScaleFactor ?? 1;
    this.norm1 = new GroupNorm(scope.child('norm1'), o.groups, o.inChannels, o.eps);
    this.conv1 = new Conv2d(scope.child('conv1'), o.inChannels, out, 3, 1, 1);
    if (o.tembChannels !== null) {
      const projOut = this.timeEmbeddingNorm === 'scale_shift' ? 2 * out : out;
      this.time_emb_proj = new Linear(scope.child('time_emb_proj'), o.tembChannels, projOut);
    }
    this.norm2 = new GroupNorm(scope.child('norm2'), o.groupsOut ?? o.groups, out, o.eps);
    this.conv2 = new Conv2d(scope.child('conv2'), out, out, 3, 1, 1);
    if (o.inChannels !== out) this.conv_shortcut = new Conv2d(scope.child('conv_shortcut'), o.inChannels, out, 1);
  }

  /** x [B, H, W, C]; temb [B, tembChannels] or null; `lora` for conv1, time_emb_proj, conv2, conv_shortcut. */
  forward(x: tf.Tensor4D, temb: tf.Tensor2D | null, lora?: LoraLookup): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.conv1.forward(this.norm1.forward(x, true), lora);
      let timeScaleShift: [tf.Tensor, tf.Tensor] | undefined;
      if (this.time_emb_proj && temb) {
        const t = this.time_emb_proj.forward(silu(temb), lora);
        const [b, c] = t.shape;
        if (this.timeEmbeddingNorm === 'default') {
          h = h.add(t.reshape([b, 1, 1, c]));
        } else {
          const [scale, shift] = tf.split(t.reshape([b, 1, 1, c]), 2, 3);
          timeScaleShift = [scale, shift];
        }
      }
      if (timeScaleShift) {
        const [scale, shift] = timeScaleShift;
        h = silu(this.norm2.forward(h, false).mul(scale.add(1)).add(shift)) as tf.Tensor4D;
      } else {
        h = this.norm2.forward(h, true);
      }
      h = this.conv2.forward(h, lora);
      const shortcut = this.conv_shortcut ? this.conv_shortcut.forward(x, lora) : x;
      const y = shortcut.add(h);
      return (this.outputScaleFactor === 1 ? y : y.div(this.outputScaleFactor)) as tf.Tensor4D;
    });
  }
}

/** A stride-2 3×3 conv. padding 0 means diffusers' asymmetric (0, 1, 0, 1) pad, as in the VAE encoder. */
export class Downsample2D {
  readonly conv: Conv2d;

  constructor(
    scope: ModuleScope,
    channels: number,
    outChannels: number,
    readonly padding: number,
  ) {
    this.conv = new Conv2d(scope.child('conv'), channels, outChannels, 3, 2, padding);
  }

  forward(x: tf.Tensor4D, lora?: LoraLookup): tf.Tensor4D {
    if (this.padding !== 0) return this.conv.forward(x, lora);
    return tf.tidy(() => {
      const padded = tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]);
      return this.conv.forward(padded, lora, 0);
    });
  }
}

/** Nearest-neighbour upsampling (2×, or to `outputSize` when a skip connection's size is odd), then a 3×3 conv. */
export class Upsample2D {
  readonly conv: Conv2d;

  constructor(scope: ModuleScope, channels: number, outChannels: number) {
    this.conv = new Conv2d(scope.child('conv'), channels, outChannels, 3, 1, 1);
  }

  forward(x: tf.Tensor4D, outputSize?: readonly [number, number], lora?: LoraLookup): tf.Tensor4D {
    return tf.tidy(() => {
      const [, h, w] = x.shape;
      const size: [number, number] = outputSize ? [outputSize[0], outputSize[1]] : [2 * h, 2 * w];
      // halfPixelCenters=false, alignCorners=false: source index floor(dst·in/out), as torch's 'nearest'.
      const up = tf.image.resizeNearestNeighbor(x, size, false, false);
      return this.conv.forward(up, lora);
    });
  }
}
