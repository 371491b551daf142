// `lora-studio generate`: one text-to-image generation, optionally with LoRAs, written as a PNG.
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
import { GENERATION_DEFAULTS as D, INFERENCE_SCHEDULERS, type InferenceScheduler } from '../core/config/generation.js';

const HELP = `usage: lora-studio generate --model DIR|FILE --prompt "…" --out FILE.png [options]

  --model DIR|FILE          diffusers pipeline folder (model_index.json, unet/, vae/, …) or single-file .safetensors checkpoint
  --model-config DIR        for a single file: a diffusers folder of its family (config.json files, tokenizers)
  --prompt TEXT             what to draw
  --negative-prompt TEXT    what to steer away from (default "${D.negativePrompt}")
  --lora FILE[:SCALE]       a LoRA .safetensors (diffusers, PEFT or kohya layout); repeat for several
  --scheduler NAME          ${INFERENCE_SCHEDULERS.join(' | ')} (default ${D.scheduler})
  --steps N                 denoising steps (default ${D.steps})
  --guidance G              classifier-free guidance scale (default ${D.guidance}; ≤ 1 turns it off)
  --seed S                  seed of the initial noise (default ${D.seed})
  --width W --height H      image size in pixels, multiples of 8 (default: the model's)
  --latents FILE            start from this initial noise (tensor "latents", NCHW [1,4,h,w]) instead of a seed
  --variant fp16            load *.fp16.safetensors weights
  --backend NAME            ${BACKENDS.join(' | ')} (default auto)
  --out FILE.png            where to write the image`;

export async function runGenerateCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      'model-config': { type: 'string' },
      prompt: { type: 'string' },
      'negative-prompt': { type: 'string', default: D.negativePrompt },
      lora: { type: 'string', multiple: true, default: [] },
      scheduler: { type: 'string', default: D.scheduler },
      steps: { type: 'string', default: String(D.steps) },
      guidance: { type: 'string', default: String(D.guidance) },
      seed: { type: 'string', default: String(D.seed) },
      width: { type: 'string' },
      height: { type: 'string' },
      latents: { type: 'string' },
      variant: { type: 'string' },
      backend: { type: 'string', default: 'auto' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const problems: string[] = [];
  if (!values.model) problems.push('--model DIR is required');
  if (values.prompt === undefined) problems.push('--prompt is required');
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
  const seed = int('seed', values.seed, 0);
  const width = int('width', values.width, 8);
  const height = int('height', values.height, 8);
  const guidance = Number(values.guidance);
  if (!Number.isFinite(guidance)) problems.push(`--guidance must be a number, got "${values.guidance}"`);
  // parseLoraArg never fails: without a numeric ':SCALE' suffix the whole argument is the file.
  const loraSpecs = (values.lora ?? []).map(parseLoraArg);
  if (problems.length) {
    for (const p of problems) console.error(`lora-studio generate: ${p}`);
    console.error('Run `lora-studio generate --help` for the options.');
    return 2;
  }

  const backend = await initBackend(values.backend as BackendName);
  console.error(`backend: ${backend.name}${backend.adapter ? ` (${backend.adapter})` : ''}`);
  const sd = loadStableDiffusion(path.resolve(values.model!), { variant: values.variant === 'fp16' ? 'fp16' : undefined, config: values['model-config'] ? path.resolve(values['model-config']) : undefined });
  const loras = loadLoras(sd, loraSpecs);
  try {
    let latents: tf.Tensor4D | undefined;
    if (values.latents) latents = readLatents(values.latents);
    const started = Date.now();
    const image = await generate(sd, {
      prompt: values.prompt!,
      negativePrompt: values['negative-prompt'],
      scheduler: values.scheduler as InferenceScheduler,
      steps,
      guidanceScale: guidance,
      seed,
      latents,
      width: width ?? (latents ? latents.shape[2] * sd.vaeScaleFactor : undefined),
      height: height ?? (latents ? latents.shape[1] * sd.vaeScaleFactor : undefined),
      lora: loras.lookup,
      textEncoderLora: loras.textEncoderLookup,
      textEncoder2Lora: loras.textEncoder2Lookup,
      onStep: (i, n) => void (process.stderr.isTTY && process.stderr.write(`\rstep ${i}/${n}`)),
    });
    if (process.stderr.isTTY) process.stderr.write('\n');
    await writePng(path.resolve(values.out!), image, {
      parameters: JSON.stringify({ prompt: values.prompt, negative_prompt: values['negative-prompt'], scheduler: values.scheduler, steps, guidance, seed, loras: values.lora }),
    });
    image.dispose();
    latents?.dispose();
    console.error(`wrote ${values.out} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return 0;
  } finally {
    loras.dispose();
    disposeStableDiffusion(sd);
  }
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
