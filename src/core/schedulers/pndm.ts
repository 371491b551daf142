// PNDMScheduler (Liu et al., arXiv 2202.09778) as diffusers' scheduling_pndm.py: pseudo linear
// multistep (PLMS) — a 4th-order Adams–Bashforth combination of the last four noise predictions,
// warmed up by Runge–Kutta (PRK) steps, or, with `skip_prk_steps` as Stable Diffusion configs set,
// by a second-order step that visits the first timestep twice.
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
} from './betas.js';

const CLASS = 'PNDMScheduler';

export const PNDM_CONFIG = {
  ...BETA_FIELDS,
  skip_prk_steps: { kind: 'boolean', default: false },
  set_alpha_to_one: { kind: 'boolean', default: false },
  prediction_type: { kind: 'string', default: 'epsilon', oneOf: ['epsilon', 'v_prediction'] },
  timestep_spacing: { ...TIMESTEP_SPACING, default: 'leading' },
  steps_offset: { kind: 'integer', default: 0 },
} as const satisfies ConfigSpec;

export type PNDMConfig = ConfigOf<typeof PNDM_CONFIG>;

export class PNDMScheduler implements Scheduler {
  readonly config: PNDMConfig;
  readonly initNoiseSigma = 1.0;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;
  timesteps: number[] = [];
  private numInferenceSteps: number | null = null;
  private prkTimesteps: number[] = [];
  private counter = 0;
  // Kept between steps (owned here, freed when dropped): past ε's, the sample a PRK/first PLMS step
  // started from, and the running RK4 combination.
  private ets: tf.Tensor[] = [];
  private curSample: tf.Tensor | null = null;
  private curModelOutput: tf.Tensor | null = null;

  constructor(config: Record<string, unknown> = {}) {
    this.config = resolveConfig(CLASS, PNDM_CONFIG, config);
    this.alphasCumprod = alphasCumprodFromBetas(betasFromConfig(CLASS, this.config));
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
  }

  private get stride(): number {
    return Math.floor(this.config.num_train_timesteps / this.numInferenceSteps!);
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    const ascending = spacedTimesteps(CLASS, c.timestep_spacing, c.num_train_timesteps, numInferenceSteps, c.steps_offset).reverse();
    this.numInferenceSteps = numInferenceSteps;
    let plms: number[];
    if (c.skip_prk_steps) {
      // [t0 … t_{n−2}, t_{n−2}, t_{n−1}] reversed: the first timestep below the top is visited twice.
      this.prkTimesteps = [];
      plms = [...ascending.slice(0, -1), ...ascending.slice(-2, -1), ...ascending.slice(-1)].reverse();
    } else {
      // The last 4 timesteps each with a half-step partner, laid out as RK4's t, t−½, t−½, t−1 visits.
      const half = Math.floor(this.stride / 2);
      const pairs = ascending.slice(-4).flatMap((t) => [t, t + half]);
      const repeated = pairs.slice(0, -1).flatMap((t) => [t, t]);
      this.prkTimesteps = repeated.slice(1, -1).reverse();
      plms = ascending.slice(0, -3).reverse();
    }
    this.timesteps = [...this.prkTimesteps, ...plms];
    this.resetState();
  }

  scaleModelInput(sample: tf.Tensor): tf.Tensor {
    return sample.clone();
  }

  step(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor): tf.Tensor {
    if (this.numInferenceSteps === null) throw new Error(`${CLASS}: call setTimesteps before step`);
    if (this.counter < this.prkTimesteps.length && !this.config.skip_prk_steps) return this.stepPrk(modelOutput, timestep, sample);
    return this.stepPlms(modelOutput, timestep, sample);
  }

  /** One of the four Runge–Kutta evaluations per PRK step. */
  private stepPrk(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor): tf.Tensor {
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(this.stride / 2);
    const prevTimestep = timestep - diffToPrev;
    const t = this.prkTimesteps[Math.floor(this.counter / 4) * 4];
    const phase = this.counter % 4;
    let eps: tf.Tensor;
    if (phase === 0) {
      this.setCurModelOutput(tf.tidy(() => modelOutput.mul(f32(1 / 6))));
      this.ets.push(tf.keep(modelOutput.clone()));
      this.setCurSample(sample);
      eps = modelOutput;
    } else if (phase === 1 || phase === 2) {
      this.setCurModelOutput(tf.tidy(() => this.curModelOutput!.add(modelOutput.mul(f32(1 / 3)))));
      eps = modelOutput;
    } else {
      eps = tf.tidy(() => this.curModelOutput!.add(modelOutput.mul(f32(1 / 6))));
      this.setCurModelOutput(null);
    }
    const from = this.curSample ?? sample;
    const prev = this.prevSample(from, t, prevTimestep, eps);
    if (eps !== modelOutput) eps.dispose();
    this.counter++;
    return prev;
  }

  /** Linear multistep on the ε history (orders 1 → 4 as it fills). */
  private stepPlms(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor): tf.Tensor {
    let prevTimestep = timestep - this.stride;
    if (this.counter !== 1) {
      while (this.ets.length > 3) this.ets.shift()!.dispose();
      this.ets.push(tf.keep(modelOutput.clone()));
    } else {
      // The repeated first timestep: step from the stored sample with the averaged ε.
      prevTimestep = timestep;
      timestep = timestep + this.stride;
    }
    const e = this.ets;
    const n = e.length;
    let from = sample;
    let ownedFrom: tf.Tensor | null = null;
    let eps: tf.Tensor;
    if (n === 1 && this.counter === 0) {
      eps = modelOutput;
      this.setCurSample(sample);
    } else if (n === 1 && this.counter === 1) {
      eps = tf.tidy(() => modelOutput.add(e[n - 1]).div(2));
      from = ownedFrom = this.curSample!;
      this.curSample = null;
    } else if (n === 2) {
      eps = tf.tidy(() => e[n - 1].mul(3).sub(e[n - 2]).div(2));
    } else if (n === 3) {
      eps = tf.tidy(() => e[n - 1].mul(23).sub(e[n - 2].mul(16)).add(e[n - 3].mul(5)).div(12));
    } else {
      eps = tf.tidy(() => e[n - 1].mul(55).sub(e[n - 2].mul(59)).add(e[n - 3].mul(37)).sub(e[n - 4].mul(9)).mul(f32(1 / 24)));
    }
    const prev = this.prevSample(from, timestep, prevTimestep, eps);
    if (eps !== modelOutput) eps.dispose();
    ownedFrom?.dispose();
    this.counter++;
    return prev;
  }

  /** x_{t−δ} from x_t and ε (the paper's φ, eq. 9 / diffusers `_get_prev_sample`). */
  private prevSample(sample: tf.Tensor, timestep: number, prevTimestep: number, modelOutput: tf.Tensor): tf.Tensor {
    const a = this.alphasCumprod[timestep];
    if (a === undefined) throw new RangeError(`${CLASS}: timestep ${timestep} is outside 0..${this.config.num_train_timesteps - 1}`);
    const aPrev = prevTimestep >= 0 ? this.alphasCumprod[prevTimestep] : this.finalAlphaCumprod;
    const beta = f32(1 - a);
    const betaPrev = f32(1 - aPrev);
    const sampleCoeff = f32(Math.sqrt(f32(aPrev / a)));
    const denom = f32(f32(a * f32(Math.sqrt(betaPrev))) + f32(Math.sqrt(f32(f32(a * beta) * aPrev))));
    return tf.tidy(() => {
      const eps = this.config.prediction_type === 'v_prediction' ? modelOutput.mul(f32(Math.sqrt(a))).add(sample.mul(f32(Math.sqrt(beta)))) : modelOutput;
      return sample.mul(sampleCoeff).sub(eps.mul(f32(aPrev - a)).div(denom));
    });
  }

  private setCurSample(t: tf.Tensor | null): void {
    this.curSample?.dispose();
    this.curSample = t ? tf.keep(t.clone()) : null;
  }

  private setCurModelOutput(t: tf.Tensor | null): void {
    this.curModelOutput?.dispose();
    this.curModelOutput = t ? tf.keep(t) : null;
  }

  private resetState(): void {
    for (const e of this.ets) e.dispose();
    this.ets = [];
    this.setCurSample(null);
    this.setCurModelOutput(null);
    this.counter = 0;
  }

  dispose(): void {
    this.resetState();
  }
}
