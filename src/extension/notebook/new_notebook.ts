// `LoRA Studio: New Inference Notebook`: an untitled notebook prefilled with the workspace's most recently trained
// LoRA (the newest pytorch_lora_weights.safetensors), its base model and its validation prompt when the
// LoRA's header records them, and cells that compare with/without it and sweep its scale.
import fs from 'node:fs';
import path from 'node:path';
import * as vscode from 'vscode';
import { CELL_LANGUAGE_ID, cellText, pathForCell } from './cell_spec.js';
import { NOTEBOOK_TYPE } from '../../protocol/generation_output.js';
import { FIND_EXCLUDE } from '../workspace.js';
import { LORA_FILE } from '../../core/config/run_folder.js';
import { GENERATION_DEFAULTS } from '../../core/config/generation.js';
import { modelSource } from '../../core/config/model_source.js';
import { hasHubIdShape } from '../../core/config/hub_cache.js';

/** Written into the new cells, though they are the defaults, so the knobs are in view. */
const SHOWN = { steps: GENERATION_DEFAULTS.steps, guidance: GENERATION_DEFAULTS.guidance };

export async function newInferenceNotebook(): Promise<vscode.NotebookEditor> {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const lora = await newestLora();
  const info = lora ? loraHeaderInfo(lora) : {};
  const model = (lora && resolveModel(info.model, [path.dirname(lora), path.dirname(path.dirname(lora)), folder])) ?? (await someModelFolder());
  // An untitled notebook's relative paths start at the workspace folder (see notebook_paths.ts).
  const rel = (p: string) => (folder ? pathForCell(folder, p) : p);
  const prompt = info.prompt || 'a red circle';
  // A Hub id (the run trained on `runwayml/stable-diffusion-v1-5`) is written as it is: the worker fetches it.
  const modelForCell = model ? (path.isAbsolute(model) ? rel(model) : model) : 'path/to/diffusers-model';
  const cells: vscode.NotebookCellData[] = [];
  const md = (text: string) => cells.push(new vscode.NotebookCellData(vscode.NotebookCellKind.Markup, text, 'markdown'));
  const gen = (text: string) => cells.push(new vscode.NotebookCellData(vscode.NotebookCellKind.Code, text, CELL_LANGUAGE_ID));
  if (lora) {
    md(`# ${path.basename(path.dirname(lora))}\n\nThe LoRA in \`${rel(lora)}\`. Run a cell to generate; the images are saved next to the notebook once it is saved.`);
    gen(cellText({ prompt, model: modelForCell, ...SHOWN, loras: [{ file: rel(lora), scale: 1 }], seed: [0, 1], compare: true }));
    gen(cellText({ prompt, model: modelForCell, ...SHOWN, loras: [{ file: rel(lora), scale: 1 }], seed: 0, sweep: [0, 0.5, 1] }));
  } else {
    md(`# Inference notebook\n\nNo trained LoRA (\`${LORA_FILE}\`) was found in this workspace: name one under \`loras:\`.`);
    gen(cellText({ prompt, model: modelForCell, ...SHOWN, seed: [0, 1, 2, 3] }));
  }
  const doc = await vscode.workspace.openNotebookDocument(NOTEBOOK_TYPE, new vscode.NotebookData(cells));
  return vscode.window.showNotebookDocument(doc);
}

async function newestLora(): Promise<string | undefined> {
  const found = await vscode.workspace.findFiles(`**/${LORA_FILE}`, FIND_EXCLUDE, 500);
  let best: { file: string; mtime: number } | undefined;
  for (const uri of found) {
    try {
      const mtime = fs.statSync(uri.fsPath).mtimeMs;
      if (!best || mtime > best.mtime) best = { file: uri.fsPath, mtime };
    } catch {
      // deleted while we looked
    }
  }
  return best?.file;
}

async function someModelFolder(): Promise<string | undefined> {
  const found = await vscode.workspace.findFiles('**/model_index.json', FIND_EXCLUDE, 1);
  return found[0] && path.dirname(found[0].fsPath);
}

/** The base model and a prompt, from the run config LoRA Studio stores in the LoRA's safetensors header. */
export function loraHeaderInfo(file: string): { model?: string; prompt?: string } {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const len = Buffer.alloc(8);
      fs.readSync(fd, len, 0, 8, 0);
      const n = Number(len.readBigUInt64LE());
      if (n <= 0 || n > 100_000_000) return {};
      const header = Buffer.alloc(n);
      fs.readSync(fd, header, 0, n, 8);
      const meta = (JSON.parse(header.toString('utf8')) as { __metadata__?: Record<string, string> }).__metadata__ ?? {};
      const config = meta['lora_studio.run_config'] ? (JSON.parse(meta['lora_studio.run_config']) as Record<string, unknown>) : {};
      const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
      return { model: str(config.pretrained_model_name_or_path) ?? str(meta.ss_sd_model_name), prompt: str(config.validation_prompt) };
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return {};
  }
}

/** The recorded base model as a folder that exists, else as the Hub id it is; undefined when neither. */
function resolveModel(model: string | undefined, bases: (string | undefined)[]): string | undefined {
  if (!model) return undefined;
  const candidates = path.isAbsolute(model) ? [model] : bases.filter((b): b is string => !!b).map((b) => path.resolve(b, model));
  return candidates.find((c) => modelSource(c).kind !== 'problem') ?? (!path.isAbsolute(model) && hasHubIdShape(model) ? model : undefined);
}
