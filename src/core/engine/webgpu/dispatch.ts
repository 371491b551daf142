// Runs a compute shader of ours inside tfjs' own command stream.
//
// WHY raw pipelines and not tfjs' WebGPUProgram: a WebGPUProgram has exactly one output buffer and tfjs
// prepends its own prelude to the code, so a kernel could not write several outputs (attention's O and
// log-sum-exp; dK and dV) nor start with `enable subgroups;`. Here the shader source is entirely ours;
// what we share with tfjs is the buffers (tensors are tfjs tensors, allocated by its buffer manager), the
// command encoder and compute pass (so ordering with stock kernels is the queue order), the deferred
// disposal bookkeeping and the timers of tf.time/tf.profile. Every shape is baked into the shader as a
// constant: a UNet has few distinct shapes, and constant loop bounds let the driver unroll.
//
// This leans on fields that are private in tfjs-backend-webgpu 4.22's typings (listed in BackendInternals);
// the tests exercise every one of them, so a tfjs upgrade that changes them fails loudly in CI.
import * as tf from '@tensorflow/tfjs';

type TensorInfo = { dataId: object; shape: number[]; dtype: tf.DataType };

/** The parts of tfjs' WebGPUBackend (4.22) that we use. */
export interface BackendInternals {
  device: GPUDevice;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  commandQueueOwnedIds: WeakSet<object>;
  activeTimers?: { name: string; query: Promise<number> }[] | null;
  supportTimestampQuery: boolean;
  querySet: GPUQuerySet | null;
  querySetCount: number;
  tensorMap: { get(dataId: object): { resource?: unknown; shape: number[]; dtype: string } };
  makeTensorInfo(shape: number[], dtype: tf.DataType): TensorInfo;
  uploadToGPU(dataId: object): void;
  disposeData(dataId: object, force?: boolean): boolean;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  getQueryTime(): Promise<number>;
}

export interface ShaderSpec {
  /** Unique per generated source (the pipeline cache key). */
  readonly key: string;
  /** Full WGSL source: bindings 0..n-1 are the inputs (read-only storage), then the outputs (read_write). */
  readonly code: () => string;
  /** Label for tf.profile / tf.time and for error messages. */
  readonly name: string;
}

export interface DispatchArgs {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  readonly workgroups: readonly [number, number, number];
}

/** Which bindings of each of our bind group layouts a shader may write (the planned executor's liveness needs it). */
const layoutWrites = new WeakMap<GPUBindGroupLayout, boolean[]>();

/** For a layout made here: per binding, whether it is writable. Undefined for tfjs' own ('auto') layouts. */
export function writableBindings(layout: GPUBindGroupLayout): readonly boolean[] | undefined {
  return layoutWrites.get(layout);
}

const pipelines = new WeakMap<GPUDevice, Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>>();

function pipelineFor(b: BackendInternals, spec: ShaderSpec, nIn: number, nOut: number) {
  let cache = pipelines.get(b.device);
  if (!cache) pipelines.set(b.device, (cache = new Map()));
  const key = `${spec.key}|${nIn}|${nOut}`;
  let p = cache.get(key);
  if (!p) {
    const entries: GPUBindGroupLayoutEntry[] = [];
    for (let i = 0; i < nIn + nOut; i++) {
      entries.push({ binding: i, visibility: GPUShaderStage.COMPUTE, buffer: { type: i < nIn ? 'read-only-storage' : 'storage' } });
    }
    const layout = b.device.createBindGroupLayout({ entries, label: spec.name });
    layoutWrites.set(layout, entries.map((e) => e.buffer?.type === 'storage'));
    const code = spec.code();
    if (process.env.LORA_STUDIO_WEBGPU_PRINT === '1' || process.env.LORA_STUDIO_WEBGPU_PRINT === spec.name) console.error(`// ${spec.key}\n${code}`);
    const module = b.device.createShaderModule({ code, label: spec.name });
    const pipeline = b.device.createComputePipeline({
      label: spec.name,
      layout: b.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    p = { pipeline, layout };
    cache.set(key, p);
  }
  return p;
}

export function webgpuBackend(): BackendInternals {
  if (tf.getBackend() !== 'webgpu') throw new Error(`the project's WebGPU kernels need the webgpu backend (active: ${tf.getBackend()})`);
  return tf.backend() as unknown as BackendInternals;
}

/** Allocates a float32 output tensor's GPU buffer (uninitialised). */
export function allocate(b: BackendInternals, shape: number[]): TensorInfo {
  const info = b.makeTensorInfo(shape, 'float32');
  b.uploadToGPU(info.dataId);
  return info;
}

/** Releases an intermediate allocated with `allocate` (deferred by tfjs until the queue is submitted). */
export function release(b: BackendInternals, t: TensorInfo): void {
  b.disposeData(t.dataId);
}

function binding(b: BackendInternals, t: TensorInfo): GPUBufferBinding {
  b.uploadToGPU(t.dataId);
  const res = b.tensorMap.get(t.dataId).resource;
  if (!(res instanceof GPUBuffer)) throw new Error('WebGPU kernel: input is not a GPU buffer (textures are not supported)');
  return { buffer: res };
}

/** Records one dispatch of `spec` into tfjs' current compute pass (mirrors WebGPUBackend.recordAndSubmit). */
export function dispatch(b: BackendInternals, spec: ShaderSpec, args: DispatchArgs): void {
  const [x, y, z] = args.workgroups;
  if (x === 0 || y === 0 || z === 0) return;
  const max = b.device.limits.maxComputeWorkgroupsPerDimension;
  if (x > max || y > max || z > max) throw new Error(`${spec.name}: dispatch ${x}×${y}×${z} exceeds the device limit ${max} per dimension`);
  const { pipeline, layout } = pipelineFor(b, spec, args.inputs.length, args.outputs.length);
  const all = [...args.inputs, ...args.outputs];
  const bindGroup = b.device.createBindGroup({ layout, entries: all.map((t, i) => ({ binding: i, resource: binding(b, t) })) });
  for (const t of all) b.commandQueueOwnedIds.add(t.dataId);

  const timed = b.activeTimers != null;
  b.ensureCommandEncoderReady();
  if (timed && b.supportTimestampQuery) {
    b.endComputePassEncoder();
    if (b.querySet == null) b.querySet = b.device.createQuerySet({ type: 'timestamp', count: b.querySetCount });
    b.computePassEncoder = b.commandEncoder!.beginComputePass({
      timestampWrites: { querySet: b.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
    });
  } else if (!b.computePassEncoder) {
    b.computePassEncoder = b.commandEncoder!.beginComputePass({});
  }
  const pass = b.computePassEncoder!;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(x, y, z);
  b.dispatchCountInPass++;
  if (timed || (tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number) <= b.dispatchCountInPass) {
    b.endComputePassEncoder();
    if (timed) b.activeTimers!.push({ name: spec.name, query: b.getQueryTime() });
    else b.submitQueue();
  }
}

/** Records a buffer-to-buffer copy between tensors (byte offsets) into tfjs' command stream. */
export function copyBytes(b: BackendInternals, src: TensorInfo, srcOffset: number, dst: TensorInfo, dstOffset: number, size: number): void {
  const s = binding(b, src).buffer;
  const d = binding(b, dst).buffer;
  b.commandQueueOwnedIds.add(src.dataId);
  b.commandQueueOwnedIds.add(dst.dataId);
  b.ensureCommandEncoderReady();
  b.endComputePassEncoder();
  b.commandEncoder!.copyBufferToBuffer(s, srcOffset, d, dstOffset, size);
}

/** Whether the device tfjs runs on has a feature (e.g. `subgroups`). */
export function hasFeature(b: BackendInternals, feature: string): boolean {
  return b.device.features.has(feature);
}

/** Ceil division. */
export const cdiv = (a: number, b: number): number => Math.ceil(a / b);

/** Splits a workgroup count over x and y when it exceeds the per-dimension limit (shaders recover the flat id). */
export function grid2(count: number, b: BackendInternals): [number, number, number] {
  const max = b.device.limits.maxComputeWorkgroupsPerDimension;
  if (count <= max) return [count, 1, 1];
  const yy = cdiv(count, max);
  return [cdiv(count, yy), yy, 1];
}
