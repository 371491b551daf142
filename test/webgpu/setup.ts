// Shared set-up of the WebGPU kernel tests: the webgpu backend on a device of ours (lavapipe in CI),
// references computed with stock tfjs on the cpu backend, and a seeded random source.
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../src/core/engine/backend.js';
import { registerWebgpuBackend } from '../../src/core/engine/webgpu/device.js';
import { installWebgpuKernels } from '../../src/core/engine/webgpu/index.js';

let ready: Promise<string | undefined> | undefined;

/** Sets up webgpu with our kernels; resolves to a reason to skip when there is no WebGPU adapter. */
export function webgpuOrSkip(): Promise<string | undefined> {
  ready ??= (async () => {
    try {
      await registerWebgpuBackend();
      await initBackend('webgpu');
      // The references run on cpu: make sure it exists before we switch back and forth.
      await tf.setBackend('cpu');
      await tf.setBackend('webgpu');
      installWebgpuKernels();
      return undefined;
    } catch (e) {
      return `no WebGPU adapter here, WebGPU kernel tests skipped (${(e as Error).message.split('\n')[0]})`;
    }
  })();
  return ready;
}

/** Deterministic pseudo-random numbers in [-1, 1) (mulberry32). */
export function randoms(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/** Runs `f` on the cpu backend (stock tfjs) over copies of the given arrays; returns the values. */
export async function onCpu(f: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend('cpu');
  try {
    const r = tf.tidy(f);
    const list = Array.isArray(r) ? r : [r];
    const vals = await Promise.all(list.map(async (t) => (await t.data()) as Float32Array));
    tf.dispose(list);
    return vals;
  } finally {
    await tf.setBackend('webgpu');
  }
}

/** Runs `f` on webgpu; returns the values. */
export async function onGpu(f: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  const r = tf.tidy(f);
  const list = Array.isArray(r) ? r : [r];
  const vals = await Promise.all(list.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose(list);
  return vals;
}

/** Largest |a − b| and largest |b|. */
export function errors(a: ArrayLike<number>, b: ArrayLike<number>): { err: number; scale: number } {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let err = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    err = Number.isNaN(d) ? Infinity : Math.max(err, d);
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return { err, scale };
}
