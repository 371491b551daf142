// "Validate first": the same loading the trainer applies at start (src/core/config/load.ts), run before a
// trainer is spawned, so a config with a mistake shows its problems instead of starting a doomed run.
import path from 'node:path';
import * as vscode from 'vscode';
import { summarizeProblems, type Problem } from '../core/config/problems.js';
import type { RunConfig } from '../core/config/run_config.js';
import { loadRunConfig } from '../core/config/load.js';

export interface CheckedConfig {
  config: RunConfig;
  /** output_dir, absolute. */
  outputDir: string;
  warnings: Problem[];
}

/** The source named on the problems shown here. */
export const DIAGNOSTIC_SOURCE = 'lora-studio';

/**
 * Saves the config if it has unsaved edits (the trainer reads the file), validates it, and on errors shows
 * them — in the editor at the first problem, in the Problems panel, and in a message — returning undefined.
 * `withoutServer`: where the problems go when no language server publishes them (undefined while it runs).
 */
export async function checkConfigForTraining(uri: vscode.Uri, withoutServer: vscode.DiagnosticCollection | undefined): Promise<CheckedConfig | undefined> {
  const doc = await vscode.workspace.openTextDocument(uri);
  if (doc.isDirty) await doc.save();
  const file = uri.fsPath;
  // The trainer's own loading: syntax, keys, types, ranges, contradictions, and the disk (model folder,
  // dataset, checkpoints). Paths come back absolute.
  const { config, problems } = loadRunConfig(file);
  const errors = problems.filter((p) => p.severity === 'error');
  withoutServer?.set(uri, problems.map(toDiagnostic));
  if (!config || errors.length) {
    const first = errors[0] ?? problems[0];
    const editor = await vscode.window.showTextDocument(doc, { preview: false });
    if (first) {
      const range = toRange(first);
      editor.selection = new vscode.Selection(range.start, range.end);
      editor.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
    }
    const choice = await vscode.window.showErrorMessage(
      `${path.basename(file)} has ${summarizeProblems(problems)}; fix them before training. ${first ? `First: line ${first.line}: ${first.message}` : ''}`,
      'Show Problems',
    );
    if (choice === 'Show Problems') void vscode.commands.executeCommand('workbench.actions.view.problems');
    return undefined;
  }
  return {
    config,
    outputDir: config.output_dir,
    warnings: problems.filter((p) => p.severity !== 'error'),
  };
}

function toRange(p: Problem): vscode.Range {
  return new vscode.Range(p.range.start.line, p.range.start.character, p.range.end.line, p.range.end.character);
}

function toDiagnostic(p: Problem): vscode.Diagnostic {
  const d = new vscode.Diagnostic(
    toRange(p),
    p.message,
    p.severity === 'error'
      ? vscode.DiagnosticSeverity.Error
      : p.severity === 'warning'
        ? vscode.DiagnosticSeverity.Warning
        : p.severity === 'hint'
          ? vscode.DiagnosticSeverity.Hint
          : vscode.DiagnosticSeverity.Information,
  );
  d.source = DIAGNOSTIC_SOURCE;
  if (p.code) d.code = p.code;
  return d;
}
