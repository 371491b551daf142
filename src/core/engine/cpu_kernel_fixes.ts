// Corrections to tfjs-backend-cpu 4.22 kernels that compute wrong numbers.
//
// ResizeNearestNeighborGrad (the gradient of the UNet's nearest 2× upsampling) offsets into dy with the
// INPUT's batch stride (`batchOffset + dyR * dyStrides[1]`), so for every batch item after the first it
// sums the wrong part of dy: gradients through an upsampler are wrong whenever batch > 1 (the wasm and
// webgpu kernels are right). The replacement below scatters each dy element onto the input pixel the
// forward pass read it from, with the same source-index rule as the forward kernel.
import * as tf from '@tensorflow/tfjs';

interface CpuBackendLike {
  data: { get(id: unknown): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: string, values: Float32Array): tf.TensorInfo;
}

function resizeNearestNeighborGrad(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const images = args.inputs.images!;
  const dy = args.inputs.dy!;
  const backend = args.backend as CpuBackendLike;
  const alignCorners = Boolean(args.attrs?.alignCorners);
  const [batch, xH, xW, depth] = images.shape;
  const [, yH, yW] = dy.shape;
  const dyValues = backend.data.get(dy.dataId).values;
  const out = new Float32Array(batch * xH * xW * depth);
  const hScale = (alignCorners && yH > 1 ? xH - 1 : xH) / (alignCorners && yH > 1 ? yH - 1 : yH);
  const wScale = (alignCorners && yW > 1 ? xW - 1 : xW) / (alignCorners && yW > 1 ? yW - 1 : yW);
  const nearest = (frac: number, size: number) => Math.min(size - 1, alignCorners ? Math.round(frac) : Math.floor(frac));
  for (let b = 0; b < batch; b++) {
    for (let y = 0; y < yH; y++) {
      const r = nearest(y * hScale, xH);
      for (let x = 0; x < yW; x++) {
        const c = nearest(x * wScale, xW);
        const src = ((b * yH + y) * yW + x) * depth;
        const dst = ((b * xH + r) * xW + c) * depth;
        for (let d = 0; d < depth; d++) out[dst + d] += dyValues[src + d];
      }
    }
  }
  return backend.makeTensorInfo(images.shape, images.dtype, out);
}

let installed = false;

/** Replaces the faulty cpu kernels (idempotent). Harmless when another backend is active. */
export function installCpuKernelFixes(): void {
  if (installed) return;
  installed = true;
  if (tf.getKernel('ResizeNearestNeighborGrad', 'cpu')) tf.unregisterKernel('ResizeNearestNeighborGrad', 'cpu');
  tf.registerKernel({ kernelName: 'ResizeNearestNeighborGrad', backendName: 'cpu', kernelFunc: resizeNearestNeighborGrad as unknown as tf.KernelFunc });
}
