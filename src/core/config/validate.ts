// Validates a run config — the YAML text of a `*.lora.yaml`, or the entries of command-line flags — into a
// RunConfig and a list of problems. One code path for the trainer (at start), the CLI and the language server.
import { checkEntries } from './check_entries.js';
import { crossChecks, runLengthChecks, type CrossCheckInput, type RunFacts } from './cross_checks.js';
import { YAML_NAMING, type Entry, type Naming } from './entries.js';
import { hasErrors, sortProblems, ZERO_RANGE, type Problem, type Range } from './problems.js';
import type { RunConfig } from './run_config.js';
import { defaultRunConfig } from './schema.js';
import { readYamlSource, type LineIndex } from './yaml_source.js';

export interface Analysis {
  entries: Entry[];
  naming: Naming;
  /** Keys written (valid or not). */
  present: Set<string>;
  /** Keys written whose value failed its own check. */
  invalid: Set<string>;
  /** Defaults merged with every value that passed its own check (always complete; for disk checks and tools). */
  effective: RunConfig;
  /** Everything found without looking at the disk, except the run-length checks (those may need the dataset size). */
  problems: Problem[];
  /** Where problems about absent keys go. */
  fallback: Range;
  /** Where a quick fix adds a key (the end of the file), and what goes before it. */
  insertAt: Range;
  insertPrefix: string;
  /** The text's lines (YAML only). */
  lines?: LineIndex;
  entry(key: string): Entry | undefined;
}

export interface ValidationResult {
  /** Present when there is no error. */
  config?: RunConfig;
  problems: Problem[];
}

/** Validates entries from any source (YAML or flags). */
export function analyzeEntries(entries: Entry[], naming: Naming, where: { insertAt: Range; fallback: Range; insertPrefix?: string }, early: Problem[] = []): Analysis {
  const checked = checkEntries(entries, naming, { insertAt: where.insertAt, missingAt: where.fallback, insertPrefix: where.insertPrefix });
  const effective = { ...defaultRunConfig(), ...checked.values } as RunConfig;
  const byKey = new Map<string, Entry>();
  for (const e of entries) if (!e.overridden) byKey.set(e.key, e);
  const invalid = new Set([...checked.present].filter((k) => byKey.has(k) && !(k in checked.values)));
  const analysis: Analysis = {
    entries,
    naming,
    present: checked.present,
    invalid,
    effective,
    problems: [],
    fallback: where.fallback,
    insertAt: where.insertAt,
    insertPrefix: where.insertPrefix ?? '',
    entry: (k) => byKey.get(k),
  };
  // When the file is not a mapping at all, that is the one thing to say.
  const semantic = early.some((p) => p.code === 'not-a-mapping') ? [] : [...checked.problems, ...crossChecks(crossInput(analysis))];
  // A syntax error explains whatever else is wrong on the same text: don't pile on.
  const syntax = naming.kind === 'yaml' ? early.filter((p) => p.code === 'syntax') : [];
  // Nor report keys as missing, or the run's length as unset, when a syntax error may have swallowed them.
  const syntaxLines = linesOf(syntax);
  const kept = semantic.filter(
    (p) =>
      !(syntax.length && (p.code === 'missing-key' || (p.code === 'contradiction' && !byKey.has(p.key!)))) &&
      !nearby(syntaxLines, p.range).some((s) => overlaps(s.range, p.range)),
  );
  analysis.problems = [...early, ...kept];
  // Flags have no lines.
  if (naming.kind === 'flags') for (const p of analysis.problems) p.line = 0;
  return analysis;
}

export function crossInput(a: Analysis): CrossCheckInput {
  return { config: a.effective, present: a.present, invalid: a.invalid, entry: a.entry, naming: a.naming, fallback: a.fallback, insertAt: a.insertAt, insertPrefix: a.insertPrefix };
}

/** Parses and checks YAML text (no disk access). */
export function analyzeRunConfigText(text: string): Analysis {
  const src = readYamlSource(text);
  const end = src.lines.position(text.length);
  const a = analyzeEntries(
    src.entries,
    YAML_NAMING,
    {
      insertAt: { start: end, end },
      insertPrefix: text.length && !text.endsWith('\n') ? '\n' : '',
      fallback: src.entries[0]?.keyRange ?? ZERO_RANGE,
    },
    src.problems,
  );
  a.lines = src.lines;
  return a;
}

/** The final list: the analysis plus the run-length checks that the disk facts (dataset size) allow, sorted. */
export function completeProblems(a: Analysis, facts: RunFacts = {}, more: Problem[] = []): Problem[] {
  return sortProblems([...a.problems, ...more, ...runLengthChecks(crossInput(a), facts)]);
}

/**
 * Validates the text of a `*.lora.yaml` without touching the disk: syntax, keys, types, ranges, enums and
 * contradictions. Paths stay as written (loadRunConfig resolves them). `file` names the source in messages.
 */
export function validateRunConfigText(text: string, file?: string): ValidationResult {
  void file;
  const a = analyzeRunConfigText(text);
  const problems = completeProblems(a);
  return hasErrors(problems) ? { problems } : { config: a.effective, problems };
}

/** Problems by each line they cover: overlap tests then look at a few, not all. */
function linesOf(problems: Problem[]): Map<number, Problem[]> {
  const byLine = new Map<number, Problem[]>();
  for (const p of problems) {
    for (let l = p.range.start.line; l <= p.range.end.line; l++) {
      const list = byLine.get(l);
      if (list) list.push(p);
      else byLine.set(l, [p]);
    }
  }
  return byLine;
}

function nearby(byLine: Map<number, Problem[]>, r: Range): Problem[] {
  const out: Problem[] = [];
  for (let l = r.start.line; l <= r.end.line; l++) out.push(...(byLine.get(l) ?? []));
  return out;
}

function before(p: { line: number; character: number }, q: { line: number; character: number }): boolean {
  return p.line < q.line || (p.line === q.line && p.character < q.character);
}

function overlaps(a: Range, b: Range): boolean {
  // Touching empty ranges count as overlapping (an empty value right at a syntax error).
  return !before(a.end, b.start) && !before(b.end, a.start);
}
