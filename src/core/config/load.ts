import YAML from 'yaml';
// Loading a run config for a run: read the file, validate it (the same code path as the language server),
// check it against the disk, and resolve its paths against the config's folder.
import path from 'node:path';
import { READ_LIMITS, readRegularText } from '../io/safe_read.js';
import { checkRunConfigOnDisk, resolveCheckpoint, resolveConfigPath, type DiskReport } from './disk_checks.js';
import { isHubId } from './hub_cache.js';
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

/** A run config's text: a regular file of at most READ_LIMITS.config (else a FileRefusedError naming it). */
export function readRunConfigText(file: string): string {
  return readRegularText(file, READ_LIMITS.config, 'a run config');
}

/** Reads, validates, checks against the disk and resolves a `*.lora.yaml`. Never throws for a bad config. */
export function loadRunConfig(file: string, opts: LoadOptions = {}): LoadedRunConfig {
  const abs = path.resolve(file);
  const dir = path.dirname(abs);
  let text: string;
  try {
    text = readRunConfigText(abs);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'file not found' : err.code === 'EISDIR' || /a folder$/.test(err.message) ? 'is a folder, not a run config file' : err.message;
    return { file: abs, dir, problems: [problem({ code: 'read', severity: 'error', range: ZERO_RANGE, line: 0, message: `cannot read the run config: ${why}` })] };
  }
  return checkAnalysis(analyzeRunConfigText(text), abs, dir, opts);
}

/**
 * A run config file with some keys overridden from the command line (`train run.lora.yaml
 * --resume_from_checkpoint=latest --backend=wasm`): each `--key=value` replaces the key's value in the
 * YAML document (added when absent) before the usual validation, so the result is checked as one config.
 * Values are read as YAML scalars (`4` a number, `true` a boolean); a bare `--flag` means true.
 */
export function loadRunConfigWithOverrides(file: string, overrides: readonly string[], opts: LoadOptions = {}): LoadedRunConfig {
  if (overrides.length === 0) return loadRunConfig(file, opts);
  const abs = path.resolve(file);
  let source: string;
  try {
    source = readRunConfigText(abs);
  } catch {
    return loadRunConfig(file, opts); // reports why it can't be read
  }
  const doc = YAML.parseDocument(source);
  for (let i = 0; i < overrides.length; i++) {
    const m = /^--([A-Za-z0-9_]+)(?:=(.*))?$/s.exec(overrides[i]);
    if (!m) {
      return { file: abs, dir: path.dirname(abs), problems: [problem({ code: 'read', severity: 'error', range: ZERO_RANGE, line: 0, message: `unexpected argument "${overrides[i]}": overrides after the config file are --key=value` })] };
    }
    let raw = m[2];
    if (raw === undefined && i + 1 < overrides.length && !overrides[i + 1].startsWith('--')) raw = overrides[++i];
    doc.set(m[1], raw === undefined ? true : YAML.parse(raw));
  }
  let text: string;
  try {
    text = doc.toString();
  } catch {
    // A document YAML cannot write back (an alias with no anchor): report its own problems, without overrides.
    text = source;
  }
  return checkAnalysis(analyzeRunConfigText(text), abs, path.dirname(abs), opts);
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
  // A Hub id stays an id (core/hub downloads it); a path becomes absolute.
  if (!isHubId(c.pretrained_model_name_or_path, dir)) r.pretrained_model_name_or_path = resolveConfigPath(c.pretrained_model_name_or_path, dir);
  if (c.train_data_dir !== null) r.train_data_dir = resolveConfigPath(c.train_data_dir, dir);
  if (c.cache_dir !== null) r.cache_dir = resolveConfigPath(c.cache_dir, dir);
  if (c.pretrained_model_config !== null) r.pretrained_model_config = resolveConfigPath(c.pretrained_model_config, dir);
  r.output_dir = resolveConfigPath(c.output_dir, dir);
  if (c.network_weights !== null) r.network_weights = resolveConfigPath(c.network_weights, dir);
  if (c.resume_from_checkpoint !== null && c.resume_from_checkpoint !== 'latest') {
    r.resume_from_checkpoint = resolveCheckpoint(c.resume_from_checkpoint, dir, r.output_dir)!;
  }
  return r;
}
