// Text-to-image generation as diffusers' StableDiffusionPipeline.__call__ does it: encode the prompt and
// the negative prompt, start from seeded (or given) latents, run the scheduler with classifier-free
// guidance, decode with the VAE. Everything NHWC; the image comes back as [1, H, W, 3] in [0, 1].
import * as tf from '@tensorflow/tfjs';
import { DiffusersFolder, type Variant } from '../io/diffusers_folder.js';
import { CLIPTokenizer } from '../tokenizer/clip_tokenizer.js';
import { CLIPTextModel } from '../models/clip_text_model.js';
import { UNet2DConditionModel } from '../models/unet_2d_condition.js';
import { AutoencoderKL } from '../models/autoencoder_kl.js';
import { createScheduler } from '../schedulers/index.js';
import { GENERATION_DEFAULTS, type SchedulerName } from '../config/generation.js';
import { noLora, type LoraLookup } from '../engine/ops.js';
import { torchRandn } from '../engine/torch_random.js';

export interface StableDiffusion {
  readonly dir: string;
  readonly tokenizer: CLIPTokenizer;
  readonly textEncoder: CLIPTextModel;
  readonly unet: UNet2DConditionModel;
  readonly vae: AutoencoderKL;
  readonly schedulerConfig: Record<string, unknown>;
  /** Latent pixels per image pixel along each side (8 for every SD 1.x/2.x VAE). */
  readonly vaeScaleFactor: number;
}

export function loadStableDiffusion(dir: string, opts: { variant?: Variant } = {}): StableDiffusion {
  const folder = DiffusersFolder.open(dir);
  const variant = opts.variant;
  const vae = AutoencoderKL.fromPretrained(folder, { variant });
  return {
    dir,
    tokenizer: CLIPTokenizer.fromPretrained(folder.component('tokenizer').dir),
    textEncoder: CLIPTextModel.fromPretrained(folder, { variant }),
    unet: UNet2DConditionModel.fromPretrained(folder, { variant }),
    vae,
    schedulerConfig: folder.component('scheduler').config,
    vaeScaleFactor: 2 ** ((vae.config.block_out_channels as number[]).length - 1),
  };
}

export function disposeStableDiffusion(sd: StableDiffusion): void {
  sd.textEncoder.dispose();
  sd.unet.dispose();
  sd.vae.dispose();
}

export interface GenerateOptions {
  prompt: string;
  negativePrompt?: string;
  scheduler?: SchedulerName;
  steps?: number;
  guidanceScale?: number;
  /** Seed for the initial noise; ignored when `latents` is given. */
  seed?: number;
  /** Initial noise [1, h, w, C] NHWC (before init_noise_sigma scaling), to reproduce another tool's run. */
  latents?: tf.Tensor4D;
  width?: number;
  height?: number;
  lora?: LoraLookup;
  /** Called after each denoising step; return false to cancel. */
  onStep?: (step: number, total: number) => boolean | void;
}

export class GenerationCancelled extends Error {
  constructor() {
    super('generation cancelled');
  }
}

/** Text embeddings for a batch of prompts: the text encoder's last hidden state. */
export function encodePrompts(sd: StableDiffusion, prompts: readonly string[]): tf.Tensor3D {
  return tf.tidy(() => {
    const ids = tf.tensor2d(prompts.map((p) => sd.tokenizer.encode(p)), undefined, 'int32');
    return sd.textEncoder.forward(ids).lastHiddenState;
  });
}

export async function generate(sd: StableDiffusion, o: GenerateOptions): Promise<tf.Tensor4D> {
  const width = o.width ?? defaultSize(sd);
  const height = o.height ?? defaultSize(sd);
  const f = sd.vaeScaleFactor;
  if (width % f || height % f) throw new Error(`width and height must be multiples of ${f}, got ${width}×${height}`);
  const guidance = o.guidanceScale ?? GENERATION_DEFAULTS.guidance;
  const cfg = guidance > 1;
  const lora = o.lora ?? noLora;
  const scheduler = createScheduler(o.scheduler ?? GENERATION_DEFAULTS.scheduler, sd.schedulerConfig);
  scheduler.setTimesteps(o.steps ?? GENERATION_DEFAULTS.steps);

  // [uncond, cond] in one batch, as diffusers does with do_classifier_free_guidance.
  const embeddings = encodePrompts(sd, cfg ? [o.negativePrompt ?? GENERATION_DEFAULTS.negativePrompt, o.prompt] : [o.prompt]);
  const channels = sd.unet.config.in_channels as number;
  const shape: [number, number, number, number] = [1, height / f, width / f, channels];
  let latents: tf.Tensor4D;
  if (o.latents) {
    if (o.latents.shape.join() !== shape.join()) throw new Error(`latents have shape ${JSON.stringify(o.latents.shape)} (NHWC), expected ${JSON.stringify(shape)} for ${width}×${height}`);
    latents = o.latents.mul(scheduler.initNoiseSigma);
  } else {
    // Drawn NCHW with torch's CPU generator, so a seed gives the same image as diffusers with
    // generator=torch.Generator().manual_seed(seed).
    const [b, h, w, c] = shape;
    const noise = torchRandn(o.seed ?? GENERATION_DEFAULTS.seed, [b, c, h, w]);
    latents = tf.tidy(() => tf.tensor4d(noise, [b, c, h, w]).transpose<tf.Tensor4D>([0, 2, 3, 1]).mul(scheduler.initNoiseSigma));
  }

  const total = scheduler.timesteps.length;
  for (let i = 0; i < total; i++) {
    const t = scheduler.timesteps[i];
    const next = tf.tidy(() => {
      const input = scheduler.scaleModelInput(cfg ? tf.concat([latents, latents]) : latents, t) as tf.Tensor4D;
      const timesteps = tf.fill([input.shape[0]], t, 'float32') as tf.Tensor1D;
      let noise = sd.unet.forward(input, timesteps, embeddings, lora);
      if (cfg) {
        const [uncond, text] = tf.split(noise, 2, 0);
        noise = uncond.add(text.sub(uncond).mul(guidance));
      }
      return scheduler.step(noise, t, latents) as tf.Tensor4D;
    });
    latents.dispose();
    latents = next;
    // Let the event loop breathe (cancel requests, progress) between steps.
    await new Promise((r) => setImmediate(r));
    if (o.onStep?.(i + 1, total) === false) {
      latents.dispose();
      embeddings.dispose();
      throw new GenerationCancelled();
    }
  }
  embeddings.dispose();
  const image = decodeLatents(sd, latents);
  latents.dispose();
  return image;
}

/** VAE decode of scheduler-space latents to an image in [0, 1]. */
export function decodeLatents(sd: StableDiffusion, latents: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const shift = (sd.vae.config.shift_factor as number | null) ?? 0;
    const z = latents.div(sd.vae.config.scaling_factor as number).add(shift) as tf.Tensor4D;
    return sd.vae.decode(z).div(2).add(0.5).clipByValue(0, 1) as tf.Tensor4D;
  });
}

function defaultSize(sd: StableDiffusion): number {
  return (sd.unet.config.sample_size as number) * sd.vaeScaleFactor;
}
