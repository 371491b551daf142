// Timing and memory measurement that work the same on every tfjs backend.
import * as tf from '@tensorflow/tfjs';

interface GpuBackend {
  device: GPUDevice;
  bufferManager: { numBytesUsed: number; numBytesAllocated: number; acquireBuffer: (...a: unknown[]) => unknown };
  endComputePassEncoder(): void;
  submitQueue(): void;
  commandEncoder: unknown;
}

const gpu = (): GpuBackend | undefined => (tf.getBackend() === 'webgpu' ? (tf.backend() as unknown as GpuBackend) : undefined);

/** Waits until everything queued so far has run (on webgpu without reading the results back). */
export async function sync(result?: tf.Tensor | tf.Tensor[]): Promise<void> {
  const b = gpu();
  if (b) {
    if (b.commandEncoder) {
      b.endComputePassEncoder();
      b.submitQueue();
    }
    await b.device.queue.onSubmittedWorkDone();
    return;
  }
  const list = result === undefined ? [] : Array.isArray(result) ? result : [result];
  for (const t of list) await t.data();
}

/**
 * Mean wall-clock ms of `fn` after `warmup` runs (which also compile the shaders), with enough
 * iterations to fill about `targetMs` (at least 3, at most 50).
 */
export async function timeMs(fn: () => tf.Tensor | tf.Tensor[], opts: { warmup?: number; targetMs?: number; maxIters?: number } = {}): Promise<{ ms: number; iters: number }> {
  const warmup = opts.warmup ?? 2;
  for (let i = 0; i < warmup; i++) {
    const r = tf.tidy(fn);
    await sync(r);
    tf.dispose(r);
  }
  let t0 = performance.now();
  const probe = tf.tidy(fn);
  await sync(probe);
  tf.dispose(probe);
  const once = performance.now() - t0;
  const iters = Math.max(3, Math.min(opts.maxIters ?? 50, Math.ceil((opts.targetMs ?? 300) / Math.max(once, 0.01))));
  t0 = performance.now();
  for (let i = 0; i < iters; i++) {
    const r = tf.tidy(fn);
    if (i === iters - 1) {
      await sync(r);
    }
    tf.dispose(r);
  }
  return { ms: (performance.now() - t0) / iters, iters };
}

/** High-water mark of GPU buffer bytes in use (webgpu: every buffer tfjs' buffer manager hands out). */
export class PeakMemory {
  private peak = 0;
  private readonly restore?: () => void;

  constructor() {
    const b = gpu();
    if (!b) return;
    const bm = b.bufferManager;
    const orig = bm.acquireBuffer;
    bm.acquireBuffer = (...a: unknown[]) => {
      const buf = orig.apply(bm, a);
      if (bm.numBytesUsed > this.peak) this.peak = bm.numBytesUsed;
      return buf;
    };
    this.restore = () => {
      bm.acquireBuffer = orig;
    };
  }

  /** Starts a new measurement from what is in use now. */
  reset(): void {
    const b = gpu();
    this.peak = b ? b.bufferManager.numBytesUsed : 0;
  }

  /** Peak bytes since reset (webgpu), else tfjs' current tensor bytes. */
  bytes(): number {
    return gpu() ? this.peak : tf.memory().numBytes;
  }

  /** Bytes the backend holds on the device (in use + its pool of free buffers). */
  allocated(): number | undefined {
    return gpu()?.bufferManager.numBytesAllocated;
  }

  dispose(): void {
    this.restore?.();
  }
}

export const gib = (bytes: number | undefined) => (bytes === undefined ? undefined : Math.round((bytes / 2 ** 30) * 1000) / 1000);
export const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;
