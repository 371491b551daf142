// The planned LoRA step (src/training/planned_step.ts) next to the eager one, in the same process, on the
// same model: host ms/step, dispatches/step, submits/step, and the plan's memory. On Dawn's null backend
// (LORA_STUDIO_DAWN_FLAGS=backend=null) the GPU does no work, so the time is all host.
//
// The model has Stable Diffusion 1.5's UNet topology (4 levels, 2 layers per block, 16 transformer blocks,
// 8 heads, 64×64 latents, 77×768 text) with the channels narrowed (`--planned-channels`, default
// 8/16/32/32, GroupNorm groups = the first level's channels up to 32) so that the eager step fits the null
// device: Dawn's null backend refuses allocations past 512 MiB in all, and tfjs' pools hold the eager
// step's peak (≈ 300 MiB at batch 1 with these channels; 32/64/128/128 needs over 512). The command list
// is as long as the real model's, within 1% (4,180 planned dispatches against the real SD 1.5 plan's
// 4,210, planArithmetic), so its host time per step, which does not depend on the channels, is the real one's.
import * as tf from '@tensorflow/tfjs';
import { UNet2DConditionModel } from '../src/core/models/unet_2d_condition.js';
import { DDPMScheduler } from '../src/core/schedulers/ddpm.js';
import { TrainableLora } from '../src/training/lora_params.js';
import { Random } from '../src/training/random.js';
import { AdamW } from '../src/training/adamw.js';
import { clipGradNorm } from '../src/training/grad_clip.js';
import { lossAndGrads, type StepInputs } from '../src/training/train_step.js';
import { PlannedLoraStep, stepShape } from '../src/training/planned_step.js';
import { countCommands } from '../src/core/engine/webgpu/plan/count.js';
import { withVirtualBuffers } from '../src/core/engine/webgpu/plan/trace.js';
import { storedShape } from '../src/core/models/layers.js';
import { Params } from '../src/core/models/params.js';
import { STANDARD_CONFIGS } from '../src/core/models/from_single_file.js';
import { gib, round } from './timing.js';

export const SD15_TOPOLOGY = {
  _class_name: 'UNet2DConditionModel', act_fn: 'silu', attention_head_dim: 8, center_input_sample: false, cross_attention_dim: 768,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  downsample_padding: 1, flip_sin_to_cos: true, freq_shift: 0, in_channels: 4, layers_per_block: 2, mid_block_scale_factor: 1,
  norm_eps: 1e-5, norm_num_groups: 32, out_channels: 4, sample_size: 64,
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
};

export interface PlannedBenchResult {
  name: string;
  batch: number;
  block_out_channels: number[];
  latent: number;
  eager?: { host_ms_per_step: number; dispatches: number; submits: number; copies: number };
  planned?: {
    host_ms_per_step: number; dispatches: number; submits: number; copies: number; trace_ms: number; dead_dispatches: number; pipelines: number;
    activation_gib: number; unplanned_activation_gib: number; constant_gib: number; persistent_gib: number; peak_gib: number;
  };
  host_speedup?: number;
  max_abs_lora_diff_after_steps?: number;
  error?: string;
}

export async function benchPlanned(o: { batch: number; channels: number[]; latent: number; steps: number; small: boolean }, log: (m: string) => void): Promise<PlannedBenchResult> {
  const name = `planned_vs_eager_bs${o.batch}`;
  const r: PlannedBenchResult = { name, batch: o.batch, block_out_channels: o.channels, latent: o.latent };
  const cfg = o.small
    ? { ...SD15_TOPOLOGY, block_out_channels: o.channels, attention_head_dim: 2, cross_attention_dim: 32, down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'], layers_per_block: 1, sample_size: o.latent }
    : { ...SD15_TOPOLOGY, block_out_channels: o.channels, norm_num_groups: Math.min(32, o.channels[0]), sample_size: o.latent };
  const unet = UNet2DConditionModel.random(cfg, 1);
  const hidden = cfg.cross_attention_dim;
  const B = o.batch;
  const scheduler = new DDPMScheduler({ num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear' });
  const adam = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2 };
  const loraE = TrainableLora.gaussian(unet.loraTargets(), 4, 4, new Random(0));
  const loraP = TrainableLora.gaussian(unet.loraTargets(), 4, 4, new Random(0));
  const latents = tf.randomNormal([B, o.latent, o.latent, 4], 0, 1, 'float32', 11) as tf.Tensor4D;
  const ehs = tf.randomNormal([B, 77, hidden], 0, 1, 'float32', 12) as tf.Tensor3D;
  const rng = new Random(7);
  const inputs = (): StepInputs => ({
    latents,
    noise: tf.tensor4d(rng.normal([B, o.latent, o.latent, 4]), [B, o.latent, o.latent, 4]),
    timesteps: Int32Array.from({ length: B }, (_, i) => (137 * (i + 1) + rng.randint(0, 7)[0]) % 1000),
    encoderHiddenStates: ehs,
  });
  const opt = new AdamW(adam);
  const planned = new PlannedLoraStep({ unet, scheduler, lora: loraP, predictionType: 'epsilon', snrGamma: null }, adam, 1.0);
  try {
    const eagerStep = async (x: StepInputs) => {
      const { grads } = await lossAndGrads({ unet, scheduler, lora: loraE, predictionType: 'epsilon', snrGamma: null }, x);
      const clipped = await clipGradNorm(grads, 1.0);
      opt.update(loraE.params, clipped.grads, 1e-4);
      tf.dispose([...grads.values(), ...clipped.grads.values()]);
    };
    const both = async (timed: boolean) => {
      const x = inputs();
      let t0 = performance.now();
      const e = await countCommands(() => eagerStep(x));
      const eMs = performance.now() - t0;
      t0 = performance.now();
      const p = await countCommands(() => planned.step(x, 1e-4));
      const pMs = performance.now() - t0;
      x.noise.dispose();
      return timed ? { eMs, pMs, e: e.counts, p: p.counts } : undefined;
    };
    // Step 1 compiles the pipelines (eager) and traces the plan (planned); step 2 runs AdamW's
    // steady-state kernels; then the timed steps.
    const t0 = performance.now();
    await both(false);
    log(`${name}: first step (compile + trace) ${round(performance.now() - t0, 0)} ms`);
    await both(false);
    const acc = { eMs: 0, pMs: 0 };
    let last: Awaited<ReturnType<typeof both>>;
    for (let i = 0; i < o.steps; i++) {
      last = await both(true);
      acc.eMs += last!.eMs;
      acc.pMs += last!.pMs;
    }
    const st = planned.lastPlan!;
    r.eager = { host_ms_per_step: round(acc.eMs / o.steps, 2), dispatches: last!.e.dispatches, submits: last!.e.submits, copies: last!.e.copies };
    r.planned = {
      host_ms_per_step: round(acc.pMs / o.steps, 2), dispatches: last!.p.dispatches, submits: last!.p.submits, copies: last!.p.copies,
      trace_ms: round(st.traceMs, 1), dead_dispatches: st.deadDispatches, pipelines: st.pipelines,
      activation_gib: gib(st.memory.activationBytes)!, unplanned_activation_gib: gib(st.memory.unplannedActivationBytes)!,
      constant_gib: gib(st.memory.constantBytes)!, persistent_gib: gib(st.memory.persistentBytes)!, peak_gib: gib(st.memory.peakBytes)!,
    };
    r.host_speedup = round(r.eager.host_ms_per_step / r.planned.host_ms_per_step, 1);
    let d = 0;
    for (const [k, t] of loraE.params) {
      const a = await t.data();
      const b = await loraP.params.get(k)!.data();
      for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
    }
    r.max_abs_lora_diff_after_steps = d;
    log(`${name}: eager ${JSON.stringify(r.eager)} planned ${JSON.stringify(r.planned)} ×${r.host_speedup}`);
  } catch (e) {
    r.error = (e as Error).stack ?? (e as Error).message;
    log(`${name}: ERROR ${r.error}`);
  } finally {
    planned.dispose();
    opt.dispose();
    loraE.dispose();
    loraP.dispose();
    tf.dispose([latents, ehs]);
    unet.params.dispose();
  }
  return r;
}

export interface PlanArithmetic {
  name: string;
  batch: number;
  latent: number;
  dispatches?: number;
  copies?: number;
  /** Planned peak, f32: weights + plan activations + constants (GiB). */
  peak_gib?: number;
  /** The same in bytes, as the trainer's `started` event states it (plannedPeakBytes). */
  peak_bytes?: number;
  weights_gib?: number;
  activation_gib?: number;
  unplanned_activation_gib?: number;
  /** The largest single buffer (GiB): it must fit the device's maxStorageBufferBindingSize. */
  largest_buffer_gib?: number;
  /** The same plan with the frozen weights stored as f16 (the arithmetic only: f16 storage is not implemented). */
  peak_gib_if_f16_weights?: number;
  /** The plan with gradient_checkpointing (each resnet and transformer recomputed in the backward pass). */
  checkpointing?: { dispatches: number; peak_gib: number; activation_gib: number; peak_gib_if_f16_weights: number };
  error?: string;
}

/** A real model's step to plan: its UNet config, latent size and text tokens. */
export interface PlanModel {
  readonly name: string;
  readonly unet: Record<string, unknown>;
  readonly latent: number;
  readonly tokens: number;
}

/** SD 1.5 at 512 px: UNet 320/640/1280/1280, 64×64 latents, 77×768 text. */
export const SD15_512: PlanModel = { name: 'sd15_512px', unet: { ...SD15_TOPOLOGY, block_out_channels: [320, 640, 1280, 1280] }, latent: 64, tokens: 77 };
/** SDXL base at 1024 px: the bundled standard UNet config (320/640/1280, 1/2/10 transformer layers, text_time), 128×128 latents, 77×2048 text. */
export const SDXL_1024: PlanModel = { name: 'sdxl_1024px', unet: STANDARD_CONFIGS.xl_base.unet, latent: 128, tokens: 77 };

/**
 * The plan of a real model's UNet LoRA step (r 4 on to_q/to_k/to_v/to_out.0, clip + AdamW) computed without
 * allocating: weights and values are stand-ins (withVirtualBuffers), so it runs on the null device.
 */
export async function planArithmetic(model: PlanModel, batch: number, log: (m: string) => void): Promise<PlanArithmetic> {
  const r: PlanArithmetic = { name: `${model.name}_plan_bs${batch}`, batch, latent: model.latent };
  const cfg = model.unet;
  try {
    await withVirtualBuffers(async () => {
      const b = tf.backend() as unknown as { write(v: null, s: number[], d: string): object };
      const tensors = new Map<string, tf.Tensor>();
      for (const [k, shape] of UNet2DConditionModel.expectedParamShapes(cfg)) {
        const s = storedShape(shape);
        tensors.set(k, tf.engine().makeTensorFromDataId(b.write(null, s, 'float32'), s, 'float32'));
      }
      const unet = new UNet2DConditionModel(cfg, new Params(tensors, 'stand-in weights'));
      const lora = TrainableLora.gaussian(unet.loraTargets(), 4, 4, new Random(0));
      const scheduler = new DDPMScheduler({ num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear' });
      const planned = new PlannedLoraStep({ unet, scheduler, lora, predictionType: 'epsilon', snrGamma: null }, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2 }, 1);
      const shape = stepShape(unet, batch, model.latent, model.tokens);
      const a = shape.addedCond;
      const x: StepInputs = {
        latents: tf.zeros([...shape.latents.shape]), noise: tf.zeros([...shape.latents.shape]), timesteps: new Int32Array(batch).fill(500), encoderHiddenStates: tf.zeros([...shape.encoderHiddenStates.shape]),
        addedCond: a && { textEmbeds: tf.zeros([...a.textEmbeds.shape]), timeIds: tf.zeros([...a.timeIds.shape]) },
      };
      try {
        const st = await planned.analyse(x);
        let weights = 0;
        for (const t of tensors.values()) weights += t.size * 4;
        const m = st.memory;
        Object.assign(r, {
          dispatches: st.dispatches, copies: st.copies, peak_gib: gib(m.peakBytes), peak_bytes: m.peakBytes, weights_gib: gib(weights), activation_gib: gib(m.activationBytes),
          unplanned_activation_gib: gib(m.unplannedActivationBytes), largest_buffer_gib: gib(m.largestBufferBytes), peak_gib_if_f16_weights: gib(m.peakBytes - weights / 2),
        });
        unet.enableGradientCheckpointing();
        const ck = await planned.analyse(x);
        const c = ck.memory;
        r.checkpointing = { dispatches: ck.dispatches, peak_gib: gib(c.peakBytes)!, activation_gib: gib(c.activationBytes)!, peak_gib_if_f16_weights: gib(c.peakBytes - weights / 2)! };
      } finally {
        planned.dispose();
        lora.dispose();
        tf.dispose([x.latents, x.noise, x.encoderHiddenStates, ...(x.addedCond ? [x.addedCond.textEmbeds, x.addedCond.timeIds] : [])]);
        unet.params.dispose();
      }
    });
    log(`${r.name}: ${JSON.stringify(r)}`);
  } catch (e) {
    r.error = (e as Error).stack ?? (e as Error).message;
    log(`${r.name}: ERROR ${r.error}`);
  }
  return r;
}
