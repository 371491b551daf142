// metrics.jsonl: one JSON object per optimizer step, appended as training goes (readable while it runs,
// e.g. by the dashboard or `tail -f`). On resume the rows after the checkpoint's step are dropped, so
// the file describes one consistent history however often the run was interrupted.
import fs from 'node:fs';
import path from 'node:path';
import { makeDirs, writeFileAtomic } from '../core/config/run_folder.js';

export interface MetricsRow {
  readonly step: number;
  readonly epoch: number;
  /** Mean loss over the step's micro-batches (what the guide logs as train_loss). */
  readonly loss: number;
  readonly lr: number;
  /** Gradient L2 norm before clipping. */
  readonly grad_norm: number;
  /** Seconds this optimizer step took. */
  readonly step_seconds: number;
  /** Seconds of training since the run first started (resumes included). */
  readonly elapsed_seconds: number;
  /** Wall-clock time, ISO 8601. */
  readonly time: string;
}

export class MetricsWriter {
  private fd: number;

  /** Opens output_dir/metrics.jsonl for appending; with `keepUpToStep` drops rows after that step (resume), else starts empty. */
  constructor(
    readonly file: string,
    keepUpToStep?: number,
  ) {
    makeDirs(path.dirname(file));
    const kept = keepUpToStep === undefined ? [] : readMetrics(file).filter((r) => r.step <= keepUpToStep);
    // Atomic: a run killed here keeps the history it had.
    writeFileAtomic(file, kept.map((r) => JSON.stringify(r) + '\n').join(''));
    this.fd = fs.openSync(file, 'a');
  }

  append(row: MetricsRow): void {
    fs.writeSync(this.fd, JSON.stringify(row) + '\n');
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

/** Reads metrics.jsonl, skipping a torn last line (a kill mid-write). */
export function readMetrics(file: string): MetricsRow[] {
  if (!fs.existsSync(file)) return [];
  const rows: MetricsRow[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      rows.push(JSON.parse(line) as MetricsRow);
    } catch {
      /* an incomplete line from an interrupted write */
    }
  }
  return rows;
}
