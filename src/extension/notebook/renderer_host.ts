// The extension's end of the notebook renderer's messages: image bytes for reopened notebooks, the sweep
// slider's "generate at this scale", copying an image's settings into a new cell, and saving an image.
// The renderer names outputs by run id; everything it may touch is looked up from that output, never taken
// from the message (a message cannot make the extension read an arbitrary file).
import path from 'node:path';
import * as vscode from 'vscode';
import { showError } from '../ctx.js';
import { READ_LIMITS, readRegularFile } from '../../core/io/safe_read.js';
import type { GenerateRequest } from '../../protocol/inference.js';
import { CELL_LANGUAGE_ID, cellText } from './cell_spec.js';
import { notebookLocation } from './controller.js';
import { GENERATION_MIME, RENDERER_ID, RENDERER_MESSAGES, type ExtensionToRenderer, type GenerationOutput, type RendererToExtension } from '../../protocol/generation_output.js';
import { containedPath, modelAllowed, modelForWorker, namedInside, notebookDir } from './notebook_paths.js';
import type { WorkerClient } from './worker_client.js';

export function registerRendererHost(client: () => WorkerClient): vscode.Disposable {
  const messaging = vscode.notebooks.createRendererMessaging(RENDERER_ID);
  return messaging.onDidReceiveMessage(({ editor, message }) => {
    const post = (m: ExtensionToRenderer) => void messaging.postMessage(m, editor);
    const checked = RENDERER_MESSAGES.check(message);
    if (!checked.ok) return showError(new Error(`ignored a message from the notebook renderer: ${checked.problem}`));
    handle(editor, checked.message, post, client).catch(showError);
  });
}

async function handle(editor: vscode.NotebookEditor, m: RendererToExtension, post: (m: ExtensionToRenderer) => void, client: () => WorkerClient): Promise<void> {
  const found = findOutput(editor.notebook, m.runId);
  const dir = notebookDir(notebookLocation(editor.notebook));
  if (!found) {
    if (m.type === 'sweepScale') post({ type: 'sweepError', requestId: m.requestId, message: 'this output is gone (the cell was re-run or cleared)' });
    return;
  }
  const { cell, output } = found;
  // Every path an output names must lie in the notebook's folder or a workspace folder.
  const roots = [dir, ...(vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath)];
  const inside = (file: string) => containedPath(file, dir, roots);
  switch (m.type) {
    case 'loadImages': {
      const allowed = new Set([...output.images.map((i) => i.file), ...(output.sheet ? [output.sheet] : [])]);
      const images: Record<string, string | null> = {};
      for (const f of m.files) {
        if (!allowed.has(f)) continue;
        images[f] = await readPng(inside(f));
      }
      post({ type: 'images', requestId: m.requestId, images });
      return;
    }
    case 'sweepScale': {
      if (!output.sweep) return;
      const s = output.settings;
      // Only handed to the worker to load, never read back: named inside is enough (symlinked models work).
      const outside = modelAllowed(s.model, dir, roots) ? s.loras.map((l) => l.file).find((p) => !namedInside(p, dir, roots)) : s.model;
      if (outside !== undefined) {
        post({ type: 'sweepError', requestId: m.requestId, message: `${outside} is not inside the notebook's folder or the workspace: open the notebook where its model and LoRAs are, or re-run the cell` });
        return;
      }
      const sweepFile = path.resolve(dir, output.sweep.lora);
      const request: GenerateRequest = {
        type: 'generate',
        id: client().newId('sweep'),
        model: modelForWorker(s.model, dir),
        prompt: s.prompt,
        negativePrompt: s.negativePrompt,
        scheduler: s.scheduler,
        steps: s.steps,
        guidance: s.guidance,
        width: s.width || undefined,
        height: s.height || undefined,
        // No outDir: a preview comes back as bytes and leaves no files behind.
        jobs: [{ seed: m.seed, loras: s.loras.map((l) => ({ file: path.resolve(dir, l.file), scale: path.resolve(dir, l.file) === sweepFile ? m.scale : l.scale })) }],
      };
      const final = await client().request(request, (w) => {
        if (w.type === 'progress') post({ type: 'sweepProgress', requestId: m.requestId, step: w.step, steps: w.steps });
        if (w.type === 'image' && w.png) post({ type: 'sweepImage', requestId: m.requestId, scale: m.scale, seed: m.seed, png: w.png });
      });
      if (final.type === 'error') post({ type: 'sweepError', requestId: m.requestId, message: final.message });
      return;
    }
    case 'copySettings': {
      const image = output.images[m.image];
      if (!image) return;
      const s = output.settings;
      const text = cellText({ ...s, loras: image.loras, seed: image.seed, width: s.width || undefined, height: s.height || undefined });
      const edit = new vscode.WorkspaceEdit();
      edit.set(editor.notebook.uri, [vscode.NotebookEdit.insertCells(cell.index + 1, [new vscode.NotebookCellData(vscode.NotebookCellKind.Code, text, CELL_LANGUAGE_ID)])]);
      await vscode.workspace.applyEdit(edit);
      editor.revealRange(new vscode.NotebookRange(cell.index + 1, cell.index + 2));
      return;
    }
    case 'saveImage': {
      const image = output.images[m.image];
      if (!image) return;
      const source = inside(image.file);
      if (!image.data && !source) throw new Error(`${image.file} is not inside the notebook's folder or the workspace`);
      const target = await vscode.window.showSaveDialog({ defaultUri: vscode.Uri.file(path.join(dir, path.basename(image.file))), filters: { 'PNG image': ['png'] }, title: 'Save Image' });
      if (!target) return;
      const bytes = image.data ? Buffer.from(image.data, 'base64') : readRegularFile(source!, READ_LIMITS.generatedImage, 'a generated image');
      await vscode.workspace.fs.writeFile(target, bytes);
      return;
    }
  }
}

/** A PNG's bytes as base64, or null: only a regular `.png` file under READ_LIMITS.generatedImage is read. */
async function readPng(file: string | undefined): Promise<string | null> {
  if (!file || path.extname(file).toLowerCase() !== '.png') return null;
  try {
    return readRegularFile(file, READ_LIMITS.generatedImage, 'a generated image').toString('base64');
  } catch {
    return null;
  }
}

function findOutput(nb: vscode.NotebookDocument, runId: string): { cell: vscode.NotebookCell; output: GenerationOutput } | undefined {
  for (const cell of nb.getCells()) {
    for (const o of cell.outputs) {
      const item = o.items.find((i) => i.mime === GENERATION_MIME);
      if (!item) continue;
      const output = JSON.parse(new TextDecoder().decode(item.data)) as GenerationOutput;
      if (output.runId === runId) return { cell, output };
    }
  }
  return undefined;
}
