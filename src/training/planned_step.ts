// The LoRA training step as a plan (src/core/engine/webgpu/plan/trace.ts): traced once per input shape on
// the webgpu backend, then replayed — one command buffer, one submit and one readback per step.
//
// What one replay does, in order: copy this step's latents, noise and text embeddings (SDXL: also the
// pooled text embeddings and time ids, the UNet's added conditioning) into the plan's input buffers, write the timesteps, min-SNR weights and AdamW scalars (queue.writeBuffer); then the recorded
// UNet forward + backward for the LoRA weights (the same kernels as the eager step in train_step.ts, chosen
// by tfjs once), the gradients copied into one flat buffer, ‖g‖ (one dispatch), clipping + AdamW over the
// flat parameters and moments (one dispatch, src/core/engine/webgpu/optimizer.ts), and the flat
// parameters copied back into the LoRA's own tensors (which therefore stay the same tensors: checkpoints and
// the LoRA file read them as before). Loss and grad norm come back through a small ring of staging buffers:
// `step` resolves when they arrive, and the next step can be encoded before that.
//
// The eager step (lossAndGrads + clipGradNorm + AdamW) is what this is tested against, and what runs on the
// other backends and for gradient accumulation > 1.
import * as tf from '@tensorflow/tfjs';
import { copyBytes, webgpuBackend } from '../core/engine/webgpu/dispatch.js';
import { adamwFlat, adamwScalars, ADAMW_SCALAR_COUNT, gradNorm } from '../core/engine/webgpu/optimizer.js';
import { Plan, tensorBuffer, traceStep, type PlanStats } from '../core/engine/webgpu/plan/trace.js';
import { minSnrWeights, type StepInputs, type StepModels } from './train_step.js';
import type { AdamWOptions, AdamWState } from './adamw.js';
import type { AddedCondKwargs, UNet2DConditionModel } from '../core/models/unet_2d_condition.js';

export interface PlannedStepResult {
  readonly loss: number;
  /** ‖g‖₂ before clipping. */
  readonly gradNorm: number;
}

interface ShapePlan {
  readonly plan: Plan;
  readonly latents: tf.Tensor4D;
  readonly noise: tf.Tensor4D;
  readonly timesteps: tf.Tensor1D;
  readonly hidden: tf.Tensor3D;
  /** SDXL (addition_embed_type text_time): the pooled text embeddings and time ids, written per step. */
  readonly added?: AddedCondKwargs;
  readonly snrWeights: tf.Tensor1D;
  /** Host ms of the recorded (eager) run, and its submits. */
  readonly traceMs: number;
  readonly eagerSubmits: number;
}

/** The shapes a plan is keyed by (tensors, or just their shapes). */
export interface StepShape {
  readonly latents: { readonly shape: readonly number[] };
  readonly encoderHiddenStates: { readonly shape: readonly number[] };
  readonly addedCond?: { readonly textEmbeds: { readonly shape: readonly number[] }; readonly timeIds: { readonly shape: readonly number[] } };
}

const shapeKey = (x: StepShape) =>
  [x.latents, x.encoderHiddenStates, ...(x.addedCond ? [x.addedCond.textEmbeds, x.addedCond.timeIds] : [])].map((t) => t.shape.join('x')).join('|');

/** The tensors a shape's plan reads its inputs from (made once per shape, written every step). */
const inputTensors = (sp: ShapePlan): tf.Tensor[] => [sp.latents, sp.noise, sp.timesteps, sp.hidden, sp.snrWeights, ...(sp.added ? [sp.added.textEmbeds, sp.added.timeIds] : [])];

export class PlannedLoraStep {
  private readonly names: string[];
  private readonly offsets: number[] = [];
  private readonly flat: tf.Tensor1D;
  private readonly m: tf.Tensor1D;
  private readonly v: tf.Tensor1D;
  /** [loss, grad norm]. */
  private readonly result: tf.Tensor1D;
  private readonly scalars: tf.Tensor1D;
  private readonly plans = new Map<string, ShapePlan>();
  private readonly staging: GPUBuffer[] = [];
  private stepCount = 0;
  private last: ShapePlan | undefined;
  /** Queue submits of the last replay (the plan's own: 1). */
  submitsPerStep = 0;

  constructor(private readonly models: StepModels, private readonly adam: AdamWOptions, private readonly maxGradNorm: number) {
    webgpuBackend(); // refuses other backends
    this.names = [...models.lora.params.keys()];
    let n = 0;
    for (const name of this.names) {
      this.offsets.push(n);
      n += models.lora.params.get(name)!.size;
    }
    this.flat = tf.keep(tf.concat(this.names.map((k) => models.lora.params.get(k)!.reshape([-1])))) as tf.Tensor1D;
    this.m = tf.keep(tf.zeros([n])) as tf.Tensor1D;
    this.v = tf.keep(tf.zeros([n])) as tf.Tensor1D;
    this.result = tf.keep(tf.zeros([2])) as tf.Tensor1D;
    this.scalars = tf.keep(tf.zeros([ADAMW_SCALAR_COUNT])) as tf.Tensor1D;
    for (const t of [this.flat, this.m, this.v, this.result, this.scalars]) tensorBuffer(t);
    for (const p of models.lora.params.values()) tensorBuffer(p);
  }

  /** The plan the last step ran (traced for a shape on its first step). */
  get lastPlan(): (PlanStats & { traceMs: number; eagerSubmits: number; shapes: number }) | undefined {
    const p = this.last;
    return p && { ...p.plan.stats, traceMs: p.traceMs, eagerSubmits: p.eagerSubmits, shapes: this.plans.size };
  }

  /** One step at learning rate `lr`: loss and grad norm (resolved when the readback arrives). */
  async step(x: StepInputs, lr: number): Promise<PlannedStepResult> {
    const b = webgpuBackend();
    const device = b.device;
    // Inputs still on the host (e.g. a batch's time ids, made by tf.tensor2d) get their buffers now: tfjs may
    // fill a reused buffer through its own command encoder, which must be submitted before the plan copies
    // from it (else the copy reads the buffer's previous contents). Then whatever tfjs queued goes first.
    for (const t of [x.latents, x.noise, x.encoderHiddenStates, ...(x.addedCond ? [x.addedCond.textEmbeds, x.addedCond.timeIds] : [])]) tensorBuffer(t);
    if (b.commandEncoder) {
      b.endComputePassEncoder();
      b.submitQueue();
    }
    const sp = this.plans.get(shapeKey(x)) ?? (await this.plan(x));
    this.stepCount++;
    this.last = sp;
    this.writeInputs(device, sp, x, lr);
    const encoder = device.createCommandEncoder();
    this.copyInputs(encoder, sp, x);
    sp.plan.encode(encoder);
    return this.readback(device, encoder);
  }

  /**
   * Traces and builds the plan for `x`'s shape (only shapes matter: nothing of `x` is read), refusing one
   * the device cannot hold (PlanMemoryError). `step` does this itself for a shape it has not seen; the
   * trainer calls it before the first step to report the plan's memory.
   */
  async plan(x: StepShape): Promise<ShapePlan> {
    const b = webgpuBackend();
    if (b.commandEncoder) {
      b.endComputePassEncoder();
      b.submitQueue();
    }
    const inputs = this.allocateInputs(x);
    try {
      const trace = await traceStep(() => this.record(inputs));
      const sp = { ...inputs, plan: await Plan.create(trace), traceMs: trace.eagerMs, eagerSubmits: trace.eagerSubmits };
      this.plans.set(shapeKey(x), sp);
      return sp;
    } catch (e) {
      tf.dispose(inputTensors(inputs));
      throw e;
    }
  }

  /** The stats of the plan for a shape already planned. */
  statsFor(x: StepShape): PlanStats | undefined {
    return this.plans.get(shapeKey(x))?.plan.stats;
  }

  /**
   * What the plan for `x`'s shape would be, without building it or running anything: the trace needs no
   * memory for the step's values, and with the model's weights made under withVirtualBuffers neither do
   * they, so the figures of a model of any size come out on any device (the null one included).
   */
  async analyse(x: StepInputs): Promise<PlanStats> {
    const sp = this.allocateInputs(x);
    try {
      const trace = await traceStep(() => this.record(sp));
      Plan.release(trace);
      return Plan.analyse(trace).stats;
    } finally {
      tf.dispose(inputTensors(sp));
    }
  }

  private allocateInputs(x: StepShape): ShapePlan {
    const keep = <T extends tf.Tensor>(t: T): T => {
      tf.keep(t);
      tensorBuffer(t);
      return t;
    };
    const B = x.latents.shape[0];
    const a = x.addedCond;
    return {
      plan: undefined as unknown as Plan,
      latents: keep(tf.zeros<tf.Rank>([...x.latents.shape]) as tf.Tensor4D),
      noise: keep(tf.zeros<tf.Rank>([...x.latents.shape]) as tf.Tensor4D),
      timesteps: keep(tf.zeros<tf.Rank>([B], 'int32')) as tf.Tensor1D,
      hidden: keep(tf.zeros<tf.Rank>([...x.encoderHiddenStates.shape]) as tf.Tensor3D),
      added: a && { textEmbeds: keep(tf.zeros<tf.Rank>([...a.textEmbeds.shape]) as tf.Tensor2D), timeIds: keep(tf.zeros<tf.Rank>([...a.timeIds.shape]) as tf.Tensor2D) },
      snrWeights: keep(tf.ones([B])) as tf.Tensor1D,
      traceMs: 0,
      eagerSubmits: 0,
    };
  }

  private writeInputs(device: GPUDevice, sp: ShapePlan, x: StepInputs, lr: number): void {
    const q = device.queue;
    q.writeBuffer(tensorBuffer(sp.timesteps), 0, Int32Array.from(x.timesteps));
    const m = this.models;
    if (m.snrGamma != null) q.writeBuffer(tensorBuffer(sp.snrWeights), 0, minSnrWeights(m.scheduler, [...x.timesteps], m.snrGamma, m.predictionType));
    q.writeBuffer(tensorBuffer(this.scalars), 0, adamwScalars(this.stepCount, lr, this.adam, this.maxGradNorm));
  }

  private copyInputs(encoder: GPUCommandEncoder, sp: ShapePlan, x: StepInputs): void {
    const pairs: [tf.Tensor, tf.Tensor][] = [[x.latents, sp.latents], [x.noise, sp.noise], [x.encoderHiddenStates, sp.hidden]];
    // The plan's key includes the added conditioning's shapes, so a plan has it exactly when the step does.
    if (sp.added && x.addedCond) pairs.push([x.addedCond.textEmbeds, sp.added.textEmbeds], [x.addedCond.timeIds, sp.added.timeIds]);
    for (const [src, dst] of pairs) {
      // Raw bytes: an int32 tensor copied into a float32 input would be read as other numbers.
      if (src.dtype !== 'float32') throw new Error(`planned step: step inputs must be float32, got a ${src.dtype} tensor of shape ${JSON.stringify(src.shape)}`);
      encoder.copyBufferToBuffer(tensorBuffer(src), 0, tensorBuffer(dst), 0, src.size * 4);
    }
  }

  /** The step, as tfjs runs it eagerly (recorded by traceStep). */
  private record(sp: ShapePlan): void {
    const b = webgpuBackend();
    const m = this.models;
    tf.tidy(() => {
      const values = this.names.map((n) => m.lora.params.get(n)!);
      const f = (...params: tf.Tensor[]) => {
        const lookup = m.lora.lookup(new Map(this.names.map((n, i) => [n, params[i]])));
        return plannedLoss(m, sp, lookup);
      };
      const { value, grads } = tf.valueAndGrads(f)(values);
      copyBytes(b, value, 0, this.result, 0, 4);
      const flatGrads = tf.zeros([this.flat.size]) as tf.Tensor1D;
      grads.forEach((g, i) => copyBytes(b, g, 0, flatGrads, this.offsets[i] * 4, g.size * 4));
      gradNorm(flatGrads, this.result, 1);
      adamwFlat(flatGrads, this.result, 1, this.scalars, this.flat, this.m, this.v);
      values.forEach((p, i) => copyBytes(b, this.flat, this.offsets[i] * 4, p, 0, p.size * 4));
    });
  }

  private async readback(device: GPUDevice, encoder: GPUCommandEncoder | null): Promise<PlannedStepResult> {
    const enc = encoder ?? device.createCommandEncoder();
    const staging = this.staging.pop() ?? device.createBuffer({ size: 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'planned step readback' });
    enc.copyBufferToBuffer(tensorBuffer(this.result), 0, staging, 0, 8);
    device.queue.submit([enc.finish()]);
    this.submitsPerStep = 1;
    await staging.mapAsync(GPUMapMode.READ);
    const [loss, norm] = new Float32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    this.staging.push(staging);
    return { loss, gradNorm: norm };
  }

  /** The AdamW step count so far (for checkpoints). */
  get steps(): number {
    return this.stepCount;
  }

  /** AdamW's state as src/training/adamw.ts exports it (per-parameter moments by name): what checkpoints save. */
  async exportState(): Promise<AdamWState> {
    const [m, v] = (await Promise.all([this.m.data(), this.v.data()])) as Float32Array[];
    const expAvg = new Map<string, Float32Array>();
    const expAvgSq = new Map<string, Float32Array>();
    this.names.forEach((name, i) => {
      const n = this.models.lora.params.get(name)!.size;
      expAvg.set(name, m.slice(this.offsets[i], this.offsets[i] + n));
      expAvgSq.set(name, v.slice(this.offsets[i], this.offsets[i] + n));
    });
    return { step: this.stepCount, expAvg, expAvgSq };
  }

  /** Restores a saved state (a checkpoint's, from AdamW or from a planned step). */
  importState(state: AdamWState): void {
    const m = new Float32Array(this.flat.size);
    const v = new Float32Array(this.flat.size);
    this.names.forEach((name, i) => {
      const n = this.models.lora.params.get(name)!.size;
      const em = state.expAvg.get(name);
      const ev = state.expAvgSq.get(name);
      if (!em || !ev) throw new Error(`optimizer state has no exp_avg / exp_avg_sq for ${name}`);
      if (em.length !== n || ev.length !== n) throw new Error(`optimizer state for ${name} has ${em.length} values, the parameter ${n}`);
      m.set(em, this.offsets[i]);
      v.set(ev, this.offsets[i]);
    });
    const q = webgpuBackend().device.queue;
    q.writeBuffer(tensorBuffer(this.m), 0, m);
    q.writeBuffer(tensorBuffer(this.v), 0, v);
    this.stepCount = state.step;
  }

  dispose(): void {
    for (const sp of this.plans.values()) {
      sp.plan.dispose();
      tf.dispose(inputTensors(sp));
    }
    this.plans.clear();
    tf.dispose([this.flat, this.m, this.v, this.result, this.scalars]);
    for (const s of this.staging) s.destroy();
    this.staging.length = 0;
  }
}

/** diffusionLoss (train_step.ts) reading the timesteps and min-SNR weights from the plan's input tensors. */
function plannedLoss(m: StepModels, x: ShapePlan, lora: Parameters<StepModels['unet']['forward']>[3]): tf.Scalar {
  return tf.tidy(() => {
    const ts = x.timesteps;
    const noisy = m.scheduler.addNoise(x.latents, x.noise, ts) as tf.Tensor4D;
    const target = m.predictionType === 'epsilon' ? x.noise : m.scheduler.getVelocity(x.latents, x.noise, ts);
    const pred = m.unet.forward(noisy, tf.cast(ts, 'float32') as tf.Tensor1D, x.hidden, lora, x.added);
    const sq = tf.squaredDifference(pred, target);
    if (m.snrGamma == null) return tf.mean(sq) as tf.Scalar;
    return tf.mean(tf.mean(sq, [1, 2, 3]).mul(x.snrWeights)) as tf.Scalar;
  });
}

/** Set to 1 to train with the eager step on webgpu too (the reference the planned step is tested against). */
export const EAGER_STEP_ENV = 'LORA_STUDIO_EAGER_STEP';

/** Why a run on the webgpu backend takes the eager step (undefined: it takes the planned one). */
export function eagerStepReason(o: { gradientAccumulationSteps: number; textEncoder: boolean; dropout: boolean; network: string }): string | undefined {
  if (process.env[EAGER_STEP_ENV] === '1') return `${EAGER_STEP_ENV}=1`;
  if (o.gradientAccumulationSteps > 1) return 'gradient_accumulation_steps > 1 is not planned yet';
  if (o.textEncoder) return 'train_text_encoder is not planned yet';
  if (o.dropout) return 'lora_dropout is not planned yet';
  if (o.network !== 'lora') return `network_type ${o.network} is not planned yet`;
  return undefined;
}

/**
 * The trainer's planned step on webgpu: made, and planned for the run's base shape (train_batch_size
 * images at `resolution`; another bucket's shape is planned when it first comes), before the first step,
 * so that the plan's memory is known (and refused when the device cannot hold it) before training starts.
 */
export async function startPlannedStep(
  models: StepModels,
  o: { adam: AdamWOptions; maxGradNorm: number; batchSize: number; latentSize: number; tokens: number; resume?: AdamWState },
): Promise<{ step: PlannedLoraStep; stats: PlanStats }> {
  const step = new PlannedLoraStep(models, o.adam, o.maxGradNorm);
  try {
    if (o.resume) step.importState(o.resume);
    const { plan } = await step.plan(stepShape(models.unet, o.batchSize, o.latentSize, o.tokens));
    return { step, stats: plan.stats };
  } catch (e) {
    step.dispose();
    throw e;
  }
}

/** The step's input shapes for `batch` square latents of `latentSize` and `tokens` text tokens (SDXL: with its added conditioning). */
export function stepShape(unet: UNet2DConditionModel, batch: number, latentSize: number, tokens: number): StepShape {
  const cfg = unet.config;
  const added = unet.addedCondShapes(batch);
  return {
    latents: { shape: [batch, latentSize, latentSize, cfg.in_channels] },
    encoderHiddenStates: { shape: [batch, tokens, cfg.cross_attention_dim as number] },
    addedCond: added && { textEmbeds: { shape: added.textEmbeds }, timeIds: { shape: added.timeIds } },
  };
}
