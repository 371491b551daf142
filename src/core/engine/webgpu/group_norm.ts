// Fused GroupNorm (+ SiLU), forward and backward, NHWC.
//
// Three passes each way, all reading memory along channels (coalesced) rather than along a group:
//   1. partial sums per (batch, chunk of pixels, channel)           — many workgroups, one thread per 4 channels
//   2. per (batch, group): combine the partials into the statistics — one small workgroup each
//   3. the elementwise normalisation (or, backward, the input gradient)
// Forward statistics use sums shifted by the group's first element, so E[d²] − E[d]² does not cancel
// catastrophically when the mean is large next to the spread. The backward recomputes x̂ (and the SiLU
// input) from x and the saved statistics instead of keeping them: one tensor saved, not three.
import * as tf from '@tensorflow/tfjs';
import { allocate, cdiv, dispatch, grid2, release, webgpuBackend, type BackendInternals } from './dispatch.js';

type TensorInfo = { dataId: object; shape: number[]; dtype: tf.DataType };

export const GROUP_NORM_KERNEL = 'LoraStudioGroupNorm';
export const GROUP_NORM_GRAD_KERNEL = 'LoraStudioGroupNormGrad';

interface Dims {
  B: number;
  HW: number;
  C: number;
  G: number;
  CG: number;
  /** 4 when channels allow vec4 access. */
  V: number;
  chunks: number;
  P: number;
}

const PIXELS_PER_CHUNK = 32;
const WG = 64;

function dims(shape: number[], G: number): Dims {
  const [B, H, W, C] = shape;
  if (C % G !== 0) throw new Error(`groupNorm: ${C} channels do not split into ${G} groups`);
  const HW = H * W;
  const P = PIXELS_PER_CHUNK;
  return { B, HW, C, G, CG: C / G, V: C % 4 === 0 ? 4 : 1, chunks: cdiv(HW, P), P };
}

const vt = (d: Dims) => (d.V === 4 ? 'vec4<f32>' : 'f32');
const u = (n: number) => `${n}u`;

/** Per-component group statistics as vectors: mean/rstd (or c1/c2) of the group of channel c4·V + j. */
function statsSnippet(d: Dims, name: string, first: string, second: string): string {
  if (d.V === 1) return `var ${first}: f32; var ${second}: f32; { let g = c4 / ${u(d.CG)}; ${first} = ${name}[(b * ${u(d.G)} + g) * 2u]; ${second} = ${name}[(b * ${u(d.G)} + g) * 2u + 1u]; }`;
  const lines: string[] = [`var ${first}: vec4<f32>; var ${second}: vec4<f32>;`];
  for (let j = 0; j < 4; j++) {
    lines.push(`{ let g = (c4 * 4u + ${u(j)}) / ${u(d.CG)}; ${first}[${j}] = ${name}[(b * ${u(d.G)} + g) * 2u]; ${second}[${j}] = ${name}[(b * ${u(d.G)} + g) * 2u + 1u]; }`);
  }
  return lines.join('\n  ');
}

/** Pass 1. Forward: Σd, Σd² with d = x − shift(group). Backward: Σ dx̂, Σ dx̂·x̂. Output [B, chunks, 2, C]. */
function partialsWgsl(d: Dims, backward: boolean, silu: boolean): string {
  const T = vt(d);
  const CV = d.C / d.V;
  const ins = backward ? ['X', 'DY', 'S', 'Gamma', 'Beta'] : ['X'];
  const decl = ins.map((n, i) => `@group(0) @binding(${i}) var<storage, read> ${n}: array<${n === 'S' ? 'f32' : T}>;`).join('\n');
  let pre: string;
  let body: string;
  if (!backward) {
    // The shift of each component: the first element of its group (pixel 0 of this batch item).
    const shift = d.V === 1
      ? `let shift = X[b * ${u(d.HW * d.C)} + (c4 / ${u(d.CG)}) * ${u(d.CG)}];`
      : `var shift: vec4<f32>;\n  for (var j = 0u; j < 4u; j++) { let c0 = ((c4 * 4u + j) / ${u(d.CG)}) * ${u(d.CG)}; shift[j] = X[(b * ${u(d.HW * d.C)} + c0) / 4u][c0 % 4u]; }`;
    pre = shift;
    body = `let v = X[(b * ${u(d.HW)} + p) * ${u(CV)} + c4] - shift; s1 += v; s2 += v * v;`;
  } else {
    pre = `${statsSnippet(d, 'S', 'mean', 'rstd')}\n  let gamma = Gamma[c4]; let beta = Beta[c4];`;
    body = `let xh = (X[(b * ${u(d.HW)} + p) * ${u(CV)} + c4] - mean) * rstd;
    var dz = DY[(b * ${u(d.HW)} + p) * ${u(CV)} + c4];
    ${silu ? 'let z = xh * gamma + beta; let sg = 1.0 / (1.0 + exp(-z)); dz = dz * sg * (1.0 + z * (1.0 - sg));' : ''}
    let dxh = dz * gamma; s1 += dxh; s2 += dxh * xh;`;
  }
  return `${decl}
@group(0) @binding(${ins.length}) var<storage, read_write> Out: array<${T}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let c4 = wg.x * ${u(WG)} + t;
  if (c4 >= ${u(CV)}) { return; }
  let chunk = wg.y; let b = wg.z;
  ${pre}
  var s1: ${T}; var s2: ${T};
  let pEnd = min(${u(d.HW)}, chunk * ${u(d.P)} + ${u(d.P)});
  for (var p = chunk * ${u(d.P)}; p < pEnd; p++) {
    ${body}
  }
  let o = (b * ${u(d.chunks)} + chunk) * 2u;
  Out[o * ${u(CV)} + c4] = s1;
  Out[(o + 1u) * ${u(CV)} + c4] = s2;
}
`;
}

/** Pass 2: per (b, g) sums of the partials → forward (mean, rstd) or backward (mean dx̂, mean dx̂·x̂). */
function combineWgsl(d: Dims, backward: boolean, eps: number): string {
  const n = d.chunks * d.CG;
  const count = d.HW * d.CG;
  const finish = backward
    ? `Out[o] = a / ${count}.0; Out[o + 1u] = c / ${count}.0;`
    : `let shift = X[b * ${u(d.HW * d.C)} + g * ${u(d.CG)}];
    let m = a / ${count}.0;
    let variance = max(c / ${count}.0 - m * m, 0.0);
    Out[o] = shift + m; Out[o + 1u] = inverseSqrt(variance + ${eps.toExponential(9)});`;
  return `@group(0) @binding(0) var<storage, read> Part: array<f32>;
${backward ? '' : '@group(0) @binding(1) var<storage, read> X: array<f32>;'}
@group(0) @binding(${backward ? 1 : 2}) var<storage, read_write> Out: array<f32>;
var<workgroup> r1: array<f32, ${WG}>;
var<workgroup> r2: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let g = wg.x; let b = wg.y;
  var a = 0.0; var c = 0.0;
  for (var i = t; i < ${u(n)}; i += ${u(WG)}) {
    let ch = i / ${u(d.CG)}; let ch0 = g * ${u(d.CG)} + i % ${u(d.CG)};
    let o = (b * ${u(d.chunks)} + ch) * 2u;
    a += Part[o * ${u(d.C)} + ch0];
    c += Part[(o + 1u) * ${u(d.C)} + ch0];
  }
  r1[t] = a; r2[t] = c;
  workgroupBarrier();
  for (var s = ${u(WG / 2)}; s > 0u; s >>= 1u) {
    if (t < s) { r1[t] += r1[t + s]; r2[t] += r2[t + s]; }
    workgroupBarrier();
  }
  if (t == 0u) {
    let a = r1[0]; let c = r2[0];
    let o = (b * ${u(d.G)} + g) * 2u;
    ${finish}
  }
}
`;
}

/** Pass 3: y = SiLU?((x − mean)·rstd·γ + β), or dx = rstd·(dx̂ − c1 − x̂·c2). */
function elementwiseWgsl(d: Dims, backward: boolean, silu: boolean): string {
  const T = vt(d);
  const CV = d.C / d.V;
  const total = d.B * d.HW * CV;
  const ins = backward ? ['X', 'DY', 'S', 'S2', 'Gamma', 'Beta'] : ['X', 'S', 'Gamma', 'Beta'];
  const decl = ins.map((n, i) => `@group(0) @binding(${i}) var<storage, read> ${n}: array<${n.startsWith('S') ? 'f32' : T}>;`).join('\n');
  const body = backward
    ? `${statsSnippet(d, 'S2', 'c1', 'c2')}
  let xh = (X[i] - mean) * rstd;
  var dz = DY[i];
  ${silu ? 'let z = xh * gamma + beta; let sg = 1.0 / (1.0 + exp(-z)); dz = dz * sg * (1.0 + z * (1.0 - sg));' : ''}
  Out[i] = rstd * (dz * gamma - c1 - xh * c2);`
    : `var y = (X[i] - mean) * rstd * gamma + beta;
  ${silu ? 'y = y / (1.0 + exp(-y));' : ''}
  Out[i] = y;`;
  return `${decl}
@group(0) @binding(${ins.length}) var<storage, read_write> Out: array<${T}>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let i = (wg.y * nwg.x + wg.x) * 256u + t;
  if (i >= ${u(total)}) { return; }
  let c4 = i % ${u(CV)};
  let b = i / ${u(d.HW * CV)};
  ${statsSnippet(d, 'S', 'mean', 'rstd')}
  let gamma = Gamma[c4]; let beta = Beta[c4];
  ${body}
}
`;
}

function run(b: BackendInternals, name: string, key: string, code: () => string, inputs: TensorInfo[], outputs: TensorInfo[], workgroups: [number, number, number]) {
  dispatch(b, { name, key, code }, { inputs, outputs, workgroups });
}

function stats(b: BackendInternals, d: Dims, key: string, backward: boolean, silu: boolean, eps: number, inputs: TensorInfo[], x: TensorInfo): TensorInfo {
  const part = allocate(b, [d.B, d.chunks, 2, d.C]);
  run(b, 'groupnorm_partials', `gnp:${backward}:${silu}:${key}`, () => partialsWgsl(d, backward, silu), inputs, [part], [cdiv(d.C / d.V, WG), d.chunks, d.B]);
  const s = allocate(b, [d.B, d.G, 2]);
  run(b, 'groupnorm_combine', `gnc:${backward}:${eps}:${key}`, () => combineWgsl(d, backward, eps), backward ? [part] : [part, x], [s], [d.G, d.B, 1]);
  release(b, part);
  return s;
}

function forwardKernel({ inputs, attrs }: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): TensorInfo[] {
  const { x, gamma, beta } = inputs as Record<string, TensorInfo>;
  const { groups, eps, silu } = attrs as { groups: number; eps: number; silu: boolean };
  const b = webgpuBackend();
  const d = dims(x.shape, groups);
  const key = JSON.stringify(d);
  const s = stats(b, d, key, false, false, eps, [x], x);
  const y = allocate(b, x.shape);
  run(b, 'groupnorm_apply', `gna:${silu}:${key}`, () => elementwiseWgsl(d, false, silu), [x, s, gamma, beta], [y], grid2(cdiv((d.B * d.HW * d.C) / d.V, 256), b));
  return [y, s];
}

function gradKernel({ inputs, attrs }: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): TensorInfo {
  const { x, dy, s, gamma, beta } = inputs as Record<string, TensorInfo>;
  const { groups, silu } = attrs as { groups: number; silu: boolean };
  const b = webgpuBackend();
  const d = dims(x.shape, groups);
  const key = JSON.stringify(d);
  const s2 = stats(b, d, key, true, silu, 0, [x, dy, s, gamma, beta], x);
  const dx = allocate(b, x.shape);
  run(b, 'groupnorm_grad', `gng:${silu}:${key}`, () => elementwiseWgsl(d, true, silu), [x, dy, s, s2, gamma, beta], [dx], grid2(cdiv((d.B * d.HW * d.C) / d.V, 256), b));
  release(b, s2);
  return dx;
}

let registered = false;
export function registerGroupNormKernels(): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({ kernelName: GROUP_NORM_KERNEL, backendName: 'webgpu', kernelFunc: forwardKernel as unknown as tf.KernelFunc });
  tf.registerKernel({ kernelName: GROUP_NORM_GRAD_KERNEL, backendName: 'webgpu', kernelFunc: gradKernel as unknown as tf.KernelFunc });
  tf.registerGradient({
    kernelName: GROUP_NORM_KERNEL,
    inputsToSave: ['x', 'gamma', 'beta'],
    outputsToSave: [false, true],
    gradFunc: (dys, saved, attrs) => {
      const [x, gamma, beta, s] = saved as [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D, tf.Tensor3D];
      const dy = (dys as tf.Tensor[])[0] as tf.Tensor4D;
      const { groups, silu } = attrs as { groups: number; silu: boolean };
      // γ and β are frozen in LoRA training; their gradients (never requested there) use stock ops.
      const affineGrads = () => tf.tidy(() => {
        const [B, H, W, C] = x.shape;
        const sb = s.reshape([B, 1, groups, 1, 2]);
        const xh = x.reshape([B, H * W, groups, C / groups, 1]).sub(sb.slice([0, 0, 0, 0, 0], [B, 1, groups, 1, 1]))
          .mul(sb.slice([0, 0, 0, 0, 1], [B, 1, groups, 1, 1])).reshape([B, H, W, C]);
        let dz: tf.Tensor = dy;
        if (silu) {
          const z = xh.mul(gamma).add(beta);
          const sg = tf.sigmoid(z);
          dz = dy.mul(sg).mul(tf.scalar(1).add(z.mul(tf.scalar(1).sub(sg))));
        }
        return { dGamma: dz.mul(xh).sum([0, 1, 2]), dBeta: dz.sum([0, 1, 2]) };
      });
      return {
        x: () => tf.engine().runKernel(GROUP_NORM_GRAD_KERNEL, { x, dy, s, gamma, beta }, { groups, silu } as unknown as tf.NamedAttrMap) as tf.Tensor,
        gamma: () => affineGrads().dGamma,
        beta: () => affineGrads().dBeta,
      };
    },
  });
}

/** GroupNorm over NHWC channels (PyTorch semantics), optionally followed by SiLU. */
export function groupNorm(x: tf.Tensor4D, groups: number, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number, silu: boolean): tf.Tensor4D {
  const [y] = tf.engine().runKernel(GROUP_NORM_KERNEL, { x, gamma, beta }, { groups, eps, silu } as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return y as tf.Tensor4D;
}
