// Text-to-image generation: the scheduler names and the defaults of a request, spelled once for the
// pipeline (src/core/pipeline), `lora-studio generate`, the inference worker and its protocol, the notebook
// cell language, the extension's "Generate Image…" and validation images. Light: no tensors.

/**
 * Every noise scheduler the engine has, by the name users type. src/core/schedulers/index.ts maps each to
 * its class and is checked against this list by the compiler.
 */
export const SCHEDULER_NAMES = ['ddim', 'euler', 'dpmpp-2m', 'pndm', 'ddpm'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

/** The samplers offered for generation: all but DDPM, which needs ~1000 steps (it is the training scheduler). */
export const INFERENCE_SCHEDULERS = ['ddim', 'euler', 'dpmpp-2m', 'pndm'] as const satisfies readonly SchedulerName[];
export type InferenceScheduler = (typeof INFERENCE_SCHEDULERS)[number];

/** Human names, for documentation and completion. */
export const SCHEDULER_TITLES: Record<SchedulerName, string> = {
  ddim: 'DDIM',
  euler: 'Euler',
  'dpmpp-2m': 'DPM++ 2M',
  pndm: 'PNDM',
  ddpm: 'DDPM',
};

/**
 * What a generation uses when the request leaves a setting out. Guidance 7.5 is diffusers'
 * StableDiffusionPipeline default; DPM++ 2M in 20 steps is the usual quality/speed point. Width and height
 * default to the model's own size (the UNet's sample_size × the VAE scale factor), known only once it loads.
 */
export const GENERATION_DEFAULTS = {
  scheduler: 'dpmpp-2m',
  steps: 20,
  guidance: 7.5,
  seed: 0,
  negativePrompt: '',
} as const satisfies { scheduler: InferenceScheduler; steps: number; guidance: number; seed: number; negativePrompt: string };

/**
 * Validation images during training, as the guide's log_validation makes them: the model's own scheduler,
 * 30 steps, the pipeline's default guidance.
 */
export const VALIDATION_DEFAULTS = { steps: 30, guidance: GENERATION_DEFAULTS.guidance } as const;

/**
 * How many images one generation call batches (one UNet call per step for all of them and both guidance
 * halves): as many as fit in this many latent pixels, so the activations are at most those of one 512 px
 * SD 1.x image — such images still run one by one — while the 64 px tiny-shapes model (16×16 latents) runs
 * 16 at once. Batching amortises tfjs' per-op cost: a tiny-shapes UNet evaluation costs 173 ms of CPU per
 * image at batch 2, 123 ms at batch 8 and 118 ms at batch 24 on wasm (issue 16; 2 cores at load ~20).
 */
export const BATCH_LATENT_PIXELS = 64 * 64;

/** Images per generation call for latents of `latentWidth` × `latentHeight`. */
export function generationBatchSize(latentWidth: number, latentHeight: number): number {
  return Math.max(1, Math.floor(BATCH_LATENT_PIXELS / (latentWidth * latentHeight)));
}

/**
 * How far past its own size a model may be asked to draw: 2× each side. Models are trained at their own
 * size (beyond 2× they repeat the subject), and the memory of the UNet's self-attention grows with the
 * fourth power of the side — a 4096×4096 request to a 512 px model ran tfjs-wasm out of its heap ("memory
 * access out of bounds") and left it aborted for every later request.
 */
export const MAX_SIZE_FACTOR = 2;

/**
 * What is wrong with an image size for a model whose own size is `native` px and whose sizes must be
 * multiples of `multiple` (its VAE scale factor, 8), or undefined when it is fine.
 */
export function imageSizeProblem(width: number, height: number, native: { width: number; height: number }, multiple: number): string | undefined {
  for (const [name, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v < multiple || v % multiple) return `${name} must be a multiple of ${multiple} (at least ${multiple}), got ${v}`;
  }
  const maxW = native.width * MAX_SIZE_FACTOR;
  const maxH = native.height * MAX_SIZE_FACTOR;
  if (width > maxW || height > maxH) {
    return (
      `${width}×${height} is larger than this model can draw: at most ${maxW}×${maxH}, ${MAX_SIZE_FACTOR}× its own ${native.width}×${native.height} ` +
      '(memory grows with the fourth power of the side) — ask for a smaller width and height'
    );
  }
  return undefined;
}
