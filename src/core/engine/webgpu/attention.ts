// Fused multi-head attention as tfjs kernels: forward (O and the row log-sum-exp) and the three backward
// pieces (Δ, dK+dV, dQ), each computed only when tfjs asks for that input's gradient.
import * as tf from '@tensorflow/tfjs';
import { allocate, cdiv, dispatch, grid2, hasFeature, webgpuBackend } from './dispatch.js';
import {
  attentionBackwardKVGrid, attentionBackwardKVWgsl, attentionBackwardQGrid, attentionBackwardQWgsl, attentionDeltaWgsl,
  attentionForwardGrid, attentionForwardWgsl, attentionKey, type AttentionShape,
} from './wgsl/attention.js';
import { webgpuDeviceInfo } from './device.js';

type TensorInfo = { dataId: object; shape: number[]; dtype: tf.DataType };

export const ATTENTION_KERNEL = 'LoraStudioAttention';
export const ATTENTION_DELTA_KERNEL = 'LoraStudioAttentionDelta';
export const ATTENTION_DKV_KERNEL = 'LoraStudioAttentionGradKV';
export const ATTENTION_DQ_KERNEL = 'LoraStudioAttentionGradQ';

let subgroupMode: 'auto' | boolean = process.env.LORA_STUDIO_SUBGROUPS === '0' ? false : 'auto';
/** Forces the subgroup softmax on or off (tests run both); 'auto' uses it when the device has subgroups of ≥ 4 lanes. */
export function setAttentionSubgroups(mode: 'auto' | boolean): void {
  subgroupMode = mode;
}

function useSubgroups(): boolean {
  const b = webgpuBackend();
  if (!hasFeature(b, 'subgroups')) return false;
  if (subgroupMode !== 'auto') return subgroupMode;
  const min = webgpuDeviceInfo()?.subgroupMinSize;
  return min !== undefined && min >= 4;
}

interface Attrs {
  heads: number;
  causal: boolean;
}

function shapeOf(q: TensorInfo, k: TensorInfo, attrs: Attrs, withSubgroups = false): AttentionShape {
  const [B, Tq, HD] = q.shape;
  const Tk = k.shape[1];
  const D = HD / attrs.heads;
  if (!Number.isInteger(D)) throw new Error(`attention: ${HD} channels do not split into ${attrs.heads} heads`);
  if (attrs.causal && Tq !== Tk) throw new Error(`attention: causal masking needs as many queries as keys (${Tq} vs ${Tk})`);
  return { B, H: attrs.heads, Tq, Tk, D, causal: attrs.causal, scale: 1 / Math.sqrt(D), subgroups: withSubgroups };
}

function forwardKernel({ inputs, attrs }: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): TensorInfo[] {
  const { q, k, v } = inputs as Record<string, TensorInfo>;
  const b = webgpuBackend();
  const s = shapeOf(q, k, attrs as unknown as Attrs, useSubgroups());
  const o = allocate(b, q.shape);
  const lse = allocate(b, [s.B * s.H, s.Tq]);
  dispatch(b, { name: 'attention_fwd', key: attentionKey('fwd', s), code: () => attentionForwardWgsl(s) }, { inputs: [q, k, v], outputs: [o, lse], workgroups: attentionForwardGrid(s) });
  return [o, lse];
}

function deltaKernel({ inputs, attrs }: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): TensorInfo {
  const { dy, o } = inputs as Record<string, TensorInfo>;
  const b = webgpuBackend();
  const s = shapeOf(o, o, { ...(attrs as unknown as Attrs), causal: false });
  const delta = allocate(b, [s.B * s.H, s.Tq]);
  dispatch(b, { name: 'attention_delta', key: attentionKey('delta', s), code: () => attentionDeltaWgsl(s) }, { inputs: [dy, o], outputs: [delta], workgroups: grid2(cdiv(s.B * s.Tq * s.H, 256), b) });
  return delta;
}

function gradKVKernel({ inputs, attrs }: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): TensorInfo[] {
  const { q, k, v, dy, lse, delta } = inputs as Record<string, TensorInfo>;
  const b = webgpuBackend();
  const s = shapeOf(q, k, attrs as unknown as Attrs);
  const dk = allocate(b, k.shape);
  const dv = allocate(b, v.shape);
  dispatch(b, { name: 'attention_bwd_kv', key: attentionKey('bwdkv', s), code: () => attentionBackwardKVWgsl(s) }, { inputs: [q, k, v, dy, lse, delta], outputs: [dk, dv], workgroups: attentionBackwardKVGrid(s) });
  return [dk, dv];
}

function gradQKernel({ inputs, attrs }: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): TensorInfo {
  const { q, k, v, dy, lse, delta } = inputs as Record<string, TensorInfo>;
  const b = webgpuBackend();
  const s = shapeOf(q, k, attrs as unknown as Attrs);
  const dq = allocate(b, q.shape);
  dispatch(b, { name: 'attention_bwd_q', key: attentionKey('bwdq', s), code: () => attentionBackwardQWgsl(s) }, { inputs: [q, k, v, dy, lse, delta], outputs: [dq], workgroups: attentionBackwardQGrid(s) });
  return dq;
}

let registered = false;
export function registerAttentionKernels(): void {
  if (registered) return;
  registered = true;
  const k = (kernelName: string, kernelFunc: unknown) => tf.registerKernel({ kernelName, backendName: 'webgpu', kernelFunc: kernelFunc as tf.KernelFunc });
  k(ATTENTION_KERNEL, forwardKernel);
  k(ATTENTION_DELTA_KERNEL, deltaKernel);
  k(ATTENTION_DKV_KERNEL, gradKVKernel);
  k(ATTENTION_DQ_KERNEL, gradQKernel);
  tf.registerGradient({
    kernelName: ATTENTION_KERNEL,
    inputsToSave: ['q', 'k', 'v'],
    outputsToSave: [true, true],
    gradFunc: (dys, saved, attrs) => {
      const [q, k, v, o, lse] = saved;
      const dy = (dys as tf.Tensor[])[0];
      const a = attrs as unknown as tf.NamedAttrMap;
      // tfjs runs each input's thunk in its own tidy, so a tensor made in one thunk cannot be handed to
      // another. Δ and the joint dK/dV kernel therefore run here, in the backward pass's own scope (they
      // are disposed with it when unused); dQ, which has its own kernel, stays lazy. The cost: a node
      // whose k and v need no gradient (cross-attention without LoRA on to_k/to_v) still computes them.
      const delta = tf.engine().runKernel(ATTENTION_DELTA_KERNEL, { dy, o }, a) as tf.Tensor;
      const [dk, dv] = tf.engine().runKernel(ATTENTION_DKV_KERNEL, { q, k, v, dy, lse, delta }, a) as tf.Tensor[];
      return {
        q: () => tf.engine().runKernel(ATTENTION_DQ_KERNEL, { q, k, v, dy, lse, delta }, a) as tf.Tensor,
        k: () => dk,
        v: () => dv,
      };
    },
  });
}

/** softmax(q·kᵀ/√D)·v per head; q [B,Tq,H·D], k and v [B,Tk,H·D]. */
export function attention(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, heads: number, causal = false): tf.Tensor3D {
  return tf.tidy(() => {
    const [o] = tf.engine().runKernel(ATTENTION_KERNEL, { q, k, v }, { heads, causal } as unknown as tf.NamedAttrMap) as tf.Tensor[];
    return o as tf.Tensor3D;
  });
}
