// What a person sees of a run while it goes: a status-bar item (step/total, loss, ETA; click → dashboard),
// a cancellable progress notification (cancel = stop with a checkpoint), the trainer's log in an output
// channel, and at the end a message: finished (with its file), stopped (Resume), or failed (Show Log, Resume).
import path from 'node:path';
import * as vscode from 'vscode';
import type { DownloadEvent, PhaseEvent, ProgressEvent } from '../protocol/training.js';
import type { RunExit, RunSession } from './run_session.js';
import { COMMANDS, OUTPUT_CHANNELS } from './manifest.js';
import { formatBytes, formatDevice, formatPhase, SOFTWARE_ADAPTER_WARNING } from '../protocol/format.js';
import { listCheckpoints } from '../core/config/run_folder.js';
import { endButtons, progressLine, progressRows } from './run_text.js';

export interface RunUiActions {
  openDashboard(session: RunSession): void;
  resume(configPath: string): void;
  generate(weightsFile: string, configPath: string): void;
}

/** How long the status-bar item stays after a run ends, so the result can be read (and clicked). */
const LINGER_MS = 30_000;

export class TrainerLog {
  readonly channel = vscode.window.createOutputChannel(OUTPUT_CHANNELS.trainer);
  /** The software-adapter warning is shown once per window, not once per run. */
  warnedSoftwareAdapter = false;

  line(session: RunSession, text: string): void {
    this.channel.appendLine(`[${session.name}] ${text}`);
  }

  show(): void {
    this.channel.show(true);
  }

  dispose(): void {
    this.channel.dispose();
  }
}

export function attachRunUi(session: RunSession, log: TrainerLog, actions: RunUiActions): void {
  const item = vscode.window.createStatusBarItem(`loraStudio.run.${session.configPath}`, vscode.StatusBarAlignment.Left, 50);
  item.name = `LoRA training: ${session.name}`;
  item.command = { title: 'Open Training Dashboard', command: COMMANDS.openDashboard, arguments: [vscode.Uri.file(session.configPath)] };
  item.text = `$(loading~spin) LoRA ${session.name}: starting…`;
  item.tooltip = `Starting the trainer for ${session.configPath}`;
  item.show();

  log.line(session, `$ ${session.commandLine.map(quoteArg).join(' ')}`);
  let phase: PhaseEvent | undefined;
  let last: ProgressEvent | undefined;
  const subscriptions = [
    session.onLog.on((l) => log.line(session, l)),
    session.onEvent.on((e) => {
      if (e.type === 'progress') showProgress(item, session, (last = e), phase);
      else if (e.type === 'phase') {
        phase = e;
        if (last) showProgress(item, session, last, phase);
        else item.text = `$(loading~spin) LoRA ${session.name}: ${formatPhase(e.phase, e.detail)}…`;
      } else if (e.type === 'started') {
        log.line(session, `started: ${e.totalSteps} steps from ${e.startStep}, device ${formatDevice(e)}, output ${e.outputDir}`);
        if (e.softwareAdapter) {
          log.line(session, `warning: ${SOFTWARE_ADAPTER_WARNING}`);
          if (!log.warnedSoftwareAdapter) {
            log.warnedSoftwareAdapter = true;
            void vscode.window.showWarningMessage(`LoRA Studio: ${SOFTWARE_ADAPTER_WARNING}`);
          }
        }
      }
      else if (e.type === 'download') item.text = `$(cloud-download) LoRA ${session.name}: ${downloadLine(e)}`;
      else if (e.type === 'pushed') log.line(session, `pushed to ${e.url}: ${e.files.join(', ')}`);
      else if (e.type === 'checkpoint') log.line(session, `checkpoint: ${e.path}`);
      else if (e.type === 'warning') log.line(session, `warning: ${e.message}`);
      else if (e.type === 'error') log.line(session, `error (${e.code}): ${e.message}${e.hint ? ` — ${e.hint}` : ''}`);
    }),
    session.onState.on((s) => {
      if (s === 'stopping') item.text = `$(loading~spin) LoRA ${session.name}: saving a checkpoint…`;
    }),
  ];

  void vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `Training LoRA ${session.name}`, cancellable: true },
    (progress, token) => {
      token.onCancellationRequested(() => void session.stop());
      let reported = 0;
      let lastProgress: ProgressEvent | undefined;
      const sub = session.onEvent.on((e) => {
        // Hub downloads come before training: the same notification shows them, and its Cancel stops them.
        if (e.type === 'download') return progress.report({ message: downloadLine(e) });
        if (e.type === 'phase' && lastProgress) return progress.report({ message: progressLine(lastProgress, e) });
        if (e.type !== 'progress') return;
        lastProgress = e;
        const pct = e.totalSteps ? (100 * e.step) / e.totalSteps : 0;
        progress.report({ increment: Math.max(0, pct - reported), message: progressLine(e) });
        reported = Math.max(reported, pct);
      });
      const stateSub = session.onState.on((s) => s === 'stopping' && progress.report({ message: 'saving a checkpoint, then stopping…' }));
      return session.done.finally(() => {
        sub.dispose();
        stateSub.dispose();
      });
    },
  );

  void session.done.then((exit) => {
    for (const s of subscriptions) s.dispose();
    log.line(session, `${exit.state}: ${exit.message}`);
    showEnd(item, session, exit);
    setTimeout(() => item.dispose(), LINGER_MS);
    void announceEnd(session, exit, log, actions);
  });
}

function downloadLine(e: DownloadEvent): string {
  return `downloading ${e.repo}: ${formatBytes(e.bytes)} of ${formatBytes(e.totalBytes)} (${e.filesDone}/${e.totalFiles} files)`;
}

function showProgress(item: vscode.StatusBarItem, session: RunSession, e: ProgressEvent, phase?: PhaseEvent): void {
  // The status bar is terse: "LoRA quick 3/8 · loss … · ETA …" (the notification says "step 3/8 · …").
  item.text = `$(loading~spin) LoRA ${session.name} ${progressLine(e, phase).replace(/^step /, '')}`;
  const rows = progressRows(e, session.history.started);
  item.tooltip = new vscode.MarkdownString([`**Training ${session.name}** — click for the dashboard`, '', `| | |`, `|---|---|`, ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join('\n'));
}

function showEnd(item: vscode.StatusBarItem, session: RunSession, exit: RunExit): void {
  const icon = exit.state === 'completed' ? '$(check)' : exit.state === 'stopped' ? '$(debug-pause)' : '$(error)';
  item.text = `${icon} LoRA ${session.name}: ${exit.state}`;
  item.tooltip = exit.message;
  if (exit.state === 'failed') item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
}

async function announceEnd(session: RunSession, exit: RunExit, log: TrainerLog, actions: RunUiActions): Promise<void> {
  const buttons = endButtons(exit, !!session.outputDir && listCheckpoints(session.outputDir).length > 0);
  const lora = exit.finished?.outputs.lora;
  let choice: string | undefined;
  if (exit.state === 'completed') {
    choice = await vscode.window.showInformationMessage(`LoRA training finished: ${session.name}, ${exit.finished?.step ?? ''} steps.${lora ? ` Saved ${path.basename(lora)}.` : ''}`, ...buttons);
  } else if (exit.state === 'stopped') {
    choice = await vscode.window.showInformationMessage(`LoRA training stopped: ${session.name}. ${exit.message}.`, ...buttons);
  } else {
    choice = await vscode.window.showErrorMessage(`LoRA training failed: ${session.name}. ${exit.message}`, ...buttons);
  }
  if (choice === 'Generate Image…' && lora) actions.generate(lora, session.configPath);
  else if (choice === 'Open Dashboard') actions.openDashboard(session);
  else if (choice === 'Reveal File' && lora) void vscode.commands.executeCommand('revealInExplorer', vscode.Uri.file(lora));
  else if (choice === 'Resume') actions.resume(session.configPath);
  else if (choice === 'Show Log') log.show();
  else if (choice === 'Open Config') void vscode.window.showTextDocument(vscode.Uri.file(session.configPath));
}

function quoteArg(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}
