// Validation images, as the guide's log_validation makes them: the pipeline with the LoRA being trained,
// `num_validation_images` generations of `validation_prompt`, with the scheduler class the model ships
// (its scheduler_config.json — PNDM for Stable Diffusion 1.x), 30 steps and the pipeline's default
// guidance 7.5. The guide draws all images from one generator seeded with `seed`; here image i uses seed + i,
// so any single image can be regenerated on its own (`lora-studio generate --seed`).
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { generate, type StableDiffusion } from '../core/pipeline/stable_diffusion.js';
import { SCHEDULER_CLASSES } from '../core/schedulers/index.js';
import { sampleFileName } from '../core/config/run_folder.js';
import { GENERATION_DEFAULTS, SCHEDULER_NAMES, VALIDATION_DEFAULTS, type SchedulerName } from '../core/config/generation.js';
import { writePng } from '../core/io/png.js';
import type { LoraLookup } from '../core/engine/ops.js';


export interface ValidationImage {
  readonly path: string;
  readonly seed: number;
}

/** The model's own scheduler (by its config's _class_name), or the generation default for classes we do not have. */
export function modelScheduler(schedulerConfig: Record<string, unknown>): SchedulerName {
  const cls = schedulerConfig._class_name;
  const found = SCHEDULER_NAMES.find((n) => SCHEDULER_CLASSES[n] === cls && n !== 'ddpm');
  return found ?? GENERATION_DEFAULTS.scheduler;
}

export interface ValidationOptions {
  readonly prompt: string;
  readonly count: number;
  readonly seed: number;
  /** File names start with this: sampleLabel(step) or FINAL_SAMPLES (src/core/config/run_folder.ts). */
  readonly label: string;
  readonly samplesDir: string;
  readonly lora: LoraLookup;
  readonly steps?: number;
  readonly guidance?: number;
  /** Called between denoising steps; return false to stop early (a stop request). */
  readonly keepGoing?: () => boolean;
}

export async function generateValidationImages(sd: StableDiffusion, o: ValidationOptions): Promise<ValidationImage[]> {
  const scheduler = modelScheduler(sd.schedulerConfig);
  const steps = o.steps ?? VALIDATION_DEFAULTS.steps;
  const guidance = o.guidance ?? VALIDATION_DEFAULTS.guidance;
  const out: ValidationImage[] = [];
  for (let i = 0; i < o.count; i++) {
    const seed = o.seed + i;
    const image = await generate(sd, { prompt: o.prompt, scheduler, steps, guidanceScale: guidance, seed, lora: o.lora, onStep: () => (o.keepGoing ? o.keepGoing() : true) });
    const file = path.join(o.samplesDir, sampleFileName(o.label, i));
    await writePng(file, image, { parameters: JSON.stringify({ prompt: o.prompt, scheduler, steps, guidance, seed }) });
    tf.dispose(image);
    out.push({ path: file, seed });
  }
  return out;
}
