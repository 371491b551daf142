// The project's own WebGPU kernels. Backend start-up (engine/backend.ts) calls, for `webgpu`:
//   await registerWebgpuBackend()   before tf.setBackend('webgpu')  (our device: subgroups, all limits)
//   installWebgpuKernels()          after it                         (registers kernels, swaps ops())
export { registerWebgpuBackend, webgpuDeviceInfo, probeFeatures, type WebgpuDeviceInfo, type FeatureProbe } from './device.js';
export { webgpuOps, installWebgpuKernels, uninstallWebgpuKernels } from './ops.js';
