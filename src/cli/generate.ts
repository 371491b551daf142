// `lora-studio generate`: text-to-image generations, optionally with LoRAs, written as PNGs — several
// prompts, seeds and LoRA scales in one call, with the model and the LoRAs loaded once.
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../core/engine/backend.js';
import { BACKENDS, type BackendName } from '../core/config/run_config.js';
import { SafetensorsFile } from '../core/io/safetensors.js';
import { writePng } from '../core/io/png.js';
import { loadStableDiffusion, generate, disposeStableDiffusion } from '../core/pipeline/stable_diffusion.js';
import { loadLoras } from '../core/pipeline/loras.js';
import { parseLoraArg } from '../core/lora/lora_set.js';
import { DownloadBar, ProgressBar, clock } from './terminal.js';
import { resolveModel } from '../core/hub/model.js';
import { HubError } from '../core/hub/download.js';
import { makeDirs } from '../core/config/run_folder.js';
import { BATCH_LATENT_PIXELS, GENERATION_DEFAULTS as D, INFERENCE_SCHEDULERS, generationBatchSize, imageSizeProblem, type InferenceScheduler } from '../core/config/generation.js';

const HELP = `usage: lora-studio generate --model DIR|FILE|ORG/NAME --prompt "…" --out FILE.png [options]

Several images in one call load the model once: repeat --prompt and --seed (paired in order when both are
repeated the same number of times; one of either is used for all), and repeat --lora-scale to sweep the LoRAs'
strength (0 = without them) without reloading anything. Small images run several at a time: one UNet call per
denoising step for the whole batch (up to ${BATCH_LATENT_PIXELS} latent pixels: 16 images of 16×16 latents, one of 64×64).

  --model DIR|FILE|ORG/NAME diffusers pipeline folder (model_index.json, unet/, vae/, …), single-file .safetensors
                            checkpoint, or a Hugging Face Hub id (runwayml/stable-diffusion-v1-5): taken from the
                            Hugging Face cache (HF_HUB_CACHE, HF_HOME), downloaded into it first when missing
                            (HF_ENDPOINT; HF_HUB_OFFLINE=1: the cache only; token: HF_TOKEN or the login's token file)
  --revision REV            for a Hub id: the branch, tag or commit (default main)
  --cache-dir DIR           for a Hub id: the Hugging Face cache to use instead of the environment's
  --model-config DIR        for a single file: a diffusers folder of its family (config.json files, tokenizers)
  --prompt TEXT             what to draw; repeat for several
  --negative-prompt TEXT    what to steer away from (default "${D.negativePrompt}")
  --lora FILE[:SCALE]       a LoRA .safetensors (diffusers, PEFT or kohya layout); repeat for several
  --lora-scale S            multiply every LoRA's scale by S; repeat for a sweep (default 1)
  --scheduler NAME          ${INFERENCE_SCHEDULERS.join(' | ')} (default ${D.scheduler})
  --steps N                 denoising steps (default ${D.steps})
  --guidance G              classifier-free guidance scale (default ${D.guidance}; ≤ 1 turns it off)
  --seed S                  seed of the initial noise (default ${D.seed}); repeat for several
  --width W --height H      image size in pixels, multiples of 8 (default: the model's)
  --latents FILE            start from this initial noise (tensor "latents", NCHW [1,4,h,w]) instead of a seed
  --variant fp16            load *.fp16.safetensors weights
  --backend NAME            ${BACKENDS.join(' | ')} (default auto)
  --out FILE.png            where to write the image; for several, a pattern with {i}, {seed} or {scale}
                            (e.g. out/img-{i}-{scale}.png; {i} counts the prompt/seed pairs from 0)
  --grid FILE.png           also write all images in one picture: a row per --lora-scale, a column per pair
  --json                    one JSON line per image on stdout: {"path", "prompt", "seed", "scale", "seconds"}
  --quiet, -q               no progress bar; errors only

Exit status: 0 the images were written, 1 generation failed (a model or LoRA could not be read, …),
2 the command line is invalid.`;

export async function runGenerateCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      'model-config': { type: 'string' },
      prompt: { type: 'string', multiple: true },
      'negative-prompt': { type: 'string', default: D.negativePrompt },
      lora: { type: 'string', multiple: true, default: [] },
      'lora-scale': { type: 'string', multiple: true },
      scheduler: { type: 'string', default: D.scheduler },
      steps: { type: 'string', default: String(D.steps) },
      guidance: { type: 'string', default: String(D.guidance) },
      seed: { type: 'string', multiple: true },
      width: { type: 'string' },
      height: { type: 'string' },
      latents: { type: 'string' },
      variant: { type: 'string' },
      revision: { type: 'string' },
      'cache-dir': { type: 'string' },
      backend: { type: 'string', default: 'auto' },
      out: { type: 'string' },
      grid: { type: 'string' },
      json: { type: 'boolean', default: false },
      quiet: { type: 'boolean', short: 'q', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const problems: string[] = [];
  if (!values.model) problems.push('--model DIR|ORG/NAME is required');
  const prompts = values.prompt ?? [];
  if (prompts.length === 0) problems.push('--prompt is required');
  if (!values.out) problems.push('--out FILE.png is required');
  if (!INFERENCE_SCHEDULERS.includes(values.scheduler as InferenceScheduler)) problems.push(`--scheduler must be one of ${INFERENCE_SCHEDULERS.join(', ')}, got "${values.scheduler}"`);
  if (!BACKENDS.includes(values.backend as BackendName)) problems.push(`--backend must be one of ${BACKENDS.join(', ')}, got "${values.backend}"`);
  const int = (name: string, v: string | undefined, min: number) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) problems.push(`--${name} must be an integer ≥ ${min}, got "${v}"`);
    return n;
  };
  const steps = int('steps', values.steps, 1);
  const seeds = (values.seed ?? [String(D.seed)]).map((v) => int('seed', v, 0) ?? 0);
  const width = int('width', values.width, 8);
  const height = int('height', values.height, 8);
  const guidance = Number(values.guidance);
  if (!Number.isFinite(guidance)) problems.push(`--guidance must be a number, got "${values.guidance}"`);
  const sweep = (values['lora-scale'] ?? ['1']).map((v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) problems.push(`--lora-scale must be a number, got "${v}"`);
    return n;
  });
  // Prompt/seed pairs: paired in order, or one of them broadcast.
  const pairs = prompts.length > 0 ? pairPromptsAndSeeds(prompts, seeds, problems) : [];
  if (values.latents && pairs.length > 1) problems.push('--latents gives one initial noise: use it with one --prompt and no repeated --seed');
  const several = pairs.length * sweep.length > 1;
  if (values.out && several && !/\{(i|seed|scale)\}/.test(values.out)) {
    problems.push(`--out "${values.out}" names one file but ${pairs.length * sweep.length} images are asked for: put {i}, {seed} or {scale} in it (e.g. img-{i}-{scale}.png)`);
  }
  // parseLoraArg never fails: without a numeric ':SCALE' suffix the whole argument is the file.
  const loraSpecs = (values.lora ?? []).map(parseLoraArg);
  if (problems.length) {
    for (const p of problems) console.error(`lora-studio generate: ${p}`);
    console.error('Run `lora-studio generate --help` for the options.');
    return 2;
  }

  const bar = new ProgressBar(process.stderr, { label: 'generate', quiet: values.quiet });
  const backend = await initBackend(values.backend as BackendName);
  if (!values.quiet) bar.log(`backend: ${backend.name}${backend.adapter ? ` (${backend.adapter})` : ''}`);
  const variant = values.variant === 'fp16' ? 'fp16' : undefined;
  const download = new DownloadBar(process.stderr, values.quiet, (line) => bar.log(line));
  let modelDir: string;
  try {
    modelDir = (
      await resolveModel(values.model!, process.cwd(), {
        revision: values.revision,
        variant,
        cacheDir: values['cache-dir'] ? path.resolve(values['cache-dir']) : undefined,
        onProgress: (p) => download.update(p),
        onNotice: (m) => bar.log(`warning: ${m}`),
      })
    ).dir;
  } catch (e) {
    if (!(e instanceof HubError)) throw e;
    console.error(`lora-studio generate: ${e.message}`);
    return 1;
  }
  const sd = loadStableDiffusion(modelDir, { variant, config: values['model-config'] ? path.resolve(values['model-config']) : undefined });
  const native = (sd.unet.config.sample_size as number) * sd.vaeScaleFactor;
  const sizeProblem = width === undefined && height === undefined ? undefined : imageSizeProblem(width ?? native, height ?? native, { width: native, height: native }, sd.vaeScaleFactor);
  if (sizeProblem) {
    disposeStableDiffusion(sd);
    console.error(`lora-studio generate: ${sizeProblem}`);
    return 2;
  }
  const loras = loadLoras(sd, loraSpecs);
  const names = loras.names();
  const grid: tf.Tensor3D[][] = [];
  try {
    const latents = values.latents ? readLatents(values.latents) : undefined;
    const total = pairs.length * sweep.length * steps!;
    let done = 0;
    const started = Date.now();
    const imageWidth = width ?? (latents ? latents.shape[2] * sd.vaeScaleFactor : native);
    const imageHeight = height ?? (latents ? latents.shape[1] * sd.vaeScaleFactor : native);
    // Pairs run in batches (one UNet call per step for the whole batch); each scale is its own batch.
    const perCall = generationBatchSize(imageWidth / sd.vaeScaleFactor, imageHeight / sd.vaeScaleFactor);
    for (const [row, scale] of sweep.entries()) {
      names.forEach((n, j) => loras.setScale(n, loraSpecs[j].scale * scale));
      grid.push([]);
      for (let first = 0; first < pairs.length; first += perCall) {
        const part = pairs.slice(first, first + perCall);
        const t0 = Date.now();
        const images = await generate(sd, {
          prompt: part.map((p) => p.prompt),
          negativePrompt: values['negative-prompt'],
          scheduler: values.scheduler as InferenceScheduler,
          steps,
          guidanceScale: guidance,
          seed: part.map((p) => p.seed),
          latents,
          width: imageWidth,
          height: imageHeight,
          lora: loras.lookup,
          textEncoderLora: loras.textEncoderLookup,
          textEncoder2Lora: loras.textEncoder2Lookup,
          onStep: () => {
            done += part.length;
            const image = row * pairs.length + first + 1;
            const which = part.length > 1 ? `images ${image}–${image + part.length - 1}` : `image ${image}`;
            bar.update(done, total, `${which}/${pairs.length * sweep.length} · ETA ${clock(((Date.now() - started) / done / 1000) * (total - done))}`);
          },
        });
        // Each image's share of the batch's time.
        const seconds = (Date.now() - t0) / 1000 / part.length;
        for (const [k, { prompt, seed }] of part.entries()) {
          const i = first + k;
          const image = tf.tidy(() => images.slice(k, 1) as tf.Tensor4D);
          const file = path.resolve(values.out!.replaceAll('{i}', String(i)).replaceAll('{seed}', String(seed)).replaceAll('{scale}', String(scale)));
          makeDirs(path.dirname(file));
          await writePng(file, image, {
            parameters: JSON.stringify({ prompt, negative_prompt: values['negative-prompt'], scheduler: values.scheduler, steps, guidance, seed, loras: values.lora, lora_scale: scale }),
          });
          if (values.grid) grid[row].push(tf.tidy(() => image.squeeze([0]) as tf.Tensor3D));
          image.dispose();
          if (values.json) process.stdout.write(JSON.stringify({ path: file, prompt, seed, scale, seconds }) + '\n');
          else if (!values.quiet) bar.log(`wrote ${file} (${seconds.toFixed(1)} s)`);
        }
        images.dispose();
      }
    }
    latents?.dispose();
    bar.finish();
    if (values.grid) {
      const picture = tf.tidy(() => tf.concat(grid.map((r) => tf.concat(r, 1)), 0));
      await writePng(path.resolve(values.grid), picture);
      picture.dispose();
      if (!values.quiet && !values.json) console.error(`grid (a row per LoRA scale ${sweep.join(', ')}): ${path.resolve(values.grid)}`);
    }
    if (!values.quiet && !values.json) console.error(`${pairs.length * sweep.length} image(s) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return 0;
  } finally {
    tf.dispose(grid.flat());
    loras.dispose();
    disposeStableDiffusion(sd);
  }
}

/** `--prompt`s and `--seed`s as pairs: in order when as many of each, else the single one used for all. */
export function pairPromptsAndSeeds(prompts: readonly string[], seeds: readonly number[], problems: string[]): { prompt: string; seed: number }[] {
  if (prompts.length === seeds.length) return prompts.map((prompt, i) => ({ prompt, seed: seeds[i] }));
  if (seeds.length === 1) return prompts.map((prompt) => ({ prompt, seed: seeds[0] }));
  if (prompts.length === 1) return seeds.map((seed) => ({ prompt: prompts[0], seed }));
  problems.push(`${prompts.length} --prompt and ${seeds.length} --seed: give as many of each (paired in order), or one of either`);
  return [];
}

/** Reads initial noise saved by another tool: tensor "latents", NCHW → NHWC. */
function readLatents(file: string): tf.Tensor4D {
  const f = SafetensorsFile.open(file);
  try {
    const name = f.tensors.has('latents') ? 'latents' : undefined;
    if (!name) throw new Error(`${file}: no tensor named "latents" (found: ${f.names().join(', ')})`);
    const shape = f.info(name).shape;
    if (shape.length !== 4) throw new Error(`${file}: "latents" must be NCHW [1, C, h, w], got ${JSON.stringify(shape)}`);
    return tf.tidy(() => tf.tensor4d(f.readFloat32(name), shape as [number, number, number, number]).transpose([0, 2, 3, 1]));
  } finally {
    f.close();
  }
}
