// Golden fixtures: outputs of diffusers itself. LORA_STUDIO_FIXTURES points the parity suite at a fixture
// folder (the default is the project's test/fixtures/tiny-sd); what the suite needs is read from it:
//
//   - a model folder fixture (tiny-sd, tiny-sdxl): MANIFEST.json, model/ (a diffusers pipeline, SD 1.x/2.x
//     or SDXL: told by model/text_encoder_2), golden/<name>.safetensors, lora_diffusers/, dataset/;
//   - a single-file fixture (tiny-sd-single-file): MANIFEST.json naming `<name>.safetensors` with
//     `same_weights_as: …/<sibling>/model`. The models are loaded from the file (the sibling's folder gives
//     only the configs, as diffusers' from_single_file(path, config=…)), and the sibling's goldens apply.
//     The project's copy leaves the 15 MB file out: it is then written from the sibling's folder by the
//     loader's own key map run backwards (helpers/ldm_checkpoint.ts), into a temporary folder.
//
// A test whose golden the fixture does not have is skipped, saying which (`needs`).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { readAllFloat32, SafetensorsFile } from '../../src/core/io/safetensors.js';
import { readJson } from '../../src/core/io/diffusers_folder.js';
import { initBackend } from '../../src/core/engine/backend.js';
import type { BackendName } from '../../src/core/config/run_config.js';
import type { AddedCondKwargs } from '../../src/core/models/unet_2d_condition.js';
import { UNet2DConditionModel } from '../../src/core/models/unet_2d_condition.js';
import { AutoencoderKL } from '../../src/core/models/autoencoder_kl.js';
import { CLIPTextModel } from '../../src/core/models/clip_text_model.js';
import { SingleFileCheckpoint, textEncoderFromSingleFile, unetFromSingleFile, vaeFromSingleFile } from '../../src/core/models/from_single_file.js';
import { loadStableDiffusion, type StableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { writeLdmCheckpoint } from './ldm_checkpoint.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The folder LORA_STUDIO_FIXTURES names (or the default). */
export const FIXTURE_DIR = path.resolve(process.env.LORA_STUDIO_FIXTURES ?? path.join(REPO, 'test/fixtures/tiny-sd'));
export const TINY_SHAPES = path.join(REPO, 'examples/tiny-shapes');

interface FixtureLayout {
  /** The folder holding MANIFEST.json, golden/, lora_diffusers/, dataset/ for these weights. */
  readonly goldens: string;
  /** The diffusers folder: the model itself, or (single file) the folder of the same weights giving its configs and tokenizer. */
  readonly modelDir: string;
  /** The single-file checkpoint the models are loaded from, or null. */
  readonly singleFile: string | null;
}

function layout(dir: string): FixtureLayout {
  if (fs.existsSync(path.join(dir, 'model', 'model_index.json'))) return { goldens: dir, modelDir: path.join(dir, 'model'), singleFile: null };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const files = (readJson(path.join(dir, 'MANIFEST.json')) as any).files as Record<string, { same_weights_as?: string; key_counts?: Record<string, number> }>;
  const entry = Object.entries(files).find(([name, f]) => name.endsWith('.safetensors') && f.same_weights_as);
  if (!entry) throw new Error(`${dir}: neither model/model_index.json nor a MANIFEST.json entry "<file>.safetensors" with same_weights_as — not a fixture folder`);
  const [name, info] = entry;
  // same_weights_as names the sibling fixture's model folder (…/tiny-sd/model).
  const sibling = path.join(path.dirname(dir), path.basename(path.dirname(info.same_weights_as!)));
  const modelDir = path.join(sibling, 'model');
  let file = path.join(dir, name);
  if (!fs.existsSync(file)) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fixture-single-file-'));
    process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
    file = path.join(tmp, name);
    // What the diffusers-written file holds besides the weights: CLIP's position_ids buffer (ignored by loaders).
    const extra = { 'cond_stage_model.transformer.text_model.embeddings.position_ids': { dtype: 'I64' as const, shape: [1, 77], data: Array.from({ length: 77 }, (_, i) => i) } };
    writeLdmCheckpoint(modelDir, 'v1', ['unet', 'vae', 'text_encoder'], file, extra);
    // The written file must hold what the MANIFEST says the real one holds, component by component.
    const f = SafetensorsFile.open(file);
    const names = [...f.tensors.keys()];
    f.close();
    for (const [prefix, n] of Object.entries(info.key_counts ?? {})) {
      if (prefix.endsWith('.')) assert.equal(names.filter((k) => k.startsWith(prefix)).length, n, `${file}: ${prefix}* tensors vs ${dir}/MANIFEST.json`);
    }
  }
  return { goldens: sibling, modelDir, singleFile: file };
}

const LAYOUT = layout(FIXTURE_DIR);
/** The folder of goldens, LoRA files and dataset for the fixture's weights (a single-file fixture's sibling). */
export const FIXTURES = LAYOUT.goldens;
/** The diffusers folder: configs, tokenizer(s), scheduler — and the weights, unless the fixture is a single file. */
export const MODEL_DIR = LAYOUT.modelDir;
/** The fixture's single-file checkpoint, or null. */
export const SINGLE_FILE = LAYOUT.singleFile;
/** An SDXL fixture (two text encoders, added conditioning). */
export const IS_XL = fs.existsSync(path.join(MODEL_DIR, 'text_encoder_2'));
/** The model as the CLI and loaders name it: the folder, or the single file with its config folder. */
export const MODEL_ARGS: readonly string[] = SINGLE_FILE ? ['--model', SINGLE_FILE, '--model-config', MODEL_DIR] : ['--model', MODEL_DIR];

const checkpoint = () => SingleFileCheckpoint.open(SINGLE_FILE!, { config: MODEL_DIR });
/** The fixture's UNet, VAE, text encoder, or whole pipeline — from the single file when the fixture is one. */
export const fixtureUnet = (): UNet2DConditionModel => (SINGLE_FILE ? unetFromSingleFile(checkpoint()) : UNet2DConditionModel.fromPretrained(MODEL_DIR));
export const fixtureVae = (): AutoencoderKL => (SINGLE_FILE ? vaeFromSingleFile(checkpoint()) : AutoencoderKL.fromPretrained(MODEL_DIR));
export const fixtureTextEncoder = (): CLIPTextModel => (SINGLE_FILE ? textEncoderFromSingleFile(checkpoint()) : CLIPTextModel.fromPretrained(MODEL_DIR));
export const fixturePipeline = (): StableDiffusion => (SINGLE_FILE ? loadStableDiffusion(SINGLE_FILE, { config: MODEL_DIR }) : loadStableDiffusion(MODEL_DIR));

/** A test option: skip (saying why) unless the fixture has every golden named (golden/<name>.safetensors, or a MANIFEST `files` entry). */
export function needs(...names: string[]): { skip?: string } {
  const files = (manifest().files ?? {}) as Record<string, unknown>;
  const missing = names.filter((n) => !fs.existsSync(path.join(FIXTURES, 'golden', `${n}.safetensors`)) && !(n in files) && !fs.existsSync(path.join(FIXTURES, n)));
  return missing.length ? { skip: `${FIXTURE_DIR} has no ${missing.join(', ')}` } : {};
}

/** SDXL's added conditioning from a golden that has it (text_embeds, time_ids), else undefined. */
export function addedCondOf(g: Map<string, Golden>): AddedCondKwargs | undefined {
  if (!g.has('text_embeds') || !g.has('time_ids')) return undefined;
  return { textEmbeds: goldenTensor(g, 'text_embeds') as tf.Tensor2D, timeIds: goldenTensor(g, 'time_ids') as tf.Tensor2D };
}

/** Seeded stand-in added conditioning of a model's shapes (SDXL), for tests that make up their inputs; undefined for SD 1.x/2.x. */
export function randomAddedCond(unet: UNet2DConditionModel, batch: number, seed: number): AddedCondKwargs | undefined {
  const c = unet.config;
  if (c.addition_embed_type !== 'text_time') return undefined;
  const textDim = c.projection_class_embeddings_input_dim! - 6 * c.addition_time_embed_dim!;
  return { textEmbeds: tf.randomNormal([batch, textDim], 0, 1, 'float32', seed) as tf.Tensor2D, timeIds: tf.tensor2d(Array.from({ length: batch }, () => [64, 64, 0, 0, 64, 64])) };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function manifest(): any {
  return readJson(path.join(FIXTURES, 'MANIFEST.json'));
}

export interface Golden {
  shape: number[];
  data: Float32Array;
}

export function golden(name: string): Map<string, Golden> {
  return readAllFloat32(path.join(FIXTURES, 'golden', `${name}.safetensors`)).tensors;
}

export function goldenTensor(g: Map<string, Golden>, key: string): tf.Tensor {
  const t = g.get(key);
  if (!t) throw new Error(`golden tensor ${key} missing`);
  return tf.tensor(t.data, t.shape);
}

/** The backend the suite runs on: LORA_STUDIO_BACKEND (cpu, wasm, webgpu), default wasm. */
export async function useTestBackend(): Promise<string> {
  const name = (process.env.LORA_STUDIO_BACKEND ?? 'wasm') as BackendName;
  return (await initBackend(name)).name;
}

export const nchwToNhwc = (t: tf.Tensor) => tf.transpose(t, [0, 2, 3, 1]);
export const nhwcToNchw = (t: tf.Tensor) => tf.transpose(t, [0, 3, 1, 2]);

/** Largest |a − b| over all elements. */
export async function maxAbsDiff(a: tf.Tensor | ArrayLike<number>, b: tf.Tensor | ArrayLike<number>): Promise<number> {
  const av = a instanceof tf.Tensor ? await a.data() : a;
  const bv = b instanceof tf.Tensor ? await b.data() : b;
  assert.equal(av.length, bv.length, `length ${av.length} vs ${bv.length}`);
  let m = 0;
  for (let i = 0; i < av.length; i++) {
    const d = Math.abs(av[i] - bv[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Asserts max |actual − expected| <= atol + rtol·max|expected|, reporting the figure either way. */
export async function assertClose(actual: tf.Tensor | ArrayLike<number>, expected: tf.Tensor | ArrayLike<number>, atol: number, label: string, rtol = 0): Promise<number> {
  if (actual instanceof tf.Tensor && expected instanceof tf.Tensor) assert.deepEqual(actual.shape, expected.shape, `${label}: shape`);
  const err = await maxAbsDiff(actual, expected);
  const ev = expected instanceof tf.Tensor ? await expected.data() : expected;
  let scale = 0;
  for (let i = 0; i < ev.length; i++) scale = Math.max(scale, Math.abs(ev[i]));
  const bound = atol + rtol * scale;
  if (process.env.LORA_STUDIO_REPORT) console.log(`[parity] ${label}: max abs err ${err.toExponential(3)} (bound ${bound.toExponential(2)}, max |ref| ${scale.toPrecision(3)})`);
  assert.ok(err <= bound, `${label}: max abs error ${err} exceeds ${bound}`);
  return err;
}
