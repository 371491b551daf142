// The quick picks that take a typed answer as well as a pick (issue 15: typing a path or a Hub id and Enter
// must answer): the base-model pick shared by Generate Image and New Run Config — the choices of
// model_choice.ts, Browse… and a typed path or Hub id — and pickOrType, the one accept rule they use.
import * as vscode from 'vscode';
import { acceptedAnswer, modelChoices, typedModel, type PickOrTyped } from './model_choice.js';
import { BROWSE, BROWSE_MODEL_FILE, MODEL_FILE_FILTERS, findModels } from './workspace.js';

type Item = vscode.QuickPickItem & { model?: string };

/** A quick pick of `items` that also takes typed text (acceptedAnswer); undefined when cancelled. */
export function pickOrType<T extends vscode.QuickPickItem>(o: { title: string; placeholder: string; items: T[]; browse: readonly string[] }): Promise<PickOrTyped<T> | undefined> {
  return new Promise((resolve) => {
    const qp = vscode.window.createQuickPick<T>();
    Object.assign(qp, { title: o.title, placeholder: o.placeholder, ignoreFocusOut: true, matchOnDescription: true, items: o.items });
    qp.onDidAccept(() => {
      resolve(acceptedAnswer(qp.selectedItems[0] ?? qp.activeItems[0], qp.value, o.browse));
      qp.hide();
    });
    qp.onDidHide(() => {
      resolve(undefined);
      qp.dispose();
    });
    qp.show();
  });
}

/** The open dialog behind a Browse… row: a folder, or a file of `filters`; its path, undefined when cancelled. */
export async function browseFor(title: string, root: string | undefined, filters?: Record<string, string[]>): Promise<string | undefined> {
  const file = filters !== undefined;
  const chosen = await vscode.window.showOpenDialog({ title, canSelectFolders: !file, canSelectFiles: file, canSelectMany: false, defaultUri: root ? vscode.Uri.file(root) : undefined, ...(file ? { filters } : {}) });
  return chosen?.[0]?.fsPath;
}

/** An absolute pipeline folder or single-file checkpoint, or a Hub id; undefined when cancelled (a bad typed answer is shown as an error). */
export async function pickBaseModel(title: string): Promise<string | undefined> {
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const items: Item[] = [...modelChoices(await findModels(), root), { label: BROWSE }, { label: BROWSE_MODEL_FILE }];
  const answer = await pickOrType({
    title,
    placeholder: 'A diffusers pipeline folder, a single-file .safetensors checkpoint or a Hugging Face Hub id (runwayml/stable-diffusion-v1-5) — pick one, or type it and press Enter',
    items,
    browse: [BROWSE, BROWSE_MODEL_FILE],
  });
  if (!answer) return undefined;
  let typed: string | undefined;
  if ('typed' in answer) typed = answer.typed;
  else if (answer.pick.label === BROWSE || answer.pick.label === BROWSE_MODEL_FILE) typed = await browseFor(title, root, answer.pick.label === BROWSE_MODEL_FILE ? MODEL_FILE_FILTERS : undefined);
  else return answer.pick.model;
  if (typed === undefined) return undefined;
  const r = typedModel(typed, root);
  if ('problem' in r) {
    void vscode.window.showErrorMessage(r.problem);
    return undefined;
  }
  return r.model;
}
