// The LoRA Studio extension: commands, run sessions (the trainer as a child process), the status bar and
// notifications, the training dashboard, the run-config language client and the inference notebook.
// Activated only by its commands, its languages, a workspace holding *.lora.yaml, a *.loranb notebook, or
// a dashboard being restored.
import fs from 'node:fs';
import path from 'node:path';
import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { checkConfigForTraining, disposeConfigCheck } from './config_check.js';
import { DashboardPanels } from './dashboard_panel.js';
import { generateImageCommand, type GenerateRequest } from './generate_image.js';
import { importTrainingCommand } from './import_command.js';
import { startLanguageClient } from './language_client.js';
import { newRunConfigCommand } from './new_run_config.js';
import { registerNotebook } from './notebook/index.js';
import { listCheckpoints, LORA_FILE } from './run_history.js';
import { RunRegistry } from './run_registry.js';
import { RunSession, type TrainerLaunch } from './run_session.js';
import { attachRunUi, TrainerLog } from './run_ui.js';
import { backendOverride, trainerLaunch } from './trainer_launch.js';
import { DASHBOARD_VIEW_TYPE } from '../protocol/dashboard.js';

/** How long closing or reloading the window waits for runs to save their checkpoint. */
const STOP_GRACE_MS = 4000;
const CONFIG_GLOB = '**/*.lora.{yaml,yml}';
const EXCLUDE = '{**/node_modules/**,**/.git/**,**/.cache/**}';

let registry: RunRegistry | undefined;
let client: LanguageClient | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const runs = (registry = new RunRegistry());
  const log = new TrainerLog();
  context.subscriptions.push(log, { dispose: disposeConfigCheck });

  const settings = () => vscode.workspace.getConfiguration('loraStudio');
  const launch = (): TrainerLaunch =>
    trainerLaunch({ extensionPath: context.extensionPath, nodePathSetting: settings().get<string>('nodePath') ?? '', execPath: process.execPath, versions: process.versions });
  const backend = () => backendOverride(settings().get<string>('backend'));

  const generate = (req: GenerateRequest) =>
    generateImageCommand({ launch, backend, log: (l) => log.channel.appendLine(`[generate] ${l}`), state: context.globalState }, req).catch(showError);

  const dashboards = new DashboardPanels(context.extensionUri, {
    stop: (s) => void s.stop(),
    resume: (configPath) => void train(vscode.Uri.file(configPath), true),
    generate: (weights, configPath) => void generate({ weights, configPath }),
    showLog: () => log.show(),
  });
  context.subscriptions.push(dashboards, vscode.window.registerWebviewPanelSerializer(DASHBOARD_VIEW_TYPE, dashboards));

  const updateContext = () => void vscode.commands.executeCommand('setContext', 'loraStudio.training', runs.active().length > 0);
  runs.onAdded.on((s) => {
    s.onState.on(updateContext);
    void s.done.then(updateContext);
    updateContext();
  });

  /** Validates the config, then starts its trainer with the status bar, notification and dashboard. */
  async function train(uri: vscode.Uri | undefined, resume = false): Promise<RunSession | undefined> {
    const configUri = uri ?? (await pickConfig(resume ? 'Resume Training' : 'Train LoRA'));
    if (!configUri) return undefined;
    const existing = runs.forConfig(configUri.fsPath);
    if (existing?.live) {
      const c = await vscode.window.showWarningMessage(`${existing.name} is already training.`, 'Open Dashboard', 'Stop');
      if (c === 'Open Dashboard') dashboards.showSession(existing);
      else if (c === 'Stop') void existing.stop();
      return undefined;
    }
    const checked = await checkConfigForTraining(configUri, client !== undefined);
    if (!checked) return undefined;
    if (!resume && fs.existsSync(path.join(checked.outputDir, LORA_FILE))) {
      const c = await vscode.window.showWarningMessage(
        `${vscode.workspace.asRelativePath(checked.outputDir)} already holds a trained LoRA. Training again replaces it.`,
        { modal: true },
        'Train Again',
      );
      if (c !== 'Train Again') return undefined;
    }
    if (resume && listCheckpoints(checked.outputDir).length === 0) {
      const c = await vscode.window.showWarningMessage(`There is no checkpoint in ${checked.outputDir} to resume from.`, 'Train from the Start');
      if (c !== 'Train from the Start') return undefined;
      resume = false;
    }
    const session = new RunSession({ launch: launch(), configPath: configUri.fsPath, resume, outputDir: checked.outputDir, backend: backend() });
    for (const w of checked.warnings) log.line(session, `config ${w.severity}: line ${w.line}: ${w.message}`);
    runs.add(session);
    attachRunUi(session, log, {
      openDashboard: (s) => dashboards.showSession(s),
      resume: (configPath) => void train(vscode.Uri.file(configPath), true),
      generate: (weights, configPath) => void generate({ weights, configPath }),
    });
    session.start();
    // Beside the config, keeping the focus there; an open dashboard of the same folder switches to this run.
    dashboards.showSession(session, true);
    return session;
  }

  async function stop(arg?: vscode.Uri): Promise<void> {
    const active = runs.active();
    const target = arg ? runs.forConfig(arg.fsPath) : active.length === 1 ? active[0] : await pickSession(active, 'Stop Training: which run?');
    if (!target?.live) {
      if (!active.length) void vscode.window.showInformationMessage('No LoRA training is running.');
      return;
    }
    await target.stop();
  }

  async function resumeCommand(arg?: vscode.Uri): Promise<void> {
    if (arg) return void (await train(arg, true));
    const resumable = runs.all().filter((s) => !s.live && (s.state === 'stopped' || s.state === 'failed'));
    const fromEditor = activeConfig();
    if (fromEditor) return void (await train(fromEditor, true));
    const pick = resumable.length ? await pickSession(resumable, 'Resume Training: which run?') : undefined;
    await train(pick ? vscode.Uri.file(pick.configPath) : undefined, true);
  }

  async function openDashboard(arg?: vscode.Uri): Promise<void> {
    const uri = arg ?? activeConfig();
    const session = uri ? runs.forConfig(uri.fsPath) : runs.active().length === 1 ? runs.active()[0] : await pickSession([...runs.all()], 'Open Training Dashboard: which run?');
    if (session?.outputDir) return void dashboards.showSession(session);
    const configUri = uri ?? (await pickConfig('Open Training Dashboard'));
    if (!configUri) return;
    const checked = await checkConfigForTraining(configUri, client !== undefined);
    if (!checked) return;
    if (!fs.existsSync(checked.outputDir)) {
      void vscode.window.showInformationMessage(`${path.basename(configUri.fsPath)} has not been trained yet (no ${checked.outputDir}).`);
      return;
    }
    dashboards.showFolder(checked.outputDir, configUri.fsPath, path.basename(configUri.fsPath).replace(/\.lora\.ya?ml$/i, ''));
  }

  const command = (id: string, f: (...args: never[]) => unknown) =>
    context.subscriptions.push(
      vscode.commands.registerCommand(id, async (...args: never[]) => {
        try {
          await f(...args);
        } catch (e) {
          showError(e);
        }
      }),
    );
  command('loraStudio.train', (uri?: vscode.Uri) => train(asUri(uri)));
  command('loraStudio.newRunConfig', () => newRunConfigCommand());
  command('loraStudio.stop', (uri?: vscode.Uri) => stop(asUri(uri)));
  command('loraStudio.resume', (uri?: vscode.Uri) => resumeCommand(asUri(uri)));
  command('loraStudio.openDashboard', (uri?: vscode.Uri) => openDashboard(asUri(uri)));
  command('loraStudio.showLog', () => log.show());
  command('loraStudio.generateImage', (arg?: vscode.Uri | GenerateRequest) => generate(arg instanceof vscode.Uri ? { weights: arg.fsPath } : (arg ?? {})));
  command('loraStudio.importCommand', () => importTrainingCommand());

  // The inference notebook (*.loranb): its serializer, controller, renderer host and command.
  registerNotebook(context);

  try {
    client = await startLanguageClient(context, log.channel);
  } catch (e) {
    log.channel.appendLine(`language server failed to start: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export async function deactivate(): Promise<void> {
  // Closing or reloading the window: every run saves a checkpoint and exits (Resume continues it).
  await Promise.all([registry?.stopAll(STOP_GRACE_MS), client?.stop().catch(() => undefined)]);
}

/** Menus pass the resource; the palette passes nothing; other callers may pass a path. */
function asUri(arg: unknown): vscode.Uri | undefined {
  if (arg instanceof vscode.Uri) return arg;
  if (typeof arg === 'string' && arg) return vscode.Uri.file(arg);
  return undefined;
}

function activeConfig(): vscode.Uri | undefined {
  const doc = vscode.window.activeTextEditor?.document;
  return doc && /\.lora\.ya?ml$/i.test(doc.fileName) ? doc.uri : undefined;
}

/** The active *.lora.yaml, or the workspace's only one, or a pick among them. */
async function pickConfig(title: string): Promise<vscode.Uri | undefined> {
  const active = activeConfig();
  if (active) return active;
  const found = await vscode.workspace.findFiles(CONFIG_GLOB, EXCLUDE, 200);
  if (found.length === 1) return found[0];
  if (!found.length) {
    const c = await vscode.window.showInformationMessage('No *.lora.yaml run config in this workspace.', 'New Run Config');
    if (c === 'New Run Config') void vscode.commands.executeCommand('loraStudio.newRunConfig');
    return undefined;
  }
  const pick = await vscode.window.showQuickPick(
    found.map((u) => ({ label: path.basename(u.fsPath), description: vscode.workspace.asRelativePath(u), uri: u })),
    { title, placeHolder: 'Which run config?' },
  );
  return pick?.uri;
}

async function pickSession(sessions: RunSession[], title: string): Promise<RunSession | undefined> {
  if (sessions.length <= 1) return sessions[0];
  const pick = await vscode.window.showQuickPick(
    sessions.map((s) => ({ label: s.name, description: s.state, detail: s.configPath, session: s })),
    { title },
  );
  return pick?.session;
}

function showError(e: unknown): void {
  void vscode.window.showErrorMessage(`LoRA Studio: ${e instanceof Error ? e.message : String(e)}`);
}
