// Golden fixtures: outputs of diffusers itself. LORA_STUDIO_FIXTURES points the parity suite at any
// folder with the tiny-sd layout (MANIFEST.json, model/, golden/, …); the default is the project's copy.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { readAllFloat32 } from '../../src/core/io/safetensors.js';
import { readJson } from '../../src/core/io/diffusers_folder.js';
import { initBackend } from '../../src/core/engine/backend.js';
import type { BackendName } from '../../src/core/config/run_config.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const FIXTURES = path.resolve(process.env.LORA_STUDIO_FIXTURES ?? path.join(REPO, 'test/fixtures/tiny-sd'));
export const MODEL_DIR = path.join(FIXTURES, 'model');
export const TINY_SHAPES = path.join(REPO, 'examples/tiny-shapes');

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
