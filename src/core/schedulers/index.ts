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

export type SchedulerName = 'ddim' | 'euler' | 'dpmpp-2m' | 'pndm' | 'ddpm';
export const SCHEDULER_NAMES: readonly SchedulerName[] = ['ddim', 'euler', 'dpmpp-2m', 'pndm', 'ddpm'];

/** The diffusers class each name stands for. */
export const SCHEDULER_CLASSES: Record<SchedulerName, string> = {
  ddim: 'DDIMScheduler',
  euler: 'EulerDiscreteScheduler',
  'dpmpp-2m': 'DPMSolverMultistepScheduler',
  pndm: 'PNDMScheduler',
  ddpm: 'DDPMScheduler',
};

export function createScheduler(name: SchedulerName, config: Record<string, unknown>): Scheduler {
  switch (name) {
    case 'ddim':
      return new DDIMScheduler(config);
    case 'euler':
      return new EulerDiscreteScheduler(config);
    case 'dpmpp-2m':
      return new DPMSolverMultistepScheduler(config);
    case 'pndm':
      return new PNDMScheduler(config);
    case 'ddpm':
      return new DDPMScheduler(config);
    default:
      throw new SchedulerConfigError(`unknown scheduler "${String(name)}" (choose one of ${SCHEDULER_NAMES.join(', ')})`);
  }
}

export { DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler, SchedulerConfigError };
