// The inference notebook's parts, registered by the extension's activate(): the *.loranb serializer, the
// controller and the renderer's message host (both on Ctx's one inference worker, started on the first
// run and kept) and cell-language completion. `LoRA Studio: New Inference Notebook` is in commands.ts.
import * as vscode from 'vscode';
import type { Ctx } from '../ctx.js';
import { registerCellLanguageFeatures } from './completion.js';
import { InferenceController } from './controller.js';
import { NOTEBOOK_TYPE } from '../../protocol/generation_output.js';
import { registerRendererHost } from './renderer_host.js';
import { LoraNotebookSerializer } from './serializer.js';

export function registerNotebook(ctx: Ctx): void {
  const worker = () => ctx.inferenceWorker();
  ctx.pushCleanup(
    vscode.workspace.registerNotebookSerializer(NOTEBOOK_TYPE, new LoraNotebookSerializer(), { transientOutputs: false }),
    new InferenceController(worker),
    registerRendererHost(worker),
    registerCellLanguageFeatures(),
  );
}
