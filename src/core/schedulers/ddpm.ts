// DDPMScheduler (Ho et al., arXiv 2006.11239) as diffusers' scheduling_ddpm.py: the forward process
// the trainer uses (add_noise, get_velocity, compute_snr) and the ancestral sampler, whose every step
// but the last adds variance noise.
import * as tf from '@tensorflow/tfjs';
import { TorchGenerator } from '../engine/torch_random.js';
import type { Scheduler } from './index.js';
import {
  BETA_FIELDS,
  type ConfigOf,
  type ConfigSpec,
  TIMESTEP_SPACING,
  SchedulerConfigError,
  alphasCumprodFromBetas,
  betasFromConfig,
  f32,
  resolveConfig,
  spacedTimesteps,
  thresholdSample,
} from './betas.js';

const CLASS = 'DDPMScheduler';

export const DDPM_CONFIG = {
  ...BETA_FIELDS,
  variance_type: {
    kind: 'string',
    default: 'fixed_small',
    oneOf: ['fixed_small', 'fixed_small_log', 'fixed_large', 'fixed_large_log', 'learned', 'learned_range'],
  },
  clip_sample: { kind: 'boolean', default: true },
  prediction_type: { kind: 'string', default: 'epsilon', oneOf: ['epsilon', 'sample', 'v_prediction'] },
  thresholding: { kind: 'boolean', default: false },
  dynamic_thresholding_ratio: { kind: 'number', default: 0.995 },
  clip_sample_range: { kind: 'number', default: 1.0 },
  sample_max_value: { kind: 'number', default: 1.0 },
  timestep_spacing: { ...TIMESTEP_SPACING, default: 'leading' },
  steps_offset: { kind: 'integer', default: 0 },
  rescale_betas_zero_snr: { kind: 'boolean', default: false },
} as const satisfies ConfigSpec;

export type DDPMConfig = ConfigOf<typeof DDPM_CONFIG>;

/** Where step() gets its variance noise: a tensor shaped like the sample, or a torch-compatible generator. */
export type VarianceNoise = tf.Tensor | TorchGenerator;

export class DDPMScheduler implements Scheduler {
  readonly config: DDPMConfig;
  readonly initNoiseSigma = 1.0;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  timesteps: number[];
  /**
   * Layout of the samples given to step(), used only when noise is drawn from a TorchGenerator: torch
   * draws `randn(B, C, H, W)`, so for NHWC samples the draw is transposed to keep diffusers' numbers.
   */
  noiseLayout: 'NHWC' | 'NCHW' = 'NHWC';
  private numInferenceSteps: number | null = null;
  private fallbackGenerator: TorchGenerator | null = null;
  private tables: { sqrtAlpha: tf.Tensor1D; sqrtOneMinusAlpha: tf.Tensor1D } | null = null;

  constructor(config: Record<string, unknown> = {}) {
    this.config = resolveConfig(CLASS, DDPM_CONFIG, config);
    if (this.config.variance_type === 'learned' || this.config.variance_type === 'learned_range') {
      throw new SchedulerConfigError(`${CLASS}: variance_type "${this.config.variance_type}" needs a model that predicts its variance; Stable Diffusion UNets do not — use fixed_small`);
    }
    this.betas = betasFromConfig(CLASS, this.config);
    this.alphasCumprod = alphasCumprodFromBetas(this.betas);
    const n = this.config.num_train_timesteps;
    this.timesteps = Array.from({ length: n }, (_, i) => n - 1 - i);
  }

  // ─────────────────────────────── training: the forward process ───────────────────────────────

  /** √ᾱ_t and √(1 − ᾱ_t) per training timestep, in float32 as torch computes `ᾱ ** 0.5`. */
  private noiseTables() {
    if (!this.tables) {
      // Kept across calls (and out of any caller's tidy); freed by dispose().
      const ac = this.alphasCumprod;
      this.tables = {
        sqrtAlpha: tf.keep(tf.tensor1d(ac.map((a) => f32(Math.sqrt(a))))),
        sqrtOneMinusAlpha: tf.keep(tf.tensor1d(ac.map((a) => f32(Math.sqrt(f32(1 - a)))))),
      };
    }
    return this.tables;
  }

  private perItemFactors(timesteps: tf.Tensor1D, rank: number): [tf.Tensor, tf.Tensor] {
    const { sqrtAlpha, sqrtOneMinusAlpha } = this.noiseTables();
    const shape = [timesteps.shape[0], ...Array(rank - 1).fill(1)];
    const idx = timesteps.dtype === 'int32' ? timesteps : timesteps.toInt();
    return [tf.gather(sqrtAlpha, idx).reshape(shape), tf.gather(sqrtOneMinusAlpha, idx).reshape(shape)];
  }

  /** x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, one timestep per batch item. */
  addNoise(original: tf.Tensor, noise: tf.Tensor, timesteps: tf.Tensor1D): tf.Tensor {
    return tf.tidy(() => {
      const [a, s] = this.perItemFactors(timesteps, original.rank);
      return a.mul(original).add(s.mul(noise));
    });
  }

  /** The v-prediction target v = √ᾱ_t·ε − √(1 − ᾱ_t)·x₀ (Salimans & Ho, arXiv 2202.00512). */
  getVelocity(sample: tf.Tensor, noise: tf.Tensor, timesteps: tf.Tensor1D): tf.Tensor {
    return tf.tidy(() => {
      const [a, s] = this.perItemFactors(timesteps, sample.rank);
      return a.mul(noise).sub(s.mul(sample));
    });
  }

  /** diffusers training_utils.compute_snr: SNR(t) = (√ᾱ_t / √(1 − ᾱ_t))², for min-SNR weighting. */
  computeSnr(timesteps: readonly number[]): number[] {
    return timesteps.map((t) => {
      const a = this.alphasCumprod[this.checkTimestep(t)];
      const alpha = f32(Math.sqrt(a));
      const sigma = f32(Math.sqrt(f32(1 - a)));
      return f32(f32(alpha / sigma) ** 2);
    });
  }

  private checkTimestep(t: number): number {
    if (!Number.isInteger(t) || t < 0 || t >= this.alphasCumprod.length) {
      throw new RangeError(`${CLASS}: timestep ${t} is outside 0..${this.alphasCumprod.length - 1}`);
    }
    return t;
  }

  // ──────────────────────────────────────── sampling ────────────────────────────────────────

  setTimesteps(numInferenceSteps: number): void {
    this.numInferenceSteps = numInferenceSteps;
    const c = this.config;
    this.timesteps = spacedTimesteps(CLASS, c.timestep_spacing, c.num_train_timesteps, numInferenceSteps, c.steps_offset);
  }

  scaleModelInput(sample: tf.Tensor): tf.Tensor {
    return sample.clone();
  }

  previousTimestep(t: number): number {
    if (this.numInferenceSteps === null) return t - 1;
    const i = this.timesteps.indexOf(t);
    if (i < 0) throw new RangeError(`${CLASS}: timestep ${t} is not one of this schedule's timesteps`);
    return i === this.timesteps.length - 1 ? -1 : this.timesteps[i + 1];
  }

  /** The variance of p(x_{t−1} | x_t) per `variance_type`, as a float32 scalar (before the sqrt). */
  private variance(t: number): number {
    const prev = this.previousTimestep(t);
    const a = this.alphasCumprod[t];
    const aPrev = prev >= 0 ? this.alphasCumprod[prev] : 1;
    const currentBeta = f32(1 - f32(a / aPrev));
    const variance = Math.max(f32(f32(f32(1 - aPrev) / f32(1 - a)) * currentBeta), 1e-20);
    switch (this.config.variance_type) {
      case 'fixed_small':
        return variance;
      case 'fixed_small_log':
        return f32(Math.exp(f32(0.5 * f32(Math.log(variance)))));
      case 'fixed_large':
        return currentBeta;
      case 'fixed_large_log':
        return f32(Math.log(currentBeta));
      default:
        throw new SchedulerConfigError(`${CLASS}: variance_type ${this.config.variance_type} is not supported`);
    }
  }

  /**
   * One ancestral step. The variance noise comes from `noise`: a tensor like the sample, or a
   * TorchGenerator (the same numbers diffusers draws from `torch.Generator().manual_seed(s)`); without
   * it, from a generator seeded at random on first use.
   */
  step(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor, noise?: VarianceNoise): tf.Tensor {
    const t = this.checkTimestep(timestep);
    const c = this.config;
    const prev = this.previousTimestep(t);
    const a = this.alphasCumprod[t];
    const aPrev = prev >= 0 ? this.alphasCumprod[prev] : 1;
    const betaProd = f32(1 - a);
    const betaProdPrev = f32(1 - aPrev);
    const currentAlpha = f32(a / aPrev);
    const currentBeta = f32(1 - currentAlpha);
    const varianceNoise = t > 0 ? this.varianceNoise(modelOutput.shape, noise) : null;

    return tf.tidy(() => {
      let predOriginal: tf.Tensor;
      if (c.prediction_type === 'epsilon') {
        predOriginal = sample.sub(modelOutput.mul(f32(Math.sqrt(betaProd)))).div(f32(Math.sqrt(a)));
      } else if (c.prediction_type === 'sample') {
        predOriginal = modelOutput;
      } else {
        predOriginal = sample.mul(f32(Math.sqrt(a))).sub(modelOutput.mul(f32(Math.sqrt(betaProd))));
      }
      if (c.thresholding) predOriginal = thresholdSample(predOriginal, c.dynamic_thresholding_ratio, c.sample_max_value);
      else if (c.clip_sample) predOriginal = predOriginal.clipByValue(-c.clip_sample_range, c.clip_sample_range);

      // μ̃_t(x_t, x₀) of the DDPM paper, eq. 7.
      const predOriginalCoeff = f32(f32(f32(Math.sqrt(aPrev)) * currentBeta) / betaProd);
      const currentSampleCoeff = f32(f32(f32(Math.sqrt(currentAlpha)) * betaProdPrev) / betaProd);
      let prevSample = predOriginal.mul(predOriginalCoeff).add(sample.mul(currentSampleCoeff));

      if (varianceNoise) {
        const v = this.variance(t);
        const scale = c.variance_type === 'fixed_small_log' ? v : f32(Math.sqrt(v));
        prevSample = prevSample.add(varianceNoise.mul(scale));
        varianceNoise.dispose();
      }
      return prevSample;
    });
  }

  private varianceNoise(shape: number[], noise?: VarianceNoise): tf.Tensor {
    if (noise instanceof tf.Tensor) {
      if (noise.shape.join() !== shape.join()) throw new Error(`${CLASS}.step: noise shape [${noise.shape}] differs from the sample's [${shape}]`);
      return noise.clone();
    }
    const gen = noise ?? (this.fallbackGenerator ??= new TorchGenerator(Math.floor(Math.random() * 2 ** 32)));
    if (shape.length === 4 && this.noiseLayout === 'NHWC') {
      const [b, h, w, ch] = shape;
      return tf.tidy(() => tf.tensor4d(gen.randn([b, ch, h, w]), [b, ch, h, w]).transpose([0, 2, 3, 1]));
    }
    return tf.tensor(gen.randn(shape), shape);
  }

  dispose(): void {
    if (this.tables) {
      this.tables.sqrtAlpha.dispose();
      this.tables.sqrtOneMinusAlpha.dispose();
      this.tables = null;
    }
  }
}
