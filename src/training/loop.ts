// The training loop of diffusers' examples/text_to_image/train_text_to_image_lora.py, for one device:
//
//   for epoch: for micro-batch in shuffled data:
//     latents ~ VAE(pixels) · scaling_factor, noise (+ offset), t ~ U{0..T−1}, loss on the UNet + LoRA
//     gradients of loss / gradient_accumulation_steps summed over the accumulation group, then
//     clip_grad_norm_(max_grad_norm) → AdamW step with the lr schedule → checkpoint every checkpointing_steps
//   validation images every validation_epochs; at the end pytorch_lora_weights.safetensors.
//
// Length, as the guide computes it: update steps per epoch = ceil(ceil(N / batch) / accumulation);
// max_train_steps, when not given, = num_train_epochs · that; the loop runs ceil(max_train_steps / that)
// epochs and stops at max_train_steps. The last accumulation group of an epoch may be short (accelerate
// syncs at the end of the dataloader) and still divides by gradient_accumulation_steps, as accelerate does.
//
// Determinism and exact resume: every random number comes from generators derived from the seed (see
// random.ts). A checkpoint stores the training generator's state and the next micro-batch's (epoch,
// index); the epoch's order is a function of (seed, epoch), and cached latents/embeddings are rebuilt
// from the seed. So a run interrupted at any checkpoint and resumed ends with bit-identical weights.
//
// cache_latents: the VAE runs once per image, before training, and its latent distribution (mean, std) is
// kept; the latent sample mean + std·ε is still drawn fresh every step, as the guide does. With
// random_flip both orientations are cached and the flip is still drawn every step. A random crop
// (center_crop false, images larger than the resolution) is drawn once, at caching: that one
// augmentation is frozen (a warning says so); set cache_latents: false to redraw it every step.
import path from 'node:path';
import crypto from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import type { RunConfig, PredictionType } from '../core/config/run_config.js';
import { initBackend, type BackendInfo } from '../core/engine/backend.js';
import { loadStableDiffusion, encodePrompts, disposeEmbeddings, disposeStableDiffusion, GenerationCancelled, type StableDiffusion } from '../core/pipeline/stable_diffusion.js';
import { DDPMScheduler } from '../core/schedulers/ddpm.js';
import { writeLoraFile, type LoraToWrite } from '../core/lora/lora_writer.js';
import { baseModelVersion, loraTrainingMetadata, type DatasetDirInfo } from '../core/lora/metadata.js';
import { ldmUnetPaths } from '../core/lora/formats.js';
import { LORA_STUDIO_VERSION } from '../core/config/version.js';
import type { ErrorCode, FinishedEvent } from '../protocol/training.js';
import { formatBytes } from '../protocol/format.js';
import { resolveModelDir, openRunDataset, pushRun, recordableConfig } from './hub.js';
import sharp from 'sharp';
import { decodeRgb, pickCaption, DatasetError, type Dataset, type Example } from './dataset.js';
import { resizeShortestSide, resizedSize, centerCrop, randomCrop, centerCropTopLeft, crop, flipHorizontal, toNormalizedPixels, type RgbImage } from './image_transforms.js';
import { sdxlTimeIds } from '../core/models/unet_2d_condition.js';
import { bucketRangeProblem, planBuckets, fitToBucket, epochBatches, bucketInfoMetadata, type BucketPlan } from './buckets.js';
import { processCaption, captionsAreFixed, type CaptionOptions } from './captions.js';
import { parseSamplePrompts, SamplePromptError, type SamplePrompt } from '../core/config/sample_prompts.js';
import { Random, streamSeed, freshSeed } from './random.js';
import { TrainableLora, dropoutMasksFrom } from './lora_params.js';
import { networkOptions, networkTargets, networkMetadata } from './network.js';
import { NetworkWeightsError, networkWeightsStart, type RunNetwork, type StartWeights } from './network_weights.js';
import { AdamW } from './adamw.js';
import { clipGradNorm } from './grad_clip.js';
import { lrAt } from './lr_schedules.js';
import { lossAndGrads, diffusionLoss, type StepInputs, type StepModels, type TextEncoderStepInputs } from './train_step.js';
import { saveCheckpoint, loadCheckpoint, resolveResume, pruneCheckpoints, CheckpointError, DiskFullError, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, type Checkpoint, type TrainingState } from './checkpoints.js';
import { eagerStepReason, startPlannedStep, type PlannedLoraStep } from './planned_step.js';
import { PlanMemoryError, type PlanStats } from '../core/engine/webgpu/plan/trace.js';
import { MetricsWriter } from './metrics.js';
import { ControlRequests, type EventSink } from './events.js';
import { generateSamples, type SampleJob } from './validation.js';
import { acquireRunLock, RunLockedError, type RunLock } from '../core/config/run_lock.js';
import { FiniteGuard, NonFiniteError, NON_FINITE_HINT, checkResumedWeights } from './finite_guard.js';
import { FINAL_SAMPLES, LORA_FILE, METRICS_FILE, SAMPLES_DIR, kohyaLoraFile, removeCheckpointTemporaries, runOutputName, sampleLabel } from '../core/config/run_folder.js';


export interface TrainHooks {
  /** After every optimizer step, before checkpoint/stop handling (tests ask for a stop at a given step here). */
  afterStep?(step: number, requests: ControlRequests): void;
  /** With a checkpoint's temporary folder complete, just before it is renamed into place. */
  beforeCheckpointPublish?(tmpDir: string): void;
}

export interface TrainOptions {
  /** A validated run config with absolute paths (config/load.ts). */
  readonly config: RunConfig;
  readonly configPath?: string;
  readonly events: EventSink;
  readonly requests?: ControlRequests;
  readonly hooks?: TrainHooks;
}

export interface TrainResult {
  readonly status: 'completed' | 'stopped' | 'failed';
  readonly step: number;
  readonly outputs?: FinishedEvent['outputs'];
  readonly error?: TrainingError;
}

export class TrainingError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'TrainingError';
  }
}

/** How long the run is, computed as the guide does. */
export interface RunPlan {
  readonly numExamples: number;
  readonly batchesPerEpoch: number;
  readonly updatesPerEpoch: number;
  readonly maxTrainSteps: number;
  readonly numEpochs: number;
  readonly learningRate: number;
}

/** `batchesPerEpoch`: given with buckets (each bucket's last batch may be short), else ceil(N / batch). */
export function planRun(c: RunConfig, numExamples: number, batchesPerEpoch = Math.ceil(numExamples / c.train_batch_size)): RunPlan {
  const updatesPerEpoch = Math.ceil(batchesPerEpoch / c.gradient_accumulation_steps);
  const maxTrainSteps = c.max_train_steps ?? c.num_train_epochs * updatesPerEpoch;
  const numEpochs = Math.ceil(maxTrainSteps / updatesPerEpoch);
  const learningRate = c.scale_lr ? c.learning_rate * c.gradient_accumulation_steps * c.train_batch_size : c.learning_rate;
  return { numExamples, batchesPerEpoch, updatesPerEpoch, maxTrainSteps, numEpochs, learningRate };
}

/** Settings a resumed run must share with its checkpoint for the continuation to be the same run. */
function fingerprint(c: RunConfig, numExamples: number, predictionType: PredictionType): Record<string, unknown> {
  return {
    numExamples,
    train_batch_size: c.train_batch_size,
    gradient_accumulation_steps: c.gradient_accumulation_steps,
    resolution: c.resolution,
    center_crop: c.center_crop,
    random_flip: c.random_flip,
    rank: c.rank,
    cache_latents: c.cache_latents,
    prediction_type: predictionType,
    noise_offset: c.noise_offset,
    // Keys added later are recorded only when they change the run, so older checkpoints still resume.
    ...(c.lora_alpha !== null && c.lora_alpha !== c.rank ? { lora_alpha: c.lora_alpha } : {}),
    ...(c.enable_bucket ? { buckets: [c.min_bucket_reso, c.max_bucket_reso, c.bucket_reso_steps] } : {}),
    ...(c.validation_split > 0 ? { validation_split: c.validation_split } : {}),
    ...(c.network_type !== 'lora' ? { network_type: c.network_type } : {}),
    ...(c.train_text_encoder ? { train_text_encoder: true } : {}),
    ...(c.lora_dropout > 0 ? { lora_dropout: c.lora_dropout } : {}),
    ...(c.caption_dropout_rate > 0 || c.shuffle_caption ? { captions: [c.caption_dropout_rate, c.shuffle_caption, c.keep_tokens] } : {}),
  };
}

/** Where each example goes: its pixel size, and the bucket plan when bucketing. */
interface Layout {
  /** Per example: bucket index (buckets only). */
  readonly bucketOf?: number[];
  readonly plan?: BucketPlan;
}

/** A latent distribution kept per image (and per orientation when flipping). */
interface CachedLatents {
  readonly mean: tf.Tensor3D;
  readonly std: tf.Tensor3D;
  /** SDXL's micro-conditioning of this image variant: original (h, w), crop top-left, target size (sdxlTimeIds). */
  readonly timeIds: number[];
}

/** Runs a training, reporting through `events`. Never throws for training problems: they end in an `error` event and status 'failed'. */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const session = new TrainingSession(o);
  try {
    return await session.run();
  } catch (e) {
    const err = e instanceof TrainingError ? e : classify(e);
    o.events.emit({ type: 'error', code: err.code, message: err.message, hint: err.hint });
    o.events.log(`error: ${err.message}${err.hint ? `\n  ${err.hint}` : ''}`);
    if (process.env.LORA_STUDIO_DEBUG && e instanceof Error && e.stack) o.events.log(e.stack);
    return { status: 'failed', step: session.globalStep, error: err };
  } finally {
    session.dispose();
  }
}

function classify(e: unknown): TrainingError {
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof DatasetError) return new TrainingError('dataset', msg, 'fix or remove the files listed, then run again');
  if (e instanceof RunLockedError) return new TrainingError('locked', msg, e.hint);
  if (e instanceof NonFiniteError) return new TrainingError('nan_loss', msg, NON_FINITE_HINT);
  if (e instanceof DiskFullError || (e as NodeJS.ErrnoException).code === 'ENOSPC') return new TrainingError('io', msg, 'free space on that disk (or lower checkpoints_total_limit), then run again with resume_from_checkpoint: latest');
  if (e instanceof CheckpointError) return new TrainingError('io', msg, 'point resume_from_checkpoint at a complete checkpoint-<step> folder, or remove it to start afresh');
  if (/out of memory|OOM|allocation failed|Array buffer allocation/i.test(msg)) {
    return new TrainingError('out_of_memory', msg, 'turn on gradient_checkpointing, or lower train_batch_size (raise gradient_accumulation_steps to keep the effective batch) or resolution');
  }
  return new TrainingError('internal', msg);
}

class TrainingSession {
  private readonly c: RunConfig;
  private readonly ev: EventSink;
  private readonly req: ControlRequests;
  globalStep = 0;
  private sd?: StableDiffusion;
  private scheduler?: DDPMScheduler;
  private lora?: TrainableLora;
  private opt?: AdamW;
  /** webgpu: the planned step, which holds the optimizer state instead of `opt` (src/training/planned_step.ts). */
  private planned?: PlannedLoraStep;
  private metrics?: MetricsWriter;
  private readonly textCache = new Map<string, tf.Tensor2D>();
  /** SDXL: each caption's pooled embedding (the second text encoder's text_embeds). */
  private readonly pooledCache = new Map<string, tf.Tensor1D>();
  private latentCache: CachedLatents[][] = [];
  private samples: string[] = [];
  private layout: Layout = {};
  private samplePrompts: SamplePrompt[] = [];
  private heldOut: Example[] = [];
  /** The training images' folder as the LoRA's metadata records it (base name, count, captions). */
  private datasetDir?: DatasetDirInfo;
  private heldOutLatents: { mean: tf.Tensor4D; std: tf.Tensor4D }[] = [];
  private lastCheckpoint?: string;
  private lock?: RunLock;
  private guard = new FiniteGuard(0);

  constructor(private readonly o: TrainOptions) {
    this.c = o.config;
    this.ev = o.events;
    this.req = o.requests ?? new ControlRequests();
  }

  async run(): Promise<TrainResult> {
    const c = this.c;
    const started = Date.now();
    // One run per output_dir (before anything there is touched, temporaries included).
    try {
      this.lock = acquireRunLock(c.output_dir, {
        command: `lora-studio train${this.o.configPath ? ` ${path.basename(this.o.configPath)}` : ''}`,
        onTakeOver: (message) => this.ev.emit({ type: 'warning', code: 'stale_lock', message }),
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (!code || !['ENOENT', 'EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EEXIST'].includes(code)) throw e;
      throw new TrainingError('io', `output_dir ${c.output_dir} cannot be created: ${(e as Error).message}`, 'set output_dir to a folder you can write to');
    }
    const backend = await this.initBackend();
    removeCheckpointTemporaries(c.output_dir);

    // Resume first: the checkpoint decides the seed.
    let resume: Checkpoint | undefined;
    if (c.resume_from_checkpoint) {
      const dir = resolveResume(c.output_dir, c.resume_from_checkpoint);
      if (dir) {
        resume = loadCheckpoint(dir);
        checkResumedWeights(dir, resume.lora);
        this.ev.log(`resuming from ${dir} (step ${resume.step})`);
      } else {
        this.ev.emit({ type: 'warning', code: 'no_checkpoint', message: `resume_from_checkpoint: latest, but ${c.output_dir} has no checkpoint yet; starting a new run` });
      }
    }
    const seed = resume?.state.seed ?? c.seed ?? freshSeed();
    if (resume && c.seed !== null && c.seed !== resume.state.seed) {
      this.ev.emit({ type: 'warning', code: 'seed_changed', message: `the checkpoint was trained with seed ${resume.state.seed}; continuing with it (the config says ${c.seed})` });
    }
    if (c.seed === null && !resume) this.ev.log(`seed: ${seed} (none given; set seed: ${seed} to repeat this run)`);

    try {
      this.samplePrompts = parseSamplePrompts(c.sample_prompts);
    } catch (e) {
      if (e instanceof SamplePromptError) throw new TrainingError('config', e.message, 'write each entry as kohya does: prompt --n negative --d seed --s steps --l guidance --ss sampler');
      throw e;
    }
    const fail = (code: ErrorCode, message: string, hint?: string) => new TrainingError(code, message, hint);
    const modelDir = await resolveModelDir(c, this.ev, this.req, fail);
    const opened = await openRunDataset(c, seed, this.ev, this.req, fail);
    const dataset = this.splitValidation(opened, seed);
    this.datasetDir = {
      name: path.basename(c.dataset_name ?? c.train_data_dir ?? 'dataset'),
      imageCount: dataset.examples.length,
      captions: dataset.examples.flatMap((e) => e.captions),
    };
    this.ev.log(`dataset: ${dataset.examples.length} images (${dataset.layout}) from ${c.dataset_name ?? c.train_data_dir}${this.heldOut.length ? `, ${this.heldOut.length} held out for the validation loss` : ''}`);

    const sd = this.loadModel(modelDir);
    const scheduler = (this.scheduler = new DDPMScheduler(sd.schedulerConfig));
    const predictionType = (c.prediction_type ?? scheduler.config.prediction_type) as PredictionType;
    if (predictionType !== 'epsilon' && predictionType !== 'v_prediction') {
      throw new TrainingError('config', `the model's scheduler predicts "${predictionType}"; training supports epsilon and v_prediction`, 'set prediction_type: epsilon or v_prediction');
    }
    this.layout = await this.planLayout(dataset, sd);
    const batchesPerEpoch = this.layout.plan ? epochBatches(seed, 0, dataset.examples.length, c.train_batch_size, this.layout.bucketOf).length : undefined;
    const plan = planRun(c, dataset.examples.length, batchesPerEpoch);
    const print = fingerprint(c, dataset.examples.length, predictionType);
    if (resume) checkFingerprint(resume, print);

    const choice = { networkType: c.network_type, trainTextEncoder: c.train_text_encoder, dropout: c.lora_dropout };
    const targets = networkTargets(sd, choice);
    const alpha = c.lora_alpha ?? c.rank;
    const options = networkOptions(sd, choice);
    // network_weights: start from a LoRA file (any tool's); a resumed run's checkpoint holds the weights instead.
    if (resume && c.network_weights) this.ev.log(`network_weights not read: resuming from ${resume.dir}, which holds the weights`);
    const start = !resume && c.network_weights ? await this.startWeights(c.network_weights, sd, { targets, rank: c.rank, alpha, choice, options }) : undefined;
    const lora = (this.lora = resume
      ? TrainableLora.fromWeights(targets, c.rank, alpha, resume.lora, options)
      : start
        ? TrainableLora.fromWeights(targets, c.rank, alpha, start, options)
        : TrainableLora.gaussian(targets, c.rank, alpha, new Random(streamSeed(seed, 'init')), options));
    const opt = (this.opt = new AdamW({ beta1: c.adam_beta1, beta2: c.adam_beta2, eps: c.adam_epsilon, weightDecay: c.adam_weight_decay }));
    if (resume) opt.importState(resume.optimizer, lora.shapes());
    // diffusers' unet.enable_gradient_checkpointing(): resnets and transformers recompute their activations
    // in the backward pass (the eager step and the planned one alike).
    sd.unet.enableGradientCheckpointing(c.gradient_checkpointing);
    const stepModels = { unet: sd.unet, scheduler, lora, predictionType, snrGamma: c.snr_gamma, textEncoder: sd.textEncoder };
    const planned = backend.name === 'webgpu' ? await this.startPlanned(stepModels, opt, resume) : undefined;
    const rng = resume ? Random.fromState(resume.state.rng) : new Random(streamSeed(seed, 'training'));
    this.globalStep = resume?.step ?? 0;
    const startStep = this.globalStep;
    this.guard = new FiniteGuard(startStep, resume?.dir);
    let epoch = resume?.state.epoch ?? 0;
    let batchInEpoch = resume?.state.batchInEpoch ?? 0;
    const elapsedBefore = resume?.state.elapsedSeconds ?? 0;

    this.metrics = new MetricsWriter(path.join(c.output_dir, METRICS_FILE), resume ? resume.step : undefined);
    const runId = `${new Date().toISOString().replace(/[-:.TZ]/g, '').slice(0, 14)}-${crypto.randomBytes(3).toString('hex')}`;
    this.ev.emit({
      type: 'started',
      runId,
      configPath: this.o.configPath,
      outputDir: c.output_dir,
      backend: backend.name,
      adapter: backend.adapter,
      softwareAdapter: backend.software,
      totalSteps: plan.maxTrainSteps,
      numEpochs: plan.numEpochs,
      startStep: this.globalStep,
      numExamples: plan.numExamples,
      batchSize: c.train_batch_size,
      gradientAccumulationSteps: c.gradient_accumulation_steps,
      loraParameters: lora.parameterCount,
      plannedPeakBytes: planned?.stats.memory.peakBytes,
      numValidationExamples: this.heldOut.length || undefined,
      buckets: this.layout.plan?.counts.map((b) => ({ ...b })),
      time: new Date().toISOString(),
    });
    this.ev.log(
      `training: ${plan.numExamples} examples, batch ${c.train_batch_size} × accumulation ${c.gradient_accumulation_steps}, ` +
        `${plan.maxTrainSteps} steps (${plan.numEpochs} epochs), lr ${plan.learningRate} ${c.lr_scheduler}, rank ${c.rank}${alpha !== c.rank ? ` alpha ${alpha}` : ''} ` +
        `(${lora.parameterCount} parameters), ${predictionType}${c.snr_gamma !== null ? `, min-SNR γ ${c.snr_gamma}` : ''}, backend ${backend.name}`,
    );

    if (this.layout.plan) this.ev.log(`buckets: ${this.layout.plan.counts.map((b) => `${b.width}×${b.height}: ${b.count}`).join(', ')} (mean aspect error ${this.layout.plan.meanAspectError.toFixed(3)})`);

    // Caching can take a while on big datasets: after `started`, so the host already shows the run.
    this.ev.emit({ type: 'phase', phase: 'caching', step: this.globalStep });
    await this.cacheTextEmbeddings(dataset);
    if (c.cache_latents) await this.cacheLatents(dataset, seed);
    await this.cacheHeldOut();
    this.ev.emit({ type: 'phase', phase: 'training', step: this.globalStep });

    const runStart = Date.now();
    const elapsed = () => elapsedBefore + (Date.now() - runStart) / 1000;
    const stateAt = (): TrainingState => ({
      format: CHECKPOINT_FORMAT,
      version: CHECKPOINT_VERSION,
      globalStep: this.globalStep,
      epoch,
      batchInEpoch,
      seed,
      rng: rng.getState(),
      rank: c.rank,
      alpha,
      numExamples: plan.numExamples,
      elapsedSeconds: elapsed(),
      fingerprint: print,
    });
    const recent: { seconds: number; samples: number }[] = [];
    // train_text_encoder: the text encoder's parameters follow text_encoder_lr on the same schedule.
    const lrOf = (lr: number) => (name: string) => (name.startsWith('text_encoder.') && c.text_encoder_lr !== null ? (lr * c.text_encoder_lr) / plan.learningRate : lr);
    const gas = c.gradient_accumulation_steps;

    training: while (this.globalStep < plan.maxTrainSteps && epoch < plan.numEpochs) {
      const batches = epochBatches(seed, epoch, plan.numExamples, c.train_batch_size, this.layout.bucketOf);
      while (batchInEpoch < plan.batchesPerEpoch) {
        if (this.req.stop && this.globalStep === startStep) {
          // Asked to stop before the first step (while loading): nothing new to save.
          this.ev.log(`stopped (${this.req.stopReason}) before training`);
          return this.finish('stopped', started);
        }
        // One accumulation group: up to `gas` micro-batches, ending early at the end of the epoch.
        const groupStart = Date.now();
        let grads: Map<string, tf.Tensor> | undefined;
        let trainLoss = 0;
        let samples = 0;
        const lr = lrAt(c.lr_scheduler, this.globalStep, { baseLr: plan.learningRate, numWarmupSteps: c.lr_warmup_steps, numTrainingSteps: plan.maxTrainSteps });
        let planResult: { loss: number; gradNorm: number } | undefined;
        do {
          const indices = batches[batchInEpoch];
          const inputs = await this.microBatch(dataset, indices, rng);
          if (planned) {
            // The planned step (webgpu, gas 1) is the whole update: loss, clipping, AdamW (skipped when not finite).
            planResult = await planned.step.step(inputs as StepInputs, lr);
            trainLoss = planResult.loss;
          } else {
            // LoRA dropout: fresh masks for every micro-batch, from a stream keyed by it (so a resumed run draws the same).
            lora.dropoutMasks = dropoutMasksFrom(new Random(streamSeed(seed, 'dropout', this.globalStep * gas + (batchInEpoch % gas))), c.lora_dropout);
            const step = await lossAndGrads(stepModels, inputs, 1 / gas);
            lora.dropoutMasks = undefined;
            trainLoss += step.loss / gas;
            grads = accumulate(grads, step.grads);
          }
          tf.dispose([inputs.latents, inputs.noise, 'inputIds' in inputs ? inputs.inputIds : inputs.encoderHiddenStates, ...(inputs.addedCond ? [inputs.addedCond.textEmbeds, inputs.addedCond.timeIds] : [])]);
          samples += indices.length;
          batchInEpoch++;
          await yieldToEventLoop();
        } while (batchInEpoch % gas !== 0 && batchInEpoch < plan.batchesPerEpoch);

        const clipped = planResult ? { totalNorm: planResult.gradNorm, grads: new Map<string, tf.Tensor>() } : await clipGradNorm(grads!, c.max_grad_norm);
        if (grads) tf.dispose([...grads.values()]);
        try {
          this.guard.checkStep(this.globalStep + 1, trainLoss, clipped.totalNorm);
        } catch (e) {
          tf.dispose([...clipped.grads.values()]);
          throw e;
        }
        if (!planned) opt.update(lora.params, clipped.grads, lrOf(lr));
        tf.dispose([...clipped.grads.values()]);
        await this.guard.checkWeights(this.globalStep + 1, lora.params);
        this.globalStep++;
        if (batchInEpoch >= plan.batchesPerEpoch) {
          // The next micro-batch is the next epoch's first: record it so, for checkpoints.
          epoch++;
          batchInEpoch = 0;
        }

        const seconds = (Date.now() - groupStart) / 1000;
        recent.push({ seconds, samples });
        if (recent.length > 20) recent.shift();
        const window = recent.reduce((a, r) => ({ seconds: a.seconds + r.seconds, samples: a.samples + r.samples }), { seconds: 0, samples: 0 });
        const stepEpoch = batchInEpoch === 0 ? epoch - 1 : epoch;
        this.metrics.append({ step: this.globalStep, epoch: stepEpoch, loss: trainLoss, lr, grad_norm: clipped.totalNorm, step_seconds: seconds, elapsed_seconds: elapsed(), time: new Date().toISOString() });
        this.ev.emit({
          type: 'progress',
          step: this.globalStep,
          totalSteps: plan.maxTrainSteps,
          epoch: stepEpoch,
          loss: trainLoss,
          lr,
          gradNorm: clipped.totalNorm,
          samplesPerSecond: window.samples / Math.max(window.seconds, 1e-9),
          etaSeconds: ((plan.maxTrainSteps - this.globalStep) * window.seconds) / recent.length,
          elapsedSeconds: elapsed(),
          memoryBytes: tensorMemoryBytes(),
        });

        this.o.hooks?.afterStep?.(this.globalStep, this.req);
        const done = this.globalStep >= plan.maxTrainSteps;
        const due = this.globalStep % c.checkpointing_steps === 0;
        const asked = this.req.take('checkpoint');
        if (due || asked || (this.req.stop && !done)) await this.checkpoint(stateAt());
        if (this.req.stop && !done) {
          this.ev.log(`stopped (${this.req.stopReason}) at step ${this.globalStep}; resume with resume_from_checkpoint: latest`);
          return this.finish('stopped', started);
        }
        const sampleDue = c.sample_every_n_steps !== null && this.globalStep % c.sample_every_n_steps === 0 && !done;
        if (this.req.take('sample') || sampleDue) await this.sample(seed, sampleLabel(this.globalStep), true);
        if (done) break training;
        if (batchInEpoch === 0) break; // epoch finished
      }
      // End of an epoch (the guide validates every validation_epochs epochs, counting from epoch 0).
      const finishedEpoch = epoch - 1;
      if (finishedEpoch % c.validation_epochs === 0 && this.globalStep < plan.maxTrainSteps) {
        await this.validationLoss(stepModels, seed, finishedEpoch + 1);
        if (c.sample_every_n_steps === null) await this.sample(seed, sampleLabel(this.globalStep), false);
      }
    }

    await this.validationLoss(stepModels, seed, epoch);
    return this.complete(started, seed, plan, predictionType);
  }

  /** Holds out validation_split of the examples (a seeded choice) for the validation loss. */
  private splitValidation(d: Dataset, seed: number): Dataset {
    const split = this.c.validation_split;
    if (split <= 0) return d;
    const n = d.examples.length;
    const count = Math.round(n * split);
    if (count < 1 || count >= n) {
      throw new TrainingError('config', `validation_split ${split} of ${n} images holds out ${count}: it must leave at least one image on each side`, `choose a validation_split between ${(1 / n).toFixed(3)} and ${(1 - 1 / n).toFixed(3)}, or 0`);
    }
    const order = new Random(streamSeed(seed, 'validation_split')).randperm(n);
    const held = new Set(order.slice(0, count));
    this.heldOut = [...held].sort((a, b) => a - b).map((i) => d.examples[i]);
    return { ...d, examples: d.examples.filter((_, i) => !held.has(i)) };
  }

  /** The bucket of every example (enable_bucket), from the image sizes in the file headers. */
  private async planLayout(dataset: Dataset, sd: StableDiffusion): Promise<Layout> {
    const c = this.c;
    if (sd.textEncoder2) {
      const unsupported = [c.enable_bucket && 'enable_bucket', c.shuffle_caption && 'shuffle_caption', c.validation_split > 0 && 'validation_split', c.train_text_encoder && 'train_text_encoder'].filter(Boolean);
      if (unsupported.length) throw new TrainingError('config', `${unsupported.join(', ')} ${unsupported.length === 1 ? 'is' : 'are'} not supported with SDXL models yet`, `remove ${unsupported.join(', ')} for this model`);
    }
    if (!c.enable_bucket) return {};
    // Latent sides must halve cleanly through the UNet's down blocks.
    const multiple = sd.vaeScaleFactor * 2 ** ((sd.unet.config.block_out_channels as number[]).length - 1);
    if (c.bucket_reso_steps % multiple) {
      throw new TrainingError('config', `bucket_reso_steps ${c.bucket_reso_steps} is not a multiple of ${multiple}, which this model's UNet needs`, `set bucket_reso_steps: ${Math.max(multiple, Math.round(c.bucket_reso_steps / multiple) * multiple)}`);
    }
    const outside = bucketRangeProblem(c);
    if (outside) throw new TrainingError('config', outside.message, `set ${outside.key}: ${outside.fixedValue}`);
    const sizes = await Promise.all(dataset.examples.map(async (e) => imageSize(e.image ?? e.file)));
    const plan = planBuckets({ resolution: c.resolution, minReso: c.min_bucket_reso, maxReso: c.max_bucket_reso, step: c.bucket_reso_steps }, sizes);
    return { plan, bucketOf: plan.choices.map((ch) => ch.index) };
  }

  /** Whether a random crop of this image has more than one place to go (the resized image exceeds the crop). */
  private cropHasChoice(img: RgbImage, exampleIndex: number): boolean {
    const plan = this.layout.plan;
    if (plan) {
      const { resized, bucket } = plan.choices[exampleIndex];
      return resized.width > bucket.width || resized.height > bucket.height;
    }
    const r = resizedSize(img.width, img.height, this.c.resolution);
    return r.width > this.c.resolution || r.height > this.c.resolution;
  }

  /** An image as the training transform makes it, before the flip: bucket fit, or the guide's resize + crop. */
  private shape(img: RgbImage, exampleIndex: number | undefined, rng: Random | undefined): RgbImage {
    const c = this.c;
    const plan = this.layout.plan;
    if (plan) {
      const choice = exampleIndex === undefined ? planBuckets({ resolution: c.resolution, minReso: c.min_bucket_reso, maxReso: c.max_bucket_reso, step: c.bucket_reso_steps }, [img]).choices[0] : plan.choices[exampleIndex];
      return fitToBucket(img, choice, c.center_crop ? undefined : rng);
    }
    const resized = resizeShortestSide(img, c.resolution);
    return c.center_crop || !rng ? centerCrop(resized, c.resolution) : randomCrop(resized, c.resolution, rng);
  }

  /** The planned step for a webgpu run, planned before `started` (undefined, and a log line why, when the eager step runs). */
  private async startPlanned(models: StepModels, opt: AdamW, resume: Checkpoint | undefined): Promise<{ step: PlannedLoraStep; stats: PlanStats } | undefined> {
    const c = this.c;
    const sd = this.sd!;
    const why = eagerStepReason({ gradientAccumulationSteps: c.gradient_accumulation_steps, textEncoder: c.train_text_encoder, dropout: c.lora_dropout > 0, network: c.network_type });
    if (why) {
      this.ev.log(`webgpu: the eager training step runs (${why})`);
      return undefined;
    }
    const adam = opt.options;
    const latentSize = Math.floor(c.resolution / sd.vaeScaleFactor);
    const tokens = sd.tokenizer.encode('').length;
    try {
      const r = await startPlannedStep(models, { adam, maxGradNorm: c.max_grad_norm, batchSize: c.train_batch_size, latentSize, tokens, resume: resume?.optimizer });
      this.planned = r.step;
      const m = r.stats.memory;
      this.ev.log(`webgpu: planned training step, ${r.stats.dispatches} dispatches in 1 submit, ${formatBytes(m.peakBytes)} on the GPU (${formatBytes(m.activationBytes)} activations, ${formatBytes(m.persistentBytes)} weights and state)`);
      return r;
    } catch (e) {
      if (e instanceof PlanMemoryError) {
        throw new TrainingError('out_of_memory', e.message, `${this.c.gradient_checkpointing ? '' : 'turn on gradient_checkpointing, or '}lower train_batch_size (gradient_accumulation_steps keeps the effective batch) or resolution`);
      }
      throw e;
    }
  }

  private async initBackend(): Promise<BackendInfo> {
    try {
      return await initBackend(this.c.backend);
    } catch (e) {
      throw new TrainingError('backend', (e as Error).message, 'choose another backend (backend: wasm works everywhere)');
    }
  }

  /** network_weights' modules fitted to the run (network_weights.ts), its misfits as config errors. */
  private async startWeights(file: string, sd: StableDiffusion, run: RunNetwork): Promise<StartWeights['weights']> {
    try {
      const start = await networkWeightsStart(file, sd, run);
      for (const note of start.notes) this.ev.log(note);
      return start.weights;
    } catch (e) {
      if (e instanceof NetworkWeightsError) throw new TrainingError('config', e.message, e.hint);
      throw e;
    }
  }

  private loadModel(dir: string): StableDiffusion {
    try {
      this.sd = loadStableDiffusion(dir, { variant: this.c.variant ?? undefined, config: this.c.pretrained_model_config ?? undefined });
    } catch (e) {
      throw new TrainingError('model', `cannot load the model ${this.c.pretrained_model_name_or_path}: ${(e as Error).message}`);
    }
    return this.sd;
  }

  /** The text encoder's output for every caption, once (the encoder is frozen, so it never changes). */
  private async cacheTextEmbeddings(dataset: Dataset): Promise<void> {
    if (this.c.train_text_encoder) return; // encoded at every step, with the text encoder's LoRA
    const captions = [...new Set([...dataset.examples, ...this.heldOut].flatMap((e) => e.captions))];
    if (this.c.caption_dropout_rate > 0) captions.push('');
    for (let i = 0; i < captions.length; i += 16) {
      const chunk = captions.slice(i, i + 16);
      const emb = encodePrompts(this.sd!, chunk);
      tf.unstack(emb.embeds).forEach((t, j) => this.textCache.set(chunk[j], t as tf.Tensor2D));
      if (emb.pooled) tf.unstack(emb.pooled).forEach((t, j) => this.pooledCache.set(chunk[j], t as tf.Tensor1D));
      disposeEmbeddings(emb);
      await yieldToEventLoop();
    }
  }

  private async cacheLatents(dataset: Dataset, seed: number): Promise<void> {
    const c = this.c;
    const rng = new Random(streamSeed(seed, 'caching'));
    let frozenCrop = false;
    const t0 = Date.now();
    for (const [k, ex] of dataset.examples.entries()) {
      let pixels: tf.Tensor4D;
      let ids: number[][];
      if (this.layout.plan) {
        // Buckets (SD 1.x/2.x only, checked in planLayout): no time ids.
        const img = await decodeRgb(ex.image ?? ex.file);
        const cropped = this.shape(img, k, rng);
        if (!c.center_crop && this.cropHasChoice(img, k)) frozenCrop = true;
        const variants = c.random_flip ? [cropped, flipHorizontal(cropped)] : [cropped];
        ids = variants.map(() => []);
        pixels = tf.tidy(() => tf.stack(variants.map((v) => tf.tensor3d(toNormalizedPixels(v), [v.height, v.width, 3]))) as tf.Tensor4D);
      } else {
        const original = await decodeRgb(ex.image ?? ex.file);
        const img = resizeShortestSide(original, c.resolution);
        if (!c.center_crop && (img.width > c.resolution || img.height > c.resolution)) frozenCrop = true;
        // torchvision CenterCrop / RandomCrop (top, then left drawn), keeping where the crop starts for SDXL's time ids.
        const exact = img.width === c.resolution && img.height === c.resolution; // RandomCrop draws nothing then
        const [top, left] = c.center_crop || exact ? centerCropTopLeft(img.height, img.width, c.resolution) : [rng.randint(0, img.height - c.resolution + 1)[0], rng.randint(0, img.width - c.resolution + 1)[0]];
        const cropped = exact ? img : crop(img, top, left, c.resolution, c.resolution);
        const variants = c.random_flip ? [cropped, flipHorizontal(cropped)] : [cropped];
        // train_text_to_image_lora_sdxl.py records a flipped image's left as (resized width − left).
        ids = [sdxlTimeIds([original.height, original.width], [top, left], [c.resolution, c.resolution]), sdxlTimeIds([original.height, original.width], [top, img.width - left], [c.resolution, c.resolution])];
        pixels = tf.tidy(() => tf.stack(variants.map((v) => tf.tensor3d(toNormalizedPixels(v), [c.resolution, c.resolution, 3]))) as tf.Tensor4D);
      }
      const { mean, std } = this.sd!.vae.encode(pixels);
      pixels.dispose();
      const means = tf.unstack(mean) as tf.Tensor3D[];
      const stds = tf.unstack(std) as tf.Tensor3D[];
      tf.dispose([mean, std]);
      this.latentCache.push(means.map((m, i) => ({ mean: m, std: stds[i], timeIds: ids[i] })));
      await yieldToEventLoop();
    }
    this.ev.log(`cached latents of ${dataset.examples.length} images in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (frozenCrop) {
      this.ev.emit({
        type: 'warning',
        code: 'frozen_random_crop',
        message: 'cache_latents with center_crop: false crops each image once, when caching, instead of at every step; set cache_latents: false to redraw the crop every step',
      });
    }
  }

  /** The inputs of one micro-batch, drawing from the training generator in a fixed order. */
  private async microBatch(dataset: Dataset, indices: readonly number[], rng: Random): Promise<StepInputs | TextEncoderStepInputs> {
    const c = this.c;
    const sd = this.sd!;
    const examples: Example[] = indices.map((i) => dataset.examples[i]);
    const captions: string[] = [];
    let mean: tf.Tensor4D;
    let std: tf.Tensor4D;
    const timeIds: number[][] = [];
    if (c.cache_latents) {
      const chosen = indices.map((i, k) => {
        const flip = c.random_flip && rng.uniform([1])[0] < 0.5;
        captions.push(processCaption(pickCaption(examples[k], rng), this.captionOptions(), rng));
        timeIds.push(this.latentCache[i][flip ? 1 : 0].timeIds);
        return this.latentCache[i][flip ? 1 : 0];
      });
      mean = tf.stack(chosen.map((l) => l.mean)) as tf.Tensor4D;
      std = tf.stack(chosen.map((l) => l.std)) as tf.Tensor4D;
    } else {
      const images: RgbImage[] = [];
      if (sd.textEncoder2 && (!c.center_crop || c.random_flip)) {
        throw new TrainingError('config', 'SDXL training without cache_latents supports center_crop: true and random_flip: false only (the crop must be known for the time ids)', 'set cache_latents: true, or center_crop: true and random_flip: false');
      }
      for (const [k, ex] of examples.entries()) {
        // The guide's order of draws: crop, flip, then the caption.
        const raw = await decodeRgb(ex.image ?? ex.file);
        let img = this.shape(raw, indices[k], rng);
        if (c.random_flip && rng.uniform([1])[0] < 0.5) img = flipHorizontal(img);
        images.push(img);
        if (sd.textEncoder2) {
          const r = resizeShortestSide(raw, c.resolution);
          timeIds.push(sdxlTimeIds([raw.height, raw.width], centerCropTopLeft(r.height, r.width, c.resolution), [c.resolution, c.resolution]));
        }
        captions.push(processCaption(pickCaption(ex, rng), this.captionOptions(), rng));
      }
      const batch = tf.tidy(() => tf.stack(images.map((im) => tf.tensor3d(toNormalizedPixels(im), [im.height, im.width, 3]))) as tf.Tensor4D);
      ({ mean, std } = sd.vae.encode(batch));
      batch.dispose();
    }
    const [b, h, w, ch] = mean.shape;
    // Draws in torch's NCHW order (randn(B, C, h, w)), turned NHWC.
    const normalNhwc = (shape: [number, number, number, number]) => tf.tidy(() => tf.tensor4d(rng.normal(shape), shape).transpose([0, 2, 3, 1]) as tf.Tensor4D);
    const eps = normalNhwc([b, ch, h, w]);
    const latents = tf.tidy(() => {
      const scale = sd.vae.config.scaling_factor as number;
      const shift = (sd.vae.config.shift_factor as number | null | undefined) ?? null;
      const sample = mean.add(std.mul(eps));
      return (shift === null ? sample.mul(scale) : sample.sub(shift).mul(scale)) as tf.Tensor4D;
    });
    let noise = normalNhwc([b, ch, h, w]);
    if (c.noise_offset) {
      const offset = normalNhwc([b, ch, 1, 1]);
      const withOffset = tf.tidy(() => noise.add(offset.mul(c.noise_offset)) as tf.Tensor4D);
      tf.dispose([noise, offset]);
      noise = withOffset;
    }
    const timesteps = rng.randint(0, this.scheduler!.config.num_train_timesteps, b);
    const text = c.train_text_encoder ? { inputIds: this.tokenIds(captions) } : { encoderHiddenStates: this.embed(captions) };
    // SDXL: the pooled caption embedding and the image's time ids (train_text_to_image_lora_sdxl.py's unet_added_conditions).
    const addedCond = sd.textEncoder2 ? { textEmbeds: tf.stack(captions.map((t) => this.pooledCache.get(t)!)) as tf.Tensor2D, timeIds: tf.tensor2d(timeIds) } : undefined;
    tf.dispose([mean, std, eps]);
    return { latents, noise, timesteps, ...text, addedCond };
  }

  private async checkpoint(state: TrainingState): Promise<void> {
    const c = this.c;
    const lora = await this.lora!.toModules();
    const optimizer = await (this.planned ?? this.opt!).exportState();
    this.guard.checkCheckpoint(state.globalStep, lora, optimizer);
    const dir = saveCheckpoint(c.output_dir, {
      lora,
      optimizer,
      state,
      metadata: { 'lora_studio.base_model': path.basename(c.pretrained_model_name_or_path) },
      beforePublish: this.o.hooks?.beforeCheckpointPublish,
    });
    this.lastCheckpoint = dir;
    this.guard.checkpointWritten(state.globalStep, dir);
    const removed = pruneCheckpoints(c.output_dir, c.checkpoints_total_limit);
    this.ev.emit({ type: 'checkpoint', step: state.globalStep, path: dir, removed });
    this.ev.log(`saved ${dir}${removed.length ? ` (removed ${removed.map((r) => path.basename(r)).join(', ')})` : ''}`);
  }

  private captionOptions(): CaptionOptions {
    return { dropoutRate: this.c.caption_dropout_rate, shuffle: this.c.shuffle_caption, keepTokens: this.c.keep_tokens };
  }

  /** The captions' token ids [B, 77] for a step that encodes them itself (train_text_encoder). */
  private tokenIds(captions: readonly string[]): tf.Tensor2D {
    return tf.tensor2d(captions.map((t) => this.sd!.tokenizer.encode(t)), undefined, 'int32');
  }

  /** Text embeddings [B, 77, D] of captions: cached ones, others (shuffled tags) encoded now and not kept. */
  private embed(captions: readonly string[]): tf.Tensor3D {
    const missing = [...new Set(captions.filter((t) => !this.textCache.has(t)))];
    if (missing.length && captionsAreFixed(this.captionOptions())) throw new Error(`internal: no cached text embedding for "${missing[0]}"`);
    return tf.tidy(() => {
      const fresh = new Map<string, tf.Tensor2D>();
      if (missing.length) tf.unstack(encodePrompts(this.sd!, missing).embeds).forEach((t, j) => fresh.set(missing[j], t as tf.Tensor2D));
      return tf.stack(captions.map((t) => this.textCache.get(t) ?? fresh.get(t)!)) as tf.Tensor3D;
    });
  }

  /** Encodes the held-out images once (center crop or their bucket, no flip): their latent distributions. */
  private async cacheHeldOut(): Promise<void> {
    for (const ex of this.heldOut) {
      const img = this.shape(await decodeRgb(ex.image ?? ex.file), undefined, undefined);
      const pixels = tf.tidy(() => tf.tensor4d(toNormalizedPixels(img), [1, img.height, img.width, 3]));
      this.heldOutLatents.push(this.sd!.vae.encode(pixels));
      pixels.dispose();
      await yieldToEventLoop();
    }
  }

  /**
   * The loss on the held-out images, one at a time, with latent draws, noise and timesteps from a
   * generator reseeded for every measurement: the same inputs each time, so only the LoRA moves it.
   */
  private async validationLoss(m: Omit<StepModels, 'lora'>, seed: number, epoch: number): Promise<void> {
    if (!this.heldOut.length) return;
    this.ev.emit({ type: 'phase', phase: 'validating', step: this.globalStep, detail: `${this.heldOut.length} held-out image${this.heldOut.length === 1 ? '' : 's'}` });
    const rng = new Random(streamSeed(seed, 'validation_loss'));
    const lookup = this.lora!.lookup();
    const textLora = this.c.train_text_encoder ? this.lora!.lookup(undefined, 'text_encoder') : undefined;
    let total = 0;
    for (const [k, ex] of this.heldOut.entries()) {
      const { mean, std } = this.heldOutLatents[k];
      const [b, h, w, ch] = mean.shape;
      const draw = () => tf.tidy(() => tf.tensor4d(rng.normal([b, ch, h, w]), [b, ch, h, w]).transpose([0, 2, 3, 1]) as tf.Tensor4D);
      const eps = draw();
      const noise = draw();
      const timesteps = rng.randint(0, this.scheduler!.config.num_train_timesteps, b);
      const caption = ex.captions[0];
      const loss = tf.tidy(() => {
        const scale = this.sd!.vae.config.scaling_factor as number;
        const shift = (this.sd!.vae.config.shift_factor as number | null | undefined) ?? null;
        const sample = mean.add(std.mul(eps));
        const latents = (shift === null ? sample.mul(scale) : sample.sub(shift).mul(scale)) as tf.Tensor4D;
        const text = textLora ? { inputIds: this.tokenIds([caption]) } : { encoderHiddenStates: this.embed([caption]) };
        return diffusionLoss(m, { latents, noise, timesteps, ...text }, lookup, textLora);
      });
      total += (await loss.data())[0];
      tf.dispose([loss, eps, noise]);
      await yieldToEventLoop();
    }
    const value = total / this.heldOut.length;
    this.ev.emit({ type: 'validation_loss', step: this.globalStep, epoch, loss: value, numExamples: this.heldOut.length });
    this.ev.log(`validation loss at step ${this.globalStep}: ${value.toPrecision(5)} (${this.heldOut.length} held-out images)`);
    this.ev.emit({ type: 'phase', phase: 'training', step: this.globalStep });
  }

  /** The images to make at one sampling: the guide's validation_prompt (num_validation_images), then each sample prompt. */
  private sampleJobs(seed: number): SampleJob[] {
    const c = this.c;
    const jobs: SampleJob[] = [];
    if (c.validation_prompt !== null) {
      for (let i = 0; i < c.num_validation_images; i++) jobs.push({ promptIndex: 0, imageIndex: i, prompt: c.validation_prompt, seed: seed + i, sampler: c.sample_sampler ?? undefined });
    }
    const first = c.validation_prompt !== null ? 1 : 0;
    this.samplePrompts.forEach((p, i) => jobs.push({ ...p, sampler: p.sampler ?? c.sample_sampler ?? undefined, promptIndex: first + i, imageIndex: 0, seed: p.seed ?? seed }));
    return jobs;
  }

  /** Sample images; `asked`: a sample command or sample_every_n_steps (warn when there is nothing to sample). */
  private async sample(seed: number, label: string, asked: boolean): Promise<void> {
    const jobs = this.sampleJobs(seed);
    if (!jobs.length) {
      if (asked) this.ev.emit({ type: 'warning', code: 'no_validation_prompt', message: 'a sample was asked for, but the run config has no validation_prompt or sample_prompts' });
      return;
    }
    this.ev.log(`sampling ${jobs.length} image(s): ${[...new Set(jobs.map((j) => `"${j.prompt}"`))].join(', ')}`);
    try {
      const images = await generateSamples(this.sd!, {
        jobs,
        label,
        samplesDir: path.join(this.c.output_dir, SAMPLES_DIR),
        lora: this.lora!.lookup(),
        textEncoderLora: this.c.train_text_encoder ? this.lora!.lookup(undefined, 'text_encoder') : undefined,
        keepGoing: () => !this.req.stop,
        onImage: (k) => this.ev.emit({ type: 'phase', phase: 'sampling', step: this.globalStep, detail: `sample ${k + 1} of ${jobs.length}` }),
      });
      for (const im of images) {
        this.samples.push(im.path);
        const j = im.job;
        this.ev.emit({
          type: 'sample',
          step: this.globalStep,
          prompt: j.prompt,
          seed: j.seed,
          path: im.path,
          promptIndex: j.promptIndex,
          imageIndex: j.imageIndex,
          negativePrompt: j.negativePrompt,
          steps: im.steps,
          guidanceScale: im.guidanceScale,
          sampler: im.sampler,
          width: im.width,
          height: im.height,
        });
      }
    } catch (e) {
      if (!(e instanceof GenerationCancelled)) throw e;
      this.ev.log('sampling interrupted by a stop request');
    }
    this.ev.emit({ type: 'phase', phase: 'training', step: this.globalStep });
  }

  private async complete(started: number, seed: number, plan: RunPlan, predictionType: PredictionType): Promise<TrainResult> {
    const c = this.c;
    const components = await this.lora!.toComponents();
    for (const modules of components.values()) this.guard.checkModules(this.globalStep, 'the LoRA weight', modules);
    const outputName = runOutputName(c.output_dir, c.output_name);
    const metadata: Record<string, string> = c.no_metadata ? {} : {
      ...loraTrainingMetadata({
        rank: c.rank,
        alpha: this.lora!.alpha,
        baseModel: path.basename(c.pretrained_model_name_or_path),
        baseModelVersion: baseModelVersion(this.sd!.unet.config, predictionType === 'v_prediction'),
        vPrediction: predictionType === 'v_prediction',
        outputName,
        steps: this.globalStep,
        epochs: plan.numEpochs,
        learningRate: plan.learningRate,
        resolution: c.resolution,
        numTrainImages: plan.numExamples,
        seed,
        datasetDirs: this.datasetDir ? [this.datasetDir] : undefined,
        startedAt: new Date(started),
        finishedAt: new Date(),
        ...networkMetadata({ networkType: c.network_type, trainTextEncoder: c.train_text_encoder }, c.rank, this.lora!.alpha),
        runConfig: withoutLocalPaths(recordableConfig(c)),
        version: LORA_STUDIO_VERSION,
      }),
      ...(this.layout.plan
        ? {
            ss_enable_bucket: 'True',
            ss_min_bucket_reso: String(c.min_bucket_reso),
            ss_max_bucket_reso: String(c.max_bucket_reso),
            ss_bucket_no_upscale: 'False',
            ss_bucket_info: bucketInfoMetadata(this.layout.plan),
          }
        : { ss_enable_bucket: 'False' }),
      ss_caption_dropout_rate: String(c.caption_dropout_rate),
      ss_shuffle_caption: c.shuffle_caption ? 'True' : 'False',
      ss_keep_tokens: String(c.keep_tokens),
      'lora_studio.step': String(this.globalStep),
    };
    const lora = path.join(c.output_dir, LORA_FILE);
    const sgm = this.sd!.textEncoder2 ? ldmUnetPaths(this.sd!.unet.loraLayers().map((l) => l.path)) : undefined;
    const trained: LoraToWrite = { components, ...(sgm ? { unetSgmNames: sgm } : {}) };
    // The diffusers-keyed file is no kohya network: A1111 would list a file claiming networks.lora as one and apply nothing.
    const { ss_network_module: _kohyaOnly, ...diffusersMetadata } = metadata;
    writeLoraFile(lora, 'diffusers', trained, { metadata: diffusersMetadata, precision: c.save_precision });
    let kohya: string | undefined;
    if (c.save_formats.includes('kohya')) {
      kohya = kohyaLoraFile(c.output_dir, c.output_name);
      writeLoraFile(kohya, 'kohya', trained, { metadata, precision: c.save_precision });
    }
    this.ev.log(`wrote ${lora}${kohya ? ` and ${kohya}` : ''}`);
    await this.sample(seed, FINAL_SAMPLES, false);
    if (c.push_to_hub) await pushRun(c, this.ev, (code, message, hint) => new TrainingError(code, message, hint));
    return this.finish('completed', started, { lora, kohya });
  }

  private finish(reason: 'completed' | 'stopped', started: number, files: { lora?: string; kohya?: string } = {}): TrainResult {
    this.metrics?.close();
    const outputs: FinishedEvent['outputs'] = {
      ...files,
      checkpoint: this.lastCheckpoint,
      metrics: path.join(this.c.output_dir, METRICS_FILE),
      samples: this.samples,
    };
    this.ev.emit({ type: 'finished', reason, step: this.globalStep, outputs, elapsedSeconds: (Date.now() - started) / 1000 });
    return { status: reason, step: this.globalStep, outputs };
  }

  dispose(): void {
    this.metrics?.close();
    for (const t of this.textCache.values()) t.dispose();
    this.textCache.clear();
    for (const t of this.pooledCache.values()) t.dispose();
    this.pooledCache.clear();
    for (const l of this.latentCache.flat()) tf.dispose([l.mean, l.std]);
    this.latentCache = [];
    for (const l of this.heldOutLatents) tf.dispose([l.mean, l.std]);
    this.heldOutLatents = [];
    this.lora?.dispose();
    this.opt?.dispose();
    this.planned?.dispose();
    this.scheduler?.dispose();
    if (this.sd) disposeStableDiffusion(this.sd);
    this.lock?.release();
  }
}

function checkFingerprint(resume: Checkpoint, now: Record<string, unknown>): void {
  const was = resume.state.fingerprint ?? {};
  const changed = Object.keys(now).filter((k) => JSON.stringify(was[k]) !== JSON.stringify(now[k]));
  if (changed.length) {
    throw new TrainingError(
      'config',
      `${resume.dir} was trained with different settings: ${changed.map((k) => `${k} ${JSON.stringify(was[k])} → ${JSON.stringify(now[k])}`).join(', ')}`,
      'resume with the settings the checkpoint was made with, or start a new run in another output_dir',
    );
  }
}

/** Sums gradients across the micro-batches of an accumulation group. */
function accumulate(acc: Map<string, tf.Tensor> | undefined, grads: Map<string, tf.Tensor>): Map<string, tf.Tensor> {
  if (!acc) return grads;
  for (const [name, g] of grads) {
    const prev = acc.get(name)!;
    acc.set(name, prev.add(g));
    prev.dispose();
    g.dispose();
  }
  return acc;
}


/** Width and height from the file's header (what decodeRgb will decode: no EXIF rotation). */
async function imageSize(file: string | Uint8Array): Promise<{ width: number; height: number }> {
  const m = await sharp(file).metadata();
  if (!m.width || !m.height) throw new DatasetError(typeof file === 'string' ? path.dirname(file) : 'dataset', [`${typeof file === 'string' ? path.basename(file) : 'an image'}: no image size in its header`]);
  return { width: m.width, height: m.height };
}

/** Lets stdin commands and signals be handled between micro-batches. */
const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

/** What the backend holds in tensors now: GPU buffers on webgpu (tfjs' own count), else all tensor bytes. */
function tensorMemoryBytes(): number {
  const m = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number };
  return m.numBytesInGPU ?? m.numBytes;
}

/**
 * The run config as a shared LoRA file may record it: every absolute path (base model, dataset, output
 * folder, …) reduced to its base name, so a file passed around does not tell where it was made.
 */
export function withoutLocalPaths(value: unknown): unknown {
  if (typeof value === 'string') return path.isAbsolute(value) ? path.basename(value) : path.win32.isAbsolute(value) ? path.win32.basename(value) : value;
  if (Array.isArray(value)) return value.map(withoutLocalPaths);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withoutLocalPaths(v)]));
  return value;
}
