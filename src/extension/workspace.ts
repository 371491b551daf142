// Finding run configs in the workspace: the one file pattern, the folders every search skips, the active
// editor's run config.
import * as vscode from 'vscode';

/** `*.lora.yaml` or `*.lora.yml`. */
export const RUN_CONFIG_FILE = /\.lora\.ya?ml$/i;
export const RUN_CONFIG_GLOB = '**/*.lora.{yaml,yml}';
/** What workspace searches (models, datasets, LoRAs, run configs) skip. */
export const FIND_EXCLUDE = '{**/node_modules/**,**/.git/**,**/.cache/**}';

/** The run config open in the active editor, if it is one. */
export function activeRunConfig(): vscode.Uri | undefined {
  const doc = vscode.window.activeTextEditor?.document;
  return doc && RUN_CONFIG_FILE.test(doc.fileName) ? doc.uri : undefined;
}

/** A save dialog's answer made a run config: `x` and `x.yaml` become `x.lora.yaml`. */
export function withRunConfigExtension(file: string): string {
  return RUN_CONFIG_FILE.test(file) ? file : file.replace(/(\.ya?ml)?$/i, '.lora.yaml');
}
