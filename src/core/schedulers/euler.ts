// EulerDiscreteScheduler as diffusers' scheduling_euler_discrete.py: Euler's method on the
// probability-flow ODE in σ = sqrt((1 − ᾱ)/ᾱ) (Karras et al., arXiv 2206.00364, Algorithm 2 without
// churn). The sample lives at scale sqrt(σ² + 1), so the UNet input is divided by it.
import * as tf from '@tensorflow/tfjs';
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
  npInterpIndex,
  npLinspace,
  resolveConfig,
  sigmasFromAlphasCumprod,
  spacedTimesteps,
  torchLinspaceF32,
} from './betas.js';

const CLASS = 'EulerDiscreteScheduler';

export const EULER_CONFIG = {
  ...BETA_FIELDS,
  prediction_type: { kind: 'string', default: 'epsilon', oneOf: ['epsilon', 'sample', 'original_sample', 'v_prediction'] },
  interpolation_type: { kind: 'string', default: 'linear', oneOf: ['linear', 'log_linear'] },
  use_karras_sigmas: { kind: 'boolean', default: false, nullable: true },
  use_exponential_sigmas: { kind: 'boolean', default: false, nullable: true },
  use_beta_sigmas: { kind: 'boolean', default: false, nullable: true },
  sigma_min: { kind: 'number', default: null, nullable: true },
  sigma_max: { kind: 'number', default: null, nullable: true },
  timestep_spacing: { ...TIMESTEP_SPACING, default: 'linspace' },
  timestep_type: { kind: 'string', default: 'discrete', oneOf: ['discrete', 'continuous'] },
  steps_offset: { kind: 'integer', default: 0 },
  rescale_betas_zero_snr: { kind: 'boolean', default: false },
  final_sigmas_type: { kind: 'string', default: 'zero', oneOf: ['zero', 'sigma_min'] },
} as const satisfies ConfigSpec;

export type EulerConfig = ConfigOf<typeof EULER_CONFIG>;

/** Karras et al. eq. 5: σ_i = (σ_max^(1/ρ) + i/(n−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, ρ = 7, in float64. */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const rho = 7.0;
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return npLinspace(0, 1, n).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** Geometric spacing from σ_max to σ_min, in float64. */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  return npLinspace(Math.log(sigmaMax), Math.log(sigmaMin), n).map(Math.exp);
}

/**
 * diffusers `_sigma_to_t`: the fractional training timestep whose σ is `sigma`, interpolating log σ
 * between its neighbours in the (float32) log-σ table.
 */
export function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // low = the last index whose log σ is ≤ log_sigma (argmax of the cumulative count), at most n − 2.
  let count = 0;
  let best = -1;
  let lowIdx = 0;
  for (let i = 0; i < logSigmas.length; i++) {
    if (logSigma - logSigmas[i] >= 0) count++;
    if (count > best) {
      best = count;
      lowIdx = i;
    }
  }
  lowIdx = Math.min(lowIdx, logSigmas.length - 2);
  const low = logSigmas[lowIdx];
  const high = logSigmas[lowIdx + 1];
  const w = Math.min(Math.max((low - logSigma) / f32(low - high), 0), 1);
  return (1 - w) * lowIdx + w * (lowIdx + 1);
}

export class EulerDiscreteScheduler implements Scheduler {
  readonly config: EulerConfig;
  readonly alphasCumprod: Float32Array;
  timesteps: number[];
  /** σ per inference step, then the final σ (0 or σ_min); float32. */
  sigmas: Float32Array;
  private stepIndex: number | null = null;

  constructor(config: Record<string, unknown> = {}) {
    this.config = resolveConfig(CLASS, EULER_CONFIG, config);
    const c = this.config;
    const picked = [c.use_karras_sigmas, c.use_exponential_sigmas, c.use_beta_sigmas].filter(Boolean).length;
    if (picked > 1) throw new SchedulerConfigError(`${CLASS}: only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas can be true`);
    if (c.use_beta_sigmas) throw new SchedulerConfigError(`${CLASS}: use_beta_sigmas is not supported (it needs scipy's beta quantiles); use use_karras_sigmas or use_exponential_sigmas`);
    this.alphasCumprod = alphasCumprodFromBetas(betasFromConfig(CLASS, c));
    if (c.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    // Before setTimesteps: every training timestep, σ descending, then 0.
    const trainSigmas = sigmasFromAlphasCumprod(this.alphasCumprod).reverse();
    const n = c.num_train_timesteps;
    this.sigmas = Float32Array.from([...trainSigmas, 0]);
    this.timesteps = npLinspace(0, n - 1, n).reverse().map(f32);
    if (c.timestep_type === 'continuous' && c.prediction_type === 'v_prediction') {
      this.timesteps = Array.from(trainSigmas, (s) => f32(0.25 * f32(Math.log(s))));
    }
  }

  get initNoiseSigma(): number {
    let max = 0;
    for (const s of this.sigmas) max = Math.max(max, s);
    if (this.config.timestep_spacing === 'linspace' || this.config.timestep_spacing === 'trailing') return max;
    return f32(Math.sqrt(f32(f32(max * max) + 1)));
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    const n = numInferenceSteps;
    let timesteps = spacedTimesteps(CLASS, c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset, false);
    const trainSigmas = sigmasFromAlphasCumprod(this.alphasCumprod);
    const logSigmas = trainSigmas.map((s) => f32(Math.log(s)));

    let sigmas: number[];
    if (c.interpolation_type === 'linear') {
      sigmas = timesteps.map((t) => npInterpIndex(t, trainSigmas));
    } else {
      // torch.linspace(log σ_last, log σ_first, n + 1).exp(), in float32.
      sigmas = Array.from(torchLinspaceF32(Math.log(trainSigmas[trainSigmas.length - 1]), Math.log(trainSigmas[0]), n + 1), (v) => f32(Math.exp(v)));
    }
    const sigmaMin = c.sigma_min ?? sigmas[sigmas.length - 1];
    const sigmaMax = c.sigma_max ?? sigmas[0];
    if (c.use_karras_sigmas || c.use_exponential_sigmas) {
      sigmas = c.use_karras_sigmas ? karrasSigmas(sigmaMin, sigmaMax, n) : exponentialSigmas(sigmaMin, sigmaMax, n);
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
    }
    const last = c.final_sigmas_type === 'sigma_min' ? f32(Math.sqrt(f32(f32(1 - this.alphasCumprod[0]) / this.alphasCumprod[0]))) : 0;
    this.sigmas = Float32Array.from([...sigmas, last]);
    if (c.timestep_type === 'continuous' && c.prediction_type === 'v_prediction') {
      this.timesteps = Array.from(this.sigmas.subarray(0, n), (s) => f32(0.25 * f32(Math.log(s))));
    } else {
      this.timesteps = timesteps.map(f32);
    }
    this.stepIndex = null;
  }

  /** diffusers index_for_timestep: the position of `timestep` (the second one if it occurs twice). */
  private initStepIndex(timestep: number): number {
    const hits: number[] = [];
    this.timesteps.forEach((t, i) => t === f32(timestep) && hits.push(i));
    if (hits.length === 0) throw new RangeError(`${CLASS}: timestep ${timestep} is not one of this schedule's timesteps`);
    return hits.length > 1 ? hits[1] : hits[0];
  }

  scaleModelInput(sample: tf.Tensor, timestep: number): tf.Tensor {
    this.stepIndex ??= this.initStepIndex(timestep);
    const sigma = this.sigmas[this.stepIndex];
    return tf.tidy(() => sample.div(f32(Math.sqrt(f32(f32(sigma * sigma) + 1)))));
  }

  step(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor): tf.Tensor {
    this.stepIndex ??= this.initStepIndex(timestep);
    const i = this.stepIndex;
    if (i >= this.sigmas.length - 1) throw new RangeError(`${CLASS}: step called more times than there are timesteps`);
    const c = this.config;
    const sigma = this.sigmas[i];
    // No churn (s_churn = 0): σ̂ = σ·(γ + 1) = σ.
    const sigmaHat = sigma;
    const dt = f32(this.sigmas[i + 1] - sigmaHat);
    const out = tf.tidy(() => {
      let predOriginal: tf.Tensor;
      if (c.prediction_type === 'epsilon') {
        predOriginal = sample.sub(modelOutput.mul(sigmaHat));
      } else if (c.prediction_type === 'v_prediction') {
        const s2p1 = f32(f32(sigma * sigma) + 1);
        predOriginal = modelOutput.mul(f32(-sigma / f32(Math.sqrt(s2p1)))).add(sample.div(s2p1));
      } else {
        predOriginal = modelOutput;
      }
      const derivative = sample.sub(predOriginal).div(sigmaHat);
      return sample.add(derivative.mul(dt));
    });
    this.stepIndex = i + 1;
    return out;
  }

  dispose(): void {}
}
