// diffusers' UNet2DConditionModel (models/unets/unet_2d_condition.py), built from the model's config.json
// and run on NHWC activations: the noise predictor of Stable Diffusion 1.x/2.x and SDXL.
//
//   sample ─ conv_in ─ down_blocks ─ mid_block ─ up_blocks ─ conv_norm_out+SiLU ─ conv_out ─ out
//   timestep ─ time_proj ─ time_embedding ─ (+ add_embedding) ─ (into every resnet)     ↑ skip connections ↑
//   encoder_hidden_states ─ (into every cross-attention)
//   SDXL (addition_embed_type "text_time"): [text_embeds, add_time_proj(time_ids)] ─ add_embedding ─ added to the time embedding
//
// Every attention's to_q/to_k/to_v/to_out.0 consults the LoraLookup passed to forward(); the forward
// is pure tf ops (no reads back to the CPU), so tf.grad can differentiate it with respect to the
// adapters.
import * as tf from '@tensorflow/tfjs';
import type { DiffusersFolder } from '../io/diffusers_folder.js';
import type { LoraLookup } from '../engine/ops.js';
import type { LoraTarget } from './attention.js';
import { parseActivation, TimestepEmbedding, timestepEmbedding, applyActivation, type Activation } from './embeddings.js';
import { CheckedParams, Conv2d, GroupNorm, ModuleScope, randomParams, ShapeRecorder, type LoraLayer, type ParamSource } from './layers.js';
import type { Params } from './params.js';
import { fromPretrained, type PretrainedOptions } from './pretrained.js';
import type { TimeEmbeddingNorm } from './resnet.js';
import {
  CrossAttnDownBlock2D,
  CrossAttnUpBlock2D,
  DownBlock2D,
  UNetMidBlock2D,
  UNetMidBlock2DCrossAttn,
  UpBlock2D,
  type UNetDownBlock,
  type UNetMidBlock,
  type UNetUpBlock,
} from './unet_2d_blocks.js';

/**
 * The config as diffusers registers it: diffusers' key names and defaults, values as config.json gives
 * them (a number or a per-block list where diffusers allows either). `blocks` holds the resolved
 * per-block layout every other field implies.
 */
export interface UNet2DConditionConfig {
  readonly sample_size: number | number[] | null;
  readonly in_channels: number;
  readonly out_channels: number;
  readonly center_input_sample: boolean;
  readonly flip_sin_to_cos: boolean;
  readonly freq_shift: number;
  readonly down_block_types: string[];
  readonly mid_block_type: string | null;
  readonly up_block_types: string[];
  readonly only_cross_attention: boolean | boolean[];
  readonly block_out_channels: number[];
  readonly layers_per_block: number | number[];
  readonly downsample_padding: number;
  readonly mid_block_scale_factor: number;
  readonly act_fn: string;
  readonly norm_num_groups: number;
  readonly norm_eps: number;
  readonly cross_attention_dim: number | number[];
  readonly transformer_layers_per_block: number | (number | number[])[];
  readonly reverse_transformer_layers_per_block: (number | number[])[] | null;
  readonly attention_head_dim: number | number[];
  readonly num_attention_heads: number | number[] | null;
  readonly use_linear_projection: boolean;
  /** Read and kept, never acted on: diffusers upcasts attention scores to f32 only when running in fp16; this engine computes in f32 throughout. */
  readonly upcast_attention: boolean;
  readonly resnet_time_scale_shift: TimeEmbeddingNorm;
  readonly time_embedding_type: 'positional';
  readonly time_embedding_dim: number | null;
  readonly time_embedding_act_fn: string | null;
  readonly timestep_post_act: string | null;
  readonly conv_in_kernel: number;
  readonly conv_out_kernel: number;
  /** null (SD 1.x/2.x) or "text_time" (SDXL's micro-conditioning on pooled text embeddings and size/crop ids). */
  readonly addition_embed_type: 'text_time' | null;
  readonly addition_time_embed_dim: number | null;
  readonly projection_class_embeddings_input_dim: number | null;
  readonly blocks: UNetBlockLayout;
  readonly [key: string]: unknown;
}

/** Per-block values after diffusers' broadcasting and its attention_head_dim naming quirk are applied. */
export interface UNetBlockLayout {
  /** Attention heads per down block (= num_attention_heads, or attention_head_dim when that is null). */
  readonly heads: number[];
  readonly layersPerBlock: number[];
  readonly crossAttentionDim: number[];
  readonly onlyCrossAttention: boolean[];
  /** Transformer layers of each down block, per resnet/attention pair. */
  readonly transformerLayers: number[][];
  /** Transformer layers of each up block (in up order), per pair. */
  readonly reverseTransformerLayers: number[][];
  readonly timeEmbedDim: number;
}

const DEFAULTS = {
  sample_size: null,
  in_channels: 4,
  out_channels: 4,
  center_input_sample: false,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  mid_block_type: 'UNetMidBlock2DCrossAttn',
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  only_cross_attention: false,
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  dropout: 0,
  act_fn: 'silu',
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 1280,
  transformer_layers_per_block: 1,
  reverse_transformer_layers_per_block: null,
  encoder_hid_dim: null,
  encoder_hid_dim_type: null,
  attention_head_dim: 8,
  num_attention_heads: null,
  dual_cross_attention: false,
  use_linear_projection: false,
  class_embed_type: null,
  addition_embed_type: null,
  addition_time_embed_dim: null,
  projection_class_embeddings_input_dim: null,
  num_class_embeds: null,
  upcast_attention: false,
  resnet_time_scale_shift: 'default',
  resnet_skip_time_act: false,
  resnet_out_scale_factor: 1.0,
  time_embedding_type: 'positional',
  time_embedding_dim: null,
  time_embedding_act_fn: null,
  timestep_post_act: null,
  time_cond_proj_dim: null,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
  attention_type: 'default',
  class_embeddings_concat: false,
  cross_attention_norm: null,
} as const;

const DOWN_TYPES = ['DownBlock2D', 'CrossAttnDownBlock2D'];
const UP_TYPES = ['UpBlock2D', 'CrossAttnUpBlock2D'];
const MID_TYPES = ['UNetMidBlock2DCrossAttn', 'UNetMidBlock2D', null];

/** Fills diffusers' defaults, checks every option this engine implements, and resolves the per-block layout. */
export function normalizeUNetConfig(raw: Record<string, unknown>): UNet2DConditionConfig {
  const c: Record<string, unknown> = { ...DEFAULTS };
  for (const [k, v] of Object.entries(raw)) if (v !== undefined) c[k] = v;
  const fail = (key: string, why: string): never => {
    throw new Error(`unet config.json: ${key} = ${JSON.stringify(c[key])}: ${why}`);
  };
  const requireValue = (key: string, allowed: readonly unknown[]) => {
    if (!allowed.includes(c[key] as never)) fail(key, `not supported (supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')})`);
  };
  const int = (key: string, v: unknown = c[key]): number => (Number.isInteger(v) && (v as number) > 0 ? (v as number) : fail(key, 'must be a positive integer'));

  // Features of UNet2DConditionModel that Stable Diffusion 1.x/2.x and SDXL do not use.
  requireValue('addition_embed_type', [null, 'text_time']);
  if (c.addition_embed_type === 'text_time') {
    int('addition_time_embed_dim');
    int('projection_class_embeddings_input_dim');
  }
  for (const key of ['class_embed_type', 'num_class_embeds', 'encoder_hid_dim', 'encoder_hid_dim_type', 'time_cond_proj_dim', 'cross_attention_norm']) requireValue(key, [null]);
  requireValue('dual_cross_attention', [false]);
  requireValue('attention_type', ['default']);
  requireValue('time_embedding_type', ['positional']);
  requireValue('resnet_skip_time_act', [false]);
  requireValue('resnet_time_scale_shift', ['default', 'scale_shift']);
  requireValue('mid_block_type', MID_TYPES);
  if (parseActivation(c.act_fn, 'act_fn') === null) fail('act_fn', 'must be "silu"');
  parseActivation(c.time_embedding_act_fn, 'time_embedding_act_fn');
  parseActivation(c.timestep_post_act, 'timestep_post_act');
  // diffusers applies dropout only in training mode and Stable Diffusion's is 0; this forward is the
  // eval-mode one, which is what the LoRA recipe trains through as long as dropout is 0.
  if (c.dropout !== 0) fail('dropout', 'only 0 is supported');

  const stripRes = (t: unknown) => (typeof t === 'string' && t.startsWith('UNetRes') ? t.slice(7) : t);
  const down = (Array.isArray(c.down_block_types) ? c.down_block_types : fail('down_block_types', 'must be a list')).map(stripRes) as string[];
  const up = (Array.isArray(c.up_block_types) ? c.up_block_types : fail('up_block_types', 'must be a list')).map(stripRes) as string[];
  down.forEach((t) => DOWN_TYPES.includes(t) || fail('down_block_types', `block type ${JSON.stringify(t)} is not supported (supported: ${DOWN_TYPES.join(', ')})`));
  up.forEach((t) => UP_TYPES.includes(t) || fail('up_block_types', `block type ${JSON.stringify(t)} is not supported (supported: ${UP_TYPES.join(', ')})`));
  const n = down.length;
  if (up.length !== n) fail('up_block_types', `has ${up.length} entries but down_block_types has ${n}`);
  const channels = Array.isArray(c.block_out_channels) ? c.block_out_channels.map((v) => int('block_out_channels', v)) : fail('block_out_channels', 'must be a list');
  if (channels.length !== n) fail('block_out_channels', `has ${channels.length} entries but down_block_types has ${n}`);

  const perBlock = <T>(key: string, check: (v: unknown) => T): T[] => {
    const v = c[key];
    if (!Array.isArray(v)) return Array.from({ length: n }, () => check(v));
    if (v.length !== n) fail(key, `has ${v.length} entries but down_block_types has ${n}`);
    return v.map(check);
  };
  const layersPerBlock = perBlock('layers_per_block', (v) => int('layers_per_block', v));
  const crossAttentionDim = perBlock('cross_attention_dim', (v) => int('cross_attention_dim', v));
  const onlyCrossAttention = perBlock('only_cross_attention', (v) => (typeof v === 'boolean' ? v : fail('only_cross_attention', 'must be true/false or a list of them')));
  // diffusers' naming quirk: for SD 1.x/2.x configs "attention_head_dim" holds the number of heads
  // (num_attention_heads is null and defaults to it). diffusers itself refuses a non-null
  // num_attention_heads today; when one is given it is taken for what its name says.
  const headsKey = c.num_attention_heads != null ? 'num_attention_heads' : 'attention_head_dim';
  const heads = perBlock(headsKey, (v) => int(headsKey, v));
  const layerList = (key: string, v: unknown, count: number): number[] =>
    Array.isArray(v) ? (v.length === count ? v.map((x) => int(key, x)) : fail(key, `an entry has ${v.length} values for ${count} layers`)) : Array.from({ length: count }, () => int(key, v));
  const transformerLayers = perBlock('transformer_layers_per_block', (v) => v).map((v, i) => layerList('transformer_layers_per_block', v, layersPerBlock[i]));
  let reverseTransformerLayers: number[][];
  if (c.reverse_transformer_layers_per_block != null) {
    const r = c.reverse_transformer_layers_per_block;
    if (!Array.isArray(r) || r.length !== n) fail('reverse_transformer_layers_per_block', `must be a list of ${n} entries`);
    reverseTransformerLayers = (r as unknown[]).map((v, i) => layerList('reverse_transformer_layers_per_block', v, layersPerBlock[n - 1 - i] + 1));
  } else {
    if (Array.isArray(c.transformer_layers_per_block) && c.transformer_layers_per_block.some(Array.isArray)) {
      fail('transformer_layers_per_block', 'per-layer lists need reverse_transformer_layers_per_block (as diffusers requires)');
    }
    // Up block i has layers_per_block + 1 pairs, each with the mirrored down block's count.
    reverseTransformerLayers = transformerLayers
      .slice()
      .reverse()
      .map((t, i) => Array.from({ length: layersPerBlock[n - 1 - i] + 1 }, () => t[0]));
  }
  const convIn = int('conv_in_kernel');
  const convOut = int('conv_out_kernel');
  if (convIn % 2 === 0) fail('conv_in_kernel', 'must be odd (padding is (k - 1) / 2)');
  if (convOut % 2 === 0) fail('conv_out_kernel', 'must be odd (padding is (k - 1) / 2)');
  if (c.norm_num_groups === null) fail('norm_num_groups', 'null (no group norm) is not supported');
  int('norm_num_groups');
  int('in_channels');
  int('out_channels');
  if (!(typeof c.norm_eps === 'number' && c.norm_eps > 0)) fail('norm_eps', 'must be a positive number');
  if (!(typeof c.mid_block_scale_factor === 'number' && c.mid_block_scale_factor > 0)) fail('mid_block_scale_factor', 'must be a positive number');
  if (!Number.isInteger(c.downsample_padding) || (c.downsample_padding as number) < 0) fail('downsample_padding', 'must be a non-negative integer');
  if (typeof c.freq_shift !== 'number') fail('freq_shift', 'must be a number');
  const timeEmbedDim = c.time_embedding_dim != null ? int('time_embedding_dim') : channels[0] * 4;

  return {
    ...(c as Omit<UNet2DConditionConfig, 'blocks'>),
    down_block_types: down,
    up_block_types: up,
    block_out_channels: channels,
    blocks: { heads, layersPerBlock, crossAttentionDim, onlyCrossAttention, transformerLayers, reverseTransformerLayers, timeEmbedDim },
  } as UNet2DConditionConfig;
}

export class UNet2DConditionModel {
  readonly config: UNet2DConditionConfig;
  readonly conv_in: Conv2d;
  readonly time_embedding: TimestepEmbedding;
  /** SDXL's added conditioning (addition_embed_type "text_time"), null otherwise. */
  readonly add_embedding: TimestepEmbedding | null;
  readonly down_blocks: UNetDownBlock[];
  readonly mid_block: UNetMidBlock | null;
  readonly up_blocks: UNetUpBlock[];
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  private readonly timeEmbedAct: Activation;

  /** Builds the model of `config` (raw config.json or normalized) on these weights; throws naming every missing or wrong-shaped key. */
  constructor(
    config: Record<string, unknown>,
    readonly params: Params,
  ) {
    // Normalizing is idempotent, so a raw config.json and an already normalized config both work.
    const cfg = normalizeUNetConfig(config);
    const checked = new CheckedParams(params, 'UNet2DConditionModel');
    const parts = UNet2DConditionModel.build(cfg, checked);
    checked.throwIfProblems();
    this.config = cfg;
    this.conv_in = parts.conv_in;
    this.time_embedding = parts.time_embedding;
    this.add_embedding = parts.add_embedding;
    this.down_blocks = parts.down_blocks;
    this.mid_block = parts.mid_block;
    this.up_blocks = parts.up_blocks;
    this.conv_norm_out = parts.conv_norm_out;
    this.conv_out = parts.conv_out;
    this.timeEmbedAct = parseActivation(cfg.time_embedding_act_fn, 'time_embedding_act_fn');
  }

  /** Loads a diffusers pipeline folder's unet/, or a unet folder itself (config.json + safetensors weights). */
  static fromPretrained(source: string | DiffusersFolder, opts: PretrainedOptions = {}): UNet2DConditionModel {
    return fromPretrained({ className: 'UNet2DConditionModel', subfolder: 'unet', create: (config, params) => new UNet2DConditionModel(config, params) }, source, opts);
  }

  /** Every parameter the config needs, by state-dict name, with its PyTorch shape (OIHW for convs). */
  static expectedParamShapes(config: Record<string, unknown>): Map<string, number[]> {
    const recorder = new ShapeRecorder();
    UNet2DConditionModel.build(normalizeUNetConfig(config), recorder);
    return recorder.shapes;
  }

  /** The model of `config` with reproducible random weights (benchmarks, shape tests). */
  static random(config: Record<string, unknown>, seed = 0): UNet2DConditionModel {
    const cfg = normalizeUNetConfig(config);
    return new UNet2DConditionModel(cfg, randomParams(UNet2DConditionModel.expectedParamShapes(cfg), seed));
  }

  /** The module tree, as diffusers' __init__ builds it, asking `source` for each parameter. */
  private static build(cfg: UNet2DConditionConfig, source: ParamSource) {
    const root = new ModuleScope(source, '');
    const ch = cfg.block_out_channels;
    const b = cfg.blocks;
    const n = ch.length;
    const temb = b.timeEmbedDim;
    const common = { tembChannels: temb, resnetEps: cfg.norm_eps, resnetGroups: cfg.norm_num_groups, resnetTimeScaleShift: cfg.resnet_time_scale_shift };
    const cross = (i: number, transformerLayersPerBlock: number[]) => ({
      transformerLayersPerBlock,
      numAttentionHeads: b.heads[i],
      crossAttentionDim: b.crossAttentionDim[i],
      useLinearProjection: cfg.use_linear_projection,
      onlyCrossAttention: b.onlyCrossAttention[i],
    });

    const conv_in = new Conv2d(root.child('conv_in'), cfg.in_channels, ch[0], cfg.conv_in_kernel, 1, (cfg.conv_in_kernel - 1) / 2);
    const time_embedding = new TimestepEmbedding(root.child('time_embedding'), ch[0], temb, 'silu', parseActivation(cfg.timestep_post_act, 'timestep_post_act'));
    // add_time_proj (Timesteps) has no parameters; add_embedding is TimestepEmbedding(projection_class_embeddings_input_dim, time_embed_dim).
    const add_embedding = cfg.addition_embed_type === 'text_time' ? new TimestepEmbedding(root.child('add_embedding'), cfg.projection_class_embeddings_input_dim as number, temb) : null;

    const down_blocks: UNetDownBlock[] = cfg.down_block_types.map((type, i) => {
      const scope = root.child('down_blocks').child(i);
      const o = { ...common, numLayers: b.layersPerBlock[i], inChannels: i === 0 ? ch[0] : ch[i - 1], outChannels: ch[i], addDownsample: i < n - 1, downsamplePadding: cfg.downsample_padding };
      return type === 'CrossAttnDownBlock2D' ? new CrossAttnDownBlock2D(scope, { ...o, ...cross(i, b.transformerLayers[i]) }) : new DownBlock2D(scope, o);
    });

    let mid_block: UNetMidBlock | null = null;
    const midScope = root.child('mid_block');
    if (cfg.mid_block_type === 'UNetMidBlock2DCrossAttn') {
      mid_block = new UNetMidBlock2DCrossAttn(midScope, {
        ...common,
        ...cross(n - 1, [b.transformerLayers[n - 1][0]]),
        numLayers: 1,
        inChannels: ch[n - 1],
        outputScaleFactor: cfg.mid_block_scale_factor,
      });
    } else if (cfg.mid_block_type === 'UNetMidBlock2D') {
      mid_block = new UNetMidBlock2D(midScope, {
        ...common,
        inChannels: ch[n - 1],
        numLayers: 0,
        addAttention: false,
        attentionHeadDim: ch[n - 1],
        outputScaleFactor: cfg.mid_block_scale_factor,
      });
    }

    const rev = [...ch].reverse();
    const up_blocks: UNetUpBlock[] = cfg.up_block_types.map((type, i) => {
      const scope = root.child('up_blocks').child(i);
      const o = {
        ...common,
        numLayers: b.layersPerBlock[n - 1 - i] + 1,
        inChannels: rev[Math.min(i + 1, n - 1)],
        outChannels: rev[i],
        prevOutputChannels: i === 0 ? rev[0] : rev[i - 1],
        addUpsample: i < n - 1,
      };
      return type === 'CrossAttnUpBlock2D' ? new CrossAttnUpBlock2D(scope, { ...o, ...cross(n - 1 - i, b.reverseTransformerLayers[i]) }) : new UpBlock2D(scope, o);
    });

    const conv_norm_out = new GroupNorm(root.child('conv_norm_out'), cfg.norm_num_groups, ch[0], cfg.norm_eps);
    const conv_out = new Conv2d(root.child('conv_out'), ch[0], cfg.out_channels, cfg.conv_out_kernel, 1, (cfg.conv_out_kernel - 1) / 2);
    return { conv_in, time_embedding, add_embedding, down_blocks, mid_block, up_blocks, conv_norm_out, conv_out };
  }

  /**
   * Every Linear and Conv2d (LoCon's targets too: resnets' conv1/conv2/conv_shortcut/time_emb_proj,
   * proj_in/proj_out, ff, down/upsamplers, conv_in/conv_out, time_embedding), in module order.
   */
  loraLayers(): LoraLayer[] {
    return [...this.conv_in.scope.layers.values()];
  }

  /**
   * diffusers' enable_gradient_checkpointing(): while a gradient is taken, each resnet and transformer of
   * the down/mid/up blocks keeps only its inputs and recomputes its activations in the backward pass
   * (less memory, about one more forward of compute). Inference is unaffected.
   */
  enableGradientCheckpointing(enabled = true): void {
    for (const block of [...this.down_blocks, ...(this.mid_block ? [this.mid_block] : []), ...this.up_blocks]) block.gradientCheckpointing = enabled;
  }

  /** Every attention projection LoRA can attach to (to_q, to_k, to_v, to_out.0), in module order. */
  loraTargets(): LoraTarget[] {
    return [...this.down_blocks, ...(this.mid_block ? [this.mid_block] : []), ...this.up_blocks].flatMap((blk) => blk.loraTargets());
  }

  /**
   * sample [B, H, W, in_channels] (NHWC), timesteps [B] float32 (or [1], broadcast over the batch),
   * encoderHiddenStates [B, tokens, cross_attention_dim] → the prediction, [B, H, W, out_channels].
   * `added` is diffusers' added_cond_kwargs, required by (and only by) an addition_embed_type "text_time" model.
   */
  forward(sample: tf.Tensor4D, timesteps: tf.Tensor1D, encoderHiddenStates: tf.Tensor3D, lora?: LoraLookup, added?: AddedCondKwargs): tf.Tensor4D {
    const cfg = this.config;
    const [batch, height, width, inCh] = sample.shape;
    if (inCh !== cfg.in_channels) throw new Error(`UNet2DConditionModel.forward: sample has ${inCh} channels (NHWC), the model takes ${cfg.in_channels}`);
    if (timesteps.rank !== 1 || (timesteps.shape[0] !== batch && timesteps.shape[0] !== 1)) {
      throw new Error(`UNet2DConditionModel.forward: timesteps must be [${batch}] or [1], got ${JSON.stringify(timesteps.shape)}`);
    }
    if (encoderHiddenStates.shape[0] !== batch) throw new Error(`UNet2DConditionModel.forward: encoder_hidden_states batch ${encoderHiddenStates.shape[0]} ≠ sample batch ${batch}`);
    if (this.add_embedding) {
      if (!added) throw new Error('UNet2DConditionModel.forward: this model has addition_embed_type "text_time" (SDXL) and needs text_embeds and time_ids (added_cond_kwargs)');
      if (added.textEmbeds.shape[0] !== batch || added.timeIds.shape[0] !== batch) throw new Error(`UNet2DConditionModel.forward: text_embeds ${JSON.stringify(added.textEmbeds.shape)} and time_ids ${JSON.stringify(added.timeIds.shape)} must have batch ${batch}`);
      const want = cfg.projection_class_embeddings_input_dim as number;
      const got = added.textEmbeds.shape[1] + added.timeIds.shape[1] * (cfg.addition_time_embed_dim as number);
      if (got !== want) throw new Error(`UNet2DConditionModel.forward: text_embeds (${added.textEmbeds.shape[1]}) + ${added.timeIds.shape[1]} time ids × addition_time_embed_dim ${String(cfg.addition_time_embed_dim)} = ${got}, but projection_class_embeddings_input_dim is ${want}`);
    } else if (added) {
      throw new Error('UNet2DConditionModel.forward: text_embeds/time_ids given, but this model has no addition_embed_type');
    }
    return tf.tidy(() => {
      // Sizes not divisible by 2^(number of upsamplers) need each upsampler told its output size.
      const upFactor = 2 ** (this.up_blocks.length - 1);
      const forwardUpsampleSize = height % upFactor !== 0 || width % upFactor !== 0;

      let x: tf.Tensor4D = sample;
      if (cfg.center_input_sample) x = x.mul(2).sub(1);

      // 1. time
      const t = timesteps.shape[0] === batch ? timesteps : (tf.tile(timesteps, [batch]) as tf.Tensor1D);
      const tEmb = timestepEmbedding(t, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift);
      let emb = this.time_embedding.forward(tEmb, lora);
      if (this.add_embedding && added) emb = emb.add(this.add_embedding.forward(this.addTimeEmbeds(added), lora)) as tf.Tensor2D;
      emb = applyActivation(emb, this.timeEmbedAct) as tf.Tensor2D;

      // 2. pre-process
      x = this.conv_in.forward(x, lora);

      // 3. down
      let skips: tf.Tensor4D[] = [x];
      for (const block of this.down_blocks) {
        const { hidden, states } = block.forward(x, emb, encoderHiddenStates, lora);
        x = hidden;
        skips.push(...states);
      }

      // 4. mid
      if (this.mid_block) x = this.mid_block.forward(x, emb, encoderHiddenStates, lora);

      // 5. up
      this.up_blocks.forEach((block, i) => {
        const take = block.resnets.length;
        const own = skips.slice(skips.length - take);
        skips = skips.slice(0, skips.length - take);
        const upsampleSize = i < this.up_blocks.length - 1 && forwardUpsampleSize ? ([skips[skips.length - 1].shape[1], skips[skips.length - 1].shape[2]] as [number, number]) : undefined;
        x = block.forward(x, own, emb, encoderHiddenStates, lora, upsampleSize);
      });

      // 6. post-process
      return this.conv_out.forward(this.conv_norm_out.forward(x, true), lora);
    });
  }

  /**
   * The shapes of added_cond_kwargs for `batch` samples — text_time: text_embeds [B, projection_class_embeddings_input_dim −
   * 6 · addition_time_embed_dim] and time_ids [B, 6] — or undefined for a model without added conditioning.
   */
  addedCondShapes(batch: number): { textEmbeds: [number, number]; timeIds: [number, number] } | undefined {
    if (!this.add_embedding) return undefined;
    const cfg = this.config;
    const pooled = (cfg.projection_class_embeddings_input_dim as number) - SDXL_TIME_ID_COUNT * (cfg.addition_time_embed_dim as number);
    return { textEmbeds: [batch, pooled], timeIds: [batch, SDXL_TIME_ID_COUNT] };
  }

  /** cat([text_embeds, add_time_proj(time_ids.flatten()).reshape(B, -1)], -1): add_embedding's input (text_embeds first). */
  private addTimeEmbeds(added: AddedCondKwargs): tf.Tensor2D {
    const cfg = this.config;
    const [b, n] = added.timeIds.shape;
    const proj = timestepEmbedding(added.timeIds.reshape([b * n]) as tf.Tensor1D, cfg.addition_time_embed_dim as number, cfg.flip_sin_to_cos, cfg.freq_shift);
    return tf.concat([added.textEmbeds, proj.reshape([b, -1])], 1) as tf.Tensor2D;
  }

  dispose(): void {
    this.params.dispose();
  }
}

/** diffusers' added_cond_kwargs for addition_embed_type "text_time" (SDXL). */
export interface AddedCondKwargs {
  /** [B, projection_dim]: the second text encoder's pooled, projected output. */
  readonly textEmbeds: tf.Tensor2D;
  /** [B, 6]: original (h, w), crop top-left (top, left), target (h, w) — see sdxlTimeIds. */
  readonly timeIds: tf.Tensor2D;
}

/** How many micro-conditioning ids an SDXL sample has (sdxlTimeIds). */
export const SDXL_TIME_ID_COUNT = 6;

/** SDXL's micro-conditioning ids, as diffusers' _get_add_time_ids / the training script's compute_time_ids: original_size + crops_coords_top_left + target_size. */
export function sdxlTimeIds(originalSize: readonly [number, number], cropTopLeft: readonly [number, number], targetSize: readonly [number, number]): number[] {
  return [...originalSize, ...cropTopLeft, ...targetSize];
}
