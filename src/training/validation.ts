// Sample images during training. The guide's log_validation: the pipeline with the LoRA being trained,
// `num_validation_images` generations of `validation_prompt` with the scheduler class the model ships (its
// scheduler_config.json — PNDM for Stable Diffusion 1.x), 30 steps and the pipeline's default guidance 7.5.
// The guide draws all images from one generator seeded with `seed`; here image i uses seed + i, so any single
// image can be regenerated on its own (`lora-studio generate --seed`). kohya's sample prompts
// (sample_prompts) add one image each, with their own negative prompt, seed, steps, guidance, size, sampler.
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { generate, type StableDiffusion } from '../core/pipeline/stable_diffusion.js';
import { SCHEDULER_CLASSES } from '../core/schedulers/index.js';
import { sampleFileName } from '../core/config/run_folder.js';
import { GENERATION_DEFAULTS, SCHEDULER_NAMES, VALIDATION_DEFAULTS, type InferenceScheduler, type SchedulerName } from '../core/config/generation.js';
import type { SamplePrompt } from '../core/config/sample_prompts.js';
import { writePng } from '../core/io/png.js';
import type { LoraLookup } from '../core/engine/ops.js';


/** The model's own scheduler (by its config's _class_name), or the generation default for classes we do not have. */
export function modelScheduler(schedulerConfig: Record<string, unknown>): SchedulerName {
  const cls = schedulerConfig._class_name;
  const found = SCHEDULER_NAMES.find((n) => SCHEDULER_CLASSES[n] === cls && n !== 'ddpm');
  return found ?? GENERATION_DEFAULTS.scheduler;
}

/** One image to make: a prompt with its settings (unset ones take the validation defaults), and where it sits in the run's prompt list. */
export interface SampleJob extends Omit<SamplePrompt, 'seed'> {
  readonly seed: number;
  /** Index in the run's prompts (validation_prompt first when set, then sample_prompts). */
  readonly promptIndex: number;
  /** Which image of that prompt. */
  readonly imageIndex: number;
}

export interface SampleImage {
  readonly path: string;
  readonly job: SampleJob;
  readonly steps: number;
  readonly guidanceScale: number;
  readonly sampler: SchedulerName;
  readonly width: number;
  readonly height: number;
}

export interface SampleOptions {
  readonly jobs: readonly SampleJob[];
  /** File names start with this: sampleLabel(step) or FINAL_SAMPLES (src/core/config/run_folder.ts). */
  readonly label: string;
  readonly samplesDir: string;
  readonly lora: LoraLookup;
  /** The text encoder's adapters (train_text_encoder). */
  readonly textEncoderLora?: LoraLookup;
  /** Called between denoising steps; return false to stop early (a stop request). */
  readonly keepGoing?: () => boolean;
  /** Before image k starts. */
  readonly onImage?: (k: number) => void;
}

export async function generateSamples(sd: StableDiffusion, o: SampleOptions): Promise<SampleImage[]> {
  const out: SampleImage[] = [];
  for (const [k, job] of o.jobs.entries()) {
    o.onImage?.(k);
    const sampler: SchedulerName = job.sampler ?? (modelScheduler(sd.schedulerConfig) as InferenceScheduler);
    const steps = job.steps ?? VALIDATION_DEFAULTS.steps;
    const guidanceScale = job.guidanceScale ?? VALIDATION_DEFAULTS.guidance;
    const image = await generate(sd, {
      prompt: job.prompt,
      negativePrompt: job.negativePrompt,
      scheduler: sampler,
      steps,
      guidanceScale,
      seed: job.seed,
      width: job.width,
      height: job.height,
      lora: o.lora,
      textEncoderLora: o.textEncoderLora,
      onStep: () => (o.keepGoing ? o.keepGoing() : true),
    });
    const [, height, width] = image.shape;
    const file = path.join(o.samplesDir, sampleFileName(o.label, k));
    await writePng(file, image, { parameters: JSON.stringify({ prompt: job.prompt, negative_prompt: job.negativePrompt ?? '', scheduler: sampler, steps, guidance: guidanceScale, seed: job.seed, width, height }) });
    tf.dispose(image);
    out.push({ path: file, job, steps, guidanceScale, sampler, width, height });
  }
  return out;
}
