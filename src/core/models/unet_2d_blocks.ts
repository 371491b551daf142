// diffusers' models/unets/unet_2d_blocks.py: the UNet's down/mid/up blocks (DownBlock2D,
// CrossAttnDownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D, CrossAttnUpBlock2D) and the VAE's
// (DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D). NHWC activations: skip connections are
// concatenated on the last axis where diffusers uses dim=1.
import * as tf from '@tensorflow/tfjs';
import { checkpointWithLora, gradientTapeActive } from '../engine/activation_checkpoint.js';
import { noLora, type LoraLookup } from '../engine/ops.js';
import { Attention, type LoraTarget } from './attention.js';
import type { ModuleScope } from './layers.js';
import { Downsample2D, ResnetBlock2D, Upsample2D, type TimeEmbeddingNorm } from './resnet.js';
import { Transformer2DModel } from './transformer_2d.js';

/** What every UNet block is built from (get_down_block / get_up_block arguments). */
export interface UNetBlockOptions {
  numLayers: number;
  inChannels: number;
  outChannels: number;
  tembChannels: number;
  resnetEps: number;
  resnetGroups: number;
  resnetTimeScaleShift: TimeEmbeddingNorm;
}

/** The cross-attention blocks' extra arguments. */
export interface CrossAttnOptions {
  /** Transformer layers per attention, one entry per resnet/attention pair. */
  transformerLayersPerBlock: number[];
  numAttentionHeads: number;
  crossAttentionDim: number;
  useLinearProjection: boolean;
  onlyCrossAttention: boolean;
}

export interface DownBlockOutput {
  hidden: tf.Tensor4D;
  /** The states the up path's skip connections take (one per resnet, plus the downsampled one). */
  states: tf.Tensor4D[];
}

/** diffusers' `gradient_checkpointing` attribute of a block (UNet2DConditionModel.enableGradientCheckpointing sets it). */
interface Checkpointable {
  gradientCheckpointing: boolean;
}

export interface UNetDownBlock extends Checkpointable {
  readonly hasCrossAttention: boolean;
  forward(x: tf.Tensor4D, temb: tf.Tensor2D, encoderHiddenStates: tf.Tensor3D, lora?: LoraLookup): DownBlockOutput;
  loraTargets(): LoraTarget[];
}

export interface UNetUpBlock extends Checkpointable {
  readonly resnets: ResnetBlock2D[];
  /** `skips` are consumed from the end, as res_hidden_states_tuple[-1]. */
  forward(x: tf.Tensor4D, skips: tf.Tensor4D[], temb: tf.Tensor2D, encoderHiddenStates: tf.Tensor3D, lora?: LoraLookup, upsampleSize?: [number, number]): tf.Tensor4D;
  loraTargets(): LoraTarget[];
}

export interface UNetMidBlock extends Checkpointable {
  forward(x: tf.Tensor4D, temb: tf.Tensor2D, encoderHiddenStates: tf.Tensor3D, lora?: LoraLookup): tf.Tensor4D;
  loraTargets(): LoraTarget[];
}

function makeTransformer(scope: ModuleScope, channels: number, groups: number, layers: number, c: CrossAttnOptions): Transformer2DModel {
  if (channels % c.numAttentionHeads !== 0) {
    throw new Error(`${scope.path}: ${channels} channels cannot be split into ${c.numAttentionHeads} attention heads (check attention_head_dim / num_attention_heads in config.json)`);
  }
  return new Transformer2DModel(scope, {
    heads: c.numAttentionHeads,
    dimHead: channels / c.numAttentionHeads,
    inChannels: channels,
    numLayers: layers,
    normNumGroups: groups,
    crossAttentionDim: c.crossAttentionDim,
    useLinearProjection: c.useLinearProjection,
    onlyCrossAttention: c.onlyCrossAttention,
  });
}

function downResnets(scope: ModuleScope, o: UNetBlockOptions): ResnetBlock2D[] {
  const resnets: ResnetBlock2D[] = [];
  for (let i = 0; i < o.numLayers; i++) {
    resnets.push(
      new ResnetBlock2D(scope.child('resnets').child(i), {
        inChannels: i === 0 ? o.inChannels : o.outChannels,
        outChannels: o.outChannels,
        tembChannels: o.tembChannels,
        groups: o.resnetGroups,
        eps: o.resnetEps,
        timeEmbeddingNorm: o.resnetTimeScaleShift,
      }),
    );
  }
  return resnets;
}

/** Up blocks: resnet i takes the previous output concatenated with a skip state. */
function upResnets(scope: ModuleScope, o: UNetBlockOptions, prevOutputChannels: number): ResnetBlock2D[] {
  const resnets: ResnetBlock2D[] = [];
  for (let i = 0; i < o.numLayers; i++) {
    const skipChannels = i === o.numLayers - 1 ? o.inChannels : o.outChannels;
    const resnetIn = i === 0 ? prevOutputChannels : o.outChannels;
    resnets.push(
      new ResnetBlock2D(scope.child('resnets').child(i), {
        inChannels: resnetIn + skipChannels,
        outChannels: o.outChannels,
        tembChannels: o.tembChannels,
        groups: o.resnetGroups,
        eps: o.resnetEps,
        timeEmbeddingNorm: o.resnetTimeScaleShift,
      }),
    );
  }
  return resnets;
}

// ---- gradient checkpointing: diffusers' `if torch.is_grad_enabled() and self.gradient_checkpointing` ----
// While a gradient is recorded, each resnet and each transformer runs as one checkpoint: only its inputs
// are kept, and its activations are recomputed in the backward pass (engine/activation_checkpoint.ts). The
// LoRA adapters inside it, the time embedding and the text states are the checkpoint's inputs, so all
// of them get their gradients.

/** The module paths of the LoRA-capable layers (Linear, Conv2d) under `scope`. */
const layersUnder = (scope: ModuleScope): string[] => [...scope.layers.keys()].filter((p) => p.startsWith(`${scope.path}.`));

function resnetForward(checkpointing: boolean, resnet: ResnetBlock2D, h: tf.Tensor4D, temb: tf.Tensor2D | null, lora?: LoraLookup): tf.Tensor4D {
  if (!checkpointing || !gradientTapeActive()) return resnet.forward(h, temb, lora);
  const run = checkpointWithLora((x, l, t) => resnet.forward(x as tf.Tensor4D, (t ?? null) as tf.Tensor2D | null, l), lora ?? noLora, layersUnder(resnet.scope));
  return (temb ? run(h, temb) : run(h)) as tf.Tensor4D;
}

function transformerForward(checkpointing: boolean, attn: Transformer2DModel, h: tf.Tensor4D, ehs: tf.Tensor3D, lora?: LoraLookup): tf.Tensor4D {
  if (!checkpointing || !gradientTapeActive()) return attn.forward(h, ehs, lora);
  return checkpointWithLora((x, l, e) => attn.forward(x as tf.Tensor4D, e as tf.Tensor3D, l), lora ?? noLora, layersUnder(attn.scope))(h, ehs) as tf.Tensor4D;
}

const popSkip = (h: tf.Tensor4D, skips: tf.Tensor4D[]): tf.Tensor4D => {
  const skip = skips.pop();
  if (!skip) throw new Error('internal: an up block ran out of skip connections');
  return tf.concat([h, skip], 3);
};

export class DownBlock2D implements UNetDownBlock {
  readonly hasCrossAttention = false;
  gradientCheckpointing = false;
  readonly resnets: ResnetBlock2D[];
  readonly downsamplers?: [Downsample2D];

  constructor(scope: ModuleScope, o: UNetBlockOptions & { addDownsample: boolean; downsamplePadding: number }) {
    this.resnets = downResnets(scope, o);
    if (o.addDownsample) this.downsamplers = [new Downsample2D(scope.child('downsamplers').child(0), o.outChannels, o.outChannels, o.downsamplePadding)];
  }

  loraTargets(): LoraTarget[] {
    return [];
  }

  forward(x: tf.Tensor4D, temb: tf.Tensor2D, _ehs?: tf.Tensor3D, lora?: LoraLookup): DownBlockOutput {
    const states: tf.Tensor4D[] = [];
    let h = x;
    for (const resnet of this.resnets) {
      h = resnetForward(this.gradientCheckpointing, resnet, h, temb, lora);
      states.push(h);
    }
    if (this.downsamplers) {
      h = this.downsamplers[0].forward(h, lora);
      states.push(h);
    }
    return { hidden: h, states };
  }
}

export class CrossAttnDownBlock2D implements UNetDownBlock {
  readonly hasCrossAttention = true;
  gradientCheckpointing = false;
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];
  readonly downsamplers?: [Downsample2D];

  constructor(scope: ModuleScope, o: UNetBlockOptions & CrossAttnOptions & { addDownsample: boolean; downsamplePadding: number }) {
    this.resnets = downResnets(scope, o);
    this.attentions = this.resnets.map((_, i) => makeTransformer(scope.child('attentions').child(i), o.outChannels, o.resnetGroups, o.transformerLayersPerBlock[i], o));
    if (o.addDownsample) this.downsamplers = [new Downsample2D(scope.child('downsamplers').child(0), o.outChannels, o.outChannels, o.downsamplePadding)];
  }

  loraTargets(): LoraTarget[] {
    return this.attentions.flatMap((a) => a.loraTargets());
  }

  forward(x: tf.Tensor4D, temb: tf.Tensor2D, encoderHiddenStates: tf.Tensor3D, lora?: LoraLookup): DownBlockOutput {
    const states: tf.Tensor4D[] = [];
    let h = x;
    const c = this.gradientCheckpointing;
    this.resnets.forEach((resnet, i) => {
      h = transformerForward(c, this.attentions[i], resnetForward(c, resnet, h, temb, lora), encoderHiddenStates, lora);
      states.push(h);
    });
    if (this.downsamplers) {
      h = this.downsamplers[0].forward(h, lora);
      states.push(h);
    }
    return { hidden: h, states };
  }
}

/** resnet, then (transformer, resnet) pairs; resnets rescale their output by output_scale_factor. */
export class UNetMidBlock2DCrossAttn implements UNetMidBlock {
  gradientCheckpointing = false;
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];

  constructor(scope: ModuleScope, o: Omit<UNetBlockOptions, 'outChannels'> & Omit<CrossAttnOptions, 'onlyCrossAttention'> & { outputScaleFactor: number }) {
    const resnet = (i: number) =>
      new ResnetBlock2D(scope.child('resnets').child(i), {
        inChannels: o.inChannels,
        tembChannels: o.tembChannels,
        groups: o.resnetGroups,
        eps: o.resnetEps,
        timeEmbeddingNorm: o.resnetTimeScaleShift,
        outputScaleFactor: o.outputScaleFactor,
      });
    this.resnets = [resnet(0)];
    this.attentions = [];
    for (let i = 0; i < o.numLayers; i++) {
      this.attentions.push(makeTransformer(scope.child('attentions').child(i), o.inChannels, o.resnetGroups, o.transformerLayersPerBlock[i], { ...o, onlyCrossAttention: false }));
      this.resnets.push(resnet(i + 1));
    }
  }

  loraTargets(): LoraTarget[] {
    return this.attentions.flatMap((a) => a.loraTargets());
  }

  forward(x: tf.Tensor4D, temb: tf.Tensor2D, encoderHiddenStates: tf.Tensor3D, lora?: LoraLookup): tf.Tensor4D {
    return tf.tidy(() => {
      const c = this.gradientCheckpointing;
      let h = resnetForward(c, this.resnets[0], x, temb, lora);
      this.attentions.forEach((attn, i) => {
        h = resnetForward(c, this.resnets[i + 1], transformerForward(c, attn, h, encoderHiddenStates, lora), temb, lora);
      });
      return h;
    });
  }
}

export class UpBlock2D implements UNetUpBlock {
  gradientCheckpointing = false;
  readonly resnets: ResnetBlock2D[];
  readonly upsamplers?: [Upsample2D];

  constructor(scope: ModuleScope, o: UNetBlockOptions & { prevOutputChannels: number; addUpsample: boolean }) {
    this.resnets = upResnets(scope, o, o.prevOutputChannels);
    if (o.addUpsample) this.upsamplers = [new Upsample2D(scope.child('upsamplers').child(0), o.outChannels, o.outChannels)];
  }

  loraTargets(): LoraTarget[] {
    return [];
  }

  forward(x: tf.Tensor4D, skips: tf.Tensor4D[], temb: tf.Tensor2D, _ehs: tf.Tensor3D, lora?: LoraLookup, upsampleSize?: [number, number]): tf.Tensor4D {
    return tf.tidy(() => {
      let h = x;
      for (const resnet of this.resnets) h = resnetForward(this.gradientCheckpointing, resnet, popSkip(h, skips), temb, lora);
      return this.upsamplers ? this.upsamplers[0].forward(h, upsampleSize, lora) : h;
    });
  }
}

export class CrossAttnUpBlock2D implements UNetUpBlock {
  gradientCheckpointing = false;
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];
  readonly upsamplers?: [Upsample2D];

  constructor(scope: ModuleScope, o: UNetBlockOptions & CrossAttnOptions & { prevOutputChannels: number; addUpsample: boolean }) {
    this.resnets = upResnets(scope, o, o.prevOutputChannels);
    this.attentions = this.resnets.map((_, i) => makeTransformer(scope.child('attentions').child(i), o.outChannels, o.resnetGroups, o.transformerLayersPerBlock[i], o));
    if (o.addUpsample) this.upsamplers = [new Upsample2D(scope.child('upsamplers').child(0), o.outChannels, o.outChannels)];
  }

  loraTargets(): LoraTarget[] {
    return this.attentions.flatMap((a) => a.loraTargets());
  }

  forward(x: tf.Tensor4D, skips: tf.Tensor4D[], temb: tf.Tensor2D, encoderHiddenStates: tf.Tensor3D, lora?: LoraLookup, upsampleSize?: [number, number]): tf.Tensor4D {
    return tf.tidy(() => {
      let h = x;
      const c = this.gradientCheckpointing;
      this.resnets.forEach((resnet, i) => {
        h = transformerForward(c, this.attentions[i], resnetForward(c, resnet, popSkip(h, skips), temb, lora), encoderHiddenStates, lora);
      });
      return this.upsamplers ? this.upsamplers[0].forward(h, upsampleSize, lora) : h;
    });
  }
}

// ---- the VAE's blocks (no time embedding) ----

export interface VaeBlockOptions {
  numLayers: number;
  inChannels: number;
  outChannels: number;
  resnetEps: number;
  resnetGroups: number;
}

export class DownEncoderBlock2D {
  readonly resnets: ResnetBlock2D[];
  readonly downsamplers?: [Downsample2D];

  constructor(scope: ModuleScope, o: VaeBlockOptions & { addDownsample: boolean; downsamplePadding: number }) {
    this.resnets = [];
    for (let i = 0; i < o.numLayers; i++) {
      const inChannels = i === 0 ? o.inChannels : o.outChannels;
      this.resnets.push(new ResnetBlock2D(scope.child('resnets').child(i), { inChannels, outChannels: o.outChannels, tembChannels: null, groups: o.resnetGroups, eps: o.resnetEps }));
    }
    if (o.addDownsample) this.downsamplers = [new Downsample2D(scope.child('downsamplers').child(0), o.outChannels, o.outChannels, o.downsamplePadding)];
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = x;
      for (const resnet of this.resnets) h = resnet.forward(h, null);
      return this.downsamplers ? this.downsamplers[0].forward(h) : h;
    });
  }
}

export class UpDecoderBlock2D {
  readonly resnets: ResnetBlock2D[];
  readonly upsamplers?: [Upsample2D];

  constructor(scope: ModuleScope, o: VaeBlockOptions & { addUpsample: boolean }) {
    this.resnets = [];
    for (let i = 0; i < o.numLayers; i++) {
      const inChannels = i === 0 ? o.inChannels : o.outChannels;
      this.resnets.push(new ResnetBlock2D(scope.child('resnets').child(i), { inChannels, outChannels: o.outChannels, tembChannels: null, groups: o.resnetGroups, eps: o.resnetEps }));
    }
    if (o.addUpsample) this.upsamplers = [new Upsample2D(scope.child('upsamplers').child(0), o.outChannels, o.outChannels)];
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = x;
      for (const resnet of this.resnets) h = resnet.forward(h, null);
      return this.upsamplers ? this.upsamplers[0].forward(h) : h;
    });
  }
}

/**
 * resnet, then (attention, resnet) pairs, as the VAE uses it (num_layers 1): the attention is one head
 * over all channels (attention_head_dim = channels), with group norm in front and a residual.
 * Built with `tembChannels` null only (the VAE); the UNet's "UNetMidBlock2D" variant passes a time embedding.
 */
export class UNetMidBlock2D implements UNetMidBlock {
  gradientCheckpointing = false;
  readonly resnets: ResnetBlock2D[];
  readonly attentions: (Attention | null)[];

  constructor(
    scope: ModuleScope,
    o: {
      inChannels: number;
      tembChannels: number | null;
      resnetEps: number;
      resnetGroups: number;
      numLayers: number;
      addAttention: boolean;
      attentionHeadDim: number;
      outputScaleFactor: number;
      resnetTimeScaleShift?: TimeEmbeddingNorm;
    },
  ) {
    const resnet = (i: number) =>
      new ResnetBlock2D(scope.child('resnets').child(i), {
        inChannels: o.inChannels,
        tembChannels: o.tembChannels,
        groups: o.resnetGroups,
        eps: o.resnetEps,
        timeEmbeddingNorm: o.resnetTimeScaleShift,
        outputScaleFactor: o.outputScaleFactor,
      });
    this.resnets = [resnet(0)];
    this.attentions = [];
    for (let i = 0; i < o.numLayers; i++) {
      this.attentions.push(
        o.addAttention
          ? new Attention(scope.child('attentions').child(i), {
              queryDim: o.inChannels,
              crossAttentionDim: null,
              heads: o.inChannels / o.attentionHeadDim,
              dimHead: o.attentionHeadDim,
              bias: true,
              // attn_groups = resnet_groups when resnet_time_scale_shift is "default"
              normNumGroups: o.resnetGroups,
              eps: o.resnetEps,
              residualConnection: true,
              rescaleOutputFactor: o.outputScaleFactor,
            })
          : null,
      );
      this.resnets.push(resnet(i + 1));
    }
  }

  loraTargets(): LoraTarget[] {
    return [];
  }

  forward(x: tf.Tensor4D, temb: tf.Tensor2D | null = null, _ehs?: tf.Tensor3D, lora?: LoraLookup): tf.Tensor4D {
    return tf.tidy(() => {
      const c = this.gradientCheckpointing;
      let h = resnetForward(c, this.resnets[0], x, temb, lora);
      this.attentions.forEach((attn, i) => {
        if (attn) h = attn.forward(h, undefined, lora);
        h = resnetForward(c, this.resnets[i + 1], h, temb, lora);
      });
      return h;
    });
  }
}
