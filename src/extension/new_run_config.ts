// "LoRA Studio: New Run Config": a guided quick pick (base model folder or Hub id, dataset folder, output folder, rank,
// steps) that writes a commented *.lora.yaml and opens it.
import fs from 'node:fs';
import path from 'node:path';
import * as vscode from 'vscode';
import type { Settings } from './ctx.js';
import { COMMANDS } from './manifest.js';
import { datasetFacts, modelResolution, renderRunConfig } from './run_config_template.js';
import { BROWSE, FIND_EXCLUDE, RUN_CONFIG_SAVE_FILTERS, withRunConfigExtension } from './workspace.js';
import { METADATA_FILE } from '../core/config/dataset_files.js';
import { cachedSnapshot } from '../core/config/hub_cache.js';
import { typedFolder } from './model_choice.js';
import { browseFor, pickBaseModel, pickOrType } from './model_picker.js';

export async function newRunConfigCommand(settings: Settings): Promise<void> {
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const title = 'New LoRA Run Config';

  const model = await pickBaseModel(`${title} (1/5): base model`);
  if (!model) return;

  const datasets = [
    ...(await vscode.workspace.findFiles(`**/${METADATA_FILE}`, FIND_EXCLUDE, 50)).map((u) => path.dirname(u.fsPath)),
  ];
  const data = await pickFolder(`${title} (2/5): training images`, 'A folder of images with metadata.jsonl, or with a .txt caption beside each image', datasets, (dir) => {
    const facts = datasetFacts(dir);
    // No image the trainer could use: say why (a refused metadata.jsonl names itself), else that there are none.
    return facts.numImages > 0 ? undefined : (facts.problems[0] ?? `${dir} holds no images.`);
  });
  if (!data) return;
  const facts = datasetFacts(data);

  const defaultOutput = settings.defaultOutputFolder || 'lora-output';
  const runName = path.basename(data).replace(/[^\w.-]+/g, '-') || 'my-lora';
  const output = await vscode.window.showInputBox({
    title: `${title} (3/5): output folder`,
    prompt: 'Where the LoRA, checkpoints, samples and metrics go (relative to the config file)',
    value: `${defaultOutput.replace(/[\\/]+$/, '')}/${runName}`,
    ignoreFocusOut: true,
    validateInput: (v) => (v.trim() ? undefined : 'An output folder is needed.'),
  });
  if (!output) return;

  const rankPick = await vscode.window.showQuickPick(
    [
      { label: '4', description: 'diffusers’ default: small file, enough for a style or a composition' },
      { label: '8', description: 'more capacity' },
      { label: '16', description: 'a subject or a detailed style' },
      { label: '32', description: 'large; rarely needed' },
    ],
    { title: `${title} (4/5): LoRA rank`, placeHolder: 'The LoRA rank r (alpha = r)', ignoreFocusOut: true },
  );
  if (!rankPick) return;

  const stepsText = await vscode.window.showInputBox({
    title: `${title} (5/5): training steps`,
    prompt: `Optimizer steps (each 4 images at batch 1 × accumulation 4; the dataset has ${facts.numImages} images)`,
    value: '500',
    ignoreFocusOut: true,
    validateInput: (v) => (/^\d+$/.test(v.trim()) && Number(v) >= 1 ? undefined : 'A whole number ≥ 1.'),
  });
  if (!stepsText) return;

  const defaultFile = path.join(root ?? path.dirname(data), `${runName}.lora.yaml`);
  const target = await vscode.window.showSaveDialog({
    title: 'Save the run config',
    defaultUri: vscode.Uri.file(defaultFile),
    filters: RUN_CONFIG_SAVE_FILTERS,
  });
  if (!target) return;
  const file = withRunConfigExtension(target.fsPath);
  const dir = path.dirname(file);
  const rel = (p: string) => {
    const r = path.relative(dir, p) || '.';
    return r.startsWith('..' + path.sep + '..' + path.sep + '..') ? p : r.split(path.sep).join('/');
  };
  const text = renderRunConfig(
    {
      modelPath: path.isAbsolute(model) ? rel(model) : model,
      dataPath: rel(data),
      outputPath: output.trim(),
      rank: Number(rankPick.label),
      steps: Number(stepsText),
      resolution: modelResolution(path.isAbsolute(model) ? model : (cachedSnapshot('model', model, null) ?? '')) ?? 512,
      validationPrompt: facts.firstCaption,
      numImages: facts.numImages,
    },
    `LoRA training run: ${path.basename(model)} on ${path.basename(data)}`,
  );
  fs.writeFileSync(file, text);
  const doc = await vscode.workspace.openTextDocument(file);
  await vscode.window.showTextDocument(doc);
  const choice = await vscode.window.showInformationMessage(`Wrote ${path.basename(file)}.`, 'Train LoRA');
  if (choice === 'Train LoRA') void vscode.commands.executeCommand(COMMANDS.train, vscode.Uri.file(file));
}

/** A quick pick of folders found in the workspace, plus Browse…; returns an absolute path. */
async function pickFolder(title: string, placeHolder: string, found: string[], check: (dir: string) => string | undefined): Promise<string | undefined> {
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const items: vscode.QuickPickItem[] = [...new Set(found)].sort().map((dir) => ({ label: root ? path.relative(root, dir) || '.' : dir, description: dir }));
  items.push({ label: BROWSE });
  const answer = await pickOrType({ title, placeholder: `${placeHolder} — pick one, or type a path and press Enter`, items, browse: [BROWSE] });
  if (!answer) return undefined;
  const dir = 'typed' in answer ? typedFolder(answer.typed, root) : answer.pick.label === BROWSE ? await browseFor(title, root) : answer.pick.description;
  if (!dir) return undefined;
  const problem = check(dir);
  if (problem) {
    void vscode.window.showErrorMessage(problem);
    return undefined;
  }
  return dir;
}
