// The messages between the inference worker (`lora-studio worker`) and whoever drives it (the notebook
// controller, tests, a script). Host → worker: one JSON request per line on stdin. Worker → host: one JSON
// message per line on stdout, each with `type`, the protocol version `v` and, when it answers a request,
// that request's `id`. Human-readable logs go to stderr, never stdout.
//
// The worker keeps one model loaded between requests and loads, rescales and unloads LoRAs by file without
// touching the model, so a notebook pays the model load once. Requests are served one at a time in arrival
// order; `cancel` is the exception — it is handled as soon as it arrives.
//
// This module is imported by the worker, the extension and the notebook renderer: types and tiny pure
// helpers only (no node or vscode imports).

import { INFERENCE_SCHEDULERS, type InferenceScheduler } from '../core/config/generation.js';

export const INFERENCE_PROTOCOL_VERSION = 1;

/** A LoRA file at a scale. Scale 0 keeps the LoRA loaded but leaves it out of the computation. */
export interface LoraRef {
  /** Absolute path (the worker resolves relative paths against its own working directory). */
  file: string;
  scale: number;
}

/** One image of a generate request: everything that differs between the images of one notebook cell. */
export interface GenerationJob {
  seed: number;
  /** The LoRAs for this image; LoRAs loaded for an earlier image and not named here are unloaded. */
  loras: LoraRef[];
  /** File name (no folder) for the PNG in `outDir`; default `<request id>-<index>.png`. */
  fileName?: string;
}

export interface GenerateRequest {
  type: 'generate';
  id: string;
  /** A diffusers pipeline folder. A different folder than the loaded one replaces the loaded model. */
  model: string;
  variant?: 'fp16';
  prompt: string;
  negativePrompt?: string;
  scheduler?: InferenceScheduler;
  steps?: number;
  guidance?: number;
  /** Pixels, multiples of the VAE scale factor; default: the model's own size. */
  width?: number;
  height?: number;
  jobs: GenerationJob[];
  /**
   * Where the PNGs go (created if missing). Without it the images come back inline as base64 PNG bytes
   * (`png` in `image`), which is what a short-lived preview wants; files are what a notebook keeps.
   */
  outDir?: string;
  /** Also compose all images of the request into one PNG, `columns` wide, row-major in job order. */
  sheet?: { columns: number; fileName?: string };
}

/** Stops a queued or running request; answered by that request's `cancelled` (or nothing if it is unknown). */
export interface CancelRequest {
  type: 'cancel';
  id: string;
}

/** What is loaded: answered by `status`. */
export interface StatusRequest {
  type: 'status';
  id: string;
}

/** Frees the model and every LoRA (the next generate loads again). */
export interface UnloadRequest {
  type: 'unload';
  id: string;
}

/** Requests queued after it are cancelled; the worker finishes the running one and exits 0. (Closing stdin instead lets the queued ones run first.) */
export interface ShutdownRequest {
  type: 'shutdown';
  id?: string;
}

export type WorkerRequest = GenerateRequest | CancelRequest | StatusRequest | UnloadRequest | ShutdownRequest;

/** Sent once, when the worker is ready to read requests. */
export interface ReadyMessage {
  type: 'ready';
  v: number;
  pid: number;
  backend: string;
  adapter?: string;
}

export interface ModelLoadingMessage {
  type: 'model_loading';
  v: number;
  id: string;
  model: string;
}

export interface ModelLoadedMessage {
  type: 'model_loaded';
  v: number;
  id: string;
  model: string;
  seconds: number;
  /** Image size the model makes by default. */
  width: number;
  height: number;
}

export interface LoraLoadedMessage {
  type: 'lora_loaded';
  v: number;
  id: string;
  file: string;
  /** True when the weights came from the worker's cache (same path and modification time) instead of disk. */
  cached: boolean;
  modules: number;
  format: string;
  warnings: string[];
}

export interface LoraUnloadedMessage {
  type: 'lora_unloaded';
  v: number;
  id: string;
  file: string;
}

export interface ProgressMessage {
  type: 'progress';
  v: number;
  id: string;
  /** Index of the job (image) in the request. */
  job: number;
  jobs: number;
  step: number;
  steps: number;
}

export interface ImageMessage {
  type: 'image';
  v: number;
  id: string;
  job: number;
  seed: number;
  loras: LoraRef[];
  width: number;
  height: number;
  /** Absolute path of the PNG (when the request named an outDir). */
  file?: string;
  /** Base64 PNG bytes (when it did not). */
  png?: string;
  seconds: number;
}

export interface SheetMessage {
  type: 'sheet';
  v: number;
  id: string;
  columns: number;
  rows: number;
  file?: string;
  png?: string;
}

export interface DoneMessage {
  type: 'done';
  v: number;
  id: string;
  images: number;
  seconds: number;
}

export interface CancelledMessage {
  type: 'cancelled';
  v: number;
  id: string;
  /** Images finished before the cancel (their `image` messages were sent). */
  images: number;
}

export type WorkerErrorCode = 'bad_request' | 'model' | 'lora' | 'generate' | 'internal';

export interface ErrorMessage {
  type: 'error';
  v: number;
  /** The request that failed; absent for errors that belong to no request (an unreadable line). */
  id?: string;
  code: WorkerErrorCode;
  message: string;
  /** What to do about it, when there is something to say. */
  hint?: string;
}

export interface StatusMessage {
  type: 'status';
  v: number;
  id: string;
  model?: string;
  /** LoRAs in the active set, with their scales. */
  loras: LoraRef[];
  /** LoRA files whose weights are cached. */
  cached: string[];
  /** Model loads since the worker started. */
  modelLoads: number;
  backend: string;
}

export type WorkerMessage =
  | ReadyMessage
  | ModelLoadingMessage
  | ModelLoadedMessage
  | LoraLoadedMessage
  | LoraUnloadedMessage
  | ProgressMessage
  | ImageMessage
  | SheetMessage
  | DoneMessage
  | CancelledMessage
  | ErrorMessage
  | StatusMessage;

/** Messages that end a request: after one of these no more messages carry its id. */
export function isFinalMessage(m: WorkerMessage): m is DoneMessage | CancelledMessage | ErrorMessage | StatusMessage {
  return m.type === 'done' || m.type === 'cancelled' || m.type === 'error' || m.type === 'status';
}

const MESSAGE_TYPES = new Set<WorkerMessage['type']>([
  'ready',
  'model_loading',
  'model_loaded',
  'lora_loaded',
  'lora_unloaded',
  'progress',
  'image',
  'sheet',
  'done',
  'cancelled',
  'error',
  'status',
]);

/** A worker stdout line → message, or undefined when the line is not one (a stray log line). */
export function parseWorkerMessage(line: string): WorkerMessage | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const m = JSON.parse(line) as WorkerMessage;
    return m && typeof m === 'object' && MESSAGE_TYPES.has(m.type) ? m : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A request line → request, or a sentence saying what is wrong with it. Checks the shape a worker relies
 * on (types, ranges), not whether files exist — that is the worker's job, with the file named.
 */
export function parseWorkerRequest(line: string): WorkerRequest | { problem: string; id?: string } {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(line) as Record<string, unknown>;
  } catch (e) {
    return { problem: `request is not JSON (${(e as Error).message}): ${line.slice(0, 80)}` };
  }
  if (!r || typeof r !== 'object' || Array.isArray(r)) return { problem: 'request must be a JSON object' };
  const id = typeof r.id === 'string' ? r.id : undefined;
  const bad = (problem: string) => ({ problem, id });
  switch (r.type) {
    case 'cancel':
    case 'status':
    case 'unload':
      if (!id) return bad(`"${r.type}" needs a string "id"`);
      return r as unknown as WorkerRequest;
    case 'shutdown':
      return r as unknown as ShutdownRequest;
    case 'generate':
      break;
    default:
      return bad(`unknown request type ${JSON.stringify(r.type)} (expected generate, cancel, status, unload or shutdown)`);
  }
  if (!id) return bad('"generate" needs a string "id"');
  if (typeof r.model !== 'string' || !r.model) return bad('"model" must be the path of a diffusers pipeline folder');
  if (typeof r.prompt !== 'string') return bad('"prompt" must be a string');
  if (r.negativePrompt !== undefined && typeof r.negativePrompt !== 'string') return bad('"negativePrompt" must be a string');
  if (r.scheduler !== undefined && !INFERENCE_SCHEDULERS.includes(r.scheduler as InferenceScheduler)) {
    return bad(`"scheduler" must be one of ${INFERENCE_SCHEDULERS.join(', ')}, got ${JSON.stringify(r.scheduler)}`);
  }
  const intAtLeast = (key: string, min: number) => r[key] === undefined || (Number.isInteger(r[key]) && (r[key] as number) >= min);
  if (!intAtLeast('steps', 1)) return bad(`"steps" must be an integer ≥ 1, got ${JSON.stringify(r.steps)}`);
  if (!intAtLeast('width', 8)) return bad(`"width" must be an integer ≥ 8, got ${JSON.stringify(r.width)}`);
  if (!intAtLeast('height', 8)) return bad(`"height" must be an integer ≥ 8, got ${JSON.stringify(r.height)}`);
  if (r.guidance !== undefined && !Number.isFinite(r.guidance)) return bad(`"guidance" must be a number, got ${JSON.stringify(r.guidance)}`);
  if (r.outDir !== undefined && typeof r.outDir !== 'string') return bad('"outDir" must be a folder path');
  if (!Array.isArray(r.jobs) || r.jobs.length === 0) return bad('"jobs" must be a non-empty list of {seed, loras}');
  for (const [i, j] of (r.jobs as Record<string, unknown>[]).entries()) {
    if (!j || typeof j !== 'object') return bad(`jobs[${i}] must be an object`);
    if (!Number.isInteger(j.seed) || (j.seed as number) < 0) return bad(`jobs[${i}].seed must be an integer ≥ 0, got ${JSON.stringify(j.seed)}`);
    if (!Array.isArray(j.loras)) return bad(`jobs[${i}].loras must be a list of {file, scale}`);
    for (const [k, l] of (j.loras as Record<string, unknown>[]).entries()) {
      if (!l || typeof l.file !== 'string' || !Number.isFinite(l.scale)) return bad(`jobs[${i}].loras[${k}] must be {file: string, scale: number}`);
    }
    if (j.fileName !== undefined && (typeof j.fileName !== 'string' || /[\\/]/.test(j.fileName))) return bad(`jobs[${i}].fileName must be a file name without folders`);
  }
  const sheet = r.sheet as Record<string, unknown> | undefined;
  if (sheet !== undefined && (!sheet || !Number.isInteger(sheet.columns) || (sheet.columns as number) < 1)) return bad('"sheet" must be {columns: integer ≥ 1}');
  return r as unknown as GenerateRequest;
}

/** A message as its sender writes it: everything but the protocol version. */
export type UnversionedMessage = WorkerMessage extends infer M ? (M extends WorkerMessage ? Omit<M, 'v'> : never) : never;

/** Stamps the protocol version on a message. */
export function workerMessage(m: UnversionedMessage): WorkerMessage {
  return { ...m, v: INFERENCE_PROTOCOL_VERSION } as WorkerMessage;
}
