// A full LoRA training step at Stable Diffusion 1.5 shapes with random weights, as the guide runs it:
// (VAE encode + text encode when not cached) + noise + UNet forward/backward for the LoRA weights only
// + gradient clipping + AdamW. LoRA r = 4, alpha = 4 on to_q, to_k, to_v, to_out.0 (the reference's setting).
import * as tf from '@tensorflow/tfjs';
import { UNet2DConditionModel } from '../src/core/models/unet_2d_condition.js';
import { AutoencoderKL } from '../src/core/models/autoencoder_kl.js';
import { CLIPTextModel } from '../src/core/models/clip_text_model.js';
import { DDPMScheduler } from '../src/core/schedulers/ddpm.js';
import { TrainableLora } from '../src/training/lora_params.js';
import { Random } from '../src/training/random.js';
import { AdamW } from '../src/training/adamw.js';
import { clipGradNorm } from '../src/training/grad_clip.js';
import { encodeLatents, lossAndGrads } from '../src/training/train_step.js';
import { PeakMemory, gib, round, sync } from './timing.js';

/** diffusers' runwayml/stable-diffusion-v1-5 unet/config.json (the keys that shape the model). */
const SD15_UNET = {
  _class_name: 'UNet2DConditionModel', act_fn: 'silu', attention_head_dim: 8, block_out_channels: [320, 640, 1280, 1280],
  center_input_sample: false, cross_attention_dim: 768,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  downsample_padding: 1, flip_sin_to_cos: true, freq_shift: 0, in_channels: 4, layers_per_block: 2, mid_block_scale_factor: 1,
  norm_eps: 1e-5, norm_num_groups: 32, out_channels: 4, sample_size: 64,
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
};
const SD15_VAE = {
  _class_name: 'AutoencoderKL', act_fn: 'silu', block_out_channels: [128, 256, 512, 512],
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  in_channels: 3, latent_channels: 4, layers_per_block: 2, norm_num_groups: 32, out_channels: 3, sample_size: 512,
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'], scaling_factor: 0.18215,
};
const SD15_CLIP = {
  vocab_size: 49408, hidden_size: 768, intermediate_size: 3072, num_attention_heads: 12, num_hidden_layers: 12,
  layer_norm_eps: 1e-5, hidden_act: 'quick_gelu', max_position_embeddings: 77, eos_token_id: 2,
};
const SD15_SCHEDULER = { num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear' };

/** A tiny model of the same layout, for smoke-testing the step on cpu/wasm. */
const SMALL_UNET = {
  ...SD15_UNET, attention_head_dim: 2, block_out_channels: [32, 64], cross_attention_dim: 32,
  down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'], layers_per_block: 1, sample_size: 8,
};
const SMALL_VAE = { ...SD15_VAE, block_out_channels: [32, 64], down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'], up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'], layers_per_block: 1, sample_size: 16 };
const SMALL_CLIP = { ...SD15_CLIP, vocab_size: 1000, hidden_size: 32, intermediate_size: 64, num_attention_heads: 4, num_hidden_layers: 2 };

export interface StepConfig {
  readonly batch: number;
  /** 'unet_only': latents and text embeddings cached; 'full': VAE encode + text encode every step. */
  readonly mode: 'unet_only' | 'full';
  readonly small: boolean;
  readonly warmup: number;
  readonly steps: number;
}

export interface StepResult {
  readonly name: string;
  readonly batch: number;
  readonly mode: string;
  readonly kernels: string;
  ms_per_step?: number;
  samples_per_s?: number;
  /** Peak GPU bytes in use during the timed steps (webgpu), in GiB. */
  peak_gpu_gib?: number;
  /** What tfjs' buffer manager holds on the GPU at the end (in use + pooled), in GiB. */
  gpu_allocated_gib?: number;
  lora_params?: number;
  first_step_ms?: number;
  loss?: number;
  error?: string;
}

export class StepBench {
  private unet?: UNet2DConditionModel;
  private vae?: AutoencoderKL;
  private text?: CLIPTextModel;

  constructor(private readonly small: boolean) {}

  /** Builds (once) the models a mode needs; random weights, fixed seeds. */
  private models(mode: 'unet_only' | 'full') {
    this.unet ??= UNet2DConditionModel.random(this.small ? SMALL_UNET : SD15_UNET, 1);
    if (mode === 'full') {
      this.vae ??= AutoencoderKL.random(this.small ? SMALL_VAE : SD15_VAE, 2);
      this.text ??= CLIPTextModel.random(this.small ? SMALL_CLIP : SD15_CLIP, 3);
    }
    return { unet: this.unet, vae: this.vae, text: this.text };
  }

  async run(cfg: StepConfig, kernels: string, log: (m: string) => void): Promise<StepResult> {
    const name = `${kernels}_bs${cfg.batch}_${cfg.mode}`;
    const result: StepResult = { name, batch: cfg.batch, mode: cfg.mode, kernels };
    const peak = new PeakMemory();
    const disposables: tf.Tensor[] = [];
    let lora: TrainableLora | undefined;
    try {
      const { unet, vae, text } = this.models(cfg.mode);
      const latentSize = this.small ? 8 : 64;
      // The VAE halves the size once per block but the last: SD's 4 blocks → 8×.
      const imageSize = latentSize * 2 ** ((this.small ? SMALL_VAE : SD15_VAE).block_out_channels.length - 1);
      const hidden = (this.small ? SMALL_CLIP : SD15_CLIP).hidden_size;
      const B = cfg.batch;
      lora = TrainableLora.gaussian(unet.loraTargets(), 4, 4, new Random(0));
      result.lora_params = lora.parameterCount;
      const scheduler = new DDPMScheduler(SD15_SCHEDULER);
      const optimizer = new AdamW({ beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2 });
      const rng = new Random(7);
      const cachedLatents = tf.randomNormal([B, latentSize, latentSize, 4], 0, 1, 'float32', 11) as tf.Tensor4D;
      const cachedText = tf.randomNormal([B, 77, hidden], 0, 1, 'float32', 12) as tf.Tensor3D;
      const pixels = tf.randomUniform([B, imageSize, imageSize, 3], -1, 1, 'float32', 13) as tf.Tensor4D;
      const ids = tf.tensor2d(Int32Array.from({ length: B * 77 }, (_, i) => (i * 7919) % ((this.small ? SMALL_CLIP : SD15_CLIP).vocab_size - 1)), [B, 77], 'int32');
      disposables.push(cachedLatents, cachedText, pixels, ids);

      const step = async (): Promise<number> => {
        let latents = cachedLatents;
        let hs = cachedText;
        if (cfg.mode === 'full') {
          // Frozen encoders: outside the gradient, as the guide runs them under torch.no_grad().
          const eps = tf.randomNormal([B, latentSize, latentSize, 4], 0, 1, 'float32', 14) as tf.Tensor4D;
          latents = encodeLatents(vae!, pixels, eps);
          eps.dispose();
          hs = text!.forward(ids).lastHiddenState;
        }
        const noise = tf.tensor4d(rng.normal([B, latentSize, latentSize, 4]), [B, latentSize, latentSize, 4]);
        const timesteps = Int32Array.from({ length: B }, (_, i) => (137 * (i + 1)) % 1000);
        const { loss, grads } = await lossAndGrads({ unet, scheduler, lora: lora!, predictionType: 'epsilon', snrGamma: null }, { latents, noise, timesteps, encoderHiddenStates: hs });
        const clipped = await clipGradNorm(grads, 1.0);
        optimizer.update(lora!.params, clipped.grads, 1e-4);
        tf.dispose([...grads.values(), ...clipped.grads.values(), noise]);
        if (cfg.mode === 'full') tf.dispose([latents, hs]);
        await sync();
        return loss;
      };

      let t0 = performance.now();
      result.loss = round(await step(), 6);
      result.first_step_ms = round(performance.now() - t0, 1);
      log(`${name}: first step ${result.first_step_ms} ms (builds the pipelines)`);
      for (let i = 1; i < cfg.warmup; i++) await step();
      peak.reset();
      t0 = performance.now();
      for (let i = 0; i < cfg.steps; i++) await step();
      const ms = (performance.now() - t0) / cfg.steps;
      result.ms_per_step = round(ms, 2);
      result.samples_per_s = round((1000 * B) / ms, 3);
      result.peak_gpu_gib = gib(peak.bytes());
      result.gpu_allocated_gib = gib(peak.allocated());
      log(`${name}: ${result.ms_per_step} ms/step, ${result.samples_per_s} samples/s, peak ${result.peak_gpu_gib} GiB`);
    } catch (e) {
      result.error = (e as Error).message;
      log(`${name}: ERROR ${result.error}`);
    } finally {
      tf.dispose(disposables);
      lora?.dispose();
      peak.dispose();
    }
    return result;
  }

  dispose(): void {
    this.unet?.params.dispose();
    this.vae?.params.dispose();
    this.text?.params.dispose();
  }
}
