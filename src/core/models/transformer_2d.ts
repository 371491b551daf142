// diffusers' Transformer2DModel for continuous (image-like) inputs (models/transformers/transformer_2d.py)
// and the BasicTransformerBlock it stacks (models/attention.py): the spatial transformer of every
// Stable Diffusion cross-attention block. With NHWC activations the image ↔ tokens reshapes need no
// transposes: [B, H, W, C] and [B, H·W, C] are the same memory.
import * as tf from '@tensorflow/tfjs';
import type { LoraLookup } from '../engine/ops.js';
import { Attention, type LoraTarget } from './attention.js';
import { Conv2d, GroupNorm, LayerNorm, Linear, type ModuleScope } from './layers.js';

/** Exact (erf) GELU, as torch.nn.functional.gelu's default. */
const gelu = (x: tf.Tensor): tf.Tensor => x.mul(tf.erf(x.mul(Math.SQRT1_2)).add(1)).mul(0.5);

/** GEGLU: proj to 2·inner, then hidden · gelu(gate), the halves taken in that order. */
export class GEGLU {
  readonly proj: Linear;

  constructor(scope: ModuleScope, dimIn: number, dimOut: number) {
    this.proj = new Linear(scope.child('proj'), dimIn, 2 * dimOut);
  }

  forward(x: tf.Tensor, lora?: LoraLookup): tf.Tensor {
    return tf.tidy(() => {
      const [hidden, gate] = tf.split(this.proj.forward(x, lora), 2, -1);
      return hidden.mul(gelu(gate));
    });
  }
}

/** FeedForward with activation_fn "geglu": net.0 (GEGLU) → dropout (net.1) → net.2 (Linear). */
export class FeedForward {
  readonly net: [GEGLU, null, Linear];

  constructor(scope: ModuleScope, dim: number, mult = 4) {
    const inner = dim * mult;
    const net = scope.child('net');
    this.net = [new GEGLU(net.child(0), dim, inner), null, new Linear(net.child(2), inner, dim)];
  }

  forward(x: tf.Tensor, lora?: LoraLookup): tf.Tensor {
    return tf.tidy(() => this.net[2].forward(this.net[0].forward(x, lora), lora));
  }
}

export interface BasicTransformerBlockOptions {
  dim: number;
  heads: number;
  dimHead: number;
  crossAttentionDim: number | null;
  /** attn1 attends to encoder_hidden_states too (no self-attention at all). */
  onlyCrossAttention: boolean;
  normEps?: number;
}

/** norm1 → attn1 (self) → norm2 → attn2 (cross) → norm3 → ff, each with a residual ("layer_norm" type). */
export class BasicTransformerBlock {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2?: LayerNorm;
  readonly attn2?: Attention;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;
  readonly onlyCrossAttention: boolean;

  constructor(scope: ModuleScope, o: BasicTransformerBlockOptions) {
    const eps = o.normEps ?? 1e-5;
    const attn = { queryDim: o.dim, heads: o.heads, dimHead: o.dimHead, bias: false };
    this.onlyCrossAttention = o.onlyCrossAttention;
    this.norm1 = new LayerNorm(scope.child('norm1'), o.dim, eps);
    this.attn1 = new Attention(scope.child('attn1'), { ...attn, crossAttentionDim: o.onlyCrossAttention ? o.crossAttentionDim : null });
    if (o.crossAttentionDim !== null) {
      this.norm2 = new LayerNorm(scope.child('norm2'), o.dim, eps);
      this.attn2 = new Attention(scope.child('attn2'), { ...attn, crossAttentionDim: o.crossAttentionDim });
    }
    this.norm3 = new LayerNorm(scope.child('norm3'), o.dim, eps);
    this.ff = new FeedForward(scope.child('ff'), o.dim);
  }

  attentions(): Attention[] {
    return this.attn2 ? [this.attn1, this.attn2] : [this.attn1];
  }

  /** hidden [B, T, dim]; encoderHiddenStates [B, S, crossAttentionDim]. */
  forward(hidden: tf.Tensor3D, encoderHiddenStates: tf.Tensor3D | undefined, lora?: LoraLookup): tf.Tensor3D {
    return tf.tidy(() => {
      const ctx1 = this.onlyCrossAttention ? encoderHiddenStates : undefined;
      let h = this.attn1.forward(this.norm1.forward(hidden) as tf.Tensor3D, ctx1, lora).add(hidden) as tf.Tensor3D;
      if (this.attn2 && this.norm2) h = this.attn2.forward(this.norm2.forward(h) as tf.Tensor3D, encoderHiddenStates, lora).add(h) as tf.Tensor3D;
      return this.ff.forward(this.norm3.forward(h), lora).add(h) as tf.Tensor3D;
    });
  }
}

export interface Transformer2DModelOptions {
  heads: number;
  dimHead: number;
  inChannels: number;
  numLayers: number;
  normNumGroups: number;
  crossAttentionDim: number | null;
  useLinearProjection: boolean;
  onlyCrossAttention: boolean;
}

/** GroupNorm → proj_in (1×1 conv or linear) → transformer_blocks → proj_out, plus the input as residual. */
export class Transformer2DModel {
  readonly norm: GroupNorm;
  readonly proj_in: Conv2d | Linear;
  readonly transformer_blocks: BasicTransformerBlock[];
  readonly proj_out: Conv2d | Linear;

  constructor(readonly scope: ModuleScope, o: Transformer2DModelOptions) {
    const inner = o.heads * o.dimHead;
    // eps 1e-6 is fixed in diffusers' _init_continuous_input, whatever the UNet's norm_eps.
    this.norm = new GroupNorm(scope.child('norm'), o.normNumGroups, o.inChannels, 1e-6);
    this.proj_in = o.useLinearProjection ? new Linear(scope.child('proj_in'), o.inChannels, inner) : new Conv2d(scope.child('proj_in'), o.inChannels, inner, 1);
    this.transformer_blocks = [];
    for (let i = 0; i < o.numLayers; i++) {
      this.transformer_blocks.push(
        new BasicTransformerBlock(scope.child('transformer_blocks').child(i), {
          dim: inner,
          heads: o.heads,
          dimHead: o.dimHead,
          crossAttentionDim: o.crossAttentionDim,
          onlyCrossAttention: o.onlyCrossAttention,
        }),
      );
    }
    this.proj_out = o.useLinearProjection ? new Linear(scope.child('proj_out'), inner, o.inChannels) : new Conv2d(scope.child('proj_out'), inner, o.inChannels, 1);
  }

  loraTargets(): LoraTarget[] {
    return this.transformer_blocks.flatMap((b) => b.attentions().flatMap((a) => a.loraTargets()));
  }

  /** x [B, H, W, C] → same shape. */
  forward(x: tf.Tensor4D, encoderHiddenStates: tf.Tensor3D | undefined, lora?: LoraLookup): tf.Tensor4D {
    return tf.tidy(() => {
      const [b, h, w] = x.shape;
      const normed = this.norm.forward(x);
      // A 1×1 conv and a linear layer are the same map on NHWC data; only the weight layout differs.
      const project = (layer: Conv2d | Linear, t: tf.Tensor4D): tf.Tensor4D =>
        layer instanceof Conv2d ? layer.forward(t, lora) : (layer.forward(t, lora) as tf.Tensor4D);
      const projected = project(this.proj_in, normed);
      let tokens = projected.reshape([b, h * w, projected.shape[3]]) as tf.Tensor3D;
      for (const block of this.transformer_blocks) tokens = block.forward(tokens, encoderHiddenStates, lora);
      const out = project(this.proj_out, tokens.reshape([b, h, w, tokens.shape[2]]) as tf.Tensor4D);
      return out.add(x) as tf.Tensor4D;
    });
  }
}
