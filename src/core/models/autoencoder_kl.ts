// diffusers' AutoencoderKL (models/autoencoders/autoencoder_kl.py): the Stable Diffusion VAE. encode()
// gives the latent distribution (mean, std), decode() the image. NHWC; images in [-1, 1].
// Scaling by scaling_factor / shift_factor is the caller's job, as in diffusers.
import * as tf from '@tensorflow/tfjs';
import type { DiffusersFolder } from '../io/diffusers_folder.js';
import { parseActivation } from './embeddings.js';
import { CheckedParams, Conv2d, ModuleScope, randomParams, ShapeRecorder, type ParamSource } from './layers.js';
import type { Params } from './params.js';
import { fromPretrained, type PretrainedOptions } from './pretrained.js';
import { Decoder, Encoder } from './vae.js';

export interface AutoencoderKLConfig {
  readonly in_channels: number;
  readonly out_channels: number;
  readonly down_block_types: string[];
  readonly up_block_types: string[];
  readonly block_out_channels: number[];
  readonly layers_per_block: number;
  readonly act_fn: string;
  readonly latent_channels: number;
  readonly norm_num_groups: number;
  readonly sample_size: number | number[];
  readonly scaling_factor: number;
  /** null in config.json becomes 0 (latents = (z − shift) · scale in every case). */
  readonly shift_factor: number;
  readonly latents_mean: number[] | null;
  readonly latents_std: number[] | null;
  readonly force_upcast: boolean;
  readonly use_quant_conv: boolean;
  readonly use_post_quant_conv: boolean;
  readonly mid_block_add_attention: boolean;
  readonly [key: string]: unknown;
}

const DEFAULTS = {
  in_channels: 3,
  out_channels: 3,
  down_block_types: ['DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D'],
  block_out_channels: [64],
  layers_per_block: 1,
  act_fn: 'silu',
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 32,
  scaling_factor: 0.18215,
  shift_factor: null,
  latents_mean: null,
  latents_std: null,
  force_upcast: true,
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
} as const;

export function normalizeVaeConfig(raw: Record<string, unknown>): AutoencoderKLConfig {
  const c: Record<string, unknown> = { ...DEFAULTS };
  for (const [k, v] of Object.entries(raw)) if (v !== undefined) c[k] = v;
  const fail = (key: string, why: string): never => {
    throw new Error(`vae config.json: ${key} = ${JSON.stringify(c[key])}: ${why}`);
  };
  const int = (key: string, v: unknown = c[key]): number => (Number.isInteger(v) && (v as number) > 0 ? (v as number) : fail(key, 'must be a positive integer'));
  const channels = Array.isArray(c.block_out_channels) && c.block_out_channels.length > 0 ? c.block_out_channels.map((v) => int('block_out_channels', v)) : fail('block_out_channels', 'must be a non-empty list');
  const types = (key: string, want: string) => {
    const v = c[key];
    if (!Array.isArray(v) || v.length !== channels.length) fail(key, `must list one block per block_out_channels entry (${channels.length})`);
    (v as unknown[]).forEach((t) => t === want || fail(key, `block type ${JSON.stringify(t)} is not supported (only ${want})`));
  };
  types('down_block_types', 'DownEncoderBlock2D');
  types('up_block_types', 'UpDecoderBlock2D');
  for (const key of ['in_channels', 'out_channels', 'latent_channels', 'layers_per_block', 'norm_num_groups']) int(key);
  if (parseActivation(c.act_fn, 'act_fn') === null) fail('act_fn', 'must be "silu"');
  if (typeof c.scaling_factor !== 'number') fail('scaling_factor', 'must be a number');
  if (c.shift_factor !== null && typeof c.shift_factor !== 'number') fail('shift_factor', 'must be a number or null');
  for (const key of ['use_quant_conv', 'use_post_quant_conv', 'mid_block_add_attention']) if (typeof c[key] !== 'boolean') fail(key, 'must be true or false');
  return { ...c, block_out_channels: channels, shift_factor: (c.shift_factor as number | null) ?? 0 } as AutoencoderKLConfig;
}

/**
 * Checkpoints saved before diffusers renamed the VAE attention's projections use query/key/value/proj_attn
 * (sometimes as 1×1 conv weights); diffusers converts them on load, so do we.
 */
function convertDeprecatedAttentionNames(params: Params): void {
  const renames: Record<string, string> = { query: 'to_q', key: 'to_k', value: 'to_v', proj_attn: 'to_out.0' };
  for (const name of [...params.tensors.keys()]) {
    const m = /^(.*\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$/.exec(name);
    if (!m) continue;
    let t = params.tensors.get(name)!;
    params.tensors.delete(name);
    if (t.rank === 4) {
      // Params stored the 1×1 conv as HWIO [1, 1, in, out]; a linear weight is [out, in].
      const [, , cin, cout] = t.shape;
      const w = tf.tidy(() => t.reshape([cin, cout]).transpose());
      t.dispose();
      t = w;
    }
    params.tensors.set(`${m[1]}.${renames[m[2]]}.${m[3]}`, t);
  }
}

export class AutoencoderKL {
  readonly config: AutoencoderKLConfig;
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quant_conv?: Conv2d;
  readonly post_quant_conv?: Conv2d;

  constructor(
    config: Record<string, unknown>,
    readonly params: Params,
  ) {
    // Normalizing is idempotent, so a raw config.json and an already normalized config both work.
    const cfg = normalizeVaeConfig(config);
    const checked = new CheckedParams(params, 'AutoencoderKL');
    const parts = AutoencoderKL.build(cfg, checked);
    checked.throwIfProblems();
    this.config = cfg;
    this.encoder = parts.encoder;
    this.decoder = parts.decoder;
    this.quant_conv = parts.quant_conv;
    this.post_quant_conv = parts.post_quant_conv;
  }

  /** Loads a diffusers pipeline folder's vae/, or a vae folder itself (config.json + safetensors weights). */
  static fromPretrained(source: string | DiffusersFolder, opts: PretrainedOptions = {}): AutoencoderKL {
    return fromPretrained(
      { className: 'AutoencoderKL', subfolder: 'vae', convertLegacyKeys: convertDeprecatedAttentionNames, create: (config, params) => new AutoencoderKL(config, params) },
      source,
      opts,
    );
  }

  static expectedParamShapes(config: Record<string, unknown>): Map<string, number[]> {
    const recorder = new ShapeRecorder();
    AutoencoderKL.build(normalizeVaeConfig(config), recorder);
    return recorder.shapes;
  }

  static random(config: Record<string, unknown>, seed = 0): AutoencoderKL {
    return new AutoencoderKL(normalizeVaeConfig(config), randomParams(AutoencoderKL.expectedParamShapes(config), seed));
  }

  private static build(cfg: AutoencoderKLConfig, source: ParamSource) {
    const root = new ModuleScope(source, '');
    const shared = { blockOutChannels: cfg.block_out_channels, layersPerBlock: cfg.layers_per_block, normNumGroups: cfg.norm_num_groups, midBlockAddAttention: cfg.mid_block_add_attention };
    const lc = cfg.latent_channels;
    return {
      encoder: new Encoder(root.child('encoder'), { ...shared, inChannels: cfg.in_channels, outChannels: lc }),
      decoder: new Decoder(root.child('decoder'), { ...shared, inChannels: lc, outChannels: cfg.out_channels }),
      quant_conv: cfg.use_quant_conv ? new Conv2d(root.child('quant_conv'), 2 * lc, 2 * lc, 1) : undefined,
      post_quant_conv: cfg.use_post_quant_conv ? new Conv2d(root.child('post_quant_conv'), lc, lc, 1) : undefined,
    };
  }

  /** x [B, H, W, in_channels] in [-1, 1] → latent_dist's mean and std, [B, H/f, W/f, latent_channels]. */
  encode(x: tf.Tensor4D): { mean: tf.Tensor4D; std: tf.Tensor4D } {
    if (x.shape[3] !== this.config.in_channels) throw new Error(`AutoencoderKL.encode: image has ${x.shape[3]} channels (NHWC), the model takes ${this.config.in_channels}`);
    return tf.tidy(() => {
      let moments = this.encoder.forward(x);
      if (this.quant_conv) moments = this.quant_conv.forward(moments);
      // DiagonalGaussianDistribution: mean and logvar halves, logvar clamped to [-30, 20].
      const [mean, logvar] = tf.split(moments, 2, 3) as [tf.Tensor4D, tf.Tensor4D];
      const std = tf.exp(tf.clipByValue(logvar, -30, 20).mul(0.5)) as tf.Tensor4D;
      return { mean, std };
    });
  }

  /** z [B, h, w, latent_channels], already unscaled (latents / scaling_factor + shift_factor) → image NHWC, ≈[-1, 1]. */
  decode(z: tf.Tensor4D): tf.Tensor4D {
    if (z.shape[3] !== this.config.latent_channels) throw new Error(`AutoencoderKL.decode: latents have ${z.shape[3]} channels (NHWC), the model has ${this.config.latent_channels}`);
    return tf.tidy(() => this.decoder.forward(this.post_quant_conv ? this.post_quant_conv.forward(z) : z));
  }

  dispose(): void {
    this.params.dispose();
  }
}
