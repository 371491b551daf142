// DDIMScheduler (Song et al., arXiv 2010.02502) as diffusers' scheduling_ddim.py, deterministic
// (eta = 0, what the Stable Diffusion pipelines use): predict x₀, then jump to the previous timestep
// along the predicted noise direction.
import * as tf from '@tensorflow/tfjs';
import type { Scheduler } from './index.js';
import {
  BETA_FIELDS,
  type ConfigOf,
  type ConfigSpec,
  TIMESTEP_SPACING,
  alphasCumprodFromBetas,
  betasFromConfig,
  f32,
  resolveConfig,
  spacedTimesteps,
  thresholdSample,
} from './betas.js';

const CLASS = 'DDIMScheduler';

export const DDIM_CONFIG = {
  ...BETA_FIELDS,
  clip_sample: { kind: 'boolean', default: true },
  set_alpha_to_one: { kind: 'boolean', default: true },
  steps_offset: { kind: 'integer', default: 0 },
  prediction_type: { kind: 'string', default: 'epsilon', oneOf: ['epsilon', 'sample', 'v_prediction'] },
  thresholding: { kind: 'boolean', default: false },
  dynamic_thresholding_ratio: { kind: 'number', default: 0.995 },
  clip_sample_range: { kind: 'number', default: 1.0 },
  sample_max_value: { kind: 'number', default: 1.0 },
  timestep_spacing: { ...TIMESTEP_SPACING, default: 'leading' },
  rescale_betas_zero_snr: { kind: 'boolean', default: false },
} as const satisfies ConfigSpec;

export type DDIMConfig = ConfigOf<typeof DDIM_CONFIG>;

export class DDIMScheduler implements Scheduler {
  readonly config: DDIMConfig;
  readonly initNoiseSigma = 1.0;
  readonly alphasCumprod: Float32Array;
  /** ᾱ used past the last step: 1 (`set_alpha_to_one`) or ᾱ₀. */
  readonly finalAlphaCumprod: number;
  timesteps: number[];
  private numInferenceSteps: number | null = null;

  constructor(config: Record<string, unknown> = {}) {
    this.config = resolveConfig(CLASS, DDIM_CONFIG, config);
    this.alphasCumprod = alphasCumprodFromBetas(betasFromConfig(CLASS, this.config));
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
    const n = this.config.num_train_timesteps;
    this.timesteps = Array.from({ length: n }, (_, i) => n - 1 - i);
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    this.timesteps = spacedTimesteps(CLASS, c.timestep_spacing, c.num_train_timesteps, numInferenceSteps, c.steps_offset);
    this.numInferenceSteps = numInferenceSteps;
  }

  scaleModelInput(sample: tf.Tensor): tf.Tensor {
    return sample.clone();
  }

  step(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor): tf.Tensor {
    if (this.numInferenceSteps === null) throw new Error(`${CLASS}: call setTimesteps before step`);
    const c = this.config;
    // diffusers steps back by a fixed stride, whatever the spacing.
    const prevTimestep = timestep - Math.floor(c.num_train_timesteps / this.numInferenceSteps);
    const a = this.alphasCumprod[timestep];
    if (a === undefined) throw new RangeError(`${CLASS}: timestep ${timestep} is outside 0..${c.num_train_timesteps - 1}`);
    const aPrev = prevTimestep >= 0 ? this.alphasCumprod[prevTimestep] : this.finalAlphaCumprod;
    const betaProd = f32(1 - a);
    const sqrtA = f32(Math.sqrt(a));
    const sqrtBeta = f32(Math.sqrt(betaProd));

    return tf.tidy(() => {
      let predOriginal: tf.Tensor;
      let predEpsilon: tf.Tensor;
      if (c.prediction_type === 'epsilon') {
        predOriginal = sample.sub(modelOutput.mul(sqrtBeta)).div(sqrtA);
        predEpsilon = modelOutput;
      } else if (c.prediction_type === 'sample') {
        predOriginal = modelOutput;
        predEpsilon = sample.sub(predOriginal.mul(sqrtA)).div(sqrtBeta);
      } else {
        predOriginal = sample.mul(sqrtA).sub(modelOutput.mul(sqrtBeta));
        predEpsilon = modelOutput.mul(sqrtA).add(sample.mul(sqrtBeta));
      }
      if (c.thresholding) predOriginal = thresholdSample(predOriginal, c.dynamic_thresholding_ratio, c.sample_max_value);
      else if (c.clip_sample) predOriginal = predOriginal.clipByValue(-c.clip_sample_range, c.clip_sample_range);

      // eta = 0: σ_t = 0, so the direction term is sqrt(1 − ᾱ_prev)·ε and no noise is added.
      const direction = predEpsilon.mul(f32(Math.sqrt(f32(1 - aPrev))));
      return predOriginal.mul(f32(Math.sqrt(aPrev))).add(direction);
    });
  }

  dispose(): void {}
}
