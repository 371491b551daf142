// The settings of a generation beyond prompt and LoRA — seed, steps, guidance, sampler, negative prompt —
// with GENERATION_DEFAULTS as the starting values, and the `lora-studio generate` arguments they become.
// No `vscode`, so tests read both.
import { GENERATION_DEFAULTS, INFERENCE_SCHEDULERS, SCHEDULER_TITLES, type InferenceScheduler } from '../core/config/generation.js';

export interface GenerateOptions {
  seed: number;
  steps: number;
  guidance: number;
  scheduler: InferenceScheduler;
  negativePrompt: string;
}

export function defaultGenerateOptions(): GenerateOptions {
  const { seed, steps, guidance, scheduler, negativePrompt } = GENERATION_DEFAULTS;
  return { seed, steps, guidance, scheduler, negativePrompt };
}

/** Options remembered from last time, each field checked (a bad stored value falls back to the default). */
export function restoreGenerateOptions(stored: unknown): GenerateOptions {
  const d = defaultGenerateOptions();
  const o = (stored && typeof stored === 'object' ? stored : {}) as Partial<Record<keyof GenerateOptions, unknown>>;
  const int = (v: unknown, min: number, fallback: number) => (Number.isInteger(v) && (v as number) >= min ? (v as number) : fallback);
  return {
    seed: int(o.seed, 0, d.seed),
    steps: int(o.steps, 1, d.steps),
    guidance: typeof o.guidance === 'number' && Number.isFinite(o.guidance) ? o.guidance : d.guidance,
    scheduler: INFERENCE_SCHEDULERS.includes(o.scheduler as InferenceScheduler) ? (o.scheduler as InferenceScheduler) : d.scheduler,
    negativePrompt: typeof o.negativePrompt === 'string' ? o.negativePrompt : d.negativePrompt,
  };
}

/** The rows of the options list, as "label: value". */
export function describeGenerateOptions(o: GenerateOptions): { key: keyof GenerateOptions; label: string; value: string }[] {
  return [
    { key: 'seed', label: 'Seed', value: String(o.seed) },
    { key: 'steps', label: 'Steps', value: String(o.steps) },
    { key: 'guidance', label: 'Guidance', value: String(o.guidance) },
    { key: 'scheduler', label: 'Sampler', value: SCHEDULER_TITLES[o.scheduler] },
    { key: 'negativePrompt', label: 'Negative prompt', value: o.negativePrompt || '(none)' },
  ];
}

/** A typed value for one option, or the sentence saying what is wrong. */
export function parseGenerateOption(key: Exclude<keyof GenerateOptions, 'scheduler'>, text: string): { value: number | string } | { problem: string } {
  const t = text.trim();
  if (key === 'negativePrompt') return { value: text };
  const n = Number(t);
  if (key === 'guidance') return t !== '' && Number.isFinite(n) && n >= 0 ? { value: n } : { problem: 'A number ≥ 0, e.g. 7.5 (≤ 1 turns guidance off).' };
  const min = key === 'steps' ? 1 : 0;
  return /^\d+$/.test(t) && n >= min ? { value: n } : { problem: `A whole number ≥ ${min}.` };
}

/** `lora-studio generate` arguments for these options. */
export function generateOptionArgs(o: GenerateOptions): string[] {
  return ['--seed', String(o.seed), '--steps', String(o.steps), '--guidance', String(o.guidance), '--scheduler', o.scheduler, '--negative-prompt', o.negativePrompt];
}
