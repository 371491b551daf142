// The extension's state in one object, as rust-analyzer's editors/code has it: the settings, the trainer
// launch, the output channels, the runs and their dashboards, the notebook's inference worker and the
// run-config language client. Commands are `(ctx) => handler` factories (commands.ts), registered here in
// one loop; activate() builds one Ctx and deactivate() asks it to stop what runs.
import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { DASHBOARD_VIEW_TYPE } from '../protocol/dashboard.js';
import { DIAGNOSTIC_SOURCE } from './config_check.js';
import { DashboardPanels, type DashboardActions } from './dashboard_panel.js';
import { startLanguageClient } from './language_client.js';
import { COMMANDS, OUTPUT_CHANNELS, SETTINGS, SETTINGS_SECTION, TRAINING_CONTEXT_KEY, type CommandName } from './manifest.js';
import { WorkerClient } from './notebook/worker_client.js';
import { RunRegistry } from './run_registry.js';
import { registerRunsView, type RunsView } from './runs_view.js';
import type { TrainerLaunch } from './run_session.js';
import { TrainerLog } from './run_ui.js';
import { backendOverride, trainerLaunch } from './trainer_launch.js';
import { errorMessage } from './util.js';

/** A command's handler: menus pass a resource, the palette nothing, other callers what they choose. */
export type Cmd = (...args: never[]) => unknown;
export type CommandFactory = (ctx: Ctx) => Cmd;

/** How long closing or reloading the window waits for runs to save their checkpoint. */
const STOP_GRACE_MS = 4000;

/** The `loraStudio.*` settings, read afresh on each use: a change applies to the next run. */
export class Settings {
  private get config(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration(SETTINGS_SECTION);
  }

  /** `config` (keep the run config's own `backend`) or a backend name. */
  get backend(): string | undefined {
    return this.config.get<string>(SETTINGS.backend);
  }

  /** The Node.js that runs the trainer; '' for VS Code's own runtime. */
  get nodePath(): string {
    return this.config.get<string>(SETTINGS.nodePath) ?? '';
  }

  get defaultOutputFolder(): string | undefined {
    return this.config.get<string>(SETTINGS.defaultOutputFolder);
  }

  /** Whether a change alters how the trainer (and the inference worker) is started. */
  affectsLaunch(e: vscode.ConfigurationChangeEvent): boolean {
    return [SETTINGS.backend, SETTINGS.nodePath].some((k) => e.affectsConfiguration(`${SETTINGS_SECTION}.${k}`));
  }
}

export class Ctx {
  readonly settings = new Settings();
  readonly runs = new RunRegistry();
  /** 'LoRA Studio: Trainer': every run's log, the image generator's, and the language server's start. */
  readonly log = new TrainerLog();
  /** 'LoRA Studio: Inference': the notebook's worker. */
  readonly inferenceLog = vscode.window.createOutputChannel(OUTPUT_CHANNELS.inference);
  readonly dashboards: DashboardPanels;
  readonly runsView: RunsView;

  private languageClient: LanguageClient | undefined;
  private worker: WorkerClient | undefined;
  private fallbackDiagnostics: vscode.DiagnosticCollection | undefined;

  constructor(
    readonly extCtx: vscode.ExtensionContext,
    dashboardActions: (ctx: Ctx) => DashboardActions,
  ) {
    this.dashboards = new DashboardPanels(extCtx.extensionUri, dashboardActions(this));
    this.pushCleanup(
      this.log,
      this.inferenceLog,
      { dispose: () => this.fallbackDiagnostics?.dispose() },
      this.dashboards,
      vscode.window.registerWebviewPanelSerializer(DASHBOARD_VIEW_TYPE, this.dashboards),
      // A changed backend or node setting takes effect with the next worker.
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (this.settings.affectsLaunch(e) && this.worker) {
          void this.worker.dispose();
          this.worker = undefined;
        }
      }),
      { dispose: () => void this.worker?.dispose() },
    );
    this.runsView = registerRunsView(this);
    const updateTrainingContext = () => void vscode.commands.executeCommand('setContext', TRAINING_CONTEXT_KEY, this.runs.active().length > 0);
    this.runs.onAdded.on((s) => {
      s.onState.on(updateTrainingContext);
      void s.done.then(updateTrainingContext);
      updateTrainingContext();
    });
  }

  /** The run-config language client, once started (undefined when its bundle is missing or it failed). */
  get client(): LanguageClient | undefined {
    return this.languageClient;
  }

  /** How the trainer (`dist/cli.mjs`) is started now: for runs, image generation and the inference worker. */
  trainerLaunch(): TrainerLaunch {
    return trainerLaunch({ extensionPath: this.extCtx.extensionPath, nodePathSetting: this.settings.nodePath, execPath: process.execPath, versions: process.versions });
  }

  /** The `--backend` the setting asks for, or undefined to keep the run config's. */
  backend(): string | undefined {
    return backendOverride(this.settings.backend);
  }

  /** The notebook's one inference worker: started on first use and kept (it keeps the model loaded). */
  inferenceWorker(): WorkerClient {
    if (this.worker) return this.worker;
    const worker = (this.worker = new WorkerClient({ launch: this.trainerLaunch(), backend: this.backend() }));
    worker.onLog.on((line) => this.inferenceLog.appendLine(line));
    return worker;
  }

  /** Where a config's problems go when no language server publishes them (undefined while it runs). */
  diagnosticsWithoutServer(): vscode.DiagnosticCollection | undefined {
    if (this.languageClient) return undefined;
    return (this.fallbackDiagnostics ??= vscode.languages.createDiagnosticCollection(DIAGNOSTIC_SOURCE));
  }

  /** Registers every command by its id; a handler that throws shows its message. */
  registerCommands(factories: Record<CommandName, CommandFactory>): void {
    for (const name of Object.keys(factories) as CommandName[]) {
      const handler = factories[name](this);
      this.pushCleanup(
        vscode.commands.registerCommand(COMMANDS[name], async (...args: never[]) => {
          try {
            await handler(...args);
          } catch (e) {
            showError(e);
          }
        }),
      );
    }
  }

  async startLanguageClient(): Promise<void> {
    try {
      this.languageClient = await startLanguageClient(this.extCtx, this.log.channel);
    } catch (e) {
      this.log.channel.appendLine(`language server failed to start: ${errorMessage(e)}`);
    }
  }

  /** Closing or reloading the window: every run saves a checkpoint and exits (Resume continues it). */
  async deactivate(): Promise<void> {
    await Promise.all([this.runs.stopAll(STOP_GRACE_MS), this.languageClient?.stop().catch(() => undefined)]);
  }

  pushCleanup(...disposables: vscode.Disposable[]): void {
    this.extCtx.subscriptions.push(...disposables);
  }
}

/** An error message as the extension shows one. */
export function showError(e: unknown): void {
  void vscode.window.showErrorMessage(`LoRA Studio: ${errorMessage(e)}`);
}
