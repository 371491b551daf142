// "LoRA Studio: Generate Image…": prompt, LoRA and scale → `lora-studio generate` in a child process → the PNG
// opened in an editor tab. Also what the dashboard's "Generate with this checkpoint" and the finished
// notification's "Generate Image…" run, with the LoRA (and the run's model) already chosen.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as vscode from 'vscode';
import { validateRunConfigText } from '../core/config/validate.js';
import { readRunConfigText } from '../core/config/load.js';
import type { TrainerLaunch } from './run_session.js';
import { GENERATED_DIR, LORA_FILE, checkpointStep, makeDirs } from '../core/config/run_folder.js';
import { COMMANDS } from './manifest.js';
import { splitLines } from './util.js';
import { isInside } from '../core/config/paths.js';
import { describeGenerateOptions, generateOptionArgs, parseGenerateOption, restoreGenerateOptions, type GenerateOptions } from './generate_options.js';
import { INFERENCE_SCHEDULERS, SCHEDULER_TITLES } from '../core/config/generation.js';
import { activeRunConfig, BROWSE, FIND_EXCLUDE } from './workspace.js';
import { configModel } from './model_choice.js';
import { pickBaseModel } from './model_picker.js';

export interface GenerateRequest {
  /** A LoRA .safetensors already chosen (a checkpoint's or the final one). */
  weights?: string;
  /** The run config the LoRA came from: its model and validation prompt are the defaults. */
  configPath?: string;
}

export interface GenerateDeps {
  /** LoRA files of the workspace's runs (their output_dir may lie outside the workspace), each with its run config. */
  runLoras(): Promise<{ file: string; configPath: string }[]>;
  launch(): TrainerLaunch;
  backend(): string | undefined;
  log(line: string): void;
  state: vscode.Memento;
}

const NO_LORA = '$(circle-slash) No LoRA (base model only)';

export async function generateImageCommand(deps: GenerateDeps, req: GenerateRequest = {}): Promise<void> {
  let configPath = req.configPath ?? activeRunConfig()?.fsPath;
  let chosenLora = req.weights;
  // From the palette with no run config at hand: the LoRA first (newest first: the run just trained), and
  // the model of the run it came from.
  if (chosenLora === undefined && !configPath) {
    const picked = await pickLora(deps);
    if (picked === undefined) return;
    chosenLora = picked.file;
    configPath = picked.configPath;
  }
  const fromConfig = configPath ? readModelAndPrompt(configPath) : {};

  const modelDir = fromConfig.modelDir ?? (await pickBaseModel('Generate Image: base model'));
  if (!modelDir) return;

  const prompt = await vscode.window.showInputBox({
    title: 'Generate Image: prompt',
    prompt: `What to draw with ${path.basename(modelDir)}`,
    value: deps.state.get<string>('loraStudio.lastPrompt') ?? fromConfig.prompt ?? '',
    ignoreFocusOut: true,
    validateInput: (v) => (v.trim() ? undefined : 'A prompt is needed.'),
  });
  if (!prompt) return;
  await deps.state.update('loraStudio.lastPrompt', prompt);

  const lora = chosenLora ?? (await pickLora(deps))?.file;
  if (lora === undefined) return;

  let scale = 1;
  if (lora) {
    const s = await vscode.window.showInputBox({
      title: 'Generate Image: LoRA scale',
      prompt: `How strongly ${path.basename(path.dirname(lora))}/${path.basename(lora)} applies (0 = off, 1 = as trained)`,
      value: String(deps.state.get<number>('loraStudio.lastScale') ?? 1),
      ignoreFocusOut: true,
      validateInput: (v) => (Number.isFinite(Number(v)) && v.trim() !== '' ? undefined : 'A number, e.g. 1 or 0.75.'),
    });
    if (s === undefined) return;
    scale = Number(s);
    await deps.state.update('loraStudio.lastScale', scale);
  }

  const options = await pickOptions(deps.state);
  if (!options) return;

  const out = outputFile(lora, prompt);
  const args = ['generate', '--model', modelDir, '--prompt', prompt, ...generateOptionArgs(options), '--out', out];
  if (lora) args.push('--lora', `${lora}:${scale}`);
  const backend = deps.backend();
  if (backend) args.push('--backend', backend);

  const ok = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `Generating “${prompt}”${lora ? ` with ${path.basename(lora)} × ${scale}` : ''}`, cancellable: true },
    (progress, token) => runGenerate(deps, args, token, (line) => progress.report({ message: line })),
  );
  if (ok && fs.existsSync(out)) {
    await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(out), { preview: false });
  }
}

/** Runs `trainer generate …`; resolves true on success, shows the error otherwise. */
function runGenerate(deps: GenerateDeps, args: string[], token: vscode.CancellationToken, report: (line: string) => void): Promise<boolean> {
  const launch = deps.launch();
  const argv = [...(launch.nodeArgs ?? []), launch.trainerPath, ...args];
  deps.log(`$ ${launch.nodePath} ${argv.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}`);
  return new Promise((resolve) => {
    const child = spawn(launch.nodePath, argv, { env: { ...process.env, ...launch.env }, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    const tail: string[] = [];
    const onLine = (l: string) => {
      deps.log(l);
      // A Hub model's download (the CLI's download bar) shows in the notification, whose Cancel stops it.
      if (/^download(ed)?\b/.test(l)) report(l);
      tail.push(l);
      if (tail.length > 5) tail.shift();
    };
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    splitLines(child.stdout, onLine);
    splitLines(child.stderr, onLine);
    token.onCancellationRequested(() => child.kill('SIGTERM'));
    child.on('error', (e) => {
      void vscode.window.showErrorMessage(`Could not start the generator (${launch.nodePath}): ${e.message}`);
      resolve(false);
    });
    child.on('close', (code) => {
      if (code === 0) return resolve(true);
      if (!token.isCancellationRequested) {
        const why = [...tail].reverse().find((l) => l.trim()) ?? `exit code ${code}`;
        void vscode.window.showErrorMessage(`Image generation failed: ${why}`, 'Show Log').then((c) => c === 'Show Log' && vscode.commands.executeCommand(COMMANDS.showLog));
      }
      resolve(false);
    });
  });
}

/** The base model (folder or Hub id) and validation prompt a run config names (paths against the config's folder). */
function readModelAndPrompt(configPath: string): { modelDir?: string; prompt?: string } {
  try {
    const { config } = validateRunConfigText(readRunConfigText(configPath), configPath);
    if (!config?.pretrained_model_name_or_path) return {};
    return {
      modelDir: configModel(config.pretrained_model_name_or_path, path.dirname(configPath)),
      prompt: config.validation_prompt ?? undefined,
    };
  } catch {
    return {};
  }
}

/** file '' for no LoRA; undefined when cancelled. The runs' LoRAs (also outside the workspace) and the workspace's. */
async function pickLora(deps: GenerateDeps): Promise<{ file: string; configPath?: string } | undefined> {
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const configOf = new Map((await deps.runLoras()).map((r) => [r.file, r.configPath]));
  const found = [...new Set([...configOf.keys(), ...(await vscode.workspace.findFiles(`**/${LORA_FILE}`, FIND_EXCLUDE, 200)).map((u) => u.fsPath)])];
  // Newest first: the run just trained is the likely choice.
  const mtime = (f: string) => fs.statSync(f, { throwIfNoEntry: false })?.mtimeMs ?? 0;
  found.sort((a, b) => mtime(b) - mtime(a));
  const label = (f: string) => (root && isInside(root, f) ? path.relative(root, f) : f);
  const items: vscode.QuickPickItem[] = [
    ...found.map((f) => ({ label: label(f), description: [configOf.has(f) ? path.basename(configOf.get(f)!) : '', new Date(mtime(f)).toLocaleString()].filter(Boolean).join(' · '), detail: f })),
    { label: NO_LORA },
    { label: BROWSE },
  ];
  const pick = await vscode.window.showQuickPick(items, { title: 'Generate Image: LoRA', placeHolder: 'The LoRA weights to apply', ignoreFocusOut: true, matchOnDetail: true });
  if (!pick) return undefined;
  if (pick.label === NO_LORA) return { file: '' };
  if (pick.label !== BROWSE) return { file: pick.detail!, configPath: configOf.get(pick.detail!) };
  const file = (await vscode.window.showOpenDialog({ canSelectFiles: true, filters: { 'LoRA weights': ['safetensors'] }, title: 'LoRA file' }))?.[0]?.fsPath;
  return file === undefined ? undefined : { file };
}

const GENERATE = '$(play) Generate';
const OPTIONS_KEY = 'loraStudio.generateOptions';

/** Seed, steps, guidance, sampler and negative prompt: a list to change any of them, then Generate. */
async function pickOptions(state: vscode.Memento): Promise<GenerateOptions | undefined> {
  const options = restoreGenerateOptions(state.get(OPTIONS_KEY));
  for (;;) {
    const rows = describeGenerateOptions(options);
    const pick = await vscode.window.showQuickPick(
      [{ label: GENERATE, description: rows.map((r) => `${r.label.toLowerCase()} ${r.value}`).join(' · ') }, ...rows.map((r) => ({ label: r.label, description: r.value, key: r.key }))],
      { title: 'Generate Image: settings', placeHolder: 'Generate, or pick a setting to change it', ignoreFocusOut: true },
    );
    if (!pick) return undefined;
    const key = (pick as { key?: keyof GenerateOptions }).key;
    if (!key) break;
    if (key === 'scheduler') {
      const s = await vscode.window.showQuickPick(
        INFERENCE_SCHEDULERS.map((n) => ({ label: SCHEDULER_TITLES[n], description: n, name: n })),
        { title: 'Generate Image: sampler', ignoreFocusOut: true },
      );
      if (s) options.scheduler = s.name;
      continue;
    }
    const text = await vscode.window.showInputBox({
      title: `Generate Image: ${pick.label.toLowerCase()}`,
      value: key === 'negativePrompt' ? options.negativePrompt : String(options[key]),
      ignoreFocusOut: true,
      validateInput: (v) => {
        const r = parseGenerateOption(key, v);
        return 'problem' in r ? r.problem : undefined;
      },
    });
    if (text === undefined) continue;
    const r = parseGenerateOption(key, text);
    if ('value' in r) (options as unknown as Record<string, unknown>)[key] = r.value;
  }
  await state.update(OPTIONS_KEY, options);
  return options;
}

/** `<run folder>/generated/<time>-<prompt>.png`; the run folder is the LoRA's, or the checkpoint's parent. */
function outputFile(lora: string, prompt: string): string {
  let dir: string;
  if (lora) {
    dir = path.dirname(lora);
    if (checkpointStep(dir) !== undefined) dir = path.dirname(dir);
  } else {
    dir = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? os.tmpdir();
  }
  const slug = prompt.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40) || 'image';
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const outDir = path.join(dir, GENERATED_DIR);
  makeDirs(outDir);
  return path.join(outDir, `${stamp}-${slug}.png`);
}
