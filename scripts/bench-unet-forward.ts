// Times one UNet2DConditionModel forward at Stable Diffusion 1.5 shapes (random weights) on a tfjs backend.
//
//   node --import tsx scripts/bench-unet-forward.ts [--backend wasm] [--latent 64] [--batch 1] [--runs 1]
//                                                   [--head-chunk N] [--fresh-weights | --keep-weights]
//                                                   [--xnn-paths]
//
// SD 1.5: block_out_channels 320/640/1280/1280, CrossAttnDownBlock2D×3 + DownBlock2D, UpBlock2D +
// CrossAttnUpBlock2D×3, 2 layers per block, 8 heads, cross-attention 768; latent 64×64 is a 512×512
// image.
//
// The wasm heap is capped at 4 GiB and SD 1.5's float32 weights alone take 3.4 GiB of it, so two
// memory savers exist (both leave the arithmetic unchanged; both on by default for wasm, where SD 1.5
// does not run without them — --head-chunk 0 and --keep-weights turn them off):
//   --head-chunk N    attention N heads at a time: 8 heads × 4096² scores are 512 MiB per layer.
//   --fresh-weights   hand each conv/linear a fresh copy of its weight, disposed right after: tfjs-wasm
//                     caches an XNNPACK operator per conv filter tensor (conv2d_impl.cc: a transposed copy
//                     of the filter plus XNNPACK's packed one, freed only when the filter tensor is), which
//                     would add several GiB to the 3.4. Costs a copy + repack of each weight per forward
//                     (printed at the end: the copy pass alone), so the time is an upper bound.
//
// --xnn-paths measures what the same stock kernels give when every matmul takes tfjs-wasm's XNNPACK path:
// its BatchMatMul uses XNNPACK only for an untransposed batch-1 product and otherwise falls back to a
// naive loop (batch_mat_mul_impl.cc), which tfjsOps.linear (transposeB) and tfjsOps.attention (batched
// heads) both hit. Linear then multiplies by an explicitly transposed weight, attention loops over heads
// with 2-D products.
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/core/engine/backend.js';
import type { BackendName } from '../src/core/config/run_config.js';
import { ops, setOps, type Ops } from '../src/core/engine/ops.js';
import { UNet2DConditionModel } from '../src/core/models/unet_2d_condition.js';

const SD15_UNET = {
  sample_size: 64,
  in_channels: 4,
  out_channels: 4,
  block_out_channels: [320, 640, 1280, 1280],
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  layers_per_block: 2,
  attention_head_dim: 8,
  cross_attention_dim: 768,
  norm_num_groups: 32,
};

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

/** The active ops with every conv/linear weight copied before use (see --fresh-weights). */
function freshWeights(base: Ops): Ops {
  return {
    ...base,
    linear(x, weight, bias, adapters) {
      return tf.tidy(() => base.linear(x, weight.add(0) as tf.Tensor2D, bias, adapters));
    },
    conv2d(x, weight, bias, stride, padding) {
      return tf.tidy(() => base.conv2d(x, weight.add(0) as tf.Tensor4D, bias, stride, padding));
    },
  };
}

/** linear and attention rearranged so that every matmul is a 2-D, untransposed one (see --xnn-paths). */
function xnnPaths(base: Ops): Ops {
  return {
    ...base,
    linear(x, weight, bias, adapters) {
      if (adapters?.length) return base.linear(x, weight, bias, adapters);
      return tf.tidy(() => {
        const inDim = x.shape[x.rank - 1];
        let y = tf.matMul(x.reshape([-1, inDim]), weight.transpose());
        if (bias) y = y.add(bias);
        return y.reshape([...x.shape.slice(0, -1), weight.shape[0]]);
      });
    },
    attention(q, k, v, heads, causal) {
      if (causal) return base.attention(q, k, v, heads, causal);
      return tf.tidy(() => {
        const [b, tq, hd] = q.shape;
        const tk = k.shape[1];
        const d = hd / heads;
        const rows: tf.Tensor[] = [];
        for (let i = 0; i < b; i++) {
          const cols: tf.Tensor[] = [];
          for (let h = 0; h < heads; h++) {
            // One head's tq×tk scores at a time (64 MiB at 4096 tokens), freed before the next.
            cols.push(
              tf.tidy(() => {
                const cut = (t: tf.Tensor3D, n: number) => t.slice([i, 0, h * d], [1, n, d]).reshape([n, d]);
                const probs = tf.softmax(tf.matMul(cut(q, tq), cut(k, tk).transpose()).mul(1 / Math.sqrt(d)));
                return tf.matMul(probs, cut(v, tk));
              }),
            );
          }
          rows.push(tf.concat(cols, 1).reshape([1, tq, hd]));
        }
        return tf.concat(rows, 0) as tf.Tensor3D;
      });
    },
  };
}

/** The active ops with attention split into groups of `chunk` heads. */
function chunkedAttention(base: Ops, chunk: number): Ops {
  return {
    ...base,
    attention(q, k, v, heads, causal) {
      if (heads <= chunk) return base.attention(q, k, v, heads, causal);
      return tf.tidy(() => {
        const d = q.shape[2] / heads;
        const parts: tf.Tensor3D[] = [];
        for (let h = 0; h < heads; h += chunk) {
          const n = Math.min(chunk, heads - h);
          const cut = (t: tf.Tensor3D) => t.slice([0, 0, h * d], [-1, -1, n * d]) as tf.Tensor3D;
          parts.push(base.attention(cut(q), cut(k), cut(v), n, causal));
        }
        return tf.concat(parts, 2) as tf.Tensor3D;
      });
    },
  };
}

const backend = arg('backend', 'wasm') as BackendName;
const latent = Number(arg('latent', '64'));
const batch = Number(arg('batch', '1'));
const runs = Number(arg('runs', '1'));
const headChunk = Number(arg('head-chunk', backend === 'wasm' ? '1' : '0'));
const fresh = process.argv.includes('--fresh-weights') || (backend === 'wasm' && !process.argv.includes('--keep-weights'));
const xnn = process.argv.includes('--xnn-paths');

const info = await initBackend(backend);
if (xnn) setOps(xnnPaths(ops()));
else if (headChunk > 0) setOps(chunkedAttention(ops(), headChunk));
if (fresh) setOps(freshWeights(ops()));
const notes = [xnn ? 'XNNPACK matmul paths (attention head by head)' : headChunk ? `attention ${headChunk} head(s) at a time` : '', fresh ? 'fresh weight copies' : ''].filter(Boolean);
console.log(`backend ${info.name}${info.adapter ? ` (${info.adapter})` : ''}, latent ${latent}×${latent}, batch ${batch}${notes.length ? `, ${notes.join(', ')}` : ''}`);

let t0 = performance.now();
const unet = UNet2DConditionModel.random(SD15_UNET, 0);
const nParams = [...unet.params.tensors.values()].reduce((a, t) => a + t.size, 0);
console.log(`random weights: ${(nParams / 1e6).toFixed(1)} M parameters, built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

const sample = tf.randomNormal([batch, latent, latent, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
const timesteps = tf.fill([batch], 500, 'float32') as tf.Tensor1D;
const text = tf.randomNormal([batch, 77, 768], 0, 1, 'float32', 2) as tf.Tensor3D;

const times: number[] = [];
for (let r = 0; r < runs; r++) {
  t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const out = unet.forward(sample, timesteps, text);
  // Reading the result waits for the whole forward, on every backend.
  const values = await out.data();
  times.push((performance.now() - t0) / 1000);
  const cpu = process.cpuUsage(cpu0);
  const finite = values.every(Number.isFinite);
  // CPU time next to wall time: on a shared machine the wall clock includes other processes' turns.
  console.log(`forward ${r + 1}: ${times[r].toFixed(2)} s (process CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s), output ${JSON.stringify(out.shape)}${finite ? '' : ' (NOT FINITE)'}, live tensors ${tf.memory().numTensors}`);
  out.dispose();
}
console.log(`best ${Math.min(...times).toFixed(2)} s over ${runs} run(s)`);
if (fresh) {
  // What --fresh-weights adds (without XNNPACK's repacking): one copy of every weight.
  t0 = performance.now();
  for (const w of unet.params.tensors.values()) {
    const copy = w.add(0);
    await copy.data();
    copy.dispose();
  }
  console.log(`one copy of all weights: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
}
tf.dispose([sample, timesteps, text]);
unet.dispose();
