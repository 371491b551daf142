// diffusers' `Attention` (models/attention_processor.py) with the default AttnProcessor2_0, for the two
// ways Stable Diffusion uses it: token attention inside BasicTransformerBlock (self- and cross-attention)
// and the VAE mid-block's spatial self-attention (group norm in front, residual, rescale).
// The projections to_q, to_k, to_v and to_out.0 are where LoRA adapters attach: each asks the
// LoraLookup for the adapters on its full module path.
import * as tf from '@tensorflow/tfjs';
import { ops, type LoraLookup } from '../engine/ops.js';
import { GroupNorm, Linear, type ModuleScope } from './layers.js';

/** A linear layer LoRA can attach to, with the shapes an adapter for it must have. */
export interface LoraTarget {
  /** Module path as in the state dict without `.weight`, e.g. `down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`. */
  readonly path: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
}

export interface AttentionOptions {
  queryDim: number;
  /** Width of encoder_hidden_states for cross-attention; null for self-attention. */
  crossAttentionDim: number | null;
  heads: number;
  dimHead: number;
  /** Bias on to_q/to_k/to_v (diffusers' `bias`). to_out.0 always has one here (`out_bias=True`). */
  bias: boolean;
  /** GroupNorm in front (VAE mid-block attention). */
  normNumGroups?: number | null;
  eps?: number;
  residualConnection?: boolean;
  rescaleOutputFactor?: number;
}

export class Attention {
  readonly group_norm?: GroupNorm;
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: [Linear];
  readonly heads: number;
  readonly residualConnection: boolean;
  readonly rescaleOutputFactor: number;

  constructor(
    readonly scope: ModuleScope,
    o: AttentionOptions,
  ) {
    const inner = o.heads * o.dimHead;
    const kvDim = o.crossAttentionDim ?? o.queryDim;
    this.heads = o.heads;
    this.residualConnection = o.residualConnection ?? false;
    this.rescaleOutputFactor = o.rescaleOutputFactor ?? 1;
    if (o.normNumGroups != null) this.group_norm = new GroupNorm(scope.child('group_norm'), o.normNumGroups, o.queryDim, o.eps ?? 1e-5);
    this.to_q = new Linear(scope.child('to_q'), o.queryDim, inner, o.bias);
    this.to_k = new Linear(scope.child('to_k'), kvDim, inner, o.bias);
    this.to_v = new Linear(scope.child('to_v'), kvDim, inner, o.bias);
    this.to_out = [new Linear(scope.child('to_out').child(0), inner, o.queryDim, true)];
  }

  loraTargets(): LoraTarget[] {
    return [this.to_q, this.to_k, this.to_v, this.to_out[0]].map((l) => ({ path: l.path, inFeatures: l.inFeatures, outFeatures: l.outFeatures }));
  }

  /**
   * hidden [B, T, C] (tokens) or [B, H, W, C] (spatial, VAE); encoderHiddenStates [B, S, cross] for
   * cross-attention, omitted for self-attention. Returns the same shape as `hidden`.
   */
  forward<T extends tf.Tensor3D | tf.Tensor4D>(hidden: T, encoderHiddenStates?: tf.Tensor3D, lora?: LoraLookup): T {
    return tf.tidy(() => {
      const residual = hidden;
      let x: tf.Tensor = hidden;
      if (this.group_norm) {
        if (x.rank !== 4) throw new Error(`${this.scope.path}: group_norm attention expects NHWC input`);
        x = this.group_norm.forward(x as tf.Tensor4D);
      }
      const [b] = x.shape;
      const channels = x.shape[x.rank - 1];
      const tokens = x.reshape([b, -1, channels]) as tf.Tensor3D;
      const context = encoderHiddenStates ?? tokens;
      const q = this.to_q.forward(tokens, lora) as tf.Tensor3D;
      const k = this.to_k.forward(context, lora) as tf.Tensor3D;
      const v = this.to_v.forward(context, lora) as tf.Tensor3D;
      const attended = ops().attention(q, k, v, this.heads);
      let out: tf.Tensor = this.to_out[0].forward(attended, lora);
      out = out.reshape(residual.shape);
      if (this.residualConnection) out = out.add(residual);
      if (this.rescaleOutputFactor !== 1) out = out.div(this.rescaleOutputFactor);
      return out as T;
    });
  }
}
