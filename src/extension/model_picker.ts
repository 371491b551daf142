// The base-model quick pick shared by Generate Image and New Run Config: the choices of model_choice.ts,
// Browse…, and a typed path or Hub id accepted with Enter.
import * as vscode from 'vscode';
import { modelChoices, typedModel } from './model_choice.js';
import { BROWSE_MODEL_FILE, MODEL_FILE_FILTERS, findModels } from './workspace.js';

const BROWSE = '$(folder-opened) Browse…';
type Item = vscode.QuickPickItem & { model?: string };

/** An absolute pipeline folder or single-file checkpoint, or a Hub id; undefined when cancelled (a bad typed answer is shown as an error). */
export async function pickBaseModel(title: string): Promise<string | undefined> {
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const items: Item[] = [...modelChoices(await findModels(), root), { label: BROWSE }, { label: BROWSE_MODEL_FILE }];
  const answer = await new Promise<{ pick?: Item; typed?: string } | undefined>((resolve) => {
    const qp = vscode.window.createQuickPick<Item>();
    Object.assign(qp, {
      title,
      placeholder: 'A diffusers pipeline folder, a single-file .safetensors checkpoint or a Hugging Face Hub id (runwayml/stable-diffusion-v1-5) — pick one, or type it and press Enter',
      ignoreFocusOut: true,
      matchOnDescription: true,
      items,
    });
    qp.onDidAccept(() => {
      const pick = qp.selectedItems[0] ?? qp.activeItems[0];
      const typed = qp.value.trim();
      // Enter on typed text that matches no item (or only Browse…) is the typed answer.
      resolve(pick && (!typed || (pick.label !== BROWSE && pick.label !== BROWSE_MODEL_FILE)) ? { pick } : typed ? { typed } : undefined);
      qp.hide();
    });
    qp.onDidHide(() => {
      resolve(undefined);
      qp.dispose();
    });
    qp.show();
  });
  if (!answer) return undefined;
  if (answer.typed !== undefined) {
    const r = typedModel(answer.typed, root);
    if ('problem' in r) {
      void vscode.window.showErrorMessage(r.problem);
      return undefined;
    }
    return r.model;
  }
  const label = answer.pick!.label;
  if (label !== BROWSE && label !== BROWSE_MODEL_FILE) return answer.pick!.model;
  const file = label === BROWSE_MODEL_FILE;
  const chosen = await vscode.window.showOpenDialog({ title, canSelectFolders: !file, canSelectFiles: file, canSelectMany: false, defaultUri: root ? vscode.Uri.file(root) : undefined, ...(file ? { filters: MODEL_FILE_FILTERS } : {}) });
  if (!chosen?.[0]) return undefined;
  const r = typedModel(chosen[0].fsPath, root);
  if ('problem' in r) {
    void vscode.window.showErrorMessage(r.problem);
    return undefined;
  }
  return r.model;
}
