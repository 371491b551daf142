// Loading a run config for a run: read the file, validate it (the same code path as the language server),
// check it against the disk, and resolve its paths against the config's folder.
import fs from 'node:fs';
import path from 'node:path';
import { checkRunConfigOnDisk, resolveCheckpoint, resolveConfigPath, type DiskReport } from './disk_checks.js';
import { formatProblems, hasErrors, problem, ZERO_RANGE, type Problem } from './problems.js';
import type { RunConfig } from './run_config.js';
import { formatValue, KEY_SPECS } from './schema.js';
import { analyzeRunConfigText, completeProblems, type Analysis } from './validate.js';

export interface LoadedRunConfig {
  /** Absolute path of the config file (or "command line"). */
  file: string;
  /** The folder relative paths were resolved against. */
  dir: string;
  /** The validated config with absolute paths; absent when any problem is an error. */
  config?: RunConfig;
  /** Every problem, errors first at each place, in document order. */
  problems: Problem[];
  disk?: DiskReport;
}

export interface LoadOptions {
  /** Check the model, dataset, output and checkpoint folders (default true). */
  disk?: boolean;
}

/** Thrown by requireRunConfig; its message is the problems formatted for a terminal. */
export class RunConfigError extends Error {
  constructor(
    readonly problems: Problem[],
    readonly source: string,
  ) {
    super(formatProblems(problems.filter((p) => p.severity === 'error'), source));
    this.name = 'RunConfigError';
  }
}

/** The config of a load, or a RunConfigError listing every error. */
export function requireRunConfig(loaded: LoadedRunConfig): RunConfig {
  if (!loaded.config) throw new RunConfigError(loaded.problems, loaded.file);
  return loaded.config;
}

/** Reads, validates, checks against the disk and resolves a `*.lora.yaml`. Never throws for a bad config. */
export function loadRunConfig(file: string, opts: LoadOptions = {}): LoadedRunConfig {
  const abs = path.resolve(file);
  const dir = path.dirname(abs);
  let text: string;
  try {
    text = fs.readFileSync(abs, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'file not found' : err.code === 'EISDIR' ? 'is a folder, not a run config file' : err.message;
    return { file: abs, dir, problems: [problem({ code: 'read', severity: 'error', range: ZERO_RANGE, line: 0, message: `cannot read the run config: ${why}` })] };
  }
  return checkAnalysis(analyzeRunConfigText(text), abs, dir, opts);
}

/** Disk checks, run-length checks and path resolution for an analysed config (YAML or flags). */
export function checkAnalysis(a: Analysis, file: string, dir: string, opts: LoadOptions = {}): LoadedRunConfig {
  let disk: DiskReport | undefined;
  let extra: Problem[] = [];
  // Keys whose values failed their own checks are skipped; the rest are checked even when the config has
  // errors, so a run that is rejected lists everything to fix at once.
  if (opts.disk !== false) {
    disk = checkRunConfigOnDisk(a.effective, dir, { skip: a.invalid, present: a.present });
    extra = diskProblems(a, disk);
  }
  const problems = completeProblems(a, disk?.facts, extra);
  const config = hasErrors(problems) ? undefined : resolveRunConfigPaths(a.effective, dir);
  return { file, dir, config, problems, disk };
}

/** Disk findings as problems at the key's value (or, for a key left at its default, where absent keys go). */
export function diskProblems(a: Analysis, report: DiskReport): Problem[] {
  return report.findings.map((f) => {
    const e = a.entry(f.key);
    const range = e ? e.valueRange : a.fallback;
    const name = a.naming.name(f.key);
    const label = e ? name : `${name} (default ${formatValue(KEY_SPECS.get(f.key)!.default)})`;
    const p = problem({ key: f.key, code: 'disk', severity: f.severity, range, line: a.naming.kind === 'flags' ? 0 : undefined, message: `${label}: ${f.message}` });
    if (f.suggest && a.naming.kind === 'yaml') {
      const target = a.entry(f.suggest.key);
      p.fix = {
        title: `${target ? 'Set' : 'Add'} \`${f.suggest.key}: ${f.suggest.value}\``,
        edit: target ? { range: target.valueRange, newText: f.suggest.value } : { range: a.insertAt, newText: `${a.insertPrefix}${f.suggest.key}: ${f.suggest.value}\n` },
      };
    }
    return p;
  });
}

/** Absolute paths for the model, dataset, output and checkpoint (`latest` stays `latest`: see resolveCheckpoint). */
export function resolveRunConfigPaths(c: RunConfig, dir: string): RunConfig {
  const r = { ...c, save_formats: [...c.save_formats] };
  r.pretrained_model_name_or_path = resolveConfigPath(c.pretrained_model_name_or_path, dir);
  r.train_data_dir = resolveConfigPath(c.train_data_dir, dir);
  r.output_dir = resolveConfigPath(c.output_dir, dir);
  if (c.resume_from_checkpoint !== null && c.resume_from_checkpoint !== 'latest') {
    r.resume_from_checkpoint = resolveCheckpoint(c.resume_from_checkpoint, dir, r.output_dir)!;
  }
  return r;
}
