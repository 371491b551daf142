// Micro-kernels at the reference shapes (../shared/reference/h100-baseline.json): each timed with the
// stock tfjs kernel and with the project's WGSL kernel in the same process, and checked against each other.
import * as tf from '@tensorflow/tfjs';
import { tfjsOps } from '../src/core/engine/ops.js';
import { webgpuOps } from '../src/core/engine/webgpu/ops.js';
import { conv2d, conv2dInputGrad, linearOp, setGemmTile, stockConv2dBackpropFilter } from '../src/core/engine/webgpu/matmul.js';
import { GEMM_TILES, DEFAULT_TILE, type GemmTile } from '../src/core/engine/webgpu/wgsl/gemm.js';
import { timeMs, round } from './timing.js';

export interface Timed {
  readonly ms: number;
  /** TFLOP/s, or GB/s for memory-bound kernels (see `unit`). */
  readonly rate: number;
  readonly iters: number;
}

export interface MicroResult {
  readonly name: string;
  readonly unit: 'TFLOP/s' | 'GB/s';
  /** FLOPs (or bytes moved, for GB/s) of one call. */
  readonly work: number;
  stock?: Timed;
  /** The stock kernel with a non-default tfjs flag (named in `stockAltNote`). */
  stockAlt?: Timed;
  stockAltNote?: string;
  ours?: Timed;
  /** max |ours − stock| over the first output, and max |stock|. */
  maxAbsDiff?: number;
  maxAbsRef?: number;
  note?: string;
  error?: string;
}

export interface MicroShapes {
  matmul: number;
  conv: { B: number; H: number; C: number };
  attn: { H: number; T: number; D: number };
  gn: { B: number; H: number; C: number; G: number };
}

export const FULL_SHAPES: MicroShapes = {
  matmul: 4096,
  conv: { B: 4, H: 64, C: 320 },
  attn: { H: 8, T: 4096, D: 40 },
  gn: { B: 4, H: 64, C: 320, G: 32 },
};

export const SMALL_SHAPES: MicroShapes = {
  matmul: 256,
  conv: { B: 1, H: 16, C: 32 },
  attn: { H: 2, T: 256, D: 40 },
  gn: { B: 1, H: 16, C: 64, G: 32 },
};

const rnd = (shape: number[], seed: number, scale = 1) => tf.randomUniform(shape, -scale, scale, 'float32', seed);

async function diff(a: tf.Tensor, b: tf.Tensor): Promise<{ maxAbsDiff: number; maxAbsRef: number }> {
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const m = tf.tidy(() => tf.max(tf.abs(b)));
  const [dv, mv] = await Promise.all([d.data(), m.data()]);
  tf.dispose([d, m]);
  return { maxAbsDiff: dv[0], maxAbsRef: mv[0] };
}

const rate = (work: number, ms: number, unit: 'TFLOP/s' | 'GB/s') => Number((unit === 'TFLOP/s' ? work / ms / 1e9 : work / ms / 1e6).toPrecision(4));

async function timed(fn: () => tf.Tensor | tf.Tensor[], work: number, unit: 'TFLOP/s' | 'GB/s'): Promise<Timed> {
  const { ms, iters } = await timeMs(fn);
  return { ms: round(ms, 4), rate: rate(work, ms, unit), iters };
}

/** Runs one comparison; an exception (e.g. a stock kernel running out of memory) is recorded, not thrown. */
async function compare(r: MicroResult, stock: (() => tf.Tensor | tf.Tensor[]) | undefined, ours: (() => tf.Tensor | tf.Tensor[]) | undefined, log: (m: string) => void): Promise<MicroResult> {
  try {
    if (ours) r.ours = await timed(ours, r.work, r.unit);
    if (stock) r.stock = await timed(stock, r.work, r.unit);
    if (stock && ours) {
      const a = tf.tidy(() => { const x = ours(); return Array.isArray(x) ? x[0] : x; });
      const b = tf.tidy(() => { const x = stock(); return Array.isArray(x) ? x[0] : x; });
      Object.assign(r, await diff(a, b));
      tf.dispose([a, b]);
    }
  } catch (e) {
    r.error = (e as Error).message;
  }
  log(`${r.name}: stock ${r.stock ? `${r.stock.ms.toFixed(3)} ms ${r.stock.rate} ${r.unit}` : '-'} | ours ${r.ours ? `${r.ours.ms.toFixed(3)} ms ${r.ours.rate} ${r.unit}` : '-'}${r.maxAbsDiff !== undefined ? ` | max diff ${r.maxAbsDiff.toExponential(2)}` : ''}${r.error ? ` | ERROR ${r.error}` : ''}`);
  return r;
}

export async function microKernels(s: MicroShapes, withOurs: boolean, log: (m: string) => void): Promise<MicroResult[]> {
  const out: MicroResult[] = [];
  const ours = <T,>(f: T) => (withOurs ? f : undefined);

  // matmul N³
  {
    const n = s.matmul;
    const a = rnd([n, n], 1);
    const b = rnd([n, n], 2);
    const bT = tf.transpose(b) as tf.Tensor2D;
    out.push(await compare({ name: `matmul ${n}^3 f32`, unit: 'TFLOP/s', work: 2 * n ** 3 },
      () => tf.matMul(a, b), ours(() => linearOp(a as tf.Tensor2D, bT)), log));
    tf.dispose([a, b, bT]);
  }

  // conv 3×3, same padding
  {
    const { B, H, C } = s.conv;
    const x = rnd([B, H, H, C], 3) as tf.Tensor4D;
    const w = rnd([3, 3, C, C], 4, 0.05) as tf.Tensor4D;
    const dy = rnd([B, H, H, C], 5) as tf.Tensor4D;
    const work = 2 * B * H * H * C * C * 9;
    const tag = `b${B} ${H}x${H}x${C}->${C}`;
    out.push(await compare({ name: `conv3x3 ${tag} fwd`, unit: 'TFLOP/s', work }, () => tf.conv2d(x, w, 1, 'same'), ours(() => conv2d(x, w, undefined, 1, 1)), log));
    const gi = await compare({ name: `conv3x3 ${tag} grad-input`, unit: 'TFLOP/s', work },
      () => tf.conv2dTranspose(dy, w, [B, H, H, C], 1, 'same'), ours(() => conv2dInputGrad(dy, w, H, H, 1, 1)), log);
    // tfjs' matmul-based backprop-input (off by default in tfjs 4.22): the best stock alternative.
    if (tf.getBackend() === 'webgpu') {
    const flag = tf.env().get('WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE');
    tf.env().set('WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE', false);
    try {
      gi.stockAlt = await timed(() => tf.conv2dTranspose(dy, w, [B, H, H, C], 1, 'same'), work, 'TFLOP/s');
      gi.stockAltNote = 'WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE=false';
    } catch (e) {
      gi.stockAltNote = `WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE=false failed: ${(e as Error).message}`;
    } finally {
      tf.env().set('WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE', flag);
    }
    log(`  (stock with ${gi.stockAltNote}: ${gi.stockAlt?.ms.toFixed(3)} ms ${gi.stockAlt?.rate} TFLOP/s)`);
    }
    out.push(gi);
    out.push(await compare({ name: `conv3x3 ${tag} grad-filter`, unit: 'TFLOP/s', work, note: 'stock only: LoRA training never needs a frozen weight gradient' },
      () => stockConv2dBackpropFilter(x, dy, [3, 3, C, C], 1, 'same'), undefined, log));
    tf.dispose([x, w, dy]);
  }

  // attention [heads, tokens, head dim], batch 1
  {
    const { H, T, D } = s.attn;
    const q = rnd([1, T, H * D], 6) as tf.Tensor3D;
    const k = rnd([1, T, H * D], 7) as tf.Tensor3D;
    const v = rnd([1, T, H * D], 8) as tf.Tensor3D;
    const dy = rnd([1, T, H * D], 9) as tf.Tensor3D;
    const fwd = 4 * H * T * T * D;
    const tag = `[${H},${T},${D}]`;
    out.push(await compare({ name: `attention ${tag} fwd`, unit: 'TFLOP/s', work: fwd },
      () => tfjsOps.attention(q, k, v, H), ours(() => webgpuOps.attention(q, k, v, H)), log));
    const fb = (ops: typeof tfjsOps) => () => tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => ops.attention(a as tf.Tensor3D, b as tf.Tensor3D, c as tf.Tensor3D, H))([q, k, v], dy);
    out.push(await compare({ name: `attention ${tag} fwd+bwd`, unit: 'TFLOP/s', work: 3.5 * fwd, note: 'FLOPs counted as 3.5× the forward (FlashAttention convention: backward = 2.5× forward)' },
      fb(tfjsOps), ours(fb(webgpuOps)), log));
    tf.dispose([q, k, v, dy]);
  }

  // group norm
  {
    const { B, H, C, G } = s.gn;
    const x = rnd([B, H, H, C], 10, 2) as tf.Tensor4D;
    const gamma = rnd([C], 11) as tf.Tensor1D;
    const beta = rnd([C], 12) as tf.Tensor1D;
    const dy = rnd([B, H, H, C], 13) as tf.Tensor4D;
    const bytes = 2 * B * H * H * C * 4;
    const tag = `groupnorm${G} [${B},${H},${H},${C}]`;
    out.push(await compare({ name: `${tag} fwd`, unit: 'GB/s', work: bytes, note: 'bytes = read x + write y' },
      () => tfjsOps.groupNorm(x, G, gamma, beta, 1e-5, false), ours(() => webgpuOps.groupNorm(x, G, gamma, beta, 1e-5, false)), log));
    out.push(await compare({ name: `${tag} +SiLU fwd`, unit: 'GB/s', work: bytes, note: 'bytes = read x + write y' },
      () => tfjsOps.groupNorm(x, G, gamma, beta, 1e-5, true), ours(() => webgpuOps.groupNorm(x, G, gamma, beta, 1e-5, true)), log));
    const gb = (ops: typeof tfjsOps) => () => tf.grad((xx: tf.Tensor4D) => ops.groupNorm(xx, G, gamma, beta, 1e-5, true))(x, dy);
    out.push(await compare({ name: `${tag} +SiLU fwd+bwd (dx)`, unit: 'GB/s', work: 2 * bytes, note: 'bytes counted as 2× the forward\'s (x, y; x, dy, dx)' },
      gb(tfjsOps), ours(gb(webgpuOps)), log));
    tf.dispose([x, gamma, beta, dy]);
  }
  return out;
}

export interface TileResult {
  readonly tile: string;
  readonly vec4: boolean;
  readonly results: Record<string, Timed | string>;
}

/** Times the GEMM kernels (matmul, conv fwd, conv grad-input) under every tiling; sets and returns the best for convolutions. */
export async function sweepGemmTiles(s: MicroShapes, log: (m: string) => void): Promise<{ sweep: TileResult[]; best: { tile: string; vec4: boolean } }> {
  const n = s.matmul;
  const { B, H, C } = s.conv;
  const a = rnd([n, n], 1) as tf.Tensor2D;
  const bT = rnd([n, n], 2) as tf.Tensor2D;
  const x = rnd([B, H, H, C], 3) as tf.Tensor4D;
  const w = rnd([3, 3, C, C], 4, 0.05) as tf.Tensor4D;
  const convWork = 2 * B * H * H * C * C * 9;
  const sweep: TileResult[] = [];
  let best = { tile: 'default', vec4: true, ms: Infinity };
  const tiles: [string, GemmTile][] = Object.entries(GEMM_TILES);
  for (const [name, tile] of tiles) {
    for (const vec4 of [true, false]) {
      setGemmTile(tile, vec4);
      const results: Record<string, Timed | string> = {};
      try {
        results.matmul = await timed(() => linearOp(a, bT), 2 * n ** 3, 'TFLOP/s');
        results.conv_fwd = await timed(() => conv2d(x, w, undefined, 1, 1), convWork, 'TFLOP/s');
        results.conv_grad_input = await timed(() => conv2dInputGrad(x, w, H, H, 1, 1), convWork, 'TFLOP/s');
        const convMs = (results.conv_fwd as Timed).ms + (results.conv_grad_input as Timed).ms;
        if (convMs < best.ms) best = { tile: name, vec4, ms: convMs };
      } catch (e) {
        results.error = (e as Error).message;
      }
      sweep.push({ tile: name, vec4, results });
      const f = (k: string) => (typeof results[k] === 'object' ? `${(results[k] as Timed).rate}` : '-');
      log(`tile ${name} vec4=${vec4}: matmul ${f('matmul')}, conv fwd ${f('conv_fwd')}, grad-input ${f('conv_grad_input')} TFLOP/s`);
    }
  }
  tf.dispose([a, bT, x, w]);
  setGemmTile(GEMM_TILES[best.tile] ?? DEFAULT_TILE, best.vec4);
  return { sweep, best: { tile: best.tile, vec4: best.vec4 } };
}
