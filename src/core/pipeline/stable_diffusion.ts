// Text-to-image generation as diffusers' StableDiffusionPipeline.__call__ does it (and, for SDXL,
// StableDiffusionXLPipeline's): encode the prompts and the negative prompt, start from seeded (or given)
// latents, run the scheduler with classifier-free guidance, decode with the VAE. Everything NHWC; the images
// come back as [B, H, W, 3] in [0, 1]. The model is a diffusers folder or a single-file checkpoint.
// Several prompts (a list, as diffusers takes one) run as one batch: one UNet call per step for all of them
// and both guidance halves, with image i's noise drawn from its own seed (diffusers given one generator per
// image), so each image is the one a call for it alone makes.
import * as tf from '@tensorflow/tfjs';
import { DiffusersFolder, type Variant } from '../io/diffusers_folder.js';
import { CLIPTokenizer } from '../tokenizer/clip_tokenizer.js';
import { CLIPTextModel } from '../models/clip_text_model.js';
import { CLIPTextModelWithProjection } from '../models/clip_text_model_with_projection.js';
import { UNet2DConditionModel, sdxlTimeIds, type AddedCondKwargs } from '../models/unet_2d_condition.js';
import { AutoencoderKL } from '../models/autoencoder_kl.js';
import { SingleFileCheckpoint, isSingleFile, textEncoder2FromSingleFile, textEncoderFromSingleFile, unetFromSingleFile, vaeFromSingleFile } from '../models/from_single_file.js';
import { createScheduler } from '../schedulers/index.js';
import { GENERATION_DEFAULTS, type SchedulerName } from '../config/generation.js';
import { noLora, type LoraLookup } from '../engine/ops.js';
import { torchRandn } from '../engine/torch_random.js';

export interface StableDiffusion {
  readonly dir: string;
  readonly tokenizer: CLIPTokenizer;
  readonly textEncoder: CLIPTextModel;
  /** SDXL's second tokenizer and text encoder (absent for SD 1.x/2.x). */
  readonly tokenizer2?: CLIPTokenizer;
  readonly textEncoder2?: CLIPTextModelWithProjection;
  readonly unet: UNet2DConditionModel;
  readonly vae: AutoencoderKL;
  readonly schedulerConfig: Record<string, unknown>;
  /** model_index.json's force_zeros_for_empty_prompt (SDXL): no negative prompt means zero embeddings. */
  readonly forceZerosForEmptyPrompt: boolean;
  /** Latent pixels per image pixel along each side (8 for every SD 1.x/2.x/XL VAE). */
  readonly vaeScaleFactor: number;
}

export interface LoadOptions {
  variant?: Variant;
  /** For a single-file checkpoint: a diffusers folder giving the configs and tokenizers (see from_single_file.ts); without it, the family's bundled configs and CLIP's bundled tokenizer. */
  config?: string;
}

/** Loads a diffusers pipeline folder (model_index.json) or a single-file .safetensors checkpoint. */
export function loadStableDiffusion(source: string, opts: LoadOptions = {}): StableDiffusion {
  if (isSingleFile(source)) return loadSingleFile(source, opts);
  const folder = DiffusersFolder.open(source);
  const variant = opts.variant;
  const xl = folder.componentNames().includes('text_encoder_2');
  const vae = AutoencoderKL.fromPretrained(folder, { variant });
  return {
    dir: source,
    tokenizer: CLIPTokenizer.fromPretrained(folder.component('tokenizer').dir),
    textEncoder: CLIPTextModel.fromPretrained(folder, { variant }),
    ...(xl ? { tokenizer2: CLIPTokenizer.fromPretrained(folder.component('tokenizer_2').dir), textEncoder2: CLIPTextModelWithProjection.fromPretrained(folder, { variant }) } : {}),
    unet: UNet2DConditionModel.fromPretrained(folder, { variant }),
    vae,
    schedulerConfig: folder.component('scheduler').config,
    forceZerosForEmptyPrompt: folder.index.force_zeros_for_empty_prompt === true,
    vaeScaleFactor: 2 ** ((vae.config.block_out_channels as number[]).length - 1),
  };
}

function loadSingleFile(file: string, opts: LoadOptions): StableDiffusion {
  const ckpt = SingleFileCheckpoint.open(file, { config: opts.config });
  const xl = ckpt.has('text_encoder_2');
  const vae = vaeFromSingleFile(ckpt);
  return {
    dir: file,
    tokenizer: ckpt.tokenizer('tokenizer'),
    textEncoder: textEncoderFromSingleFile(ckpt),
    ...(xl ? { tokenizer2: ckpt.tokenizer('tokenizer_2'), textEncoder2: textEncoder2FromSingleFile(ckpt) } : {}),
    unet: unetFromSingleFile(ckpt),
    vae,
    schedulerConfig: ckpt.config('scheduler'),
    forceZerosForEmptyPrompt: ckpt.config('model_index').force_zeros_for_empty_prompt === true,
    vaeScaleFactor: 2 ** ((vae.config.block_out_channels as number[]).length - 1),
  };
}

export function disposeStableDiffusion(sd: StableDiffusion): void {
  sd.textEncoder.dispose();
  sd.textEncoder2?.dispose();
  sd.unet.dispose();
  sd.vae.dispose();
}

export interface GenerateOptions {
  /** One prompt, or a batch of them (one image each). */
  prompt: string | readonly string[];
  /** One for every image. */
  negativePrompt?: string;
  scheduler?: SchedulerName;
  steps?: number;
  guidanceScale?: number;
  /** Seed of the initial noise: one per prompt, or one every image starts from; ignored when `latents` is given. */
  seed?: number | readonly number[];
  /** Initial noise [B, h, w, C] NHWC (before init_noise_sigma scaling), to reproduce another tool's run. */
  latents?: tf.Tensor4D;
  width?: number;
  height?: number;
  /** The UNet's LoRA adapters (LoraSet.lookup). */
  lora?: LoraLookup;
  /** The text encoder's (LoraSet.textEncoderLookup): a LoRA's `lora_te_…` / `text_encoder.…` part. */
  textEncoderLora?: LoraLookup;
  /** SDXL's second text encoder's (LoraSet.textEncoder2Lookup: `lora_te2_…`). */
  textEncoder2Lora?: LoraLookup;
  /** Called after each denoising step; return false to cancel. */
  onStep?: (step: number, total: number) => boolean | void;
}

export class GenerationCancelled extends Error {
  constructor() {
    super('generation cancelled');
  }
}

/** What the UNet is conditioned on: encoder_hidden_states, and for SDXL the pooled embedding (text_embeds). */
export interface PromptEmbeddings {
  /** [B, 77, cross_attention_dim]. */
  readonly embeds: tf.Tensor3D;
  /** [B, projection_dim]: SDXL's pooled_prompt_embeds; absent for SD 1.x/2.x. */
  readonly pooled?: tf.Tensor2D;
}

/**
 * Text embeddings for a batch of prompts. SD 1.x/2.x: the text encoder's last hidden state. SDXL (encode_prompt):
 * hidden_states[-2] of both encoders concatenated on the channel axis, and the second encoder's projected pooled output.
 */
export function encodePrompts(sd: StableDiffusion, prompts: readonly string[], lora?: LoraLookup, lora2?: LoraLookup): PromptEmbeddings {
  return tf.tidy(() => {
    const ids = (tok: CLIPTokenizer) => tf.tensor2d(prompts.map((p) => tok.encode(p)), undefined, 'int32');
    if (!sd.textEncoder2 || !sd.tokenizer2) return { embeds: sd.textEncoder.forward(ids(sd.tokenizer), lora).lastHiddenState };
    const one = sd.textEncoder.forward(ids(sd.tokenizer), lora);
    const two = sd.textEncoder2.forward(ids(sd.tokenizer2), lora2);
    return { embeds: tf.concat([one.penultimateHiddenState, two.penultimateHiddenState], -1) as tf.Tensor3D, pooled: two.textEmbeds };
  });
}

export const disposeEmbeddings = (e: PromptEmbeddings): void => tf.dispose(e.pooled ? [e.embeds, e.pooled] : [e.embeds]);

/** SDXL's added conditioning for a batch: the pooled embeddings and time ids (one row of 6 for all, or one per row). */
export function addedConditioning(pooled: tf.Tensor2D, timeIds: readonly number[] | readonly (readonly number[])[]): AddedCondKwargs {
  const rows = (typeof timeIds[0] === 'number' ? Array.from({ length: pooled.shape[0] }, () => timeIds) : timeIds) as number[][];
  return { textEmbeds: pooled, timeIds: tf.tensor2d(rows) };
}

/** StableDiffusionXLPipeline's default guidance, and the scheduler SDXL ships with (its scheduler_config). */
export const SDXL_GUIDANCE = 5.0;
export const SDXL_SCHEDULER: SchedulerName = 'euler';

/** The first `n` rows (the unconditional half of a [negatives, prompts] batch) replaced by zeros: force_zeros_for_empty_prompt. */
function zeroFirstRows(e: PromptEmbeddings, n: number): PromptEmbeddings {
  return tf.tidy(() => {
    const z = <T extends tf.Tensor>(t: T): T => tf.concat([tf.zerosLike(t.slice(0, n)), t.slice(n)]) as T;
    return e.pooled ? { embeds: z(e.embeds), pooled: z(e.pooled) } : { embeds: z(e.embeds) };
  });
}

export async function generate(sd: StableDiffusion, o: GenerateOptions): Promise<tf.Tensor4D> {
  const prompts = typeof o.prompt === 'string' ? [o.prompt] : o.prompt;
  const batch = prompts.length;
  if (batch === 0) throw new Error('generate: no prompt given');
  const seeds = typeof o.seed === 'number' || o.seed === undefined ? prompts.map(() => (o.seed as number | undefined) ?? GENERATION_DEFAULTS.seed) : o.seed;
  if (seeds.length !== batch) throw new Error(`generate: ${batch} prompts and ${seeds.length} seeds: give one seed per prompt`);
  const width = o.width ?? defaultSize(sd);
  const height = o.height ?? defaultSize(sd);
  const f = sd.vaeScaleFactor;
  if (width % f || height % f) throw new Error(`width and height must be multiples of ${f}, got ${width}×${height}`);
  const xl = sd.textEncoder2 !== undefined;
  const guidance = o.guidanceScale ?? (xl ? SDXL_GUIDANCE : GENERATION_DEFAULTS.guidance);
  const cfg = guidance > 1;
  const lora = o.lora ?? noLora;
  const scheduler = createScheduler(o.scheduler ?? (xl ? SDXL_SCHEDULER : GENERATION_DEFAULTS.scheduler), sd.schedulerConfig);
  scheduler.setTimesteps(o.steps ?? GENERATION_DEFAULTS.steps);

  // [uncond × B, cond × B] in one batch, as diffusers does with do_classifier_free_guidance. SDXL given no
  // negative prompt, with force_zeros_for_empty_prompt, conditions the unconditional half on zeros instead.
  const negatives = prompts.map(() => o.negativePrompt ?? GENERATION_DEFAULTS.negativePrompt);
  let text = encodePrompts(sd, cfg ? [...negatives, ...prompts] : prompts, o.textEncoderLora, o.textEncoder2Lora);
  if (xl && cfg && o.negativePrompt === undefined && sd.forceZerosForEmptyPrompt) {
    const zeroed = zeroFirstRows(text, batch);
    disposeEmbeddings(text);
    text = zeroed;
  }
  const embeddings = text.embeds;
  // diffusers' _get_add_time_ids: original size = target size = the requested size, crop top-left (0, 0).
  const added = text.pooled ? addedConditioning(text.pooled, sdxlTimeIds([height, width], [0, 0], [height, width])) : undefined;
  const release = () => {
    disposeEmbeddings(text);
    added?.timeIds.dispose();
  };
  const channels = sd.unet.config.in_channels as number;
  const shape: [number, number, number, number] = [batch, height / f, width / f, channels];
  let latents: tf.Tensor4D;
  if (o.latents) {
    if (o.latents.shape.join() !== shape.join()) throw new Error(`latents have shape ${JSON.stringify(o.latents.shape)} (NHWC), expected ${JSON.stringify(shape)} for ${batch} image(s) of ${width}×${height}`);
    latents = o.latents.mul(scheduler.initNoiseSigma);
  } else {
    // Drawn NCHW with torch's CPU generator, one generator per image, so seed s gives the same image as
    // diffusers with generator=torch.Generator().manual_seed(s).
    const [, h, w, c] = shape;
    const noise = new Float32Array(batch * c * h * w);
    seeds.forEach((seed, i) => noise.set(torchRandn(seed, [1, c, h, w]), i * c * h * w));
    latents = tf.tidy(() => tf.tensor4d(noise, [batch, c, h, w]).transpose<tf.Tensor4D>([0, 2, 3, 1]).mul(scheduler.initNoiseSigma));
  }

  const total = scheduler.timesteps.length;
  for (let i = 0; i < total; i++) {
    const t = scheduler.timesteps[i];
    const next = tf.tidy(() => {
      const input = scheduler.scaleModelInput(cfg ? tf.concat([latents, latents]) : latents, t) as tf.Tensor4D;
      const timesteps = tf.fill([input.shape[0]], t, 'float32') as tf.Tensor1D;
      let noise = sd.unet.forward(input, timesteps, embeddings, lora, added);
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
      release();
      throw new GenerationCancelled();
    }
  }
  release();
  const bad = await countNonFinite(latents);
  if (bad) {
    latents.dispose();
    throw new NonFiniteOutputError(`the denoised latents hold ${bad} NaN or infinite values of ${latents.size}`, guidance);
  }
  const image = decodeLatents(sd, latents);
  latents.dispose();
  const badPixels = await countNonFinite(image);
  if (badPixels) {
    image.dispose();
    throw new NonFiniteOutputError(`the VAE decoded ${badPixels} NaN or infinite values of ${image.size}`, guidance);
  }
  return image;
}

/** A generation whose result is not numbers: never turned into a (black) image. */
export class NonFiniteOutputError extends Error {
  constructor(what: string, guidance: number) {
    super(
      `the image is not finite: ${what} — the model, a LoRA or the guidance scale (${guidance}) overflowed; ` +
        'no image was made (try without the LoRA, a lower LoRA scale or guidance, or check the model with `lora-studio inspect`)',
    );
    this.name = 'NonFiniteOutputError';
  }
}

async function countNonFinite(t: tf.Tensor): Promise<number> {
  const v = await t.data();
  let n = 0;
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) n++;
  return n;
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
