// Starts the run-config language server (dist/server.cjs, src/server/) for `lora-yaml` documents:
// diagnostics, completion, hover and quick fixes come from there.
import fs from 'node:fs';
import * as vscode from 'vscode';
import { CAPTION_EXTENSION, IMAGE_EXTENSIONS, METADATA_FILE } from '../core/config/dataset_files.js';
import { OUTPUT_CHANNELS } from './manifest.js';
import { LanguageClient, TransportKind, type LanguageClientOptions, type ServerOptions } from 'vscode-languageclient/node';

/** What the disk checks read: run configs, model folders, datasets (images, captions) and weights. */
const WATCHED = ['*.lora.yaml', 'model_index.json', METADATA_FILE, '*.safetensors', ...IMAGE_EXTENSIONS.map((e) => `*${e}`), `*${CAPTION_EXTENSION}`];

export async function startLanguageClient(context: vscode.ExtensionContext, log: vscode.OutputChannel): Promise<LanguageClient | undefined> {
  const serverModule = context.asAbsolutePath('dist/server.cjs');
  if (!fs.existsSync(serverModule)) {
    log.appendLine(`language server not found at ${serverModule}: run configs are checked only when training starts`);
    return undefined;
  }
  const serverOptions: ServerOptions = {
    run: { module: serverModule, transport: TransportKind.ipc },
    debug: { module: serverModule, transport: TransportKind.ipc, options: { execArgv: ['--nolazy', '--inspect=6019'] } },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ language: 'lora-yaml' }],
    // The disk checks (model folder, dataset, checkpoints, an existing LoRA in output_dir) are re-run when
    // those change; the server asks for finer watching itself where it supports dynamic registration.
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher(`**/{${WATCHED.join(',')}}`) },
    outputChannelName: OUTPUT_CHANNELS.languageServer,
  };
  const client = new LanguageClient('loraStudio.languageServer', OUTPUT_CHANNELS.languageServer, serverOptions, clientOptions);
  await client.start();
  return client;
}
