// The GEMM-backed kernels: convolution (forward, and input gradient as a forward convolution) and the
// linear layer with LoRA fused. Each is a tfjs kernel registered for the webgpu backend with a gradient
// whose input-gradients are thunks, so tfjs computes only those on the path to a trained tensor
// (frozen weights never get a weight gradient).
import * as tf from '@tensorflow/tfjs';
import { allocate, dispatch, webgpuBackend } from './dispatch.js';
import { isSoftwareAdapter } from './device.js';
import { DEFAULT_TILE, GEMM_TILES, gemmGrid, gemmKey, gemmWgsl, type GemmShader, type GemmTile } from './wgsl/gemm.js';

type TensorInfo = { dataId: object; shape: number[]; dtype: tf.DataType };

let tile: GemmTile = (process.env.LORA_STUDIO_GEMM_TILE && GEMM_TILES[process.env.LORA_STUDIO_GEMM_TILE]) || DEFAULT_TILE;
let vec4Shared: boolean | 'auto' = 'auto';

/** Chooses the GEMM tiling (the benchmark sweeps these) and, optionally, the workgroup-tile layout. */
export function setGemmTile(t: GemmTile, vec4?: boolean | 'auto'): void {
  tile = t;
  if (vec4 !== undefined) vec4Shared = vec4;
}
export function gemmTile(): GemmTile {
  return tile;
}

function runGemm(s: Omit<GemmShader, 'tile' | 'vec4Shared'>, inputs: TensorInfo[], outShape: number[]): TensorInfo {
  const b = webgpuBackend();
  const spec: GemmShader = { ...s, tile, vec4Shared: vec4Shared === 'auto' ? !isSoftwareAdapter() : vec4Shared };
  const out = allocate(b, outShape);
  dispatch(b, { key: gemmKey(spec), name: `gemm_${s.a.kind}_${s.b.kind}`, code: () => gemmWgsl(spec) }, { inputs, outputs: [out], workgroups: gemmGrid(spec) });
  return out;
}

export const CONV_KERNEL = 'LoraStudioConv2D';
export const CONV_INPUT_GRAD_KERNEL = 'LoraStudioConv2DBackpropInput';
export const LINEAR_KERNEL = 'LoraStudioLinear';
/** The same with the low-rank term (a separate name: tfjs saves a fixed list of inputs per kernel). */
export const LINEAR_LORA_KERNEL = 'LoraStudioLinearLora';

interface ConvAttrs {
  stride: number;
  pad: number;
}

function convOutSize(n: number, k: number, stride: number, pad: number): number {
  return Math.floor((n + 2 * pad - k) / stride) + 1;
}

function convForward({ inputs, attrs }: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): TensorInfo {
  const { x, w, bias } = inputs as Record<string, TensorInfo>;
  const { stride, pad } = attrs as unknown as ConvAttrs;
  const [B, H, W, C] = x.shape;
  const [KH, KW, Ci, Co] = w.shape;
  if (Ci !== C) throw new Error(`conv2d: input has ${C} channels, weight expects ${Ci}`);
  const Ho = convOutSize(H, KH, stride, pad);
  const Wo = convOutSize(W, KW, stride, pad);
  const plain = KH === 1 && KW === 1 && stride === 1 && pad === 0;
  return runGemm(
    {
      M: B * Ho * Wo, N: Co, K: KH * KW * C,
      a: plain ? { kind: 'rows' } : { kind: 'conv', H, W, C, KH, KW, stride, pad, Ho, Wo },
      b: { kind: 'kn' }, bias: !!bias, lowRank: 0,
    },
    bias ? [x, w, bias] : [x, w],
    [B, Ho, Wo, Co],
  );
}

function convInputGrad({ inputs, attrs }: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): TensorInfo {
  const { dy, w } = inputs as Record<string, TensorInfo>;
  const { stride, pad, H, W } = attrs as unknown as ConvAttrs & { H: number; W: number };
  const [B, Ho, Wo, Co] = dy.shape;
  const [KH, KW, Ci] = w.shape;
  const plain = KH === 1 && KW === 1 && stride === 1 && pad === 0;
  return runGemm(
    {
      M: B * H * W, N: Ci, K: KH * KW * Co,
      a: plain ? { kind: 'rows' } : { kind: 'convT', H, W, Co, KH, KW, stride, pad, Ho, Wo },
      // a 1×1 weight [1,1,Ci,Co] is the linear weight [N=Ci, K=Co]: B[k,n] = w[n,k].
      b: plain ? { kind: 'nk' } : { kind: 'convT', Co },
      bias: false, lowRank: 0,
    },
    [dy, w],
    [B, H, W, Ci],
  );
}

/** y = x·Wᵀ (+ bias) (+ h·uᵀ), x [M,K], W [N,K], h [M,R], u [N,R]. */
function linearForward({ inputs }: { inputs: tf.NamedTensorInfoMap }): TensorInfo {
  const { x, w, bias, h, u } = inputs as Record<string, TensorInfo | undefined>;
  const [M, K] = x!.shape;
  const N = w!.shape[0];
  const R = h ? h.shape[1] : 0;
  const ins = [x!, w!];
  if (bias) ins.push(bias);
  if (h && u) ins.push(h, u);
  return runGemm({ M, N, K, a: { kind: 'rows' }, b: { kind: 'nk' }, bias: !!bias, lowRank: R }, ins, [M, N]);
}

/** dx = dy·W for a linear weight W [N,K]: a plain GEMM with B = W as [K=N, N=K] row-major. */
function linearInputGrad({ inputs }: { inputs: tf.NamedTensorInfoMap }): TensorInfo {
  const { dy, w } = inputs as Record<string, TensorInfo>;
  const [M, N] = dy.shape;
  const K = w.shape[1];
  return runGemm({ M, N: K, K: N, a: { kind: 'rows' }, b: { kind: 'kn' }, bias: false, lowRank: 0 }, [dy, w], [M, K]);
}
export const LINEAR_INPUT_GRAD_KERNEL = 'LoraStudioLinearBackpropInput';

let registered = false;
export function registerMatmulKernels(): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({ kernelName: CONV_KERNEL, backendName: 'webgpu', kernelFunc: convForward as tf.KernelFunc });
  tf.registerKernel({ kernelName: CONV_INPUT_GRAD_KERNEL, backendName: 'webgpu', kernelFunc: convInputGrad as tf.KernelFunc });
  tf.registerKernel({ kernelName: LINEAR_KERNEL, backendName: 'webgpu', kernelFunc: linearForward as tf.KernelFunc });
  tf.registerKernel({ kernelName: LINEAR_LORA_KERNEL, backendName: 'webgpu', kernelFunc: linearForward as tf.KernelFunc });
  tf.registerKernel({ kernelName: LINEAR_INPUT_GRAD_KERNEL, backendName: 'webgpu', kernelFunc: linearInputGrad as tf.KernelFunc });

  tf.registerGradient({
    kernelName: CONV_KERNEL,
    inputsToSave: ['x', 'w'],
    gradFunc: (dy, saved, attrs) => {
      const [x, w] = saved as [tf.Tensor4D, tf.Tensor4D];
      const d = dy as tf.Tensor4D;
      const { stride, pad } = attrs as unknown as ConvAttrs;
      return {
        x: () => conv2dInputGrad(d, w, x.shape[1], x.shape[2], stride, pad),
        // Weight and bias gradients are for completeness (LoRA never trains them): stock kernels.
        w: () => stockConv2dBackpropFilter(x, d, w.shape, stride, pad),
        bias: () => d.sum([0, 1, 2]),
      };
    },
  });
  tf.registerGradient({
    kernelName: CONV_INPUT_GRAD_KERNEL,
    inputsToSave: ['dy', 'w'],
    gradFunc: (ddx, saved, attrs) => {
      // The input gradient is linear in dy: its own gradient w.r.t. dy is the forward convolution.
      const [, w] = saved as [tf.Tensor4D, tf.Tensor4D];
      const { stride, pad } = attrs as unknown as ConvAttrs;
      return { dy: () => conv2d(ddx as tf.Tensor4D, w, undefined, stride, pad) };
    },
  });
  tf.registerGradient({
    kernelName: LINEAR_KERNEL,
    inputsToSave: ['x', 'w'],
    gradFunc: (dy, saved) => {
      const [x, w] = saved as tf.Tensor2D[];
      const d = dy as tf.Tensor2D;
      return {
        x: () => linearInputGradOp(d, w),
        w: () => tf.matMul(d, x, true, false),
        bias: () => d.sum(0),
      };
    },
  });
  tf.registerGradient({
    kernelName: LINEAR_LORA_KERNEL,
    inputsToSave: ['x', 'w', 'h', 'u'],
    gradFunc: (dy, saved) => {
      const [x, w, h, u] = saved as tf.Tensor2D[];
      const d = dy as tf.Tensor2D;
      return {
        x: () => linearInputGradOp(d, w),
        w: () => tf.matMul(d, x, true, false),
        bias: () => d.sum(0),
        // The low-rank factors are small ([M,R], [N,R]): stock matmuls.
        h: () => tf.matMul(d, u),
        u: () => tf.matMul(d, h, true, false),
      };
    },
  });
  tf.registerGradient({
    kernelName: LINEAR_INPUT_GRAD_KERNEL,
    inputsToSave: ['w'],
    gradFunc: (ddx, saved) => {
      const [w] = saved as tf.Tensor2D[];
      return { dy: () => linearOp(ddx as tf.Tensor2D, w) };
    },
  });
}

/** tfjs' own Conv2DBackpropFilter kernel (tfjs does not export the op from its public API). */
export function stockConv2dBackpropFilter(x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: [number, number, number, number], stride: number, pad: number | 'same'): tf.Tensor4D {
  return tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: stride, pad, dataFormat: 'NHWC', dimRoundingMode: undefined, filterShape } as unknown as tf.NamedAttrMap) as tf.Tensor4D;
}

/** NHWC conv, HWIO weight, symmetric padding. */
export function conv2d(x: tf.Tensor4D, w: tf.Tensor4D, bias: tf.Tensor1D | undefined, stride: number, pad: number): tf.Tensor4D {
  const inputs: tf.NamedTensorMap = bias ? { x, w, bias } : { x, w };
  return tf.engine().runKernel(CONV_KERNEL, inputs, { stride, pad } as unknown as tf.NamedAttrMap) as tf.Tensor4D;
}

/** The input gradient of `conv2d` for an input of height H and width W. */
export function conv2dInputGrad(dy: tf.Tensor4D, w: tf.Tensor4D, H: number, W: number, stride: number, pad: number): tf.Tensor4D {
  return tf.engine().runKernel(CONV_INPUT_GRAD_KERNEL, { dy, w }, { stride, pad, H, W } as unknown as tf.NamedAttrMap) as tf.Tensor4D;
}

/** x [M,K] · w[N,K]ᵀ (+ bias) (+ h·uᵀ). */
export function linearOp(x: tf.Tensor2D, w: tf.Tensor2D, bias?: tf.Tensor1D, h?: tf.Tensor2D, u?: tf.Tensor2D): tf.Tensor2D {
  const inputs: tf.NamedTensorMap = { x, w };
  if (bias) inputs.bias = bias;
  if (h && u) {
    inputs.h = h;
    inputs.u = u;
  }
  return tf.engine().runKernel(h && u ? LINEAR_LORA_KERNEL : LINEAR_KERNEL, inputs, {}) as tf.Tensor2D;
}

export function linearInputGradOp(dy: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  return tf.engine().runKernel(LINEAR_INPUT_GRAD_KERNEL, { dy, w }, {}) as tf.Tensor2D;
}
