// The GPU device tfjs runs on, requested by us rather than by tfjs-backend-webgpu.
//
// WHY: tfjs' own backend factory asks Dawn for a device with only `timestamp-query` (and a default
// limit of 8 storage buffers per shader stage), so a shader of ours could never say `enable subgroups;`
// or bind the 9 buffers of the attention backward. We replace the registered `webgpu` factory, before
// the backend is first created, with one that asks for every limit the adapter has and for the optional
// features our kernels can use. The tfjs WebGPUBackend class itself is unchanged: it is constructed on
// our device, so every stock kernel keeps working next to ours.
import * as tf from '@tensorflow/tfjs';

/** Optional features we ask for when the adapter has them. */
export const WANTED_FEATURES = ['timestamp-query', 'subgroups', 'shader-f16', 'chromium-experimental-subgroup-matrix'] as const;

export interface WebgpuDeviceOptions {
  /**
   * Dawn toggles for the instance, e.g. `enable-dawn-features=allow_unsafe_apis` (needed by Dawn for
   * experimental features such as `chromium-experimental-subgroup-matrix`). Default: the env variable
   * LORA_STUDIO_DAWN_FLAGS split on spaces, else none.
   */
  readonly dawnFlags?: readonly string[];
}

export interface WebgpuDeviceInfo {
  readonly adapter: string;
  readonly adapterFeatures: readonly string[];
  readonly deviceFeatures: readonly string[];
  readonly subgroupMinSize?: number;
  readonly subgroupMaxSize?: number;
  readonly limits: Readonly<Record<string, number>>;
  readonly dawnFlags: readonly string[];
}

interface Dawn {
  create: (flags: string[]) => GPU;
  globals: Record<string, unknown>;
}

let dawn: Dawn | undefined;
const instances = new Map<string, GPU>();
let deviceInfo: WebgpuDeviceInfo | undefined;
let errorCount = 0;

/** WebGPU errors reported by our device so far (invalid shaders, out of memory): the benchmark checks it. */
export function webgpuErrorCount(): number {
  return errorCount;
}

async function loadDawn(): Promise<Dawn> {
  if (!dawn) {
    dawn = (await import('webgpu')) as unknown as Dawn;
    // tfjs-backend-webgpu reads GPUBufferUsage, GPUMapMode, … as globals, as in a browser.
    Object.assign(globalThis, dawn.globals);
  }
  return dawn;
}

/** One Dawn instance per set of toggles (Dawn fixes toggles when the instance is created). */
export async function dawnInstance(flags: readonly string[] = defaultFlags()): Promise<GPU> {
  const d = await loadDawn();
  const key = flags.join(' ');
  let gpu = instances.get(key);
  if (!gpu) {
    gpu = d.create([...flags]);
    instances.set(key, gpu);
  }
  return gpu;
}

function defaultFlags(): string[] {
  return (process.env.LORA_STUDIO_DAWN_FLAGS ?? '').split(/\s+/).filter(Boolean);
}

function describe(adapter: GPUAdapter): string {
  const info = (adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
  return [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(' ') || 'unknown adapter';
}

const LIMITS = [
  'maxComputeWorkgroupStorageSize', 'maxComputeWorkgroupsPerDimension', 'maxStorageBufferBindingSize', 'maxBufferSize',
  'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY', 'maxComputeInvocationsPerWorkgroup', 'maxStorageBuffersPerShaderStage',
] as const;

/** Requests an adapter and a device with all limits and the wanted features. */
export async function requestDevice(options: WebgpuDeviceOptions = {}): Promise<{ device: GPUDevice; adapter: GPUAdapter; info: WebgpuDeviceInfo }> {
  const flags = [...(options.dawnFlags ?? defaultFlags())];
  const gpu = await dawnInstance(flags);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    throw new Error('WebGPU: no adapter found (Dawn needs a Vulkan, Metal or D3D12 driver; on Linux without a GPU install Mesa lavapipe: apt-get install mesa-vulkan-drivers)');
  }
  const adapterFeatures = [...adapter.features].map(String).sort();
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const l of LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[l];
    if (typeof v === 'number') requiredLimits[l] = v;
  }
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  const a = (adapter as GPUAdapter & { info?: GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number } }).info;
  const info: WebgpuDeviceInfo = {
    adapter: describe(adapter),
    adapterFeatures,
    deviceFeatures: [...device.features].map(String).sort(),
    subgroupMinSize: a?.subgroupMinSize,
    subgroupMaxSize: a?.subgroupMaxSize,
    limits: requiredLimits,
    dawnFlags: flags,
  };
  device.addEventListener?.('uncapturederror', (e: Event) => {
    errorCount++;
    if (errorCount <= 20) console.error(`WebGPU error: ${(e as GPUUncapturedErrorEvent).error?.message}`);
  });
  return { device, adapter, info };
}

/**
 * Makes `tf.setBackend('webgpu')` create the backend on a device of ours (see the top of this file).
 * Call after nothing has created the webgpu backend yet; if it already exists this does nothing and
 * returns false (its device is then tfjs' own: our kernels still run, without subgroups).
 */
export async function registerWebgpuBackend(options: WebgpuDeviceOptions = {}): Promise<boolean> {
  const registry = (tf.engine() as unknown as { registry: Record<string, unknown> }).registry;
  if (registry.webgpu) return false;
  // Dawn's navigator.gpu must exist before tfjs-backend-webgpu is imported (it checks for it then).
  const gpu = await dawnInstance(options.dawnFlags ?? defaultFlags());
  const g = globalThis as { navigator?: { gpu?: GPU } };
  if (!g.navigator?.gpu) {
    if (g.navigator) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
    else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  }
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', async () => {
    const { device, adapter, info } = await requestDevice(options);
    deviceInfo = info;
    const adapterInfo = (adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
    return new WebGPUBackend(device, adapterInfo as never);
  }, 3);
  return true;
}

/** Whether the device is a CPU implementation (lavapipe, SwiftShader): kernels then favour short JIT times. */
export function isSoftwareAdapter(): boolean {
  const a = deviceInfo?.adapter ?? '';
  return /llvmpipe|lavapipe|swiftshader|software/i.test(a);
}

/** What the device we created has (undefined when tfjs created the device itself). */
export function webgpuDeviceInfo(): WebgpuDeviceInfo | undefined {
  return deviceInfo;
}

export interface FeatureProbe {
  readonly dawnFlags: readonly string[];
  readonly adapter?: string;
  readonly adapterFeatures: readonly string[];
  /** Whether a shader with each `enable` directive compiles on a device that requested the feature. */
  readonly shaders: Record<string, string>;
  readonly subgroupMinSize?: number;
  readonly subgroupMaxSize?: number;
  readonly maxComputeWorkgroupStorageSize?: number;
  readonly error?: string;
}

const PROBE_SHADERS: Record<string, string> = {
  subgroups: 'enable subgroups;\n@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(32) fn main(@builtin(local_invocation_index) i: u32) { o[i] = subgroupAdd(f32(i)); }',
  'shader-f16': 'enable f16;\n@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(1) fn main() { let x: f16 = 1.5h; o[0] = f32(x * x); }',
  'chromium-experimental-subgroup-matrix': 'enable chromium_experimental_subgroup_matrix;\n@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(32) fn main() { var m: subgroup_matrix_result<f32, 8, 8>; o[0] = 1.0; }',
};

/**
 * For each set of Dawn flags: the adapter's features, and whether shaders using subgroups, f16 and
 * subgroup matrices compile. Runs on its own devices; touches no tfjs state.
 */
export async function probeFeatures(flagSets: readonly (readonly string[])[] = [[], ['enable-dawn-features=allow_unsafe_apis']]): Promise<FeatureProbe[]> {
  const out: FeatureProbe[] = [];
  for (const flags of flagSets) {
    try {
      const gpu = await dawnInstance(flags);
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter) {
        out.push({ dawnFlags: flags, adapterFeatures: [], shaders: {}, error: 'no adapter' });
        continue;
      }
      const wanted = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
      const device = await adapter.requestDevice({ requiredFeatures: wanted });
      const shaders: Record<string, string> = {};
      for (const [name, code] of Object.entries(PROBE_SHADERS)) {
        if (!adapter.features.has(name)) {
          shaders[name] = 'feature not offered by the adapter';
          continue;
        }
        device.pushErrorScope('validation');
        const module = device.createShaderModule({ code });
        device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
        const err = await device.popErrorScope();
        shaders[name] = err ? `fails: ${err.message.split('\n')[0]}` : 'compiles';
      }
      const a = (adapter as GPUAdapter & { info?: GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number } }).info;
      out.push({
        dawnFlags: flags,
        adapter: describe(adapter),
        adapterFeatures: [...adapter.features].map(String).sort(),
        shaders,
        subgroupMinSize: a?.subgroupMinSize,
        subgroupMaxSize: a?.subgroupMaxSize,
        maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
      });
      device.destroy();
    } catch (e) {
      out.push({ dawnFlags: flags, adapterFeatures: [], shaders: {}, error: (e as Error).message });
    }
  }
  return out;
}
