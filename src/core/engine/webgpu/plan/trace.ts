// A planned GPU step: run a tfjs computation once on the webgpu backend while recording every command
// it sends to the device, then replay that fixed command list every step.
//
// WHY: op by op, tfjs spends ~170 µs of host time per dispatch (shape checks, tape, uniforms, bind groups,
// buffer-pool lookups) and submits every 15 dispatches. A training step is the same dispatches every time
// for one shape, so we let tfjs (with the project's kernels registered) choose and compile them once, and
// keep only what reaches the GPU: pipelines, buffers, dispatch sizes, copies. A replay encodes that list
// into one command buffer and submits it once.
//
// Recording (`traceStep`): while `fn` runs, tfjs' buffer manager hands out a fresh buffer for every
// request and keeps the ones it frees (so each buffer is one value of the trace). These are 16-byte
// stand-ins that remember the size asked for: recording needs no memory, and its GPU work is invalid
// (nothing runs; the first real step is the first replay). Uploads made inside
// (constants such as tf.scalar(0.5), uniforms) are snapshotted, and every bind group, dispatch and copy is
// logged. `fn` must not read anything back (no data()/dataSync()): a readback inside would make the step
// depend on the host, and the recorder refuses it.
//
// Planning (`Plan`): dispatches and copies whose results nothing later reads are dropped; each remaining
// buffer created inside `fn` is a value with a lifetime [first use, last use], and values share one
// physical buffer whenever their lifetimes do not overlap (greedy best fit, in trace order). Uniforms and
// constants become read-only buffers made once (identical contents shared). Buffers that existed before
// `fn` (weights, the step's inputs, the LoRA parameters and optimizer state) are used as they are: a
// step's inputs are written into them with queue.writeBuffer before the replay. Buffers `fn` created and
// did not free (caches kept across calls, e.g. a scheduler's tables) are pinned. The plan's bytes are
// known before anything is allocated (`memory`).
//
// The recorded list is only valid for the shapes it was traced with: callers key plans by shape and trace
// again for a shape they have not seen.
import * as tf from '@tensorflow/tfjs';
import { webgpuBackend, writableBindings, type BackendInternals } from '../dispatch.js';

type ValueKind = 'external' | 'temp' | 'constant' | 'kept';

interface Value {
  readonly id: number;
  readonly buffer: GPUBuffer;
  readonly size: number;
  readonly usage: number;
  kind: ValueKind;
  /** Constants: the bytes uploaded into it. */
  data?: Uint8Array;
  released?: boolean;
}

interface Binding {
  readonly binding: number;
  readonly value: number;
  readonly offset: number;
  readonly size: number;
  readonly write: boolean;
}

type Op =
  | { readonly kind: 'dispatch'; readonly pipeline: GPUComputePipeline; readonly layout: GPUBindGroupLayout; readonly bindings: readonly Binding[]; readonly workgroups: readonly [number, number, number] }
  | { readonly kind: 'copy'; readonly src: number; readonly srcOffset: number; readonly dst: number; readonly dstOffset: number; readonly size: number };

/** What recording saw: the raw material of a plan. */
export interface Trace {
  readonly values: Value[];
  readonly ops: Op[];
  /** Queue submits tfjs made while recording (what an eager step costs in submits). */
  readonly eagerSubmits: number;
  /** Host milliseconds of the recorded (eager) run. */
  readonly eagerMs: number;
}

export interface PlanMemory {
  /** Physical buffers the plan allocates for the step's intermediate values (after reuse). */
  readonly activationBytes: number;
  /** What the same values would take without reuse (each its own buffer, as the trace made them). */
  readonly unplannedActivationBytes: number;
  /** Uniforms and constants (made once, shared when identical). */
  readonly constantBytes: number;
  /** Buffers that existed before the step (weights, inputs, LoRA parameters, optimizer state) or that it keeps. */
  readonly persistentBytes: number;
  /** activation + constant + persistent: what the device must hold while the step runs. */
  readonly peakBytes: number;
  /** The largest buffer the plan allocates (it must fit the device's maxBufferSize and maxStorageBufferBindingSize). */
  readonly largestBufferBytes: number;
}

export interface PlanStats {
  readonly dispatches: number;
  readonly copies: number;
  /** Dispatches the recording made that nothing read (dropped). */
  readonly deadDispatches: number;
  readonly pipelines: number;
  readonly values: number;
  readonly physicalBuffers: number;
  readonly memory: PlanMemory;
}

const MAP_READ = 0x0001;
const MAP_WRITE = 0x0002;
const UNIFORM = 0x0040;
const COPY_SRC = 0x0004;
const COPY_DST = 0x0008;
const STORAGE = 0x0080;

interface BufferManagerInternals {
  acquireBuffer(size: number, usage: number, mappedAtCreation?: boolean, reuse?: boolean): GPUBuffer;
  releaseBuffer(buffer: GPUBuffer, reuse?: boolean): void;
}

type RecordingBackend = Omit<BackendInternals, 'tensorMap'> & {
  bufferManager: BufferManagerInternals;
  queue: GPUQueue;
  tensorMap: { get(dataId: object): { resource?: unknown; values?: ArrayLike<number> | null; dtype: string; shape: number[] } };
  nextDataId(): number;
};

export class PlanError extends Error {}

/** A plan the device cannot hold: `memory` says what it needs. */
export class PlanMemoryError extends PlanError {
  constructor(readonly memory: PlanMemory, why: string) {
    super(`out of memory: the planned training step needs ${formatGiB(memory.peakBytes)} on the GPU (${formatGiB(memory.activationBytes)} of activations, ${formatGiB(memory.persistentBytes)} of weights and state), and ${why}`);
    this.name = 'PlanMemoryError';
  }
}

const formatGiB = (bytes: number) => `${(bytes / 2 ** 30).toFixed(bytes < 2 ** 30 ? 3 : 2)} GiB`;

// ─────────── virtual buffers: a plan's arithmetic at shapes the device could not hold ───────────

const virtualSizes = new WeakMap<GPUBuffer, number>();

/** The size a buffer stands for (its real size, or the size asked for when it was made virtual). */
function standsFor(buffer: GPUBuffer): number {
  return virtualSizes.get(buffer) ?? buffer.size;
}

/** Buffers a trace made for tensors that outlive it (a kept cache, an uploaded constant): the plan holds them. */
const tracedBuffers = new WeakSet<GPUBuffer>();
const guardedManagers = new WeakSet<BufferManagerInternals>();

/**
 * tfjs' own release looks a buffer up in the pools it acquired it from and throws on one it did not make.
 * Tensors made while a trace or withVirtualBuffers ran can be disposed any time later (a scheduler's tables
 * at the end of a run): their virtual stand-ins are destroyed, their traced buffers left to the plan that
 * reads them (and to the garbage collector), and every other buffer goes back to tfjs' pools as before.
 */
function guardRelease(bm: BufferManagerInternals): void {
  if (guardedManagers.has(bm)) return;
  guardedManagers.add(bm);
  const release = bm.releaseBuffer;
  bm.releaseBuffer = (buffer, reuse) => {
    if (virtualSizes.has(buffer)) buffer.destroy();
    else if (!tracedBuffers.has(buffer)) release.call(bm, buffer, reuse);
  };
}

function virtualBuffer(device: GPUDevice, size: number, usage: number): GPUBuffer {
  const buffer = device.createBuffer({ size: 16, usage, label: 'virtual' });
  virtualSizes.set(buffer, size);
  return buffer;
}

/**
 * Runs `fn` with every tensor buffer tfjs allocates (outside host uploads) replaced by a 16-byte stand-in
 * that remembers the size asked for: models of any size can then be built and their step traced and
 * analysed (Plan.analyse) on any device, the null one included. The GPU work itself is invalid (its
 * validation errors are swallowed): only the trace's sizes and order mean anything.
 */
export async function withVirtualBuffers<T>(fn: () => Promise<T>): Promise<T> {
  const b = webgpuBackend() as unknown as RecordingBackend;
  const bm = b.bufferManager;
  const acquire = bm.acquireBuffer;
  const release = bm.releaseBuffer;
  bm.acquireBuffer = (size, usage, mappedAtCreation = false, reuse = true) =>
    mappedAtCreation || usage & (MAP_READ | MAP_WRITE) ? acquire.call(bm, size, usage, mappedAtCreation, reuse) : virtualBuffer(b.device, size, usage);
  bm.releaseBuffer = (buffer, reuse) => (virtualSizes.has(buffer) ? buffer.destroy() : release.call(bm, buffer, reuse));
  b.device.pushErrorScope('validation');
  try {
    return await fn();
  } finally {
    bm.acquireBuffer = acquire;
    bm.releaseBuffer = release;
    guardRelease(bm);
    await b.device.popErrorScope();
  }
}

/**
 * Runs `fn` once on the webgpu backend (really: its results are those of an eager run) and records the
 * commands it makes. `fn` must dispose what it creates (tf.tidy) and must not read tensors back.
 */
export async function traceStep(fn: () => void): Promise<Trace> {
  const b = webgpuBackend() as unknown as RecordingBackend;
  const device = b.device;
  // Whatever tfjs has pending belongs to before the step.
  if (b.commandEncoder) {
    b.endComputePassEncoder();
    b.submitQueue();
  }
  await device.queue.onSubmittedWorkDone();

  const values: Value[] = [];
  const byBuffer = new Map<GPUBuffer, Value>();
  const created = new Set<GPUBuffer>();
  const bindGroups = new WeakMap<GPUBindGroup, { layout: GPUBindGroupLayout; entries: { binding: number; buffer: GPUBuffer; offset: number; size?: number }[] }>();
  const ops: Op[] = [];
  let submits = 0;
  const valueOf = (buffer: GPUBuffer): Value => {
    let v = byBuffer.get(buffer);
    if (!v) {
      v = { id: values.length, buffer, size: standsFor(buffer), usage: buffer.usage, kind: created.has(buffer) ? 'temp' : 'external' };
      values.push(v);
      byBuffer.set(buffer, v);
    }
    return v;
  };

  const bm = b.bufferManager;
  const origAcquire = bm.acquireBuffer;
  const origRelease = bm.releaseBuffer;
  const origUpload = b.uploadToGPU;
  const origQueue = b.queue;
  const origCreateBindGroup = device.createBindGroup;
  const origCreateEncoder = device.createCommandEncoder;

  const acquire = (size: number, usage: number, mappedAtCreation = false): GPUBuffer => {
    if (usage & MAP_READ) throw new PlanError('a planned step must not read tensors back (data()/dataSync() inside the traced function); return them and read them after the replay');
    // The recording needs no real memory: a value's contents matter only on replay. Host uploads (mapped)
    // and uniforms are real, as they are snapshotted.
    const buffer = !mappedAtCreation && !(usage & (MAP_WRITE | UNIFORM)) ? virtualBuffer(device, size, usage) : device.createBuffer({ size, usage, mappedAtCreation });
    created.add(buffer);
    tracedBuffers.add(buffer);
    if (!(usage & MAP_WRITE)) valueOf(buffer);
    return buffer;
  };
  bm.acquireBuffer = acquire;
  bm.releaseBuffer = (buffer, reuse) => {
    if (created.has(buffer)) {
      const v = byBuffer.get(buffer);
      if (v) v.released = true;
      else buffer.destroy(); // a staging buffer
      return;
    }
    origRelease.call(bm, buffer, reuse);
  };
  // Tensors made before the step that have no buffer yet — their data still on the host (e.g. fresh
  // tf.zeros), or none at all (backend.write(null, …): stand-in weights) — get ordinary buffers, made as
  // before the step: they are the step's inputs, weights or state, not its constants or temporaries.
  const firstDataId = b.nextDataId();
  b.uploadToGPU = (dataId: object) => {
    const data = b.tensorMap.get(dataId);
    const pending = data.resource == null && data.values ? data.values : null;
    if (data.resource == null && (dataId as { id: number }).id < firstDataId) {
      const bytes = data.shape.reduce((a, d) => a * d, 1) * 4; // f32, int32 and bool: 4 bytes each on webgpu
      const buffer = origAcquire.call(bm, bytes, STORAGE | COPY_SRC | COPY_DST);
      if (pending) {
        // Written now, through the queue: not part of the recording (whose command buffers never run).
        origQueue.writeBuffer(buffer, 0, data.dtype === 'int32' || data.dtype === 'bool' ? Int32Array.from(pending) : Float32Array.from(pending));
      }
      data.resource = buffer;
      data.values = null;
      return;
    }
    origUpload.call(b, dataId);
    if (pending) {
      const v = valueOf(data.resource as GPUBuffer);
      const typed = data.dtype === 'int32' || data.dtype === 'bool' ? Int32Array.from(pending) : Float32Array.from(pending);
      if (v.kind === 'temp') {
        v.kind = 'constant';
        v.data = new Uint8Array(typed.buffer.slice(0));
      }
    }
  };
  b.queue = {
    writeBuffer(buffer: GPUBuffer, offset: number, data: BufferSource, dataOffset = 0, size?: number) {
      const v = valueOf(buffer);
      if (v.kind !== 'temp' || offset !== 0) throw new PlanError('a planned step wrote into a buffer it did not create (queue.writeBuffer); its inputs must be written before the step');
      const bytes = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
      const elem = ArrayBuffer.isView(data) && 'BYTES_PER_ELEMENT' in data ? (data as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT : 1;
      const start = dataOffset * elem;
      const len = size === undefined ? bytes.byteLength - start : size * elem;
      v.kind = 'constant';
      v.data = bytes.slice(start, start + len);
      origQueue.writeBuffer(buffer, offset, data, dataOffset, size);
    },
    submit(cbs: Iterable<GPUCommandBuffer>) {
      submits++;
      origQueue.submit(cbs);
    },
    onSubmittedWorkDone: () => origQueue.onSubmittedWorkDone(),
  } as unknown as GPUQueue;
  const dev = device as unknown as Record<string, unknown>;
  dev.createBindGroup = (desc: GPUBindGroupDescriptor) => {
    const bg = origCreateBindGroup.call(device, desc);
    const entries = [...desc.entries].map((e) => {
      const r = e.resource as GPUBufferBinding;
      if (!r || !(r.buffer instanceof GPUBuffer)) throw new PlanError('a planned step bound something other than a buffer (textures are not supported)');
      return { binding: e.binding, buffer: r.buffer, offset: r.offset ?? 0, size: r.size };
    });
    bindGroups.set(bg, { layout: desc.layout as GPUBindGroupLayout, entries });
    return bg;
  };
  dev.createCommandEncoder = (desc?: GPUCommandEncoderDescriptor) => {
    const enc = origCreateEncoder.call(device, desc);
    return {
      beginComputePass(d?: GPUComputePassDescriptor) {
        const pass = enc.beginComputePass(d);
        let pipeline: GPUComputePipeline | undefined;
        let bg: GPUBindGroup | undefined;
        return {
          setPipeline(p: GPUComputePipeline) {
            pipeline = p;
            pass.setPipeline(p);
          },
          setBindGroup(i: number, g: GPUBindGroup) {
            if (i !== 0) throw new PlanError('a planned step used a bind group other than group 0');
            bg = g;
            pass.setBindGroup(i, g);
          },
          dispatchWorkgroups(x: number, y = 1, z = 1) {
            const info = bg && bindGroups.get(bg);
            if (!pipeline || !info) throw new PlanError('a dispatch with a bind group made before the step was traced');
            const writable = writableBindings(info.layout);
            const bindings = info.entries.map((e) => {
              const v = valueOf(e.buffer);
              return { binding: e.binding, value: v.id, offset: e.offset, size: e.size ?? v.size - e.offset, write: writable ? writable[e.binding] : e.binding === 0 };
            });
            ops.push({ kind: 'dispatch', pipeline, layout: info.layout, bindings, workgroups: [x, y, z] });
            pass.dispatchWorkgroups(x, y, z);
          },
          end: () => pass.end(),
        };
      },
      copyBufferToBuffer(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number) {
        const s = valueOf(src);
        const d = valueOf(dst);
        ops.push({ kind: 'copy', src: s.id, srcOffset, dst: d.id, dstOffset, size });
        enc.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
      },
      finish: (d?: GPUCommandBufferDescriptor) => enc.finish(d),
    };
  };

  const before = tf.memory().numTensors;
  const t0 = performance.now();
  // The recorded run computes nothing (its buffers are stand-ins): its validation errors are expected.
  device.pushErrorScope('validation');
  try {
    fn();
    // Also frees what tfjs deferred until the submit.
    if (b.commandEncoder) {
      b.endComputePassEncoder();
      b.submitQueue();
    }
  } finally {
    bm.acquireBuffer = origAcquire;
    bm.releaseBuffer = origRelease;
    guardRelease(bm);
    b.uploadToGPU = origUpload;
    b.queue = origQueue;
    delete dev.createBindGroup;
    delete dev.createCommandEncoder;
    void device.popErrorScope();
  }
  const eagerMs = performance.now() - t0;
  await device.queue.onSubmittedWorkDone();
  // What the step made and kept (a cache such as a scheduler's tables, tf.keep'd inside): it must keep its
  // contents, so it cannot be a stand-in. Such values are rare and small; they are pinned.
  const kept = values.filter((v) => (v.kind === 'temp' || v.kind === 'constant') && !v.released);
  for (const v of kept) {
    if (v.kind === 'temp' && virtualSizes.has(v.buffer)) throw new PlanError(`the traced step kept ${kept.length} tensor(s) it computed alive (${tf.memory().numTensors - before} more tensors after it than before): compute such caches before tracing, or dispose them inside`);
    v.kind = 'kept';
  }
  return { values, ops, eagerSubmits: submits, eagerMs };
}

/** A traced step made replayable: buffers allocated once, bind groups and pipelines made once. */
export class Plan {
  private readonly commands: (
    | { kind: 'dispatch'; pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; workgroups: readonly [number, number, number] }
    | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number }
  )[] = [];
  private readonly owned: GPUBuffer[] = [];
  readonly stats: PlanStats;

  private constructor(private readonly device: GPUDevice, trace: Trace, live: boolean[], physical: Map<number, GPUBuffer>, stats: PlanStats) {
    this.stats = stats;
    const buf = (id: number) => physical.get(id) ?? trace.values[id].buffer;
    trace.ops.forEach((op, i) => {
      if (!live[i]) return;
      if (op.kind === 'copy') {
        this.commands.push({ kind: 'copy', src: buf(op.src), srcOffset: op.srcOffset, dst: buf(op.dst), dstOffset: op.dstOffset, size: op.size });
      } else {
        const bindGroup = device.createBindGroup({
          layout: op.layout,
          entries: op.bindings.map((e) => ({ binding: e.binding, resource: { buffer: buf(e.value), offset: e.offset, size: e.size } })),
        });
        this.commands.push({ kind: 'dispatch', pipeline: op.pipeline, bindGroup, workgroups: op.workgroups });
      }
    });
    this.owned = [...new Set(physical.values())];
  }

  /** What a plan of `trace` would allocate, without allocating it. */
  static analyse(trace: Trace): { live: boolean[]; used: (id: number) => boolean; assignment: Map<number, number>; sizes: number[]; usages: number[]; stats: PlanStats } {
    const { values, ops } = trace;
    // Dead-op elimination, backwards: an op lives when it writes something that outlives the step or that
    // a live op after it uses.
    const needed = new Uint8Array(values.length);
    for (const v of values) if (v.kind === 'external' || v.kind === 'kept') needed[v.id] = 1;
    const live = new Array<boolean>(ops.length).fill(false);
    for (let i = ops.length - 1; i >= 0; i--) {
      const op = ops[i];
      const writes = op.kind === 'copy' ? [op.dst] : op.bindings.filter((e) => e.write).map((e) => e.value);
      if (!writes.some((w) => needed[w])) continue;
      live[i] = true;
      if (op.kind === 'copy') needed[op.src] = needed[op.dst] = 1;
      else for (const e of op.bindings) needed[e.value] = 1;
    }
    // Lifetimes of the temporaries over the live ops.
    const first = new Int32Array(values.length).fill(-1);
    const last = new Int32Array(values.length).fill(-1);
    const touch = (id: number, i: number) => {
      if (first[id] < 0) first[id] = i;
      last[id] = i;
    };
    const pipelines = new Set<GPUComputePipeline>();
    let dispatches = 0;
    let copies = 0;
    ops.forEach((op, i) => {
      if (!live[i]) return;
      if (op.kind === 'copy') {
        copies++;
        touch(op.src, i);
        touch(op.dst, i);
      } else {
        dispatches++;
        pipelines.add(op.pipeline);
        for (const e of op.bindings) touch(e.value, i);
      }
    });
    // Greedy best fit in order of first use: a physical buffer is free once the last use of what it holds has run.
    const temps = values.filter((v) => v.kind === 'temp' && first[v.id] >= 0).sort((a, b) => first[a.id] - first[b.id]);
    const sizes: number[] = [];
    const usages: number[] = [];
    const freeAfter: number[] = [];
    const assignment = new Map<number, number>();
    let unplanned = 0;
    for (const v of temps) {
      unplanned += v.size;
      let best = -1;
      for (let p = 0; p < sizes.length; p++) {
        if (freeAfter[p] >= first[v.id] || usages[p] !== v.usage) continue;
        if (best < 0) best = p;
        else {
          const fits = sizes[p] >= v.size;
          const bestFits = sizes[best] >= v.size;
          if (fits && (!bestFits || sizes[p] < sizes[best])) best = p;
          else if (!fits && !bestFits && sizes[p] > sizes[best]) best = p;
        }
      }
      if (best < 0) {
        best = sizes.length;
        sizes.push(0);
        usages.push(v.usage);
        freeAfter.push(-1);
      }
      sizes[best] = Math.max(sizes[best], v.size);
      freeAfter[best] = last[v.id];
      assignment.set(v.id, best);
    }
    const constants = new Map<string, number>();
    for (const v of values) if (v.kind === 'constant' && first[v.id] >= 0) constants.set(constantKey(v), v.size);
    const activationBytes = sizes.reduce((a, s) => a + s, 0);
    const constantBytes = [...constants.values()].reduce((a, s) => a + s, 0);
    const persistentBytes = values.filter((v) => v.kind === 'external' || v.kind === 'kept').reduce((a, v) => a + v.size, 0);
    const deadDispatches = ops.filter((op, i) => op.kind === 'dispatch' && !live[i]).length;
    return {
      live, used: (id: number) => first[id] >= 0, assignment, sizes, usages,
      stats: {
        dispatches, copies, deadDispatches, pipelines: pipelines.size, values: values.length, physicalBuffers: sizes.length + constants.size,
        memory: {
          activationBytes, unplannedActivationBytes: unplanned, constantBytes, persistentBytes, peakBytes: activationBytes + constantBytes + persistentBytes,
          largestBufferBytes: Math.max(0, ...sizes, ...constants.values()),
        },
      },
    };
  }

  /**
   * build, refusing a plan the device cannot hold: a buffer over the device's limits, or an allocation the
   * device reports out of memory (WebGPU says nothing of a device's total memory; the allocation does).
   */
  static async create(trace: Trace): Promise<Plan> {
    const device = webgpuBackend().device;
    const stats = Plan.analyse(trace).stats;
    const limit = Math.min(device.limits.maxBufferSize, device.limits.maxStorageBufferBindingSize);
    if (stats.memory.largestBufferBytes > limit) throw new PlanMemoryError(stats.memory, `its largest buffer, ${stats.memory.largestBufferBytes} bytes, is over this device's limit of ${limit} bytes per buffer`);
    device.pushErrorScope('out-of-memory');
    const plan = Plan.build(trace);
    const error = await device.popErrorScope();
    if (error) {
      plan.dispose();
      throw new PlanMemoryError(stats.memory, `the device ran out of memory allocating it (${error.message})`);
    }
    return plan;
  }

  /** Allocates the plan's buffers, makes its bind groups, and frees the recording's buffers. */
  static build(trace: Trace): Plan {
    const device = webgpuBackend().device;
    const a = Plan.analyse(trace);
    const physicalBuffers = a.sizes.map((size, p) => device.createBuffer({ size: align4(size), usage: a.usages[p], label: `plan activation ${p}` }));
    const physical = new Map<number, GPUBuffer>();
    for (const [id, p] of a.assignment) physical.set(id, physicalBuffers[p]);
    const constants = new Map<string, GPUBuffer>();
    for (const v of trace.values) {
      if (v.kind !== 'constant' || !a.used(v.id)) continue;
      const key = constantKey(v);
      let buffer = constants.get(key);
      if (!buffer) {
        buffer = device.createBuffer({ size: align4(v.size), usage: v.usage, mappedAtCreation: true, label: 'plan constant' });
        new Uint8Array(buffer.getMappedRange()).set(v.data!.subarray(0, Math.min(v.data!.byteLength, v.size)));
        buffer.unmap();
        constants.set(key, buffer);
      }
      physical.set(v.id, buffer);
    }
    const plan = new Plan(device, trace, a.live, physical, a.stats);
    plan.owned.push(...constants.values());
    Plan.release(trace);
    return plan;
  }

  /** Frees the recording's own temporaries and constants (a built plan, or an analysis, no longer needs them). */
  static release(trace: Trace): void {
    for (const v of trace.values) if (v.kind === 'temp' || v.kind === 'constant') v.buffer.destroy();
  }

  /** Encodes the whole step (one compute pass between copies). */
  encode(encoder: GPUCommandEncoder): void {
    let pass: GPUComputePassEncoder | null = null;
    let pipeline: GPUComputePipeline | null = null;
    for (const c of this.commands) {
      if (c.kind === 'dispatch') {
        if (!pass) {
          pass = encoder.beginComputePass();
          pipeline = null;
        }
        if (c.pipeline !== pipeline) pass.setPipeline((pipeline = c.pipeline));
        pass.setBindGroup(0, c.bindGroup);
        pass.dispatchWorkgroups(c.workgroups[0], c.workgroups[1], c.workgroups[2]);
      } else {
        if (pass) pass.end();
        pass = null;
        encoder.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.size);
      }
    }
    if (pass) pass.end();
  }

  dispose(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
    this.commands.length = 0;
  }

  get deviceRef(): GPUDevice {
    return this.device;
  }
}

function constantKey(v: Value): string {
  return `${v.usage}|${v.size}|${Buffer.from(v.data!.buffer, v.data!.byteOffset, v.data!.byteLength).toString('base64')}`;
}

const align4 = (n: number) => Math.max(4, Math.ceil(n / 4) * 4);

/** The buffer behind a tfjs tensor on the webgpu backend (uploading it first if it lives on the host). */
export function tensorBuffer(t: tf.Tensor): GPUBuffer {
  const b = webgpuBackend();
  b.uploadToGPU(t.dataId);
  const res = b.tensorMap.get(t.dataId).resource;
  if (!(res instanceof GPUBuffer)) throw new PlanError('tensor is not in a GPU buffer');
  return res;
}
