// diffusers' models/autoencoders/vae.py Encoder and Decoder (the "group" norm type of Stable Diffusion's
// AutoencoderKL). NHWC activations. Norms inside use eps 1e-6, fixed by diffusers.
import * as tf from '@tensorflow/tfjs';
import { Conv2d, GroupNorm, type ModuleScope } from './layers.js';
import { DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D } from './unet_2d_blocks.js';

const EPS = 1e-6;

export interface EncoderDecoderOptions {
  inChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  normNumGroups: number;
  midBlockAddAttention: boolean;
}

/** conv_in → DownEncoderBlock2D… → mid_block → conv_norm_out+SiLU → conv_out (2·outChannels: mean and logvar). */
export class Encoder {
  readonly conv_in: Conv2d;
  readonly down_blocks: DownEncoderBlock2D[];
  readonly mid_block: UNetMidBlock2D;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(scope: ModuleScope, o: EncoderDecoderOptions) {
    const ch = o.blockOutChannels;
    const last = ch[ch.length - 1];
    this.conv_in = new Conv2d(scope.child('conv_in'), o.inChannels, ch[0], 3, 1, 1);
    this.down_blocks = ch.map(
      (out, i) =>
        new DownEncoderBlock2D(scope.child('down_blocks').child(i), {
          numLayers: o.layersPerBlock,
          inChannels: i === 0 ? ch[0] : ch[i - 1],
          outChannels: out,
          resnetEps: EPS,
          resnetGroups: o.normNumGroups,
          addDownsample: i < ch.length - 1,
          // The encoder pads its stride-2 convs asymmetrically (right/bottom), diffusers' padding=0.
          downsamplePadding: 0,
        }),
    );
    this.mid_block = new UNetMidBlock2D(scope.child('mid_block'), midOptions(o));
    this.conv_norm_out = new GroupNorm(scope.child('conv_norm_out'), o.normNumGroups, last, EPS);
    this.conv_out = new Conv2d(scope.child('conv_out'), last, 2 * o.outChannels, 3, 1, 1);
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.conv_in.forward(x);
      for (const block of this.down_blocks) h = block.forward(h);
      h = this.mid_block.forward(h);
      return this.conv_out.forward(this.conv_norm_out.forward(h, true));
    });
  }
}

/** conv_in → mid_block → UpDecoderBlock2D… → conv_norm_out+SiLU → conv_out. */
export class Decoder {
  readonly conv_in: Conv2d;
  readonly mid_block: UNetMidBlock2D;
  readonly up_blocks: UpDecoderBlock2D[];
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(scope: ModuleScope, o: EncoderDecoderOptions) {
    const rev = [...o.blockOutChannels].reverse();
    this.conv_in = new Conv2d(scope.child('conv_in'), o.inChannels, rev[0], 3, 1, 1);
    this.mid_block = new UNetMidBlock2D(scope.child('mid_block'), midOptions(o));
    this.up_blocks = rev.map(
      (out, i) =>
        new UpDecoderBlock2D(scope.child('up_blocks').child(i), {
          numLayers: o.layersPerBlock + 1,
          inChannels: i === 0 ? rev[0] : rev[i - 1],
          outChannels: out,
          resnetEps: EPS,
          resnetGroups: o.normNumGroups,
          addUpsample: i < rev.length - 1,
        }),
    );
    this.conv_norm_out = new GroupNorm(scope.child('conv_norm_out'), o.normNumGroups, o.blockOutChannels[0], EPS);
    this.conv_out = new Conv2d(scope.child('conv_out'), o.blockOutChannels[0], o.outChannels, 3, 1, 1);
  }

  forward(z: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.mid_block.forward(this.conv_in.forward(z));
      for (const block of this.up_blocks) h = block.forward(h);
      return this.conv_out.forward(this.conv_norm_out.forward(h, true));
    });
  }
}

function midOptions(o: EncoderDecoderOptions) {
  const channels = o.blockOutChannels[o.blockOutChannels.length - 1];
  return {
    inChannels: channels,
    tembChannels: null,
    resnetEps: EPS,
    resnetGroups: o.normNumGroups,
    numLayers: 1,
    addAttention: o.midBlockAddAttention,
    // attention_head_dim = channels: a single head over all channels.
    attentionHeadDim: channels,
    outputScaleFactor: 1,
  };
}
