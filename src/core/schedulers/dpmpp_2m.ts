// DPMSolverMultistepScheduler as diffusers' scheduling_dpmsolver_multistep.py — with its defaults
// (algorithm_type "dpmsolver++", solver_order 2, midpoint) this is "DPM++ 2M" (Lu et al., arXiv
// 2211.01095): each step turns the model output into a data prediction x₀ and extrapolates linearly
// in λ = log(α/σ) from the last two of them. Deterministic; the SDE variants are not offered.
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
  npArange,
  npInterpIndex,
  npLinspace,
  resolveConfig,
  roundHalfEven,
  sigmasFromAlphasCumprod,
  thresholdSample,
} from './betas.js';
import { exponentialSigmas, karrasSigmas, sigmaToT } from './euler.js';

const CLASS = 'DPMSolverMultistepScheduler';

export const DPM_CONFIG = {
  ...BETA_FIELDS,
  solver_order: { kind: 'integer', default: 2 },
  prediction_type: { kind: 'string', default: 'epsilon', oneOf: ['epsilon', 'sample', 'v_prediction', 'flow_prediction'] },
  thresholding: { kind: 'boolean', default: false },
  dynamic_thresholding_ratio: { kind: 'number', default: 0.995 },
  sample_max_value: { kind: 'number', default: 1.0 },
  algorithm_type: { kind: 'string', default: 'dpmsolver++', oneOf: ['dpmsolver', 'dpmsolver++', 'sde-dpmsolver', 'sde-dpmsolver++', 'deis'] },
  solver_type: { kind: 'string', default: 'midpoint', oneOf: ['midpoint', 'heun', 'logrho', 'bh1', 'bh2'] },
  lower_order_final: { kind: 'boolean', default: true },
  euler_at_final: { kind: 'boolean', default: false },
  use_karras_sigmas: { kind: 'boolean', default: false, nullable: true },
  use_exponential_sigmas: { kind: 'boolean', default: false, nullable: true },
  use_beta_sigmas: { kind: 'boolean', default: false, nullable: true },
  use_lu_lambdas: { kind: 'boolean', default: false, nullable: true },
  use_flow_sigmas: { kind: 'boolean', default: false, nullable: true },
  flow_shift: { kind: 'number', default: 1.0, nullable: true },
  final_sigmas_type: { kind: 'string', default: 'zero', oneOf: ['zero', 'sigma_min'] },
  lambda_min_clipped: { kind: 'number', default: -Infinity },
  variance_type: { kind: 'string', default: null, nullable: true, oneOf: ['learned', 'learned_range'] },
  timestep_spacing: { ...TIMESTEP_SPACING, default: 'linspace' },
  steps_offset: { kind: 'integer', default: 0 },
  rescale_betas_zero_snr: { kind: 'boolean', default: false },
  use_dynamic_shifting: { kind: 'boolean', default: false },
  time_shift_type: { kind: 'string', default: 'exponential', oneOf: ['exponential'] },
} as const satisfies ConfigSpec;

export type DPMConfig = ConfigOf<typeof DPM_CONFIG>;

/** α_t = 1/sqrt(σ² + 1), σ_t = σ·α_t, λ = log α_t − log σ_t: float32 as torch evaluates them. */
function alphaSigmaLambda(sigma: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  const s = f32(sigma * alpha);
  return { alpha, sigma: s, lambda: f32(f32(Math.log(alpha)) - f32(Math.log(s))) };
}

export class DPMSolverMultistepScheduler implements Scheduler {
  readonly config: DPMConfig;
  readonly initNoiseSigma = 1.0;
  readonly alphasCumprod: Float32Array;
  timesteps: number[];
  /** σ per inference step, then the final σ; float32. */
  sigmas: Float32Array;
  private modelOutputs: (tf.Tensor | null)[];
  private lowerOrderNums = 0;
  private stepIndex: number | null = null;
  private numInferenceSteps: number | null = null;

  constructor(config: Record<string, unknown> = {}) {
    const c = (this.config = resolveConfig(CLASS, DPM_CONFIG, config));
    // diffusers maps these legacy names onto the supported ones.
    if (c.algorithm_type === 'deis') c.algorithm_type = 'dpmsolver++';
    if (c.solver_type !== 'midpoint' && c.solver_type !== 'heun') c.solver_type = 'midpoint';
    const refuse = (why: string) => {
      throw new SchedulerConfigError(`${CLASS}: ${why}`);
    };
    if (c.algorithm_type === 'sde-dpmsolver' || c.algorithm_type === 'sde-dpmsolver++') refuse(`algorithm_type "${c.algorithm_type}" (stochastic) is not supported; use dpmsolver++`);
    if (c.algorithm_type === 'dpmsolver' && c.final_sigmas_type === 'zero') refuse('final_sigmas_type "zero" is not supported for algorithm_type "dpmsolver"; choose "sigma_min"');
    if (c.use_beta_sigmas) refuse('use_beta_sigmas is not supported (it needs scipy\'s beta quantiles); use use_karras_sigmas or use_exponential_sigmas');
    if (c.use_flow_sigmas || c.prediction_type === 'flow_prediction' || c.use_dynamic_shifting) refuse('flow-matching settings (use_flow_sigmas, flow_prediction, use_dynamic_shifting) are for flow models, not Stable Diffusion');
    if (c.variance_type) refuse(`variance_type "${c.variance_type}" needs a model that predicts its variance; Stable Diffusion UNets do not`);
    if (![1, 2, 3].includes(c.solver_order)) refuse(`solver_order must be 1, 2 or 3 (got ${c.solver_order})`);
    if ([c.use_karras_sigmas, c.use_exponential_sigmas, c.use_lu_lambdas].filter(Boolean).length > 1) refuse('choose only one of use_karras_sigmas, use_exponential_sigmas, use_lu_lambdas');

    this.alphasCumprod = alphasCumprodFromBetas(betasFromConfig(CLASS, c));
    if (c.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    this.sigmas = sigmasFromAlphasCumprod(this.alphasCumprod);
    const n = c.num_train_timesteps;
    this.timesteps = npLinspace(0, n - 1, n).reverse().map(f32);
    this.modelOutputs = new Array(c.solver_order).fill(null);
  }

  /** The first training timestep whose λ falls below lambda_min_clipped is where the schedule starts. */
  private lastTimestep(): number {
    const c = this.config;
    if (c.lambda_min_clipped === -Infinity) return c.num_train_timesteps;
    const lambdas = Array.from(this.alphasCumprod, (a) => f32(f32(Math.log(f32(Math.sqrt(a)))) - f32(Math.log(f32(Math.sqrt(f32(1 - a)))))));
    lambdas.reverse(); // ascending
    let clippedIdx = lambdas.findIndex((l) => l >= c.lambda_min_clipped);
    if (clippedIdx < 0) clippedIdx = lambdas.length;
    return c.num_train_timesteps - clippedIdx;
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    const n = numInferenceSteps;
    if (!Number.isInteger(n) || n < 1) throw new SchedulerConfigError(`${CLASS}: the number of inference steps must be a positive integer (got ${n})`);
    const last = this.lastTimestep();
    let timesteps: number[];
    if (c.timestep_spacing === 'linspace') {
      timesteps = npLinspace(0, last - 1, n + 1).map(roundHalfEven).reverse().slice(0, -1);
    } else if (c.timestep_spacing === 'leading') {
      const ratio = Math.floor(last / (n + 1));
      timesteps = Array.from({ length: n }, (_, i) => (n - i) * ratio + c.steps_offset);
    } else {
      timesteps = npArange(last, 0, -c.num_train_timesteps / n).map((t) => roundHalfEven(t) - 1);
    }

    const trainSigmas = sigmasFromAlphasCumprod(this.alphasCumprod);
    const logSigmas = trainSigmas.map((s) => f32(Math.log(s)));
    const roundT = c.beta_schedule !== 'squaredcos_cap_v2';
    let sigmas: number[];
    if (c.use_karras_sigmas || c.use_exponential_sigmas) {
      // diffusers flips the (ascending) σ table: σ_min is the first training σ, σ_max the last.
      const sMin = trainSigmas[0];
      const sMax = trainSigmas[trainSigmas.length - 1];
      sigmas = c.use_karras_sigmas ? karrasSigmas(sMin, sMax, n) : exponentialSigmas(sMin, sMax, n);
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
      if (c.use_karras_sigmas && roundT) timesteps = timesteps.map(roundHalfEven);
    } else if (c.use_lu_lambdas) {
      // Uniform in λ = −log σ (log σ here, as diffusers flips the log-σ table).
      const lambdas = Array.from(logSigmas).reverse();
      const lMin = lambdas[lambdas.length - 1];
      const lMax = lambdas[0];
      sigmas = npLinspace(0, 1, n).map((r) => Math.exp(lMax + r * (lMin - lMax)));
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
      if (roundT) timesteps = timesteps.map(roundHalfEven);
    } else {
      sigmas = timesteps.map((t) => npInterpIndex(t, trainSigmas));
    }
    const final = c.final_sigmas_type === 'sigma_min' ? f32(Math.sqrt(f32(f32(1 - this.alphasCumprod[0]) / this.alphasCumprod[0]))) : 0;
    this.sigmas = Float32Array.from([...sigmas, final]);
    // int64 in diffusers: fractional timesteps (exponential sigmas, cosine betas) are truncated.
    this.timesteps = timesteps.map((t) => Math.trunc(t));
    this.numInferenceSteps = this.timesteps.length;
    this.clearHistory();
    this.lowerOrderNums = 0;
    this.stepIndex = null;
  }

  scaleModelInput(sample: tf.Tensor): tf.Tensor {
    return sample.clone();
  }

  /** diffusers index_for_timestep: second match if repeated, the last step if absent. */
  private initStepIndex(timestep: number): number {
    const hits: number[] = [];
    this.timesteps.forEach((t, i) => t === timestep && hits.push(i));
    if (hits.length === 0) return this.timesteps.length - 1;
    return hits.length > 1 ? hits[1] : hits[0];
  }

  /** The model output as the solver's variable: x₀ for dpmsolver++, ε for dpmsolver. */
  private convertModelOutput(modelOutput: tf.Tensor, sample: tf.Tensor): tf.Tensor {
    const c = this.config;
    const { alpha, sigma } = alphaSigmaLambda(this.sigmas[this.stepIndex!]);
    if (c.algorithm_type === 'dpmsolver++') {
      let x0: tf.Tensor;
      if (c.prediction_type === 'epsilon') x0 = sample.sub(modelOutput.mul(sigma)).div(alpha);
      else if (c.prediction_type === 'sample') x0 = modelOutput;
      else x0 = sample.mul(alpha).sub(modelOutput.mul(sigma));
      return c.thresholding ? thresholdSample(x0, c.dynamic_thresholding_ratio, c.sample_max_value) : x0;
    }
    let eps: tf.Tensor;
    if (c.prediction_type === 'epsilon') eps = modelOutput;
    else if (c.prediction_type === 'sample') eps = sample.sub(modelOutput.mul(alpha)).div(sigma);
    else eps = modelOutput.mul(alpha).add(sample.mul(sigma));
    if (c.thresholding) {
      const x0 = thresholdSample(sample.sub(eps.mul(sigma)).div(alpha), c.dynamic_thresholding_ratio, c.sample_max_value);
      eps = sample.sub(x0.mul(alpha)).div(sigma);
    }
    return eps;
  }

  step(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor): tf.Tensor {
    if (this.numInferenceSteps === null) throw new Error(`${CLASS}: call setTimesteps before step`);
    this.stepIndex ??= this.initStepIndex(timestep);
    const i = this.stepIndex;
    const c = this.config;
    const n = this.timesteps.length;
    const lowerOrderFinal = i === n - 1 && (c.euler_at_final || (c.lower_order_final && n < 15) || c.final_sigmas_type === 'zero');
    const lowerOrderSecond = i === n - 2 && c.lower_order_final && n < 15;

    const converted = tf.keep(tf.tidy(() => this.convertModelOutput(modelOutput, sample)));
    const dropped = this.modelOutputs.shift();
    if (dropped && !this.modelOutputs.includes(dropped)) dropped.dispose();
    this.modelOutputs.push(converted);

    const out = tf.tidy(() => {
      if (c.solver_order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) return this.firstOrder(converted, sample);
      if (c.solver_order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) return this.secondOrder(sample);
      return this.thirdOrder(sample);
    });
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return out;
  }

  /** DPM-Solver(++)-1, i.e. DDIM in λ. */
  private firstOrder(m: tf.Tensor, sample: tf.Tensor): tf.Tensor {
    const i = this.stepIndex!;
    const t = alphaSigmaLambda(this.sigmas[i + 1]);
    const s = alphaSigmaLambda(this.sigmas[i]);
    const h = f32(t.lambda - s.lambda);
    if (this.config.algorithm_type === 'dpmsolver++') {
      return sample.mul(f32(t.sigma / s.sigma)).sub(m.mul(f32(t.alpha * f32(f32(Math.exp(-h)) - 1))));
    }
    return sample.mul(f32(t.alpha / s.alpha)).sub(m.mul(f32(t.sigma * f32(f32(Math.exp(h)) - 1))));
  }

  /** Multistep second order: D0 = m0, D1 = (m0 − m1)/r0 with r0 = h_prev/h. */
  private secondOrder(sample: tf.Tensor): tf.Tensor {
    const i = this.stepIndex!;
    const c = this.config;
    const t = alphaSigmaLambda(this.sigmas[i + 1]);
    const s0 = alphaSigmaLambda(this.sigmas[i]);
    const s1 = alphaSigmaLambda(this.sigmas[i - 1]);
    const [m1, m0] = this.modelOutputs.slice(-2) as tf.Tensor[];
    const h = f32(t.lambda - s0.lambda);
    const h0 = f32(s0.lambda - s1.lambda);
    const r0 = f32(h0 / h);
    const d0 = m0;
    const d1 = m0.sub(m1).mul(f32(1 / r0));
    if (c.algorithm_type === 'dpmsolver++') {
      const expm1 = f32(f32(Math.exp(-h)) - 1);
      const a = sample.mul(f32(t.sigma / s0.sigma)).sub(d0.mul(f32(t.alpha * expm1)));
      if (c.solver_type === 'midpoint') return a.sub(d1.mul(f32(0.5 * f32(t.alpha * expm1))));
      return a.add(d1.mul(f32(t.alpha * f32(f32(expm1 / h) + 1))));
    }
    const expm1 = f32(f32(Math.exp(h)) - 1);
    const a = sample.mul(f32(t.alpha / s0.alpha)).sub(d0.mul(f32(t.sigma * expm1)));
    if (c.solver_type === 'midpoint') return a.sub(d1.mul(f32(0.5 * f32(t.sigma * expm1))));
    return a.sub(d1.mul(f32(t.sigma * f32(f32(expm1 / h) - 1))));
  }

  /**
   * Multistep third order (solver_order 3). D1 ≈ h·x₀′ and D2 ≈ h²·x₀″/2 from the last three outputs;
   * D2's weight α_t(½ − φ/h²) is half the exact Taylor weight — kept as diffusers has it, for parity
   * (test/parity/schedulers.test.ts measures both).
   */
  private thirdOrder(sample: tf.Tensor): tf.Tensor {
    const i = this.stepIndex!;
    const c = this.config;
    const t = alphaSigmaLambda(this.sigmas[i + 1]);
    const s0 = alphaSigmaLambda(this.sigmas[i]);
    const s1 = alphaSigmaLambda(this.sigmas[i - 1]);
    const s2 = alphaSigmaLambda(this.sigmas[i - 2]);
    const [m2, m1, m0] = this.modelOutputs.slice(-3) as tf.Tensor[];
    const h = f32(t.lambda - s0.lambda);
    const h0 = f32(s0.lambda - s1.lambda);
    const h1 = f32(s1.lambda - s2.lambda);
    const r0 = f32(h0 / h);
    const r1 = f32(h1 / h);
    const d10 = m0.sub(m1).mul(f32(1 / r0));
    const d11 = m1.sub(m2).mul(f32(1 / r1));
    const d1 = d10.add(d10.sub(d11).mul(f32(r0 / f32(r0 + r1))));
    const d2 = d10.sub(d11).mul(f32(1 / f32(r0 + r1)));
    const hh = f32(h * h);
    if (c.algorithm_type === 'dpmsolver++') {
      const e = f32(f32(Math.exp(-h)) - 1);
      return sample
        .mul(f32(t.sigma / s0.sigma))
        .sub(m0.mul(f32(t.alpha * e)))
        .add(d1.mul(f32(t.alpha * f32(f32(e / h) + 1))))
        .sub(d2.mul(f32(t.alpha * f32(f32(f32(e + h) / hh) - 0.5))));
    }
    const e = f32(f32(Math.exp(h)) - 1);
    return sample
      .mul(f32(t.alpha / s0.alpha))
      .sub(m0.mul(f32(t.sigma * e)))
      .sub(d1.mul(f32(t.sigma * f32(f32(e / h) - 1))))
      .sub(d2.mul(f32(t.sigma * f32(f32(f32(e - h) / hh) - 0.5))));
  }

  private clearHistory(): void {
    for (const m of new Set(this.modelOutputs)) m?.dispose();
    this.modelOutputs = new Array(this.config.solver_order).fill(null);
  }

  dispose(): void {
    this.clearHistory();
  }
}
