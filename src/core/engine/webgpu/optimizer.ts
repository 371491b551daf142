// The optimizer half of a planned LoRA step, each one dispatch over one flat buffer of every LoRA parameter:
//
//   gradNorm:  result[1] = ‖g‖₂ over the whole flat gradient (one workgroup; the LoRA has < 10⁷ values)
//   adamw:     torch.nn.utils.clip_grad_norm_ (coef = min(max_norm / (‖g‖ + 1e-6), 1)) then torch.optim.AdamW,
//              in place on the flat parameters and moments, in the order of operations src/training/adamw.ts
//              uses (so eager and planned steps agree to f32 rounding); no update at all when the loss or
//              ‖g‖ is not finite (result[0] is the loss)
//
// The per-step numbers (step size, bias correction, decay) come from a small buffer the host writes before
// each replay, so one recorded command list serves every step.
import * as tf from '@tensorflow/tfjs';
import { cdiv, dispatch, grid2, webgpuBackend } from './dispatch.js';

/** Layout of the per-step scalars buffer (float32). */
export const ADAMW_SCALARS = { stepSize: 0, bc2Sqrt: 1, decay: 2, maxNorm: 3, beta1: 4, beta2: 5, eps: 6 } as const;
export const ADAMW_SCALAR_COUNT = 8;

const WG = 256;

/** Writes ‖flat‖₂ into result[index]. */
export function gradNorm(flat: tf.Tensor1D, result: tf.Tensor1D, index: number): void {
  const n = flat.size;
  const code = () => `
@group(0) @binding(0) var<storage, read> G: array<f32>;
@group(0) @binding(1) var<storage, read_write> R: array<f32>;
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG}) fn main(@builtin(local_invocation_index) t: u32) {
  var s = 0.0;
  for (var i = t; i < ${n}u; i += ${WG}u) { let g = G[i]; s += g * g; }
  part[t] = s;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w >>= 1u) {
    if (t < w) { part[t] += part[t + w]; }
    workgroupBarrier();
  }
  if (t == 0u) { R[${index}u] = sqrt(part[0]); }
}`;
  dispatch(webgpuBackend(), { key: `grad_norm_${n}_${index}`, name: 'LoraStudioGradNorm', code }, { inputs: [flat], outputs: [result], workgroups: [1, 1, 1] });
}

/** Clip by result[normIndex] and one AdamW update of (params, m, v), in place. */
export function adamwFlat(grads: tf.Tensor1D, result: tf.Tensor1D, normIndex: number, scalars: tf.Tensor1D, params: tf.Tensor1D, m: tf.Tensor1D, v: tf.Tensor1D): void {
  const n = grads.size;
  const b = webgpuBackend();
  const groups = grid2(cdiv(n, WG), b);
  const S = ADAMW_SCALARS;
  const code = () => `
@group(0) @binding(0) var<storage, read> G: array<f32>;
@group(0) @binding(1) var<storage, read> R: array<f32>;
@group(0) @binding(2) var<storage, read> S: array<f32>;
@group(0) @binding(3) var<storage, read_write> P: array<f32>;
@group(0) @binding(4) var<storage, read_write> M: array<f32>;
@group(0) @binding(5) var<storage, read_write> V: array<f32>;
fn finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= ${n}u) { return; }
  // A non-finite loss or norm (R[0], R[normIndex]) leaves the weights and moments as they were: the trainer
  // stops at such a step, and what it saves must be the last good step's weights.
  if (!finite(R[0]) || !finite(R[${normIndex}u])) { return; }
  let coef = min(S[${S.maxNorm}] / (R[${normIndex}u] + 1e-6), 1.0);
  let g = G[i] * coef;
  let b1 = S[${S.beta1}];
  let b2 = S[${S.beta2}];
  let m = M[i] + (g - M[i]) * (1.0 - b1);
  let v = V[i] * b2 + (g * (1.0 - b2)) * g;
  let denom = sqrt(v) / S[${S.bc2Sqrt}] + S[${S.eps}];
  P[i] = P[i] * S[${S.decay}] + (m * -S[${S.stepSize}]) / denom;
  M[i] = m;
  V[i] = v;
}`;
  dispatch(b, { key: `adamw_flat_${n}_${normIndex}_${groups.join('x')}`, name: 'LoraStudioAdamW', code }, { inputs: [grads, result, scalars], outputs: [params, m, v], workgroups: groups });
}

/** The scalars of AdamW step `step` (1-based) at learning rate `lr`, as src/training/adamw.ts computes them. */
export function adamwScalars(step: number, lr: number, o: { beta1: number; beta2: number; eps: number; weightDecay: number }, maxNorm: number): Float32Array {
  const s = new Float32Array(ADAMW_SCALAR_COUNT);
  s[ADAMW_SCALARS.stepSize] = lr / (1 - o.beta1 ** step);
  s[ADAMW_SCALARS.bc2Sqrt] = Math.sqrt(1 - o.beta2 ** step);
  s[ADAMW_SCALARS.decay] = o.weightDecay !== 0 ? 1 - lr * o.weightDecay : 1;
  s[ADAMW_SCALARS.maxNorm] = maxNorm;
  s[ADAMW_SCALARS.beta1] = o.beta1;
  s[ADAMW_SCALARS.beta2] = o.beta2;
  s[ADAMW_SCALARS.eps] = o.eps;
  return s;
}
