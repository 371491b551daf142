// The guide's command-line form: `lora-studio train --pretrained_model_name_or_path=… --rank=4 --center_crop …`
// accepts diffusers' flags as they are (`--flag=value` and `--flag value`, store_true switches) and runs them
// through the same validation as a YAML config; problems name the flag.
import path from 'node:path';
import { FLAG_NAMING, type Entry } from './entries.js';
import { checkAnalysis, type LoadedRunConfig, type LoadOptions } from './load.js';
import { problem, ZERO_RANGE, type Problem } from './problems.js';
import { GUIDE_ONLY, KEY_SPECS, type KeySpec } from './schema.js';
import { analyzeEntries } from './validate.js';

export interface ParsedFlags {
  entries: Entry[];
  /** Words that are not flags (argparse would reject them). */
  positionals: string[];
  /** Raw text per entry, as given: for messages and for the command import. */
  raw: Map<Entry, string | true>;
}

/** Splits argv into entries, converting each value by its key's type (a value that does not convert stays a string, so validation says what is wrong with it). */
export function parseFlags(argv: readonly string[]): ParsedFlags {
  const entries: Entry[] = [];
  const positionals: string[] = [];
  const raw = new Map<Entry, string | true>();
  const lastOf = new Map<string, Entry>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--') || arg === '--') {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const key = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    const spec = KEY_SPECS.get(key);
    let value: string | true;
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (takesValue(key, spec, argv[i + 1])) value = argv[++i];
    else value = true;
    const entry: Entry = {
      key,
      value: spec ? convert(spec, value) : value,
      keyRange: ZERO_RANGE,
      valueRange: ZERO_RANGE,
      removeRange: ZERO_RANGE,
      source: value === true ? '' : value,
    };
    const before = lastOf.get(key);
    if (before) before.overridden = true;
    lastOf.set(key, entry);
    raw.set(entry, value);
    entries.push(entry);
  }
  return { entries, positionals, raw };
}

function takesValue(key: string, spec: KeySpec | undefined, next: string | undefined): boolean {
  if (next === undefined || next.startsWith('--')) return false;
  if (spec?.type === 'boolean') return /^(true|false)$/i.test(next);
  if (!spec && GUIDE_ONLY.get(key)?.isSwitch) return false;
  return true;
}

/** A flag's text as the key's type, the way argparse's type= would read it. */
export function convert(spec: KeySpec, raw: string | true): unknown {
  if (raw === true) return spec.type === 'boolean' ? true : null;
  const t = raw.trim();
  if (spec.nullable && /^(none|null)$/i.test(t) && spec.type !== 'string') return null;
  switch (spec.type) {
    case 'boolean':
      return /^true$/i.test(t) ? true : /^false$/i.test(t) ? false : raw;
    case 'integer':
      return /^[-+]?\d+$/.test(t) ? Number(t) : raw;
    case 'number':
      return t !== '' && !Number.isNaN(Number(t)) ? Number(t) : raw;
    case 'list':
      return t.split(',').map((s) => s.trim()).filter(Boolean);
    case 'prompts':
      // One prompt per flag (kohya's own --sample_prompts names a file; see import_command.ts).
      return [raw];
    default:
      return raw;
  }
}

export interface FlagOptions extends LoadOptions {
  /** Relative paths start here (default: the working directory). */
  cwd?: string;
}

/** The command-line form of a run config: the same checks as a `*.lora.yaml`, paths relative to the working directory. */
export function configFromFlags(argv: readonly string[], opts: FlagOptions = {}): LoadedRunConfig {
  const cwd = path.resolve(opts.cwd ?? process.cwd());
  const parsed = parseFlags(argv);
  const early: Problem[] = [];
  for (const p of parsed.positionals) {
    early.push(
      problem({ code: 'syntax', severity: 'error', range: ZERO_RANGE, line: 0, message: `unexpected argument \`${p}\`: settings are flags such as --rank=4 (or give a *.lora.yaml file)` }),
    );
  }
  const seen = new Set<string>();
  for (const e of [...parsed.entries].reverse()) {
    if (seen.has(e.key)) {
      early.push(
        problem({ key: e.key, code: 'duplicate-key', severity: 'warning', range: ZERO_RANGE, line: 0, message: `\`--${e.key}\` is given more than once; the last value wins` }),
      );
    }
    seen.add(e.key);
  }
  const a = analyzeEntries(parsed.entries, FLAG_NAMING, { insertAt: ZERO_RANGE, fallback: ZERO_RANGE }, early);
  const loaded = checkAnalysis(a, 'command line', cwd, opts);
  // No lines to sort by: list problems in the order of the flags they are about (stable sort).
  const order = new Map<string, number>();
  parsed.entries.forEach((e, i) => order.set(e.key, i));
  const at = (p: Problem) => (p.key !== undefined && p.code !== 'missing-key' ? (order.get(p.key) ?? -1) : -1);
  loaded.problems.sort((x, y) => at(x) - at(y));
  return loaded;
}
