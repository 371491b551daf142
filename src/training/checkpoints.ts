// Checkpoints: `output_dir/checkpoint-<step>/` holds everything a run needs to continue exactly where it
// was — the LoRA weights (diffusers layout, so the folder also loads in diffusers as a LoRA), the AdamW
// moments and step, the training generator's state and the position in the data.
//
// A checkpoint is written into a hidden temporary folder, every file flushed to disk, and only then
// renamed to `checkpoint-<step>` (a rename is atomic): a process killed at any moment leaves either no
// new checkpoint or a complete one, and every earlier checkpoint untouched. Removal for
// checkpoints_total_limit renames the folder out of the `checkpoint-*` namespace before deleting it.
import fs from 'node:fs';
import path from 'node:path';
import { encodeSafetensors, readAllFloat32, SafetensorsFile, type TensorToWrite } from '../core/io/safetensors.js';
import {
  CHECKPOINT_FILES,
  checkpointDirName,
  checkpointTemporaryDir,
  listCheckpoints,
  makeDirs,
  publishDirAtomic,
  removeDirAtomic,
  writeFileAtomic,
} from '../core/config/run_folder.js';
import { resolveCheckpoint } from '../core/config/disk_checks.js';
import { formatBytes } from '../protocol/format.js';
import type { AdamWState } from './adamw.js';
import type { RandomState } from './random.js';
import type { LoraModuleWeights } from './lora_params.js';

export const CHECKPOINT_FORMAT = 'lora-studio-checkpoint';
export const CHECKPOINT_VERSION = 1;
const { lora: LORA_FILE, optimizer: OPTIMIZER_FILE, state: STATE_FILE } = CHECKPOINT_FILES;

/** Where the run stands: enough, with the seed and the config, to draw the same numbers from here on. */
export interface TrainingState {
  readonly format: typeof CHECKPOINT_FORMAT;
  readonly version: number;
  /** Optimizer steps done. */
  readonly globalStep: number;
  /** The next micro-batch to train on: its epoch and its index within that epoch's shuffled order. */
  readonly epoch: number;
  readonly batchInEpoch: number;
  readonly seed: number;
  /** The training generator (noise, timesteps, latent samples, crop and flip). */
  readonly rng: RandomState;
  readonly rank: number;
  readonly alpha: number;
  readonly numExamples: number;
  readonly elapsedSeconds: number;
  /** Validation-relevant settings that must not change across a resume (compared on load). */
  readonly fingerprint: Record<string, unknown>;
}

export interface Checkpoint {
  readonly dir: string;
  readonly step: number;
  readonly state: TrainingState;
  readonly lora: Map<string, CheckpointModule>;
  readonly optimizer: AdamWState;
}

/** One module's weights in a checkpoint, by its TrainableLora module key. */
export interface CheckpointModule {
  down: Float32Array;
  up: Float32Array;
  downShape: number[];
  upShape: number[];
  /** DoRA's magnitude. */
  magnitude?: Float32Array;
}

export class CheckpointError extends Error {
  constructor(dir: string, problem: string) {
    super(`checkpoint ${dir}: ${problem}`);
    this.name = 'CheckpointError';
  }
}

/** diffusers' key for a LoRA weight: `unet.<path>` for the UNet's modules, the text encoder's keep their `text_encoder.` key. */
const loraKey = (moduleKey: string, which: 'down' | 'up' | 'magnitude') => `${moduleKey.startsWith('text_encoder.') ? '' : 'unet.'}${moduleKey}.lora.${which === 'magnitude' ? 'magnitude' : `${which}.weight`}`;

export interface SaveCheckpointInput {
  readonly lora: ReadonlyMap<string, LoraModuleWeights>;
  readonly optimizer: AdamWState;
  readonly state: TrainingState;
  /** Extra safetensors metadata for the LoRA file. */
  readonly metadata?: Record<string, string>;
  /** Called with the finished temporary folder just before it is published (tests pause or kill here). */
  readonly beforePublish?: (tmpDir: string) => void;
}

/** Writes `checkpoint-<step>` atomically and returns its path. */
export function saveCheckpoint(outputDir: string, input: SaveCheckpointInput): string {
  const step = input.state.globalStep;
  makeDirs(outputDir);
  const final = path.join(outputDir, checkpointDirName(step));
  const loraTensors = new Map<string, TensorToWrite>();
  for (const [p, m] of input.lora) {
    loraTensors.set(loraKey(p, 'down'), { shape: [m.rank, m.down.length / m.rank], data: m.down });
    loraTensors.set(loraKey(p, 'up'), { shape: [m.outFeatures, m.rank], data: m.up });
    if (m.magnitude) loraTensors.set(loraKey(p, 'magnitude'), { shape: [m.outFeatures], data: m.magnitude });
  }
  const optTensors = new Map<string, TensorToWrite>();
  for (const [name, m] of input.optimizer.expAvg) optTensors.set(`${name}.exp_avg`, { shape: [m.length], data: m });
  for (const [name, v] of input.optimizer.expAvgSq) optTensors.set(`${name}.exp_avg_sq`, { shape: [v.length], data: v });
  const files: [string, Buffer][] = [
    [LORA_FILE, encodeSafetensors(loraTensors, { format: 'pt', ...input.metadata, 'lora_studio.step': String(step) })],
    [OPTIMIZER_FILE, encodeSafetensors(optTensors, { step: String(input.optimizer.step) })],
    [STATE_FILE, Buffer.from(JSON.stringify(input.state, null, 1) + '\n')],
  ];
  const needed = files.reduce((n, [, b]) => n + b.length, 0);
  // Refused before anything is written when the disk cannot hold it; a disk filling up meanwhile is caught below.
  const free = freeBytes(outputDir);
  if (free !== undefined && free < needed) throw new DiskFullError(outputDir, step, needed, free);
  const tmp = checkpointTemporaryDir(outputDir, step);
  try {
    fs.mkdirSync(tmp);
    for (const [name, bytes] of files) writeFileAtomic(path.join(tmp, name), bytes);
    input.beforePublish?.(tmp);
    // Re-saving a step (a resumed run passing an old step again) moves the old one aside first.
    publishDirAtomic(tmp, final);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') throw new DiskFullError(outputDir, step, needed, freeBytes(outputDir));
    throw e;
  }
  return final;
}

/** A checkpoint that does not fit on the disk: nothing of it is left, earlier checkpoints are untouched. */
export class DiskFullError extends CheckpointError {
  constructor(
    outputDir: string,
    readonly step: number,
    readonly neededBytes: number,
    readonly freeBytes: number | undefined,
  ) {
    super(
      path.join(outputDir, checkpointDirName(step)),
      `not written: the disk is full (it needs ${formatBytes(neededBytes)}${freeBytes !== undefined ? `, ${formatBytes(freeBytes)} is free` : ''}); the earlier checkpoints are untouched`,
    );
    this.name = 'DiskFullError';
  }
}

/** Bytes a non-root writer may still use on the file system of `dir`; undefined where statfs is unavailable. */
function freeBytes(dir: string): number | undefined {
  try {
    const s = fs.statfsSync(dir);
    // root may also use the blocks reserved for it.
    return (process.getuid?.() === 0 ? s.bfree : s.bavail) * s.bsize;
  } catch {
    return undefined;
  }
}

/** Reads and checks a checkpoint folder. */
export function loadCheckpoint(dir: string): Checkpoint {
  for (const f of [STATE_FILE, LORA_FILE, OPTIMIZER_FILE]) {
    if (!fs.existsSync(path.join(dir, f))) throw new CheckpointError(dir, `${f} is missing (not a LoRA Studio checkpoint, or damaged)`);
  }
  let state: TrainingState;
  try {
    state = JSON.parse(fs.readFileSync(path.join(dir, STATE_FILE), 'utf8')) as TrainingState;
  } catch (e) {
    throw new CheckpointError(dir, `${STATE_FILE} is not valid JSON (${(e as Error).message})`);
  }
  if (state.format !== CHECKPOINT_FORMAT || typeof state.globalStep !== 'number' || !state.rng) throw new CheckpointError(dir, `${STATE_FILE} is not a LoRA Studio training state`);
  if (state.version > CHECKPOINT_VERSION) throw new CheckpointError(dir, `written by a newer LoRA Studio (format version ${state.version}); update LoRA Studio to resume it`);

  const lora = new Map<string, CheckpointModule>();
  const loraFile = readAllFloat32(path.join(dir, LORA_FILE));
  for (const [key, t] of loraFile.tensors) {
    const m = /^(?:unet\.)?(.+)\.lora\.(down\.weight|up\.weight|magnitude)$/.exec(key);
    if (!m) throw new CheckpointError(dir, `${LORA_FILE}: unexpected tensor ${key}`);
    const entry = lora.get(m[1]) ?? { down: new Float32Array(), up: new Float32Array(), downShape: [], upShape: [] };
    if (m[2] === 'down.weight') lora.set(m[1], { ...entry, down: t.data, downShape: t.shape });
    else if (m[2] === 'up.weight') lora.set(m[1], { ...entry, up: t.data, upShape: t.shape });
    else lora.set(m[1], { ...entry, magnitude: t.data });
  }

  const opt = SafetensorsFile.open(path.join(dir, OPTIMIZER_FILE));
  const expAvg = new Map<string, Float32Array>();
  const expAvgSq = new Map<string, Float32Array>();
  try {
    for (const name of opt.names()) {
      if (name.endsWith('.exp_avg_sq')) expAvgSq.set(name.slice(0, -'.exp_avg_sq'.length), opt.readFloat32(name));
      else if (name.endsWith('.exp_avg')) expAvg.set(name.slice(0, -'.exp_avg'.length), opt.readFloat32(name));
    }
    const step = Number(opt.metadata.step);
    if (!Number.isInteger(step)) throw new CheckpointError(dir, `${OPTIMIZER_FILE} has no step count`);
    return { dir, step: state.globalStep, state, lora, optimizer: { step, expAvg, expAvgSq } };
  } finally {
    opt.close();
  }
}

/**
 * resume_from_checkpoint as the trainer gets it (the config loader has made paths absolute): `latest` → the
 * newest checkpoint in output_dir (undefined when there is none: the run starts fresh, as the guide does);
 * a path → that folder, resolved as the config does (resolveCheckpoint; a relative path starts at the
 * working directory here). Throws when it is not a folder.
 */
export function resolveResume(outputDir: string, spec: string): string | undefined {
  const dir = resolveCheckpoint(spec, process.cwd(), outputDir);
  if (dir === undefined || fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) return dir;
  throw new CheckpointError(spec, `not found (no folder at ${dir}); use resume_from_checkpoint: latest or the path of a checkpoint-<step> folder`);
}

/** Removes the oldest checkpoints so that at most `limit` remain; returns the removed folders. */
export function pruneCheckpoints(outputDir: string, limit: number | null | undefined): string[] {
  if (limit == null) return [];
  const all = listCheckpoints(outputDir);
  const remove = all.slice(0, Math.max(0, all.length - limit));
  for (const c of remove) removeDirAtomic(c.path);
  return remove.map((c) => c.path);
}

