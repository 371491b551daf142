// The inference notebook's parts, registered by the extension's activate(): the *.loranb serializer, the
// controller (with its one inference worker, started on the first run and kept), the renderer's message
// host, cell-language completion, and `LoRA: New Inference Notebook`.
import * as vscode from 'vscode';
import { backendOverride, trainerLaunch } from '../trainer_launch.js';
import { registerCellLanguageFeatures } from './completion.js';
import { InferenceController } from './controller.js';
import { NOTEBOOK_TYPE } from '../../protocol/generation_output.js';
import { newInferenceNotebook } from './new_notebook.js';
import { registerRendererHost } from './renderer_host.js';
import { LoraNotebookSerializer } from './serializer.js';
import { WorkerClient } from './worker_client.js';

export const NEW_NOTEBOOK_COMMAND = 'loraStudio.newNotebook';

export function registerNotebook(context: vscode.ExtensionContext): void {
  const log = vscode.window.createOutputChannel('LoRA Studio: Inference');
  let client: WorkerClient | undefined;
  const settings = () => vscode.workspace.getConfiguration('loraStudio');
  const worker = (): WorkerClient => {
    if (client) return client;
    client = new WorkerClient({
      launch: trainerLaunch({ extensionPath: context.extensionPath, nodePathSetting: settings().get<string>('nodePath') ?? '', execPath: process.execPath, versions: process.versions }),
      backend: backendOverride(settings().get<string>('backend')),
    });
    client.onLog.on((line) => log.appendLine(line));
    return client;
  };

  context.subscriptions.push(
    log,
    vscode.workspace.registerNotebookSerializer(NOTEBOOK_TYPE, new LoraNotebookSerializer(), { transientOutputs: false }),
    new InferenceController(worker),
    registerRendererHost(worker),
    registerCellLanguageFeatures(),
    vscode.commands.registerCommand(NEW_NOTEBOOK_COMMAND, async () => {
      try {
        await newInferenceNotebook();
      } catch (e) {
        void vscode.window.showErrorMessage(`LoRA Studio: ${e instanceof Error ? e.message : String(e)}`);
      }
    }),
    // A changed backend or node setting takes effect with the next worker.
    vscode.workspace.onDidChangeConfiguration((e) => {
      if ((e.affectsConfiguration('loraStudio.backend') || e.affectsConfiguration('loraStudio.nodePath')) && client) {
        void client.dispose();
        client = undefined;
      }
    }),
    { dispose: () => void client?.dispose() },
  );
}
