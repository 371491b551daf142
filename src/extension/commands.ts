// The commands, each a `(ctx) => handler` factory that Ctx registers under its id from manifest.ts, and the
// run actions the dashboard, the status bar and the notifications share with them.
import fs from 'node:fs';
import path from 'node:path';
import * as vscode from 'vscode';
import { checkConfigForTraining } from './config_check.js';
import { showError, type CommandFactory, type Ctx } from './ctx.js';
import type { DashboardActions } from './dashboard_panel.js';
import { generateImageCommand, type GenerateRequest } from './generate_image.js';
import { importTrainingCommand } from './import_command.js';
import { COMMANDS, type CommandName } from './manifest.js';
import { newRunConfigCommand } from './new_run_config.js';
import { newInferenceNotebook } from './notebook/new_notebook.js';
import { listCheckpoints, LORA_FILE } from '../core/config/run_folder.js';
import { RunSession } from './run_session.js';
import { compareRuns } from './runs_view.js';
import { openExample } from './example.js';
import { ALLOWED_OUTPUT_DIRS_KEY, outputDirQuestion } from './output_dir_trust.js';
import { openDataset } from './dataset_panel.js';
import { attachRunUi, type RunUiActions } from './run_ui.js';
import { activeRunConfig, FIND_EXCLUDE, RUN_CONFIG_FILE, RUN_CONFIG_GLOB } from './workspace.js';

export const commandFactories = {
  train: (ctx) => (uri?: unknown) => train(ctx, asUri(uri)),
  newRunConfig: (ctx) => () => newRunConfigCommand(ctx.settings),
  stop: (ctx) => (uri?: unknown) => stop(ctx, asUri(uri)),
  resume: (ctx) => (uri?: unknown) => resume(ctx, asUri(uri)),
  openDashboard: (ctx) => (uri?: unknown) => openDashboard(ctx, asUri(uri)),
  showLog: (ctx) => () => ctx.log.show(),
  generateImage: (ctx) => (arg?: vscode.Uri | GenerateRequest) => generate(ctx, arg instanceof vscode.Uri ? { weights: arg.fsPath } : (arg ?? {})),
  importCommand: () => () => importTrainingCommand(),
  newNotebook: () => () => newInferenceNotebook(),
  compareRuns: (ctx) => () => compareRuns(ctx, ctx.runsView),
  refreshRuns: (ctx) => () => ctx.runsView.refresh(),
  openExample: (ctx) => () => openExample(ctx),
  openDataset: (ctx) => (uri?: unknown) => openDataset(ctx, asUri(uri)),
} satisfies Record<CommandName, CommandFactory>;

/** The dashboard's buttons: the same actions as the commands. */
export function dashboardActions(ctx: Ctx): DashboardActions {
  return {
    stop: (s) => void s.stop(),
    ...runActions(ctx),
    showLog: () => ctx.log.show(),
    log: (line) => ctx.log.channel.appendLine(line),
  };
}

/** What a run's notifications and status bar item offer. */
function runActions(ctx: Ctx): RunUiActions {
  return {
    openDashboard: (s) => ctx.dashboards.showSession(s),
    resume: (configPath) => void train(ctx, vscode.Uri.file(configPath), true),
    generate: (weights, configPath) => void generate(ctx, { weights, configPath }),
  };
}

function generate(ctx: Ctx, req: GenerateRequest): Promise<void> {
  const runLoras = async () => (await ctx.runsView.runs()).flatMap((r) => r.summary.loras.map((l) => ({ file: l.file, configPath: r.configPath })));
  const deps = { runLoras, launch: () => ctx.trainerLaunch(), backend: () => ctx.backend(), log: (l: string) => ctx.log.channel.appendLine(`[generate] ${l}`), state: ctx.extCtx.globalState };
  return generateImageCommand(deps, req).catch(showError);
}

/** Validates the config, then starts its trainer with the status bar, notification and dashboard. */
async function train(ctx: Ctx, uri: vscode.Uri | undefined, resume = false): Promise<RunSession | undefined> {
  const configUri = uri ?? (await pickConfig(resume ? 'Resume Training' : 'Train LoRA'));
  if (!configUri) return undefined;
  const existing = ctx.runs.forConfig(configUri.fsPath);
  if (existing?.live) {
    const c = await vscode.window.showWarningMessage(`${existing.name} is already training.`, 'Open Dashboard', 'Stop');
    if (c === 'Open Dashboard') ctx.dashboards.showSession(existing);
    else if (c === 'Stop') void existing.stop();
    return undefined;
  }
  const checked = await checkConfigForTraining(configUri, ctx.diagnosticsWithoutServer());
  if (!checked) return undefined;
  if (!(await confirmOutputDir(ctx, configUri.fsPath, checked.outputDir))) return undefined;
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
  const session = new RunSession({ launch: ctx.trainerLaunch(), configPath: configUri.fsPath, resume, outputDir: checked.outputDir, backend: ctx.backend() });
  for (const w of checked.warnings) ctx.log.line(session, `config ${w.severity}: line ${w.line}: ${w.message}`);
  ctx.runs.add(session);
  attachRunUi(session, ctx.log, runActions(ctx));
  session.start();
  // Beside the config, keeping the focus there; an open dashboard of the same folder switches to this run.
  ctx.dashboards.showSession(session, true);
  return session;
}

/** Asks before a run writes outside the workspace and home (output_dir_trust.ts); false when the user declines. */
async function confirmOutputDir(ctx: Ctx, configPath: string, outputDir: string): Promise<boolean> {
  const state = ctx.extCtx.workspaceState;
  const allowed = state.get<Record<string, string>>(ALLOWED_OUTPUT_DIRS_KEY, {});
  const workspaceFolders = (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
  const question = outputDirQuestion(configPath, outputDir, { workspaceFolders, allowed });
  if (!question) return true;
  const always = 'Always for This Config';
  const c = await vscode.window.showWarningMessage(question.message, { modal: true, detail: path.basename(configPath) }, 'Train', always);
  if (c === always) await state.update(ALLOWED_OUTPUT_DIRS_KEY, { ...allowed, [configPath]: question.realDir });
  return c === 'Train' || c === always;
}

async function stop(ctx: Ctx, arg?: vscode.Uri): Promise<void> {
  const active = ctx.runs.active();
  const target = arg ? ctx.runs.forConfig(arg.fsPath) : active.length === 1 ? active[0] : await pickSession(active, 'Stop Training: which run?');
  if (!target?.live) {
    if (!active.length) void vscode.window.showInformationMessage('No LoRA training is running.');
    return;
  }
  await target.stop();
}

async function resume(ctx: Ctx, arg?: vscode.Uri): Promise<void> {
  if (arg) return void (await train(ctx, arg, true));
  const resumable = ctx.runs.all().filter((s) => !s.live && (s.state === 'stopped' || s.state === 'failed'));
  const fromEditor = activeRunConfig();
  if (fromEditor) return void (await train(ctx, fromEditor, true));
  const pick = resumable.length ? await pickSession(resumable, 'Resume Training: which run?') : undefined;
  await train(ctx, pick ? vscode.Uri.file(pick.configPath) : undefined, true);
}

async function openDashboard(ctx: Ctx, arg?: vscode.Uri): Promise<void> {
  const uri = arg ?? activeRunConfig();
  const runs = ctx.runs;
  const session = uri ? runs.forConfig(uri.fsPath) : runs.active().length === 1 ? runs.active()[0] : await pickSession([...runs.all()], 'Open Training Dashboard: which run?');
  if (session?.outputDir) return void ctx.dashboards.showSession(session);
  const configUri = uri ?? (await pickConfig('Open Training Dashboard'));
  if (!configUri) return;
  const checked = await checkConfigForTraining(configUri, ctx.diagnosticsWithoutServer());
  if (!checked) return;
  if (!fs.existsSync(checked.outputDir)) {
    void vscode.window.showInformationMessage(`${path.basename(configUri.fsPath)} has not been trained yet (no ${checked.outputDir}).`);
    return;
  }
  ctx.dashboards.showFolder(checked.outputDir, configUri.fsPath, path.basename(configUri.fsPath).replace(RUN_CONFIG_FILE, ''));
}

/** Menus pass the resource; the palette passes nothing; other callers may pass a path. */
function asUri(arg: unknown): vscode.Uri | undefined {
  if (arg instanceof vscode.Uri) return arg;
  if (typeof arg === 'string' && arg) return vscode.Uri.file(arg);
  return undefined;
}

/** The active *.lora.yaml, or the workspace's only one, or a pick among them. */
async function pickConfig(title: string): Promise<vscode.Uri | undefined> {
  const active = activeRunConfig();
  if (active) return active;
  const found = await vscode.workspace.findFiles(RUN_CONFIG_GLOB, FIND_EXCLUDE, 200);
  if (found.length === 1) return found[0];
  if (!found.length) {
    const c = await vscode.window.showInformationMessage('No *.lora.yaml run config in this workspace.', 'New Run Config');
    if (c === 'New Run Config') void vscode.commands.executeCommand(COMMANDS.newRunConfig);
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
