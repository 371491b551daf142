// Checks open run configs: the text (parsed on every edit: pure and fast) and the disk (cached per set of
// paths and values, dropped when a watched file under those paths changes). One code path with the
// trainer: the same analyze → disk → run-length steps that loadRunConfig takes.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Diagnostic } from 'vscode-languageserver';
import { checkRunConfigOnDisk, type DiskReport } from '../core/config/disk_checks.js';
import { diskProblems } from '../core/config/load.js';
import { isInside } from '../core/config/paths.js';
import type { Problem } from '../core/config/problems.js';
import { analyzeRunConfigText, completeProblems, type Analysis } from '../core/config/validate.js';

export interface CheckedDocument {
  uri: string;
  version: number;
  analysis: Analysis;
  problems: Problem[];
  /** The config file's folder (file: URIs only); relative paths start here. */
  baseDir?: string;
  disk?: DiskReport;
}

/** The values the disk checks read: when none of them (nor the files) change, the cached report stands. */
const DISK_KEYS = ['pretrained_model_name_or_path', 'variant', 'train_data_dir', 'image_column', 'caption_column', 'resolution', 'output_dir', 'resume_from_checkpoint', 'network_weights'] as const;

export class ConfigChecker {
  private readonly diskCache = new Map<string, DiskReport>();
  /** Disk checks run (cache misses), for tests and the benchmark. */
  diskRuns = 0;

  check(uri: string, version: number, text: string): CheckedDocument {
    const analysis = analyzeRunConfigText(text);
    const baseDir = baseDirOf(uri);
    let disk: DiskReport | undefined;
    if (baseDir) disk = this.disk(analysis, baseDir);
    const problems = completeProblems(analysis, disk?.facts, disk ? diskProblems(analysis, disk) : []);
    return { uri, version, analysis, problems, baseDir, disk };
  }

  private disk(a: Analysis, baseDir: string): DiskReport {
    const key = JSON.stringify([baseDir, DISK_KEYS.map((k) => (a.invalid.has(k) ? '\0invalid' : [a.present.has(k), a.effective[k]]))]);
    let report = this.diskCache.get(key);
    if (!report) {
      this.diskRuns++;
      report = checkRunConfigOnDisk(a.effective, baseDir, { skip: a.invalid, present: a.present });
      this.diskCache.set(key, report);
    }
    return report;
  }

  /** Forgets disk results that a change to these files may affect; says whether any was dropped. */
  filesChanged(paths: string[]): boolean {
    let dropped = false;
    for (const [key, report] of this.diskCache) {
      if (paths.some((p) => report.watched.some((w) => isInside(w, p) || isInside(p, w)))) {
        this.diskCache.delete(key);
        dropped = true;
      }
    }
    return dropped;
  }

  /** Every path some cached report consulted. */
  watchedPaths(): string[] {
    return [...new Set([...this.diskCache.values()].flatMap((r) => r.watched))].sort();
  }

  /** Keeps the cache from growing while someone types paths character by character. */
  prune(keep: Iterable<CheckedDocument>): void {
    const live = new Set<DiskReport>();
    for (const d of keep) if (d.disk) live.add(d.disk);
    for (const [key, report] of this.diskCache) if (!live.has(report)) this.diskCache.delete(key);
  }
}

export function baseDirOf(uri: string): string | undefined {
  if (!uri.startsWith('file:')) return undefined;
  try {
    return path.dirname(fileURLToPath(uri));
  } catch {
    return undefined;
  }
}

const SEVERITY = { error: 1, warning: 2, info: 3, hint: 4 } as const;

export function toDiagnostic(p: Problem): Diagnostic {
  return {
    range: p.range,
    severity: SEVERITY[p.severity],
    message: p.message,
    source: 'lora-studio',
    code: p.code,
    data: p.fix ? { fix: p.fix } : undefined,
  };
}
