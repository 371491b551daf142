// The notebook controller: runs generation cells through the shared inference worker, one after another,
// with VS Code's execution order and timing, the images appearing as they are made, a progress line while
// running, cancellation through the cell's stop button, and problems as readable error outputs.
import * as vscode from 'vscode';
import { runCell, type CellRunResult } from './cell_runner.js';
import { CELL_LANGUAGE_ID, modelOfCell, type CellProblem } from './cell_spec.js';
import { GENERATION_MIME, NOTEBOOK_TYPE, type GenerationOutput } from '../../protocol/generation_output.js';
import { notebookDir, notebookOutputDir, runFileBase, type NotebookLocation } from './notebook_paths.js';
import type { WorkerClient } from './worker_client.js';
import { errorMessage } from '../util.js';

export const CONTROLLER_ID = 'lora-studio-inference';
/** Progress lines at most this often: each is an output update the notebook has to re-render. */
const PROGRESS_INTERVAL_MS = 250;

export function notebookLocation(nb: vscode.NotebookDocument): NotebookLocation {
  return { scheme: nb.uri.scheme, fsPath: nb.uri.fsPath, workspaceFolder: (vscode.workspace.getWorkspaceFolder(nb.uri) ?? vscode.workspace.workspaceFolders?.[0])?.uri.fsPath };
}

export class InferenceController implements vscode.Disposable {
  private readonly controller: vscode.NotebookController;
  private readonly order = new WeakMap<vscode.NotebookDocument, number>();

  constructor(private readonly client: () => WorkerClient) {
    this.controller = vscode.notebooks.createNotebookController(CONTROLLER_ID, NOTEBOOK_TYPE, 'LoRA Studio');
    this.controller.supportedLanguages = [CELL_LANGUAGE_ID];
    this.controller.supportsExecutionOrder = true;
    this.controller.description = 'generates images in a background worker that keeps the model loaded';
    this.controller.executeHandler = (cells, notebook) => this.execute(cells, notebook);
  }

  dispose(): void {
    this.controller.dispose();
  }

  private async execute(cells: vscode.NotebookCell[], notebook: vscode.NotebookDocument): Promise<void> {
    // Cells queue up in the worker anyway; running them in order here keeps their timing honest.
    for (const cell of cells) {
      if (cell.kind !== vscode.NotebookCellKind.Code) continue;
      await this.runOne(cell, notebook);
    }
  }

  private async runOne(cell: vscode.NotebookCell, notebook: vscode.NotebookDocument): Promise<void> {
    const exec = this.controller.createNotebookCellExecution(cell);
    const order = (this.order.get(notebook) ?? 0) + 1;
    this.order.set(notebook, order);
    exec.executionOrder = order;
    exec.start(Date.now());
    const loc = notebookLocation(notebook);
    const abort = new AbortController();
    const cancelled = exec.token.onCancellationRequested(() => abort.abort());

    let latest: GenerationOutput | undefined;
    let progress: string | undefined;
    let lastProgress = 0;
    // Output updates are async: chain them so they land in order, and coalesce what piles up meanwhile.
    let chain: Thenable<void> = Promise.resolve();
    let queued = false;
    const flush = () => {
      if (queued) return;
      queued = true;
      chain = chain.then(() => {
        queued = false;
        return exec.replaceOutput([...(latest ? [generationOutput(latest)] : []), ...(progress ? [new vscode.NotebookCellOutput([vscode.NotebookCellOutputItem.text(progress)])] : [])]);
      });
    };

    let result: CellRunResult;
    try {
      await exec.clearOutput();
      result = await runCell({
        client: this.client(),
        text: cell.document.getText(),
        notebookDir: notebookDir(loc),
        outDir: notebookOutputDir(loc),
        fileBase: runFileBase(cell.index),
        inheritedModel: inheritedModel(notebook, cell.index),
        signal: abort.signal,
        onOutput: (o) => {
          latest = o;
          flush();
        },
        onProgress: (text) => {
          const now = Date.now();
          if (now - lastProgress < PROGRESS_INTERVAL_MS) return;
          lastProgress = now;
          progress = `⏳ ${text}`;
          flush();
        },
      });
    } catch (e) {
      result = { kind: 'output', status: 'failed', error: errorMessage(e), output: latest! };
    } finally {
      cancelled.dispose();
    }
    await chain;

    const outputs: vscode.NotebookCellOutput[] = [];
    let success: boolean | undefined;
    if (result.kind === 'problems') {
      outputs.push(errorOutput('Cell problem', problemText(result.problems)));
      success = false;
    } else {
      if (result.output?.images.length) outputs.push(generationOutput(result.output));
      if (result.status === 'failed') outputs.push(errorOutput('Generation failed', result.error ?? 'unknown error'));
      if (result.status === 'cancelled') outputs.push(new vscode.NotebookCellOutput([vscode.NotebookCellOutputItem.text(`Cancelled after ${result.output.images.length} of ${result.output.planned} images.`)]));
      // A cancel is the person's choice, not a failure: no red mark.
      success = result.status === 'done' ? true : result.status === 'failed' ? false : undefined;
    }
    await exec.replaceOutput(outputs);
    exec.end(success, Date.now());
  }
}

/** The generation item (the renderer draws it) and, as the alternative VS Code can show itself, the contact sheet. */
export function generationOutput(o: GenerationOutput): vscode.NotebookCellOutput {
  const { sheetData, ...forRenderer } = o;
  const items = [vscode.NotebookCellOutputItem.json(forRenderer, GENERATION_MIME)];
  const png = sheetData ?? o.images[0]?.data;
  if (png) items.push(new vscode.NotebookCellOutputItem(Buffer.from(png, 'base64'), 'image/png'));
  return new vscode.NotebookCellOutput(items, { layout: o.layout, images: o.images.length });
}

function errorOutput(name: string, message: string): vscode.NotebookCellOutput {
  const error = new Error(message);
  error.name = name;
  // No stack: the message is the whole story, and a stack of the extension host would only hide it.
  error.stack = undefined;
  return new vscode.NotebookCellOutput([vscode.NotebookCellOutputItem.error(error)]);
}

function problemText(problems: CellProblem[]): string {
  return problems.map((p) => `line ${p.line + 1}: ${p.message}`).join('\n');
}

/** `model:` of the nearest code cell above that names one. */
function inheritedModel(notebook: vscode.NotebookDocument, index: number): string | undefined {
  for (let i = index - 1; i >= 0; i--) {
    const c = notebook.cellAt(i);
    if (c.kind !== vscode.NotebookCellKind.Code) continue;
    const m = modelOfCell(c.document.getText());
    if (m) return m;
  }
  return undefined;
}
