// A problem found in a run config, shaped so that the CLI prints it (`file:line:col: error: …`) and the
// language server turns it into an LSP Diagnostic without translation (0-based, UTF-16 positions).

/** `hint`: a fact about a value (the dataset's counts), shown faintly in the editor and never in the Problems panel. */
export type Severity = 'error' | 'warning' | 'info' | 'hint';

export interface Position {
  /** 0-based line. */
  line: number;
  /** 0-based UTF-16 code unit offset in the line (the LSP default). */
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface TextEdit {
  range: Range;
  newText: string;
}

export interface Fix {
  /** What the quick fix does, as the editor lists it: "Change to `learning_rate`". */
  title: string;
  edit: TextEdit;
}

export interface Problem {
  /** The config key (or flag name without dashes) the problem is about. */
  key?: string;
  /** What is wrong and how to fix it. */
  message: string;
  severity: Severity;
  range: Range;
  /** 1-based line for the CLI; 0 when there is none (command-line flags). */
  line: number;
  fix?: Fix;
  /** Machine-readable kind, for tests and the editor's code actions. */
  code?: ProblemCode;
}

export type ProblemCode =
  | 'syntax'
  | 'not-a-mapping'
  | 'unknown-key'
  | 'ignored-key'
  | 'duplicate-key'
  | 'missing-key'
  | 'type'
  | 'range'
  | 'enum'
  | 'advice'
  | 'contradiction'
  | 'disk'
  | 'read';

export const ZERO_RANGE: Range = { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } };

export function problem(p: Omit<Problem, 'line'> & { line?: number }): Problem {
  return { ...p, line: p.line ?? p.range.start.line + 1 };
}

const SEVERITY_ORDER: Record<Severity, number> = { error: 0, warning: 1, info: 2, hint: 3 };

/** Document order; at the same place, errors first. */
export function sortProblems(problems: Problem[]): Problem[] {
  return problems.sort(
    (a, b) =>
      a.range.start.line - b.range.start.line || a.range.start.character - b.range.start.character || SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity],
  );
}

export function hasErrors(problems: readonly Problem[]): boolean {
  return problems.some((p) => p.severity === 'error');
}

/**
 * For the CLI and logs, one line each, the way compilers print them so terminals and editors link them:
 * `run.lora.yaml:3:7: error: \`rank\` must be an integer ≥ 1, got 0`. Problems without a line (flags)
 * print as `file: error: …`.
 */
export function formatProblems(problems: readonly Problem[], file: string): string {
  return problems
    .map((p) => {
      const where = p.line > 0 ? `${file}:${p.line}:${p.range.start.character + 1}` : file;
      return `${where}: ${p.severity}: ${p.message}`;
    })
    .join('\n');
}

/** "2 errors, 1 warning" */
export function summarizeProblems(problems: readonly Problem[]): string {
  const n = (s: Severity) => problems.filter((p) => p.severity === s).length;
  const part = (k: number, word: string) => `${k} ${word}${k === 1 ? '' : 's'}`;
  const parts = [part(n('error'), 'error'), part(n('warning'), 'warning')];
  if (n('info')) parts.push(part(n('info'), 'note'));
  return parts.join(', ');
}
