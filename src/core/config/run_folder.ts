// A run's folder (`output_dir`): the one place that spells what a run writes there and how —
//
//   pytorch_lora_weights.safetensors        the trained LoRA, diffusers layout (diffusers' save_lora_weights name)
//   <output_name>.safetensors               the same weights in kohya/A1111 layout (save_formats: kohya, on by default;
//                                           output_name defaults to the output folder's name, as sd-scripts' --output_name)
//   metrics.jsonl                           one JSON object per optimizer step
//   samples/                                validation images (`step-000100-<i>.png`, `final-<i>.png`)
//   checkpoint-<step>/                      everything a resume needs (see src/training/checkpoints.ts)
//   generated/                              images made with "Generate Image…" from this run's LoRA
//   .lora-studio.lock                       held while a run trains here (pid, host, start; see run_lock.ts)
//
// and the temp-then-rename writes that keep a reader (or a killed process) from ever seeing a half-written
// file or checkpoint. Light (node fs/path only): the trainer, the extension and the language server use it.
import fs from 'node:fs';
import path from 'node:path';

export const LORA_FILE = 'pytorch_lora_weights.safetensors';
/** The kohya copy's name in docs and messages (the real one is `kohyaLoraFile`'s). */
export const KOHYA_LORA_FILE_PATTERN = '<output_name>.safetensors';

/** A run's output name: `output_name`, else the output folder's name (what A1111 and ComfyUI list the LoRA as). */
export function runOutputName(outputDir: string, outputName?: string | null): string {
  return outputName ?? path.basename(path.resolve(outputDir));
}

/** The kohya/A1111 copy of a run's LoRA: `<output_dir>/<output_name>.safetensors`. */
export function kohyaLoraFile(outputDir: string, outputName?: string | null): string {
  const name = runOutputName(outputDir, outputName);
  // A name equal to the diffusers file's would overwrite it.
  return path.join(outputDir, `${name}.safetensors` === LORA_FILE ? `${name}_kohya.safetensors` : `${name}.safetensors`);
}

/**
 * The finished LoRA files in a run's folder: the diffusers file first, then every other top-level
 * `.safetensors` (the kohya copy, whatever output_name it was given), by name. None when the folder is missing.
 */
export function listFinalLoraFiles(outputDir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(outputDir);
  } catch {
    return [];
  }
  const files = names.filter((n) => n.endsWith('.safetensors') && !n.startsWith('.') && isFile(path.join(outputDir, n))).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return [...files.filter((n) => n === LORA_FILE), ...files.filter((n) => n !== LORA_FILE)].map((n) => path.join(outputDir, n));
}
export const METRICS_FILE = 'metrics.jsonl';
export const SAMPLES_DIR = 'samples';
export const GENERATED_DIR = 'generated';
/** One run at a time per folder: see run_lock.ts. */
export const RUN_LOCK_FILE = '.lora-studio.lock';

/** The files inside a `checkpoint-<step>/` folder. */
export const CHECKPOINT_FILES = {
  /** The LoRA so far, diffusers layout: the folder also loads in diffusers as a LoRA. */
  lora: LORA_FILE,
  optimizer: 'optimizer.safetensors',
  state: 'training_state.json',
} as const;

/** The label of the validation images made after the last step (`final-<i>.png`). */
export const FINAL_SAMPLES = 'final';

/** The label of the validation images made at `step` (`step-000100-<i>.png`: zero-padded, so names sort by step). */
export function sampleLabel(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

/** The file name, in samples/, of image `index` of one validation (`label`: sampleLabel or FINAL_SAMPLES). */
export function sampleFileName(label: string, index: number): string {
  return `${label}-${index}.png`;
}

const CHECKPOINT_DIR = /^checkpoint-(\d+)$/;
/** Half-written (`.tmp-`) or being-deleted (`.old-`) checkpoints: hidden, outside the `checkpoint-*` namespace. */
const CHECKPOINT_TEMPORARY = /^\.checkpoint-(\d+)\.(tmp|old)-/;

/** A `checkpoint-<step>` folder of a run. */
export interface CheckpointFolder {
  readonly step: number;
  /** Absolute (or output_dir-relative, as output_dir was given) path of the folder. */
  readonly path: string;
}

export function checkpointDirName(step: number): string {
  return `checkpoint-${step}`;
}

/** The step of a `checkpoint-<step>` folder (a path or a bare name); undefined for anything else. */
export function checkpointStep(dir: string): number | undefined {
  const m = CHECKPOINT_DIR.exec(path.basename(dir));
  return m ? Number(m[1]) : undefined;
}

/** `checkpoint-<step>` folders in a run's output folder, oldest first; none when the folder is missing. */
export function listCheckpoints(outputDir: string): CheckpointFolder[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(outputDir, { withFileTypes: true });
  } catch {
    return [];
  }
  const found: CheckpointFolder[] = [];
  for (const e of entries) {
    const step = checkpointStep(e.name);
    const p = path.join(outputDir, e.name);
    if (step !== undefined && (e.isDirectory() || (e.isSymbolicLink() && isDir(p)))) found.push({ step, path: p });
  }
  return found.sort((a, b) => a.step - b.step);
}

/** The hidden folder a checkpoint is written into before it is renamed to `checkpoint-<step>`. */
export function checkpointTemporaryDir(outputDir: string, step: number): string {
  return path.join(outputDir, `.${checkpointDirName(step)}.tmp-${process.pid}-${Date.now()}`);
}

/** Whether `dir` is the temporary folder of step `step`'s checkpoint (any step when omitted). */
export function isCheckpointTemporary(dir: string, step?: number): boolean {
  const m = CHECKPOINT_TEMPORARY.exec(path.basename(dir));
  return !!m && (step === undefined || Number(m[1]) === step);
}

/** writeFileAtomic's temporary (`.<name>.<pid>.tmp`) and the lock's (`.lora-studio.lock.<pid>-<hex>.tmp`). */
const WRITE_TEMPORARY = /^\..+\.\d+(-[0-9a-f]+)?\.tmp$/;

/** Deletes half-written and half-deleted checkpoint folders and half-written files left by a killed run (call it holding the run's lock). */
export function removeCheckpointTemporaries(outputDir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(outputDir);
  } catch {
    return;
  }
  for (const n of names) {
    if (isCheckpointTemporary(n)) fs.rmSync(path.join(outputDir, n), { recursive: true, force: true });
    else if (WRITE_TEMPORARY.test(n)) fs.rmSync(path.join(outputDir, n), { force: true });
  }
}

/**
 * Test seam of the crash and full-disk tests (never set in a real run): told at each stage of every atomic
 * write — `partial` with half of a file's bytes in its temporary file (a probe pauses there to be killed, or
 * throws ENOSPC as a full disk would), `done` once the file is in place, `aside` when a folder has been
 * renamed out of the way for deletion.
 */
export type WriteProbe = (stage: 'partial' | 'done' | 'aside', file: string) => void;
let writeProbe: WriteProbe | undefined;
export function setWriteProbe(probe: WriteProbe | undefined): void {
  writeProbe = probe;
}

/**
 * `mkdir -p` that fails instead of hanging. Node 20's `mkdirSync(dir, { recursive: true })` spins forever,
 * deaf to SIGTERM, when a folder exists but refuses children with ENOENT (`/proc`, `/sys`): an `output_dir`
 * there hung `train`. Here each missing folder is made in turn and the first refusal is thrown.
 */
export function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let d = path.resolve(dir); !fs.existsSync(d) && path.dirname(d) !== d; d = path.dirname(d)) missing.push(d);
  for (const d of missing.reverse()) {
    try {
      fs.mkdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}

/**
 * Writes a file so that a reader never sees it half-written: to a temporary name in the same folder,
 * flushed to disk, then renamed over the target (rename is atomic within a file system). On failure (a
 * full disk) the temporary file is removed and the target is untouched.
 */
export function writeFileAtomic(file: string, data: Buffer | string): void {
  makeDirs(path.dirname(file));
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      const half = writeProbe ? bytes.length >> 1 : bytes.length;
      writeAll(fd, bytes.subarray(0, half));
      writeProbe?.('partial', file);
      writeAll(fd, bytes.subarray(half));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  writeProbe?.('done', file);
}

/** writeSync may write fewer bytes than asked (a nearly full disk): loop until all are written or it throws. */
function writeAll(fd: number, bytes: Uint8Array): void {
  for (let off = 0; off < bytes.length; ) off += fs.writeSync(fd, bytes, off, bytes.length - off);
}

/**
 * Publishes a finished temporary folder as `final` by one rename, after flushing its entries; an existing
 * `final` is first moved aside and deleted (see `removeDirAtomic`).
 */
export function publishDirAtomic(tmp: string, final: string): void {
  fsyncDir(tmp);
  if (fs.existsSync(final)) removeDirAtomic(final);
  fs.renameSync(tmp, final);
  fsyncDir(path.dirname(final));
}

/** Renames a checkpoint folder out of the `checkpoint-*` namespace first, so an interrupted delete never leaves a half `checkpoint-<n>`. */
export function removeDirAtomic(dir: string): void {
  const aside = path.join(path.dirname(dir), `.${path.basename(dir)}.old-${process.pid}-${Date.now()}`);
  fs.renameSync(dir, aside);
  writeProbe?.('aside', aside);
  fs.rmSync(aside, { recursive: true, force: true });
}

function fsyncDir(dir: string): void {
  // Makes the directory entries (new files, the rename) durable. Not possible on Windows: skip there.
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* directories cannot be opened for fsync on this platform */
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
