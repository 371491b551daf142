// The noise schedulers, built from a model's scheduler_config.json like diffusers'
// `SchedulerClass.from_config(pipeline.scheduler.config)`: a pipeline may build any of them from the
// config the model ships with (usually PNDM's): unknown keys are ignored, missing ones take the class
// default.
//
// Samples may be NHWC or NCHW: the step arithmetic is elementwise. Only draws from a torch-compatible
// generator care about layout (torch draws in NCHW order), see `DDPMScheduler.noiseLayout`.
import type * as tf from '@tensorflow/tfjs';
import { DDIMScheduler } from './ddim.js';
import { DDPMScheduler } from './ddpm.js';
import { DPMSolverMultistepScheduler } from './dpmpp_2m.js';
import { EulerDiscreteScheduler } from './euler.js';
import { PNDMScheduler } from './pndm.js';
import { SchedulerConfigError } from './betas.js';
import { SCHEDULER_NAMES, type SchedulerName } from '../config/generation.js';

/** What every scheduler's resolved config has; each class's own interface lists the rest. */
export interface SchedulerConfig {
  readonly num_train_timesteps: number;
  readonly prediction_type: string;
  readonly timestep_spacing?: string;
}

export interface Scheduler {
  /** The resolved config: every init argument of the diffusers class, from the file or its default. */
  readonly config: SchedulerConfig;
  /** The scale of the initial noise (σ_max-based for Euler with leading/trailing spacing, else 1). */
  readonly initNoiseSigma: number;
  /** The timesteps of the denoising loop, in order (after setTimesteps); values to hand to the UNet. */
  timesteps: number[];
  /** Prepares `numInferenceSteps` steps and clears any multistep history. */
  setTimesteps(numInferenceSteps: number): void;
  /** The UNet input for `timestep` (Euler divides by sqrt(σ² + 1); the others return the sample). */
  scaleModelInput(sample: tf.Tensor, timestep: number): tf.Tensor;
  /** One denoising step: the previous (less noisy) sample. Multistep schedulers keep their history. */
  step(modelOutput: tf.Tensor, timestep: number, sample: tf.Tensor): tf.Tensor;
  /** Frees the tensors a multistep scheduler keeps between steps. */
  dispose(): void;
}

/**
 * The class behind each name (src/core/config/generation.ts): a name without a class, or a class without a
 * name, fails to compile.
 */
const SCHEDULERS = {
  ddim: DDIMScheduler,
  euler: EulerDiscreteScheduler,
  'dpmpp-2m': DPMSolverMultistepScheduler,
  pndm: PNDMScheduler,
  ddpm: DDPMScheduler,
} as const satisfies Record<SchedulerName, new (config: Record<string, unknown>) => Scheduler>;

/** The diffusers class name each name stands for (a model's scheduler_config.json `_class_name`). */
export const SCHEDULER_CLASSES = {
  ddim: 'DDIMScheduler',
  euler: 'EulerDiscreteScheduler',
  'dpmpp-2m': 'DPMSolverMultistepScheduler',
  pndm: 'PNDMScheduler',
  ddpm: 'DDPMScheduler',
} as const satisfies Record<SchedulerName, string>;

export function createScheduler(name: SchedulerName, config: Record<string, unknown>): Scheduler {
  const Class = Object.hasOwn(SCHEDULERS, name) ? SCHEDULERS[name] : undefined;
  if (!Class) throw new SchedulerConfigError(`unknown scheduler "${String(name)}" (choose one of ${SCHEDULER_NAMES.join(', ')})`);
  return new Class(config);
}

export { DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler, SchedulerConfigError };
