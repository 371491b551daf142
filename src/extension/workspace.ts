// Finding run configs in the workspace: the one file pattern, the folders every search skips, the active
// editor's run config.
import path from 'node:path';
import * as vscode from 'vscode';
import { RUN_CONFIG_FILE } from './run_config_files.js';
import { modelSource } from '../core/config/model_source.js';

export { RUN_CONFIG_FILE, RUN_CONFIG_GLOB, RUN_CONFIG_SAVE_FILTERS, withRunConfigExtension } from './run_config_files.js';
/** What workspace searches (models, datasets, LoRAs, run configs) skip. */
export const FIND_EXCLUDE = '{**/node_modules/**,**/.git/**,**/.cache/**}';

/** The quick-pick entry that opens a folder (or file) dialog. */
export const BROWSE = '$(folder-opened) Browse…';
/** The quick-pick entry that browses for a single-file base model (one dialog cannot pick files and folders on Linux and Windows), and its filter. */
export const BROWSE_MODEL_FILE = '$(file) Browse for a checkpoint file…';
export const MODEL_FILE_FILTERS = { 'Single-file checkpoint': ['safetensors'] };

/**
 * Base models in the workspace: diffusers folders (model_index.json) and single-file checkpoints (a
 * .safetensors whose header is a whole SD 1.x/2.x/XL model; LoRAs and a folder's own component weights are not).
 */
export async function findModels(): Promise<string[]> {
  const folders = (await vscode.workspace.findFiles('**/model_index.json', FIND_EXCLUDE, 50)).map((u) => path.dirname(u.fsPath));
  const inFolder = new Set(folders);
  const files = (await vscode.workspace.findFiles('**/*.safetensors', FIND_EXCLUDE, 200))
    .map((u) => u.fsPath)
    .filter((f) => !inFolder.has(path.dirname(path.dirname(f))) && modelSource(f).kind === 'single-file');
  return [...new Set([...folders, ...files])].sort();
}

/** The run config open in the active editor, if it is one. */
export function activeRunConfig(): vscode.Uri | undefined {
  const doc = vscode.window.activeTextEditor?.document;
  return doc && RUN_CONFIG_FILE.test(doc.fileName) ? doc.uri : undefined;
}

