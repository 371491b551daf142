// The messages between the inference worker (`lora-studio worker`) and whoever drives it (the notebook
// controller, tests, a script). Host → worker: one JSON request per line on stdin. Worker → host: one JSON
// message per line on stdout, each with `type`, the protocol version `v` and, when it answers a request,
// that request's `id`. Human-readable logs go to stderr, never stdout.
//
// The worker keeps one model loaded between requests and loads, rescales and unloads LoRAs by file without
// touching the model, so a notebook pays the model load once. Requests are served one at a time in arrival
// order; `cancel` is the exception — it is handled as soon as it arrives.
//
// Each message is one definition giving its type and its runtime check (messages.ts); the framing and
// the version `v` on every line are jsonl.ts. The notebook renderer imports the types only.

import { JsonLines, type Received, type Sent, type Versioned } from './jsonl.js';
import { message, messages, oneOf, record, saying, Type, type Static } from './messages.js';
import { INFERENCE_SCHEDULERS } from '../core/config/generation.js';
import { DOWNLOAD_PROGRESS } from './training.js';

export const INFERENCE_PROTOCOL_VERSION = 1;

/** A LoRA file at a scale. Scale 0 keeps the LoRA loaded but leaves it out of the computation. */
export const LoraRef = record({
  /** Absolute path (the worker resolves relative paths against its own working directory). */
  file: Type.String(),
  scale: Type.Number(),
});
export type LoraRef = Static<typeof LoraRef>;

/** The longest request line the worker reads (a request is a prompt and a few paths; 1 MB is thousands of them). */
export const MAX_REQUEST_BYTES = 1024 * 1024;

/** A file name for a PNG in `outDir`: no folder, not `.` or `..` (the worker also checks the resolved path stays in outDir). */
const FileName = Type.String({ pattern: '^(?!\\.\\.?$)[^\\\\/\\u0000]+$', ...saying('must be a file name without folders') });

/** One image of a generate request: everything that differs between the images of one notebook cell. */
export const GenerationJob = record({
  seed: Type.Integer({ minimum: 0 }),
  /** The LoRAs for this image; LoRAs loaded for an earlier image and not named here are unloaded. */
  loras: Type.Array(LoraRef, saying('must be a list of {file, scale}')),
  /** File name (no folder) for the PNG in `outDir`; default `<request id>-<index>.png`. */
  fileName: Type.Optional(FileName),
});
export type GenerationJob = Static<typeof GenerationJob>;

export const GenerateRequest = message('generate', {
  id: Type.String(),
  /**
   * A diffusers pipeline folder, or a Hugging Face Hub id (`org/name`: taken from the Hugging Face cache,
   * downloaded into it first — `model_downloading` — when missing). A different model than the loaded one
   * replaces it.
   */
  model: Type.String({ minLength: 1, ...saying('must be the path of a diffusers pipeline folder or a Hub id') }),
  variant: Type.Optional(Type.Literal('fp16')),
  prompt: Type.String(),
  negativePrompt: Type.Optional(Type.String()),
  scheduler: Type.Optional(oneOf(INFERENCE_SCHEDULERS)),
  steps: Type.Optional(Type.Integer({ minimum: 1 })),
  guidance: Type.Optional(Type.Number()),
  /** Pixels, multiples of the VAE scale factor; default: the model's own size. */
  width: Type.Optional(Type.Integer({ minimum: 8 })),
  height: Type.Optional(Type.Integer({ minimum: 8 })),
  jobs: Type.Array(GenerationJob, { minItems: 1, ...saying('must be a non-empty list of {seed, loras}') }),
  /**
   * Where the PNGs go (created if missing). Without it the images come back inline as base64 PNG bytes
   * (`png` in `image`), which is what a short-lived preview wants; files are what a notebook keeps.
   */
  outDir: Type.Optional(Type.String(saying('must be a folder path'))),
  /** Also compose all images of the request into one PNG, `columns` wide, row-major in job order. */
  sheet: Type.Optional(record({ columns: Type.Integer({ minimum: 1 }), fileName: Type.Optional(FileName) }, saying('must be {columns: integer ≥ 1, fileName?}'))),
});

/** Stops a queued or running request; answered by that request's `cancelled` (or nothing if it is unknown). */
export const CancelRequest = message('cancel', { id: Type.String() });
/** What is loaded: answered by `status`. */
export const StatusRequest = message('status', { id: Type.String() });
/** Frees the model and every LoRA (the next generate loads again). */
export const UnloadRequest = message('unload', { id: Type.String() });
/** Requests queued after it are cancelled; the worker finishes the running one and exits 0. (Closing stdin instead lets the queued ones run first.) */
export const ShutdownRequest = message('shutdown', { id: Type.Optional(Type.String()) });

/** Host → worker. */
export const WORKER_REQUESTS = new JsonLines(
  'inference',
  INFERENCE_PROTOCOL_VERSION,
  messages('request', [GenerateRequest, CancelRequest, StatusRequest, UnloadRequest, ShutdownRequest]),
);

export type GenerateRequest = Static<typeof GenerateRequest>;
export type CancelRequest = Static<typeof CancelRequest>;
export type StatusRequest = Static<typeof StatusRequest>;
export type UnloadRequest = Static<typeof UnloadRequest>;
export type ShutdownRequest = Static<typeof ShutdownRequest>;
export type WorkerRequest = Sent<typeof WORKER_REQUESTS>;

/** Sent once, when the worker is ready to read requests. */
export const ReadyMessage = message('ready', { pid: Type.Integer(), backend: Type.String(), adapter: Type.Optional(Type.String()) });

/** A Hub model's files arriving in the Hugging Face cache, before `model_loading` (at most ~10 a second). */
export const ModelDownloadingMessage = message('model_downloading', { id: Type.String(), model: Type.String(), ...DOWNLOAD_PROGRESS });

export const ModelLoadingMessage = message('model_loading', { id: Type.String(), model: Type.String() });

export const ModelLoadedMessage = message('model_loaded', {
  id: Type.String(),
  model: Type.String(),
  seconds: Type.Number(),
  /** Image size the model makes by default. */
  width: Type.Integer(),
  height: Type.Integer(),
});

export const LoraLoadedMessage = message('lora_loaded', {
  id: Type.String(),
  file: Type.String(),
  /** True when the weights came from the worker's cache (same path and modification time) instead of disk. */
  cached: Type.Boolean(),
  modules: Type.Integer(),
  format: Type.String(),
  warnings: Type.Array(Type.String()),
});

export const LoraUnloadedMessage = message('lora_unloaded', { id: Type.String(), file: Type.String() });

export const ProgressMessage = message('progress', {
  id: Type.String(),
  /** Index of the job (image) in the request. */
  job: Type.Integer(),
  jobs: Type.Integer(),
  step: Type.Integer(),
  steps: Type.Integer(),
});

export const ImageMessage = message('image', {
  id: Type.String(),
  job: Type.Integer(),
  seed: Type.Integer(),
  loras: Type.Array(LoraRef),
  width: Type.Integer(),
  height: Type.Integer(),
  /** Absolute path of the PNG (when the request named an outDir). */
  file: Type.Optional(Type.String()),
  /** Base64 PNG bytes (when it did not). */
  png: Type.Optional(Type.String()),
  seconds: Type.Number(),
});

export const SheetMessage = message('sheet', {
  id: Type.String(),
  columns: Type.Integer(),
  rows: Type.Integer(),
  file: Type.Optional(Type.String()),
  png: Type.Optional(Type.String()),
});

export const DoneMessage = message('done', { id: Type.String(), images: Type.Integer(), seconds: Type.Number() });

export const CancelledMessage = message('cancelled', {
  id: Type.String(),
  /** Images finished before the cancel (their `image` messages were sent). */
  images: Type.Integer(),
});

/** `engine`: the backend failed for good (an aborted wasm module, a lost GPU device); the worker restarted it and the model loads again on the next request. */
export const WORKER_ERROR_CODES = ['bad_request', 'model', 'lora', 'generate', 'engine', 'internal'] as const;
export type WorkerErrorCode = (typeof WORKER_ERROR_CODES)[number];

export const ErrorMessage = message('error', {
  /** The request that failed; absent for errors that belong to no request (an unreadable line). */
  id: Type.Optional(Type.String()),
  code: oneOf(WORKER_ERROR_CODES),
  message: Type.String(),
  /** What to do about it, when there is something to say. */
  hint: Type.Optional(Type.String()),
});

export const StatusMessage = message('status', {
  id: Type.String(),
  model: Type.Optional(Type.String()),
  /** LoRAs in the active set, with their scales. */
  loras: Type.Array(LoraRef),
  /** LoRA files whose weights are cached. */
  cached: Type.Array(Type.String()),
  /** Model loads since the worker started. */
  modelLoads: Type.Integer(),
  backend: Type.String(),
});

/** Worker → host. */
export const WORKER_MESSAGES = new JsonLines(
  'inference',
  INFERENCE_PROTOCOL_VERSION,
  messages('worker message', [
    ReadyMessage,
    ModelDownloadingMessage,
    ModelLoadingMessage,
    ModelLoadedMessage,
    LoraLoadedMessage,
    LoraUnloadedMessage,
    ProgressMessage,
    ImageMessage,
    SheetMessage,
    DoneMessage,
    CancelledMessage,
    ErrorMessage,
    StatusMessage,
  ]),
);

/** A message as the worker writes it (the framing adds `v`). */
export type WorkerMessageInput = Sent<typeof WORKER_MESSAGES>;
export type WorkerMessage = Received<typeof WORKER_MESSAGES>;
export type ReadyMessage = Versioned<Static<typeof ReadyMessage>>;
export type ModelDownloadingMessage = Versioned<Static<typeof ModelDownloadingMessage>>;
export type ModelLoadingMessage = Versioned<Static<typeof ModelLoadingMessage>>;
export type ModelLoadedMessage = Versioned<Static<typeof ModelLoadedMessage>>;
export type LoraLoadedMessage = Versioned<Static<typeof LoraLoadedMessage>>;
export type LoraUnloadedMessage = Versioned<Static<typeof LoraUnloadedMessage>>;
export type ProgressMessage = Versioned<Static<typeof ProgressMessage>>;
export type ImageMessage = Versioned<Static<typeof ImageMessage>>;
export type SheetMessage = Versioned<Static<typeof SheetMessage>>;
export type DoneMessage = Versioned<Static<typeof DoneMessage>>;
export type CancelledMessage = Versioned<Static<typeof CancelledMessage>>;
export type ErrorMessage = Versioned<Static<typeof ErrorMessage>>;
export type StatusMessage = Versioned<Static<typeof StatusMessage>>;

/** Messages that end a request: after one of these no more messages carry its id. */
export function isFinalMessage(m: WorkerMessage): m is DoneMessage | CancelledMessage | ErrorMessage | StatusMessage {
  return m.type === 'done' || m.type === 'cancelled' || m.type === 'error' || m.type === 'status';
}
