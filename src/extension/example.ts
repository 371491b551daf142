// "LoRA Studio: Open the Example": the bundled tiny-shapes run config (examples/tiny-shapes.lora.yaml: a small
// shapes model and 16 images). In a workspace that has it (this repository), it is opened; otherwise the
// example is copied from the extension's folder into the workspace (lora-studio-example/) and opened.
import fs from 'node:fs';
import path from 'node:path';
import * as vscode from 'vscode';
import type { Ctx } from './ctx.js';
import { FIND_EXCLUDE } from './workspace.js';
import { makeDirs } from '../core/config/run_folder.js';

const EXAMPLE_CONFIG = 'tiny-shapes.lora.yaml';
const EXAMPLE_FOLDER = 'tiny-shapes';
const COPY_TO = 'lora-studio-example';

export async function openExample(ctx: Ctx): Promise<void> {
  const found = await vscode.workspace.findFiles(`**/${EXAMPLE_CONFIG}`, FIND_EXCLUDE, 1);
  let file = found[0]?.fsPath;
  if (!file) {
    const source = path.join(ctx.extCtx.extensionPath, 'examples');
    const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    if (!fs.existsSync(path.join(source, EXAMPLE_CONFIG))) {
      void vscode.window.showInformationMessage(`The example (examples/${EXAMPLE_CONFIG} and examples/${EXAMPLE_FOLDER}/) comes with the LoRA Studio repository; open that folder to use it.`);
      return;
    }
    if (!root) {
      void vscode.window.showInformationMessage('Open a folder first: the example is copied into it.');
      return;
    }
    const target = path.join(root, COPY_TO);
    makeDirs(target);
    fs.copyFileSync(path.join(source, EXAMPLE_CONFIG), path.join(target, EXAMPLE_CONFIG));
    fs.cpSync(path.join(source, EXAMPLE_FOLDER), path.join(target, EXAMPLE_FOLDER), { recursive: true });
    file = path.join(target, EXAMPLE_CONFIG);
  }
  await vscode.window.showTextDocument(vscode.Uri.file(file));
}
