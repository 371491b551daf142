// Backend choice. tfjs keeps one global backend per process; this module is the only place that sets it.
import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { setOps, tfjsOps } from './ops.js';
import { wasmOps } from './wasm_ops.js';
import { registerThreadedWasm, wasmThreadsWanted } from './wasm_threads.js';
import { installCpuKernelFixes } from './cpu_kernel_fixes.js';
import { registerWebgpuBackend, installWebgpuKernels } from './webgpu/index.js';
import type { BackendName } from '../config/run_config.js';
import { TENSORFLOW_MISSING, TENSORFLOW_PACKAGE, tensorflowInstalled } from '../config/tensorflow_backend.js';


export interface BackendInfo {
  /** The tfjs backend now in use. */
  readonly name: Exclude<BackendName, 'auto'>;
  /** For webgpu: the adapter's description ("nvidia-h100", "llvmpipe", …). */
  readonly adapter?: string;
  /** The adapter is a software renderer (lavapipe, SwiftShader). */
  readonly software?: boolean;
  /** For `auto` without a hardware adapter: what Dawn and the Vulkan loader printed while probing (for a log). */
  readonly probeLog?: string;
}

let current: BackendInfo | undefined;
const require = createRequire(import.meta.url);

/** Sets up the named backend, or for `auto` the fastest that works here. Throws with the reason when a named one is unavailable. */
export async function initBackend(name: BackendName = 'auto'): Promise<BackendInfo> {
  if (current && (name === 'auto' || name === current.name)) return current;
  if (name === 'auto') {
    // A native TensorFlow the user installed beats everything; a WebGPU adapter backed by real hardware
    // next; a software adapter (lavapipe, SwiftShader) is slower than wasm, so it is not chosen here.
    if (tensorflowInstalled()) return (current = await initTensorflow());
    const adapter = probeAdapterInChild();
    if (adapter && !adapter.software) return (current = await initWebgpu());
    return (current = { ...(await initSimple('wasm')), probeLog: adapter?.log });
  }
  if (name === 'webgpu') return (current = await initWebgpu());
  if (name === 'tensorflow') return (current = await initTensorflow());
  return (current = await initSimple(name));
}

export function backendInfo(): BackendInfo | undefined {
  return current;
}

/**
 * Whether an error means the backend itself is gone, not just this computation: an aborted or trapped wasm
 * module (every later call answers "Aborted()"), a lost GPU device, a failed GPU allocation. The only way
 * on is `restartBackend`.
 */
export function isFatalEngineError(e: unknown): boolean {
  if (e instanceof WebAssembly.RuntimeError) return true;
  const message = e instanceof Error ? e.message : String(e);
  return /Aborted\(|memory access out of bounds|device (is |was )?lost|GPUDevice.*(lost|destroyed)|out of memory/i.test(message);
}

/**
 * Replaces the current backend with a fresh instance of the same kind (a new wasm module, a new GPU device).
 * Tensors made on the dead one stay unusable; disposing them afterwards is harmless (the dead instance's
 * dispose and disposeData are emptied first: calling into an aborted wasm module aborts again, and hangs).
 */
export async function restartBackend(): Promise<BackendInfo> {
  if (!current) throw new Error('no backend was initialised');
  const name = tf.getBackend();
  const factory = tf.findBackendFactory(name);
  if (!factory) throw new Error(`the ${name} backend has no factory to start it again`);
  const dead = tf.findBackend(name);
  if (dead) {
    dead.dispose = () => undefined;
    dead.disposeData = () => true;
  }
  tf.removeBackend(name);
  tf.registerBackend(name, factory, name === 'webgpu' ? 3 : 2);
  if (!(await tf.setBackend(name))) throw new Error(`the ${name} backend failed to start again`);
  await tf.ready();
  return current;
}

async function initSimple(name: 'cpu' | 'wasm'): Promise<BackendInfo> {
  const threads = name === 'wasm' ? wasmThreadsWanted() : undefined;
  if (name === 'wasm') await quietPlatformWarning(() => import('@tensorflow/tfjs-backend-wasm'));
  if (threads) registerThreadedWasm(threads);
  if (!(await tf.setBackend(name))) throw new Error(`the ${name} backend failed to initialise`);
  await tf.ready();
  // tfjs-cpu's ResizeNearestNeighborGrad is wrong for batch > 1 (see cpu_kernel_fixes.ts).
  if (name === 'cpu') installCpuKernelFixes();
  setOps(name === 'wasm' ? wasmOps : tfjsOps);
  return { name };
}


async function initTensorflow(): Promise<BackendInfo> {
  if (!tensorflowInstalled()) {
    throw new Error(`backend "tensorflow" ${TENSORFLOW_MISSING}`);
  }
  // Loading tfjs-node-gpu registers its "tensorflow" backend on the tfjs instance it shares with us.
  require(TENSORFLOW_PACKAGE);
  if (!(await tf.setBackend('tensorflow'))) throw new Error('the tensorflow backend failed to initialise');
  return { name: 'tensorflow' };
}

interface AdapterProbe {
  readonly description: string;
  readonly software: boolean;
}

let gpuInstalled = false;
/** Installs Dawn's navigator.gpu (tfjs-backend-webgpu looks for it when it is imported). */
async function installNavigatorGpu(): Promise<GPU | undefined> {
  const g = globalThis as { navigator?: { gpu?: GPU } };
  if (!gpuInstalled) {
    let dawn: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
    try {
      dawn = (await import('webgpu')) as unknown as typeof dawn;
    } catch {
      return undefined;
    }
    // tfjs-backend-webgpu reads GPUBufferUsage, GPUMapMode, … as globals, as in a browser.
    Object.assign(globalThis, dawn.globals);
    const gpu = dawn.create([]);
    if (g.navigator) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
    else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
    gpuInstalled = true;
  }
  return g.navigator?.gpu;
}

/**
 * `auto`'s question "is there a hardware WebGPU adapter?", asked in a short child process: Dawn and the
 * Vulkan loader write warnings straight to file descriptor 2 ("Couldn't load Vulkan", "… artificially
 * reduced …") where no JavaScript can filter them, and on a machine without a GPU the answer is wasm, so
 * Dawn need not be loaded here at all. The child's output comes back as `log`. ≈ 0.3 s of CPU.
 */
function probeAdapterInChild(): (AdapterProbe & { log: string }) | undefined {
  let dawn: string;
  try {
    dawn = require.resolve('webgpu');
  } catch {
    return undefined;
  }
  const script = `const dawn = await import(${JSON.stringify(pathToFileURL(dawn).href)});
const a = await dawn.create([]).requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
const i = a?.info;
process.stdout.write(JSON.stringify(a ? { d: [i?.vendor, i?.architecture, i?.device, i?.description].filter(Boolean).join(' '), f: a.isFallbackAdapter === true } : null));
process.exit(0);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' } });
  let found: { d: string; f: boolean } | null;
  try {
    found = JSON.parse(r.stdout || 'null') as { d: string; f: boolean } | null;
  } catch {
    found = null;
  }
  const log = (r.stderr ?? '').trim();
  if (!found) return log ? { description: 'none', software: true, log } : undefined;
  return { description: found.d || 'unknown adapter', software: SOFTWARE_ADAPTER.test(found.d) || found.f, log };
}

const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|software/i;

async function tryWebgpuAdapter(): Promise<AdapterProbe | undefined> {
  const gpu = await installNavigatorGpu();
  const adapter = await gpu?.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
  if (!adapter) return undefined;
  const info = (adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
  const description = [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(' ') || 'unknown adapter';
  const software = SOFTWARE_ADAPTER.test(description) || (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
  return { description, software };
}

/**
 * tfjs-backend-wasm's and tfjs-backend-webgpu's Node builds load tfjs-core's CommonJS copy, whose import sets the (shared)
 * platform a second time and warns "Platform node has already been set" — true and harmless. That one
 * warning is dropped while the backend loads; anything else passes.
 */
async function quietPlatformWarning<T>(load: () => Promise<T>): Promise<T> {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && /^Platform \w+ has already been set/.test(args[0])) return;
    warn(...args);
  };
  try {
    return await load();
  } finally {
    console.warn = warn;
  }
}

async function initWebgpu(): Promise<BackendInfo> {
  const probe = await tryWebgpuAdapter();
  if (!probe) {
    throw new Error('backend "webgpu": no WebGPU adapter found (Dawn needs a Vulkan, Metal or D3D12 driver; on Linux without a GPU install Mesa lavapipe: apt-get install mesa-vulkan-drivers)');
  }
  // Our own device (all adapter limits, subgroups) under tfjs' WebGPU backend, then our WGSL kernels
  // for the training hot path. On a software adapter (lavapipe) each new shader costs seconds of JIT and
  // buys nothing, so there the stock kernels stay unless LORA_STUDIO_WEBGPU_KERNELS=1 asks for ours.
  await quietPlatformWarning(() => registerWebgpuBackend());
  if (!(await tf.setBackend('webgpu'))) throw new Error('the webgpu backend failed to initialise');
  await tf.ready();
  const ours = process.env.LORA_STUDIO_WEBGPU_KERNELS ?? (probe.software ? '0' : '1');
  setOps(tfjsOps);
  if (ours === '1') installWebgpuKernels();
  return { name: 'webgpu', adapter: probe.description, software: probe.software };
}
