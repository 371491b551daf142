// A run's history read back from its output folder — metrics.jsonl, samples/, checkpoint-<step>/ and the
// final LoRA — so a dashboard reopened after a reload (or for a run started on a terminal) shows the whole
// run. No `vscode` import. Everything here tolerates a folder that is being written while it is read.
import fs from 'node:fs';
import path from 'node:path';
import type { DashboardHistory, DashboardPoint } from '../protocol/dashboard.js';
import { FINAL_SAMPLES, LORA_FILE, METRICS_FILE, SAMPLES_DIR, listCheckpoints } from '../core/config/run_folder.js';
import { READ_LIMITS, readRegularText } from '../core/io/safe_read.js';

/** Sample images as found on disk, before the webview URIs are attached. */
export interface DiskSample {
  step: number;
  prompt: string;
  seed: number;
  path: string;
}

export interface DiskHistory extends Omit<DashboardHistory, 'samples'> {
  samples: DiskSample[];
}

export function readRunHistory(outputDir: string): DiskHistory {
  const points = readMetricsPoints(path.join(outputDir, METRICS_FILE));
  const checkpoints = listCheckpoints(outputDir);
  const lastStep = points.at(-1)?.step ?? checkpoints.at(-1)?.step ?? 0;
  const samples = listSamples(path.join(outputDir, SAMPLES_DIR), lastStep);
  const lora = path.join(outputDir, LORA_FILE);
  const history: DiskHistory = { points, checkpoints, samples, warnings: [] };
  const last = points.at(-1);
  // A final LoRA newer than every checkpoint means the run completed; otherwise it is a leftover.
  const loraTime = fileTime(lora);
  if (loraTime !== undefined && checkpoints.every((c) => (fileTime(c.path) ?? 0) <= loraTime)) {
    history.finished = {
      type: 'finished',
      reason: 'completed',
      step: lastStep,
      outputs: { lora, metrics: path.join(outputDir, METRICS_FILE), samples: samples.map((s) => s.path) },
      elapsedSeconds: last?.elapsedSeconds ?? 0,
    };
  }
  return history;
}

/**
 * metrics.jsonl rows (src/training/metrics.ts: step, epoch, loss, lr, grad_norm, elapsed_seconds, …).
 * Read by field name rather than by importing the trainer's module: the extension may only depend on the
 * trainer's config and protocol (DESIGN.md), and a torn last line must be skipped anyway.
 */
export function readMetricsPoints(file: string): DashboardPoint[] {
  let text: string;
  try {
    // Only a regular file under the cap: an output folder from someone else's repository may hold a metrics.jsonl that is /dev/zero.
    text = readRegularText(file, READ_LIMITS.metrics, 'metrics.jsonl');
  } catch {
    return [];
  }
  const byStep = new Map<number, DashboardPoint>();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let row: Record<string, unknown>;
    try {
      row = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue; // a line being written right now
    }
    const num = (...keys: string[]) => {
      for (const k of keys) if (typeof row[k] === 'number') return row[k] as number;
      return undefined;
    };
    const step = num('step');
    const loss = num('loss');
    if (step === undefined || loss === undefined) continue;
    byStep.set(step, {
      step,
      loss,
      lr: num('lr') ?? 0,
      epoch: num('epoch'),
      gradNorm: num('grad_norm', 'gradNorm'),
      elapsedSeconds: num('elapsed_seconds', 'elapsedSeconds'),
      totalSteps: num('total_steps', 'totalSteps'),
    });
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

/** `final-<i>.png` (and other tools' `final…` names): the images made at the run's end. */
const FINAL_NAME = new RegExp(`^${FINAL_SAMPLES}\\b`, 'i');

/**
 * PNGs under samples/ (one level of sub-folders too). The step comes from the name: the trainer writes
 * `step-000100-<i>.png` during the run and `final-<i>.png` at its end (that is `finalStep`).
 */
export function listSamples(samplesDir: string, finalStep = 0): DiskSample[] {
  const files: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory() && depth < 1) walk(p, depth + 1);
      else if (e.isFile() && /\.png$/i.test(e.name)) files.push(p);
    }
  };
  walk(samplesDir, 0);
  const samples: DiskSample[] = [];
  for (const file of files) {
    const rel = path.relative(samplesDir, file);
    const step = FINAL_NAME.test(path.basename(rel)) ? finalStep : stepFromName(rel);
    if (step === undefined) continue;
    const params = readPngParameters(file);
    samples.push({
      step,
      path: file,
      prompt: typeof params?.prompt === 'string' ? params.prompt : path.basename(file, '.png'),
      seed: typeof params?.seed === 'number' ? params.seed : Number(/seed[-_]?(\d+)/i.exec(rel)?.[1] ?? 0),
    });
  }
  return samples.sort((a, b) => a.step - b.step || a.path.localeCompare(b.path));
}

/** "step-000100-0.png", "step_100/0.png", "000100_a-red-circle.png" → 100. */
export function stepFromName(rel: string): number | undefined {
  const m = /step[-_]?(\d+)/i.exec(rel) ?? /^(\d+)(?=[-_./\\])/.exec(rel);
  return m ? Number(m[1]) : undefined;
}

/**
 * The generation parameters the trainer and `lora-studio generate` store in a PNG tEXt chunk named
 * "parameters" (JSON). Reads only the chunks before the image data, so it is cheap.
 */
export function readPngParameters(file: string): Record<string, unknown> | undefined {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const head = Buffer.alloc(64 * 1024);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    const buf = head.subarray(0, n);
    if (buf.length < 8 || buf.readUInt32BE(0) !== 0x89504e47) return undefined;
    let off = 8;
    while (off + 8 <= buf.length) {
      const len = buf.readUInt32BE(off);
      const type = buf.toString('latin1', off + 4, off + 8);
      if (type === 'IDAT' || type === 'IEND' || off + 8 + len > buf.length) return undefined;
      if (type === 'tEXt') {
        const data = buf.subarray(off + 8, off + 8 + len);
        const zero = data.indexOf(0);
        if (zero > 0 && data.toString('latin1', 0, zero) === 'parameters') {
          try {
            return JSON.parse(data.toString('latin1', zero + 1)) as Record<string, unknown>;
          } catch {
            return undefined;
          }
        }
      }
      off += 12 + len;
    }
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
  return undefined;
}

function fileTime(p: string): number | undefined {
  try {
    return fs.statSync(p).mtimeMs;
  } catch {
    return undefined;
  }
}
