// The LoRA Studio extension: commands, run sessions (the trainer as a child process), the status bar and
// notifications, the training dashboard, the run-config language client and the inference notebook.
// Activated by its contributions (commands, languages, the *.loranb notebook), a workspace holding
// *.lora.yaml, or a dashboard being restored (package.json `activationEvents`).
import type * as vscode from 'vscode';
import { commandFactories, dashboardActions } from './commands.js';
import { Ctx } from './ctx.js';
import { registerNotebook } from './notebook/index.js';

/** VS Code calls deactivate() without arguments and awaits only its promise: the runs it stops live here. */
let current: Ctx | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const ctx = (current = new Ctx(context, dashboardActions));
  ctx.registerCommands(commandFactories);
  registerNotebook(ctx);
  // Not awaited: VS Code holds a restored dashboard (and every activation event) until activate() settles,
  // and the language server is a child process that a busy machine may take long to start.
  void ctx.startLanguageClient();
}

export async function deactivate(): Promise<void> {
  await current?.deactivate();
}
