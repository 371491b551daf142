// The messages between the trainer process and whoever runs it (the extension, the dashboard, a script).
// Trainer → host: events, one JSON line each on stdout. Host → trainer: commands, one JSON line each on
// stdin. Human-readable logs go to stderr, never stdout. The framing (and the version `v` on every line)
// is jsonl.ts; each message below is one definition that gives both its type and its runtime check.
import { JsonLines, type Received, type Sent, type Versioned } from './jsonl.js';
import { message, messages, oneOf, record, Type, type Static } from './messages.js';
import { SCHEDULER_NAMES } from '../core/config/generation.js';

export const TRAINING_PROTOCOL_VERSION = 1;

export const StartedEvent = message('started', {
  runId: Type.String(),
  configPath: Type.Optional(Type.String()),
  outputDir: Type.String(),
  backend: Type.String(),
  adapter: Type.Optional(Type.String()),
  /** The adapter is a software renderer (lavapipe, SwiftShader): slower than the wasm backend. */
  softwareAdapter: Type.Optional(Type.Boolean()),
  totalSteps: Type.Integer(),
  /** Epochs the run spans (the progress event's `epoch` counts from 0 up to this). */
  numEpochs: Type.Optional(Type.Integer({ minimum: 1 })),
  /** Steps already done when resuming (0 for a fresh run). */
  startStep: Type.Integer(),
  numExamples: Type.Integer(),
  batchSize: Type.Integer(),
  gradientAccumulationSteps: Type.Integer(),
  loraParameters: Type.Integer(),
  /** webgpu's planned step: the GPU memory its plan holds (weights, activations, LoRA state), known before the first step. */
  plannedPeakBytes: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Examples held out for the validation loss (validation_split); 0 or absent: none. */
  numValidationExamples: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Aspect-ratio buckets (enable_bucket): each bucket's size in pixels and how many training images fall in it. */
  buckets: Type.Optional(Type.Array(record({ width: Type.Integer(), height: Type.Integer(), count: Type.Integer({ minimum: 0 }) }))),
  time: Type.String(),
});

export const ProgressEvent = message('progress', {
  step: Type.Integer(),
  totalSteps: Type.Integer(),
  epoch: Type.Number(),
  loss: Type.Number(),
  lr: Type.Number(),
  gradNorm: Type.Optional(Type.Number()),
  samplesPerSecond: Type.Number(),
  /** Seconds left at the current pace. */
  etaSeconds: Type.Number(),
  elapsedSeconds: Type.Number(),
  /** Tensor memory the backend holds now (tfjs' count: GPU buffers on webgpu, the heap's tensors elsewhere). */
  memoryBytes: Type.Optional(Type.Number({ minimum: 0 })),
});

/** One sample image (sample_prompts, or the guide's validation_prompt, which is prompt 0 when alone). */
export const SampleEvent = message('sample', {
  step: Type.Integer(),
  prompt: Type.String(),
  seed: Type.Integer(),
  /** Absolute path of the PNG. */
  path: Type.String(),
  /** Which of the run's sample prompts (0-based, in the order of sample_prompts). Rows by step: (step, promptIndex). */
  promptIndex: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Which image of that prompt at this step (0-based; num_validation_images of the guide's validation_prompt). */
  imageIndex: Type.Optional(Type.Integer({ minimum: 0 })),
  negativePrompt: Type.Optional(Type.String()),
  steps: Type.Optional(Type.Integer({ minimum: 1 })),
  guidanceScale: Type.Optional(Type.Number()),
  sampler: Type.Optional(oneOf(SCHEDULER_NAMES)),
  width: Type.Optional(Type.Integer({ minimum: 1 })),
  height: Type.Optional(Type.Integer({ minimum: 1 })),
});

/**
 * The loss on the held-out examples (validation_split), measured with fixed noise and timesteps so the
 * numbers of one run are comparable step to step; plot beside ProgressEvent.loss.
 */
export const ValidationLossEvent = message('validation_loss', {
  step: Type.Integer(),
  epoch: Type.Number(),
  loss: Type.Number(),
  numExamples: Type.Integer({ minimum: 1 }),
});

/** What the trainer is busy with between progress events (a status bar says "validating", not the last step). */
export const TRAINER_PHASES = ['caching', 'training', 'sampling', 'validating', 'saving'] as const;
export type TrainerPhase = (typeof TRAINER_PHASES)[number];
export const PhaseEvent = message('phase', {
  phase: oneOf(TRAINER_PHASES),
  step: Type.Integer(),
  /** A short line for the status bar: "sample 2 of 3", "12 held-out images". */
  detail: Type.Optional(Type.String()),
});

export const CheckpointEvent = message('checkpoint', {
  step: Type.Integer(),
  /** Absolute path of the checkpoint-<step> folder. */
  path: Type.String(),
  /** Checkpoints removed to respect checkpoints_total_limit. */
  removed: Type.Array(Type.String()),
});

export const WarningEvent = message('warning', {
  message: Type.String(),
  code: Type.Optional(Type.String()),
});

/** How far a Hub download is; also the inference worker's `model_downloading` (inference.ts). */
export const DOWNLOAD_PROGRESS = {
  /** The file being written (its path in the repository). */
  file: Type.String(),
  /** Bytes in the cache so far over all the files to get (resumed bytes included). */
  bytes: Type.Integer({ minimum: 0 }),
  totalBytes: Type.Integer({ minimum: 0 }),
  filesDone: Type.Integer({ minimum: 0 }),
  totalFiles: Type.Integer({ minimum: 0 }),
};

/** Bytes of a Hub model or dataset arriving in the Hugging Face cache (before `started`, and at most ~10 a second). */
export const DownloadEvent = message('download', {
  repo: Type.String(),
  repoType: oneOf(['model', 'dataset']),
  ...DOWNLOAD_PROGRESS,
});

/** The run was uploaded to the Hub (push_to_hub). */
export const PushedEvent = message('pushed', {
  repoId: Type.String(),
  url: Type.String(),
  files: Type.Array(Type.String()),
});

export const ERROR_CODES = ['config', 'model', 'dataset', 'hub', 'nan_loss', 'out_of_memory', 'backend', 'io', 'locked', 'internal'] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export const ErrorEvent = message('error', {
  code: oneOf(ERROR_CODES),
  message: Type.String(),
  /** What the user can do about it. */
  hint: Type.Optional(Type.String()),
});

export const FinishedEvent = message('finished', {
  /** 'completed': all steps done; 'stopped': stopped on request after saving a checkpoint. */
  reason: oneOf(['completed', 'stopped']),
  step: Type.Integer(),
  outputs: record({
    lora: Type.Optional(Type.String()),
    kohya: Type.Optional(Type.String()),
    checkpoint: Type.Optional(Type.String()),
    metrics: Type.String(),
    samples: Type.Array(Type.String()),
  }),
  elapsedSeconds: Type.Number(),
});

/** Trainer → host. */
export const TRAINER_EVENTS = new JsonLines(
  'training',
  TRAINING_PROTOCOL_VERSION,
  messages('trainer event', [DownloadEvent, StartedEvent, ProgressEvent, SampleEvent, ValidationLossEvent, PhaseEvent, CheckpointEvent, WarningEvent, ErrorEvent, FinishedEvent, PushedEvent]),
);

/** Host → trainer. A person at a terminal may also type the bare words stop / checkpoint / sample. */
export const TRAINER_COMMANDS = new JsonLines('training', TRAINING_PROTOCOL_VERSION, messages('trainer command', [message('stop', {}), message('checkpoint', {}), message('sample', {})]));

/** An event as the trainer writes it (the framing adds `v`). */
export type TrainerEventInput = Sent<typeof TRAINER_EVENTS>;
/** An event as the host reads it. */
export type TrainerEvent = Received<typeof TRAINER_EVENTS>;
export type TrainerEventType = TrainerEvent['type'];
export type StartedEvent = Versioned<Static<typeof StartedEvent>>;
export type ProgressEvent = Versioned<Static<typeof ProgressEvent>>;
export type SampleEvent = Versioned<Static<typeof SampleEvent>>;
export type ValidationLossEvent = Versioned<Static<typeof ValidationLossEvent>>;
export type PhaseEvent = Versioned<Static<typeof PhaseEvent>>;
export type CheckpointEvent = Versioned<Static<typeof CheckpointEvent>>;
export type WarningEvent = Versioned<Static<typeof WarningEvent>>;
export type ErrorEvent = Versioned<Static<typeof ErrorEvent>>;
export type FinishedEvent = Versioned<Static<typeof FinishedEvent>>;
export type DownloadEvent = Versioned<Static<typeof DownloadEvent>>;
export type PushedEvent = Versioned<Static<typeof PushedEvent>>;

export type TrainerCommand = Sent<typeof TRAINER_COMMANDS>;
