// What every scheduler shares: reading a scheduler_config.json the way diffusers' `from_config` does,
// the beta schedule and alphas_cumprod, timestep spacing, and the few numpy/torch numerics they need.
//
// Precision: diffusers builds the betas with torch in float32 and a few tables with numpy in float64
// from those float32 values. The goldens were produced that way, so we mirror it: `f32` (Math.fround)
// after every scalar operation that torch performs on a float32 tensor, plain doubles where numpy
// works in float64. Scalar results then equal torch's bit for bit, and the tensor arithmetic done in
// tfjs float32 with the same operation order reproduces diffusers' trajectories to the last ulp or so.
import * as tf from '@tensorflow/tfjs';

export const f32 = Math.fround;

// ───────────────────────────────────────── config ─────────────────────────────────────────

/** One init argument of a diffusers scheduler class: its type, default and allowed values. */
export interface FieldSpec {
  kind: 'number' | 'integer' | 'boolean' | 'string' | 'number[]';
  default: unknown;
  nullable?: boolean;
  oneOf?: readonly string[];
}

export type ConfigSpec = Record<string, FieldSpec>;

/**
 * The resolved config a spec describes, derived from it: as diffusers' `__init__` signature is the class's
 * config (names, types and defaults in one place), a scheduler's `*_CONFIG` spec is the only declaration of
 * its config, and this type follows from it (`oneOf` gives the literal union, `nullable` adds null).
 */
export type ConfigOf<S extends ConfigSpec> = { -readonly [K in keyof S]: FieldValue<S[K]> | (S[K] extends { readonly nullable: true } ? null : never) };

type FieldValue<F> = F extends { readonly oneOf: readonly (infer O)[] }
  ? O
  : F extends { readonly kind: 'number' | 'integer' }
    ? number
    : F extends { readonly kind: 'boolean' }
      ? boolean
      : F extends { readonly kind: 'string' }
        ? string
        : F extends { readonly kind: 'number[]' }
          ? number[]
          : never;

export class SchedulerConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchedulerConfigError';
  }
}

/**
 * diffusers `SchedulerClass.from_config(config)`: take each init argument of the class from the
 * config, or its default when the config lacks it. Keys the class does not know (another class's
 * settings, `_class_name`, …) are ignored, and so are keys listed in `_use_default_values` — diffusers
 * records there which values were defaults of the class that wrote the file, so that another class
 * loading it uses its own defaults instead.
 */
export function resolveConfig<S extends ConfigSpec>(className: string, spec: S, config: Record<string, unknown>): ConfigOf<S> {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new SchedulerConfigError(`${className}: the scheduler config must be a JSON object (scheduler/scheduler_config.json)`);
  }
  const usedDefaults = new Set(Array.isArray(config._use_default_values) ? (config._use_default_values as unknown[]).map(String) : []);
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(spec)) {
    const has = Object.prototype.hasOwnProperty.call(config, key) && !usedDefaults.has(key);
    out[key] = has ? checkField(className, key, field, config[key]) : field.default;
  }
  return out as ConfigOf<S>;
}

function checkField(className: string, key: string, field: FieldSpec, value: unknown): unknown {
  const bad = (expected: string): never => {
    throw new SchedulerConfigError(`${className}: scheduler config key "${key}" is ${JSON.stringify(value)}; expected ${expected} (fix it in scheduler/scheduler_config.json)`);
  };
  if (value === null || value === undefined) {
    if (field.nullable) return null;
    bad(describe(field));
  }
  switch (field.kind) {
    case 'boolean':
      return typeof value === 'boolean' ? value : bad('true or false');
    case 'number':
    case 'integer': {
      // readJson turns Python's Infinity/-Infinity/NaN into strings.
      const n = typeof value === 'string' && /^-?(Infinity|NaN)$/.test(value) ? Number(value) : value;
      if (typeof n !== 'number') return bad(describe(field));
      if (field.kind === 'integer' && !Number.isInteger(n)) return bad('an integer');
      return n;
    }
    case 'string':
      if (typeof value !== 'string') return bad(describe(field));
      if (field.oneOf && !field.oneOf.includes(value)) return bad(`one of ${field.oneOf.join(', ')}`);
      return value;
    case 'number[]':
      return Array.isArray(value) && value.every((v) => typeof v === 'number') ? value : bad('a list of numbers or null');
  }
}

function describe(field: FieldSpec): string {
  const base = field.oneOf ? `one of ${field.oneOf.join(', ')}` : field.kind === 'number[]' ? 'a list of numbers' : `a ${field.kind}`;
  return field.nullable ? `${base} or null` : base;
}

/** The init arguments every scheduler shares, with DDPM/DDIM/Euler/DPM/PNDM's common defaults. */
export const BETA_FIELDS = {
  num_train_timesteps: { kind: 'integer', default: 1000 },
  beta_start: { kind: 'number', default: 0.0001 },
  beta_end: { kind: 'number', default: 0.02 },
  beta_schedule: { kind: 'string', default: 'linear', oneOf: ['linear', 'scaled_linear', 'squaredcos_cap_v2'] },
  trained_betas: { kind: 'number[]', default: null, nullable: true },
} as const satisfies ConfigSpec;

/** The timestep spacings diffusers offers (every scheduler here takes all three). */
export const TIMESTEP_SPACING = { kind: 'string', oneOf: ['linspace', 'leading', 'trailing'] } as const;

export type BetaSchedule = ConfigOf<typeof BETA_FIELDS>['beta_schedule'];
export type TimestepSpacing = (typeof TIMESTEP_SPACING.oneOf)[number];

/** What betasFromConfig reads: the shared fields, and rescale_betas_zero_snr where the class has it. */
export type BetaConfig = ConfigOf<typeof BETA_FIELDS> & { rescale_betas_zero_snr?: boolean };

// ───────────────────────────────────────── betas ─────────────────────────────────────────

/**
 * torch.linspace(start, end, steps, dtype=float32) on CPU: the first half counts up from `start`, the
 * second half down from `end`, each value `start + step·i` evaluated with one rounding (the compiler
 * fuses it into an FMA — this reproduces torch's alphas_cumprod bit for bit, the unfused form does not).
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = start;
    return out;
  }
  const s = f32(start);
  const e = f32(end);
  const step = f32((e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < halfway ? s + step * i : e - step * (steps - i - 1);
  return out;
}

/** betas_for_alpha_bar with the cosine ("squaredcos_cap_v2") alpha-bar, in float64 then float32. */
export function betasForAlphaBar(n: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta);
  return out;
}

/** torch.cumprod on a float32 CPU tensor: the running product is kept in double, each output rounded. */
export function cumprodF32(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  let acc = 1;
  for (let i = 0; i < x.length; i++) {
    acc *= x[i];
    out[i] = acc;
  }
  return out;
}

/** rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1), in float32 like diffusers. */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const alphas = betas.map((b) => f32(1 - b));
  const sqrtBar = cumprodF32(alphas).map((a) => f32(Math.sqrt(a)));
  const first = sqrtBar[0];
  const last = sqrtBar[n - 1];
  const scale = f32(first / f32(first - last));
  const bar = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const shifted = f32(sqrtBar[i] - last);
    bar[i] = f32(f32(shifted * scale) ** 2);
  }
  const out = new Float32Array(n);
  out[0] = f32(1 - bar[0]);
  for (let i = 1; i < n; i++) out[i] = f32(1 - f32(bar[i] / bar[i - 1]));
  return out;
}

/** The float32 betas of a config, as diffusers' scheduler __init__ builds them. */
export function betasFromConfig(className: string, c: BetaConfig): Float32Array {
  const n = c.num_train_timesteps;
  if (!(n >= 1)) throw new SchedulerConfigError(`${className}: num_train_timesteps must be ≥ 1 (got ${n})`);
  let betas: Float32Array;
  if (c.trained_betas) {
    if (c.trained_betas.length !== n) {
      throw new SchedulerConfigError(`${className}: trained_betas has ${c.trained_betas.length} values but num_train_timesteps is ${n}`);
    }
    betas = Float32Array.from(c.trained_betas);
  } else if (c.beta_schedule === 'linear') {
    betas = torchLinspaceF32(c.beta_start, c.beta_end, n);
  } else if (c.beta_schedule === 'scaled_linear') {
    betas = torchLinspaceF32(c.beta_start ** 0.5, c.beta_end ** 0.5, n).map((b) => f32(b * b));
  } else if (c.beta_schedule === 'squaredcos_cap_v2') {
    betas = betasForAlphaBar(n);
  } else {
    throw new SchedulerConfigError(`${className}: beta_schedule "${c.beta_schedule}" is not supported (linear, scaled_linear, squaredcos_cap_v2)`);
  }
  if (c.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  return betas;
}

/** alphas_cumprod = cumprod(1 − betas), float32. */
export function alphasCumprodFromBetas(betas: Float32Array): Float32Array {
  return cumprodF32(betas.map((b) => f32(1 - b)));
}

/** σ_t = sqrt((1 − ᾱ_t) / ᾱ_t) for every training timestep, in float32 as torch computes it. */
export function sigmasFromAlphasCumprod(ac: Float32Array): Float32Array {
  return ac.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
}

// ─────────────────────────────────── numpy helpers & spacing ───────────────────────────────────

/** numpy's round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.linspace(start, stop, num) in float64 (start + i·step, the last value exactly stop). */
export function npLinspace(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out = Array.from({ length: num }, (_, i) => i * step + start);
  out[num - 1] = stop;
  return out;
}

/** np.arange(start, stop, step) for float steps: start + i·delta, delta as numpy derives it. */
export function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const delta = start + step - start;
  return Array.from({ length: len }, (_, i) => start + i * delta);
}

/** np.interp(x, [0, 1, …, n−1], fp) in float64. */
export function npInterpIndex(x: number, fp: ArrayLike<number>): number {
  const n = fp.length;
  if (x <= 0) return fp[0];
  if (x >= n - 1) return fp[n - 1];
  const j = Math.floor(x);
  const slope = fp[j + 1] - fp[j];
  return slope * (x - j) + fp[j];
}

/**
 * The inference timesteps of DDPM, DDIM, PNDM and Euler (descending), for the three `timestep_spacing`
 * modes of arXiv 2305.08891 Table 2. `linspace` values are fractional before rounding: DDPM/DDIM/PNDM
 * round them (numpy, half to even), Euler keeps them as float32 (`round: false`).
 */
export function spacedTimesteps(
  className: string,
  spacing: TimestepSpacing,
  numTrain: number,
  n: number,
  stepsOffset: number,
  round = true,
): number[] {
  if (!Number.isInteger(n) || n < 1) throw new SchedulerConfigError(`${className}: the number of inference steps must be a positive integer (got ${n})`);
  if (n > numTrain) throw new SchedulerConfigError(`${className}: ${n} inference steps is more than num_train_timesteps (${numTrain})`);
  if (spacing === 'linspace') return npLinspace(0, numTrain - 1, n).reverse().map((t) => (round ? roundHalfEven(t) : f32(t)));
  if (spacing === 'leading') {
    const ratio = Math.floor(numTrain / n);
    return Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + stepsOffset);
  }
  if (spacing === 'trailing') return npArange(numTrain, 0, -numTrain / n).map((t) => roundHalfEven(t) - 1);
  throw new SchedulerConfigError(`${className}: timestep_spacing "${spacing}" is not supported (linspace, leading, trailing)`);
}

// ───────────────────────────────────── sample helpers ─────────────────────────────────────

/**
 * Dynamic thresholding (Imagen, arXiv 2205.11487), diffusers' `_threshold_sample`: per batch item, s =
 * the `ratio` quantile of |x| (torch.quantile, linear interpolation) clamped to [1, maxValue]; x is
 * clamped to [−s, s] and divided by s. Layout-agnostic: it reduces over everything but the batch.
 */
export function thresholdSample(sample: tf.Tensor, ratio: number, maxValue: number): tf.Tensor {
  return tf.tidy(() => {
    const batch = sample.shape[0];
    const flat = sample.reshape([batch, -1]);
    const abs = flat.abs().arraySync() as number[][];
    const s = abs.map((row) => {
      const sorted = Float64Array.from(row).sort();
      const pos = ratio * (sorted.length - 1);
      const lo = Math.floor(pos);
      const hi = Math.min(lo + 1, sorted.length - 1);
      const q = sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
      return Math.min(Math.max(q, 1), maxValue);
    });
    const sT = tf.tensor2d(s, [batch, 1]);
    return tf.minimum(tf.maximum(flat, sT.neg()), sT).div(sT).reshape(sample.shape);
  });
}

/** A [B] vector of per-item scalars shaped to broadcast over a [B, …] tensor of rank `rank`. */
export function perItem(values: ArrayLike<number>, rank: number): tf.Tensor {
  return tf.tensor1d(Array.from(values), 'float32').reshape([values.length, ...Array(rank - 1).fill(1)]);
}
