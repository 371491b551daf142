// Checks each entry against the schema: unknown keys (with did-you-mean), keys of the guide we ignore,
// types, ranges, enum values, missing required keys. ajv runs the JSON Schema generated from the one
// definition; its errors only say WHICH key failed — the messages and fixes are built here from the
// KeySpec, so they name the key, say what was expected, what was found, and how to fix it.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { Entry, Naming } from './entries.js';
import { problem, ZERO_RANGE, type Fix, type Problem, type Range } from './problems.js';
import { describeExpected, formatValue, GUIDE_ONLY, KEY_SPECS, runConfigJsonSchema, type KeySpec } from './schema.js';
import { nearest } from './suggest.js';

let compiled: ValidateFunction | undefined;
function validator(): ValidateFunction {
  // Compiled once per process (about a millisecond), on first use.
  compiled ??= new Ajv({ allErrors: true, strict: true }).compile(runConfigJsonSchema());
  return compiled;
}

export interface EntryCheck {
  /** Keys whose values passed (later entries win), ready to merge over the defaults. */
  values: Record<string, unknown>;
  /** Keys written in the config (valid or not). */
  present: Set<string>;
  problems: Problem[];
}

export function checkEntries(entries: readonly Entry[], naming: Naming, where: MissingKeyPlace): EntryCheck {
  const problems: Problem[] = [];
  const present = new Set<string>();
  const known: Record<string, unknown> = {};
  const entryOf = new Map<string, Entry>();

  for (const e of entries) {
    present.add(e.key);
    if (KEY_SPECS.has(e.key)) {
      if (!e.overridden) {
        known[e.key] = e.value;
        entryOf.set(e.key, e);
      }
      continue;
    }
    const guide = GUIDE_ONLY.get(e.key);
    if (guide) {
      problems.push(ignoredKey(e, naming, guide.severity, guide.reason));
      continue;
    }
    const near = nearest(e.key, KEY_SPECS.keys());
    const fix: Fix | undefined = near && naming.kind === 'yaml' ? { title: `Change to \`${near}\``, edit: { range: e.keyRange, newText: near } } : undefined;
    problems.push(
      problem({
        key: e.key,
        code: 'unknown-key',
        severity: 'error',
        range: e.keyRange,
        message: near
          ? `unknown ${naming.kind === 'flags' ? 'flag' : 'key'} ${naming.name(e.key)} — did you mean ${naming.name(near)}?`
          : `unknown ${naming.kind === 'flags' ? 'flag' : 'key'} ${naming.name(e.key)} — not a LoRA Studio setting; check the spelling or remove it`,
        fix,
      }),
    );
  }

  const validate = validator();
  const failed = new Set<string>();
  if (!validate(known)) {
    // One problem per key (ajv may report several for one value) or per list item.
    const seen = new Set<string>();
    for (const err of validate.errors ?? []) {
      const [key, item] = err.instancePath.split('/').slice(1);
      if (err.keyword === 'required') {
        const missing = (err.params as { missingProperty: string }).missingProperty;
        problems.push(missingKey(KEY_SPECS.get(missing)!, naming, where));
        continue;
      }
      if (!key) continue;
      const id = item === undefined ? key : `${key}/${item}`;
      if (seen.has(id) || seen.has(key)) continue;
      seen.add(id);
      failed.add(key);
      problems.push(valueProblem(KEY_SPECS.get(key)!, entryOf.get(key)!, naming, err, item === undefined ? undefined : Number(item)));
    }
  }

  const values: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(known)) {
    if (failed.has(key)) continue;
    values[key] = v;
    const spec = KEY_SPECS.get(key)!;
    const adv = spec.advisory;
    if (adv && typeof v === 'number' && ((adv.above !== undefined && v > adv.above) || (adv.below !== undefined && v < adv.below))) {
      problems.push(
        problem({ key, code: 'advice', severity: 'warning', range: entryOf.get(key)!.valueRange, message: `${naming.name(key)} = ${formatValue(v)}: ${adv.message}` }),
      );
    }
  }
  return { values, present, problems };
}

function ignoredKey(e: Entry, naming: Naming, severity: Problem['severity'], reason: string): Problem {
  const remove: Fix | undefined = naming.kind === 'yaml' ? { title: `Remove \`${e.key}\``, edit: { range: e.removeRange, newText: '' } } : undefined;
  const verb = severity === 'error' ? 'is not supported' : 'is ignored';
  return problem({ key: e.key, code: 'ignored-key', severity, range: e.keyRange, message: `${naming.name(e.key)} ${verb}: ${reason}`, fix: remove });
}

/** `./data`, `../x`, `/abs`, `~/x`, `C:\x`, or a plain folder name — not an `org/name` hub id. */
export function looksLikeLocalPath(v: string): boolean {
  return /^(\.{1,2}[\\/]|[\\/]|~[\\/]|[A-Za-z]:[\\/])/.test(v) || !/^[\w.-]+\/[\w.-]+$/.test(v);
}

export interface MissingKeyPlace {
  /** Where a missing key is inserted by its quick fix (the end of the file). */
  insertAt: Range;
  /** Text to put before it (a newline when the file does not end with one). */
  insertPrefix?: string;
  /** Where the problem is shown. */
  missingAt: Range;
}

function missingKey(spec: KeySpec, naming: Naming, where: MissingKeyPlace): Problem {
  const value = spec.placeholder ?? formatValue(spec.default);
  return problem({
    key: spec.key,
    code: 'missing-key',
    severity: 'error',
    range: where.missingAt,
    line: naming.kind === 'flags' ? 0 : undefined,
    message:
      naming.kind === 'flags'
        ? `missing required flag ${naming.name(spec.key)}: ${lowerFirst(spec.summary)}`
        : `missing required key ${naming.name(spec.key)}: ${lowerFirst(spec.summary)} Add \`${spec.key}: ${value}\``,
    fix: naming.kind === 'yaml' ? { title: `Add \`${spec.key}\``, edit: { range: where.insertAt, newText: `${where.insertPrefix ?? ''}${spec.key}: ${value}\n` } } : undefined,
  });
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

/** What was found, as the user wrote it. */
function describeGot(value: unknown, source: string | undefined, quoted: boolean | undefined): string {
  if (Array.isArray(value)) return 'a list';
  if (value !== null && typeof value === 'object') return 'a mapping (nested keys)';
  if (typeof value === 'string') return quoted === false && source !== undefined ? `\`${source}\`` : JSON.stringify(value);
  if (source !== undefined && source !== '') return source;
  return String(value);
}

const YAML_BOOLEAN_WORDS: Record<string, boolean> = { yes: true, no: false, on: true, off: false, y: true, n: false };

function valueProblem(spec: KeySpec, e: Entry, naming: Naming, err: ErrorObject, item: number | undefined): Problem {
  const name = naming.name(spec.key);
  const yaml = naming.kind === 'yaml';
  const base = { key: spec.key, severity: 'error' as const, range: e.valueRange, line: yaml ? undefined : 0 };
  const v = e.value;

  if (v === null && !spec.nullable && (e.source === '' || e.source === undefined)) {
    const dflt = spec.required ? (spec.placeholder ?? '') : formatValue(spec.default);
    return problem({
      ...base,
      code: 'type',
      message: `${name} has no value: it must be ${describeExpected(spec)}${spec.required ? '' : ` (default ${dflt}); give a value or remove the ${yaml ? 'line' : 'flag'}`}`,
      fix: yaml && dflt ? { title: `Set to ${dflt}${spec.required ? '' : ' (the default)'}`, edit: valueEdit(e, dflt) } : undefined,
    });
  }

  if (spec.type === 'list') return listProblem(spec, e, naming, err, item);

  const got = describeGot(v, e.source, e.quoted);
  let message = `${name} must be ${describeExpected(spec)}, got ${got}`;
  let fix: Fix | undefined;
  let code: Problem['code'] = 'type';

  if (spec.type === 'enum') {
    code = 'enum';
    const near = typeof v === 'string' ? nearest(v, spec.values!) : undefined;
    if (near) {
      message += ` — did you mean \`${near}\`?`;
      fix = { title: `Change to \`${near}\``, edit: valueEdit(e, near) };
    }
  } else if (spec.type === 'boolean') {
    const word = typeof v === 'string' ? YAML_BOOLEAN_WORDS[v.toLowerCase()] : undefined;
    if (word !== undefined) {
      message += ` — YAML 1.2 reads \`${v}\` as text; write \`${word}\``;
      fix = { title: `Change to \`${word}\``, edit: valueEdit(e, String(word)) };
    } else if (v === 0 || v === 1) {
      fix = { title: `Change to \`${v === 1}\``, edit: valueEdit(e, String(v === 1)) };
    }
  } else if (spec.type === 'integer' || spec.type === 'number') {
    if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)) && e.quoted) {
      message += ' — a number in quotes is text; remove the quotes';
      fix = { title: 'Remove the quotes', edit: valueEdit(e, v.trim()) };
    } else if (typeof v === 'number' && spec.type === 'integer' && spec.maximum === undefined && Math.abs(v) > Number.MAX_SAFE_INTEGER) {
      code = 'range';
      message = `${name} must be ${describeExpected(spec)} and at most 2^53 − 1 (${Number.MAX_SAFE_INTEGER}), got ${got}: larger numbers are not exact integers`;
    } else if (typeof v === 'number' && Number.isFinite(v)) {
      code = 'range';
      const ok = nearestValid(spec, v);
      if (ok !== undefined) fix = { title: `Change to ${formatValue(ok)}${ok === spec.default ? ' (the default)' : ''}`, edit: valueEdit(e, formatValue(ok)) };
    }
  } else if (spec.type === 'string') {
    if (typeof v === 'number' || typeof v === 'boolean') {
      message += ` — put it in quotes to use it as text`;
      fix = { title: 'Put it in quotes', edit: valueEdit(e, JSON.stringify(e.source ?? String(v))) };
    } else if (v === '') {
      message = `${name} must not be empty`;
    }
  }
  if (err.keyword === 'minLength') message = `${name} must not be empty`;
  return problem({ ...base, code, message, fix: yaml ? fix : undefined });
}

function listProblem(spec: KeySpec, e: Entry, naming: Naming, err: ErrorObject, item: number | undefined): Problem {
  const name = naming.name(spec.key);
  const yaml = naming.kind === 'yaml';
  const line = yaml ? undefined : 0;
  const values = spec.values!;
  const v = e.value;
  if (item !== undefined && Array.isArray(v)) {
    const it = v[item];
    const site = e.items?.[item];
    const near = typeof it === 'string' ? nearest(it, values) : undefined;
    return problem({
      key: spec.key,
      code: 'enum',
      severity: 'error',
      range: site?.range ?? e.valueRange,
      line,
      message: `${name} entries must be ${values.map((x) => `\`${x}\``).join(' or ')}, got ${describeGot(it, site?.source, site?.source === undefined ? undefined : /^['"]/.test(site.source))}${near ? ` — did you mean \`${near}\`?` : ''}`,
      fix: yaml && near && site ? { title: `Change to \`${near}\``, edit: { range: site.range, newText: near } } : undefined,
    });
  }
  if (err.keyword === 'uniqueItems' || err.keyword === 'minItems') {
    const unique = Array.isArray(v) ? [...new Set(v as unknown[])] : [];
    const fixed = unique.length ? unique : (spec.default as string[]);
    return problem({
      key: spec.key,
      code: 'type',
      severity: 'error',
      range: e.valueRange,
      line,
      message: err.keyword === 'minItems' ? `${name} is empty: list at least one of ${values.join(', ')}` : `${name} lists a format twice`,
      fix: yaml ? { title: `Change to ${formatValue(fixed)}`, edit: valueEdit(e, formatValue(fixed)) } : undefined,
    });
  }
  // Not a list: a single format or a comma-separated string becomes a list.
  const parts = typeof v === 'string' ? v.split(/[\s,]+/).filter(Boolean) : [];
  const asList = parts.length && parts.every((p) => values.includes(p)) ? formatValue(parts) : undefined;
  return problem({
    key: spec.key,
    code: 'type',
    severity: 'error',
    range: e.valueRange,
    line,
    message: `${name} must be ${describeExpected(spec)}, got ${describeGot(v, e.source, e.quoted)}${asList ? ` — write ${asList}` : ''}`,
    fix: yaml && asList ? { title: `Change to ${asList}`, edit: valueEdit(e, asList) } : undefined,
  });
}

/** Replace the value; an empty value right after the colon gets a space first. */
function valueEdit(e: Entry, newText: string) {
  const empty = e.valueRange.start.line === e.valueRange.end.line && e.valueRange.start.character === e.valueRange.end.character;
  return { range: e.valueRange, newText: empty ? ` ${newText}` : newText };
}

/** The valid value nearest to an out-of-range number: clamp into inclusive bounds, round to the integer or the multiple; the default when a bound is exclusive. */
export function nearestValid(spec: KeySpec, v: number): number | undefined {
  let x = v;
  if (spec.type === 'integer') x = Math.round(x);
  if (spec.multipleOf) x = Math.round(x / spec.multipleOf) * spec.multipleOf;
  if (spec.minimum !== undefined && x < spec.minimum) x = spec.multipleOf ? Math.ceil(spec.minimum / spec.multipleOf) * spec.multipleOf : spec.minimum;
  if (spec.maximum !== undefined && x > spec.maximum) x = spec.maximum;
  const belowExclusive = spec.exclusiveMinimum !== undefined && x <= spec.exclusiveMinimum;
  const aboveExclusive = spec.exclusiveMaximum !== undefined && x >= spec.exclusiveMaximum;
  if (belowExclusive || aboveExclusive) return typeof spec.default === 'number' ? spec.default : undefined;
  return x === v ? undefined : x;
}

/** Where a problem about a key that is absent goes: the first key's line, or the file's start. */
export function firstKeyRange(entries: readonly Entry[]): Range {
  return entries[0]?.keyRange ?? ZERO_RANGE;
}

