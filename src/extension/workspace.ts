// Finding run configs in the workspace: the one file pattern, the folders every search skips, the active
// editor's run config.
import * as vscode from 'vscode';
import { RUN_CONFIG_FILE } from './run_config_files.js';

export { RUN_CONFIG_FILE, RUN_CONFIG_GLOB, RUN_CONFIG_SAVE_FILTERS, withRunConfigExtension } from './run_config_files.js';
/** What workspace searches (models, datasets, LoRAs, run configs) skip. */
export const FIND_EXCLUDE = '{**/node_modules/**,**/.git/**,**/.cache/**}';

/** The run config open in the active editor, if it is one. */
export function activeRunConfig(): vscode.Uri | undefined {
  const doc = vscode.window.activeTextEditor?.document;
  return doc && RUN_CONFIG_FILE.test(doc.fileName) ? doc.uri : undefined;
}

