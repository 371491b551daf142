// Quick fixes: every problem that carries a fix (rename an unknown key to the nearest known one, clamp a
// value into range, replace `yes` by `true`, add a missing required key, remove an ignored key …)
// becomes a code action on the problem's range.
import { CodeActionKind, type CodeAction, type Diagnostic } from 'vscode-languageserver';
import type { Problem, Range } from '../core/config/problems.js';
import { toDiagnostic, type CheckedDocument } from './checker.js';

/** Problems whose fix is the obvious one (a typo's nearest name): the editor may apply it with one key. */
const PREFERRED = new Set<Problem['code']>(['unknown-key', 'enum', 'syntax', 'type']);

export function codeActions(doc: CheckedDocument, range: Range, only?: string[]): CodeAction[] {
  if (only && !only.some((k) => CodeActionKind.QuickFix.startsWith(k))) return [];
  const actions: CodeAction[] = [];
  for (const p of doc.problems) {
    if (!p.fix || !intersects(p.range, range)) continue;
    const diagnostic: Diagnostic = toDiagnostic(p);
    actions.push({
      title: p.fix.title,
      kind: CodeActionKind.QuickFix,
      diagnostics: [diagnostic],
      isPreferred: PREFERRED.has(p.code) || undefined,
      edit: { changes: { [doc.uri]: [p.fix.edit] } },
    });
  }
  return actions;
}

function intersects(a: Range, b: Range): boolean {
  const le = (p: { line: number; character: number }, q: { line: number; character: number }) => p.line < q.line || (p.line === q.line && p.character <= q.character);
  return le(a.start, b.end) && le(b.start, a.end);
}
