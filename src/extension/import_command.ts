// "LoRA Studio: Import Training Command": a pasted `accelerate launch train_text_to_image_lora.py …` command (the
// diffusers guide's form) becomes a *.lora.yaml, through the config module's importer (the same flag
// names, so nothing is guessed here).
import fs from 'node:fs';
import path from 'node:path';
import * as vscode from 'vscode';
import { importAccelerateCommand } from '../core/config/import_command.js';
import { validateRunConfigText } from '../core/config/validate.js';
import { RUN_CONFIG_SAVE_FILTERS, withRunConfigExtension } from './workspace.js';

const LOOKS_LIKE_COMMAND = /train_text_to_image_lora|train_network|--pretrained_model_name_or_path/;

export async function importTrainingCommand(): Promise<void> {
  // The command as pasted (selection or clipboard) keeps its line continuations: the importer reads shell.
  const editor = vscode.window.activeTextEditor;
  const selected = editor && !editor.selection.isEmpty ? editor.document.getText(editor.selection) : '';
  // A browser (code-server over plain http) may refuse to read the clipboard: then the input box asks.
  const clip = await Promise.resolve(vscode.env.clipboard.readText()).catch(() => '');
  let text = [selected, clip].find((t) => LOOKS_LIKE_COMMAND.test(t));
  if (text) {
    const from = text === selected ? 'the selection' : 'the clipboard';
    const ok = await vscode.window.showInformationMessage(`Import the training command from ${from}?`, { modal: true, detail: text.slice(0, 600) }, 'Import');
    if (ok !== 'Import') text = undefined;
  }
  text ??= await vscode.window.showInputBox({
    title: 'Import Training Command',
    prompt: 'Paste the `accelerate launch train_text_to_image_lora.py --…` command (or copy it first: the clipboard is read)',
    ignoreFocusOut: true,
    validateInput: (v) => (/--\w/.test(v) ? undefined : 'Expected a command with --flags.'),
  });
  if (!text) return;
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? process.cwd();
  const yaml = importAccelerateCommand(text, { baseDir: root });
  const { problems } = validateRunConfigText(yaml);
  const target = await vscode.window.showSaveDialog({
    title: 'Save the imported run config',
    defaultUri: vscode.Uri.file(path.join(root, 'imported.lora.yaml')),
    filters: RUN_CONFIG_SAVE_FILTERS,
  });
  if (!target) return;
  const file = withRunConfigExtension(target.fsPath);
  fs.writeFileSync(file, yaml);
  await vscode.window.showTextDocument(vscode.Uri.file(file));
  // The language server marks the problems in the editor; say how many there are to look at.
  const errors = problems.filter((p) => p.severity === 'error');
  if (errors.length) void vscode.window.showWarningMessage(`Imported ${path.basename(file)}: ${errors.length} thing(s) to fix before training (see the Problems panel).`);
}
