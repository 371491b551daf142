// The messages between the trainer process and whoever runs it (the extension, the dashboard, a script).
// Trainer → host: one JSON object per line on stdout, each with `type` and the protocol version `v`.
// Host → trainer: one JSON object per line on stdin. Human-readable logs go to stderr, never stdout.
// This module is imported by the trainer, the extension and the webview: types and tiny pure helpers only.

export const PROTOCOL_VERSION = 1;

export interface StartedEvent {
  type: 'started';
  v: number;
  runId: string;
  configPath?: string;
  outputDir: string;
  backend: string;
  adapter?: string;
  totalSteps: number;
  /** Steps already done when resuming (0 for a fresh run). */
  startStep: number;
  numExamples: number;
  batchSize: number;
  gradientAccumulationSteps: number;
  loraParameters: number;
  time: string;
}

export interface ProgressEvent {
  type: 'progress';
  v: number;
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm?: number;
  samplesPerSecond: number;
  /** Seconds left at the current pace. */
  etaSeconds: number;
  elapsedSeconds: number;
}

export interface SampleEvent {
  type: 'sample';
  v: number;
  step: number;
  prompt: string;
  seed: number;
  /** Absolute path of the PNG. */
  path: string;
}

export interface CheckpointEvent {
  type: 'checkpoint';
  v: number;
  step: number;
  /** Absolute path of the checkpoint-<step> folder. */
  path: string;
  /** Checkpoints removed to respect checkpoints_total_limit. */
  removed: string[];
}

export interface WarningEvent {
  type: 'warning';
  v: number;
  message: string;
  code?: string;
}

export type ErrorCode = 'config' | 'model' | 'dataset' | 'nan_loss' | 'out_of_memory' | 'backend' | 'io' | 'internal';

export interface ErrorEvent {
  type: 'error';
  v: number;
  code: ErrorCode;
  message: string;
  /** What the user can do about it. */
  hint?: string;
}

export interface FinishedEvent {
  type: 'finished';
  v: number;
  /** 'completed': all steps done; 'stopped': stopped on request after saving a checkpoint. */
  reason: 'completed' | 'stopped';
  step: number;
  outputs: { lora?: string; kohya?: string; checkpoint?: string; metrics: string; samples: string[] };
  elapsedSeconds: number;
}

export type TrainerEvent = StartedEvent | ProgressEvent | SampleEvent | CheckpointEvent | WarningEvent | ErrorEvent | FinishedEvent;
export type TrainerEventType = TrainerEvent['type'];

export type TrainerCommand = { type: 'stop' } | { type: 'checkpoint' } | { type: 'sample' };

/** Encodes one event as a protocol line (with the trailing newline). */
export function encodeEvent(e: DistributiveOmit<TrainerEvent, 'v'>): string {
  return JSON.stringify({ ...e, v: PROTOCOL_VERSION }) + '\n';
}

/** Parses one stdout line; undefined for lines that are not protocol events (never throws). */
export function parseEvent(line: string): TrainerEvent | undefined {
  const s = line.trim();
  if (!s.startsWith('{')) return undefined;
  try {
    const o = JSON.parse(s) as { type?: unknown; v?: unknown };
    if (typeof o.type !== 'string' || typeof o.v !== 'number' || !EVENT_TYPES.has(o.type as TrainerEventType)) return undefined;
    return o as TrainerEvent;
  } catch {
    return undefined;
  }
}

export function parseCommand(line: string): TrainerCommand | undefined {
  try {
    const o = JSON.parse(line.trim()) as { type?: unknown };
    return o.type === 'stop' || o.type === 'checkpoint' || o.type === 'sample' ? (o as TrainerCommand) : undefined;
  } catch {
    return undefined;
  }
}

const EVENT_TYPES = new Set<TrainerEventType>(['started', 'progress', 'sample', 'checkpoint', 'warning', 'error', 'finished']);

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
