// What a person sees of a run while it goes: a status-bar item (step/total, loss, ETA; click → dashboard),
// a cancellable progress notification (cancel = stop with a checkpoint), the trainer's log in an output
// channel, and at the end a message: finished (with its file), stopped (Resume), or failed (Show Log, Resume).
import path from 'node:path';
import * as vscode from 'vscode';
import type { ProgressEvent } from '../protocol/training.js';
import type { RunExit, RunSession } from './run_session.js';
import { COMMANDS } from './manifest.js';
import { formatDuration, formatLoss } from '../protocol/format.js';

export interface RunUiActions {
  openDashboard(session: RunSession): void;
  resume(configPath: string): void;
  generate(weightsFile: string, configPath: string): void;
}

/** How long the status-bar item stays after a run ends, so the result can be read (and clicked). */
const LINGER_MS = 30_000;

export class TrainerLog {
  readonly channel = vscode.window.createOutputChannel('LoRA Trainer');

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
  const subscriptions = [
    session.onLog.on((l) => log.line(session, l)),
    session.onEvent.on((e) => {
      if (e.type === 'progress') showProgress(item, session, e);
      else if (e.type === 'started') log.line(session, `started: ${e.totalSteps} steps from ${e.startStep} on ${e.backend}${e.adapter ? ` (${e.adapter})` : ''}, output ${e.outputDir}`);
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
      const sub = session.onEvent.on((e) => {
        if (e.type !== 'progress') return;
        const pct = e.totalSteps ? (100 * e.step) / e.totalSteps : 0;
        progress.report({ increment: Math.max(0, pct - reported), message: `step ${e.step}/${e.totalSteps} · loss ${formatLoss(e.loss)} · ETA ${formatDuration(e.etaSeconds)}` });
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

function showProgress(item: vscode.StatusBarItem, session: RunSession, e: ProgressEvent): void {
  item.text = `$(loading~spin) LoRA ${session.name} ${e.step}/${e.totalSteps} · loss ${formatLoss(e.loss)} · ETA ${formatDuration(e.etaSeconds)}`;
  const md = new vscode.MarkdownString(
    [
      `**Training ${session.name}** — click for the dashboard`,
      '',
      `| | |`,
      `|---|---|`,
      `| step | ${e.step} / ${e.totalSteps} |`,
      `| epoch | ${e.epoch} |`,
      `| loss | ${formatLoss(e.loss)} |`,
      `| learning rate | ${e.lr.toExponential(2)} |`,
      `| samples/s | ${e.samplesPerSecond.toFixed(2)} |`,
      `| elapsed | ${formatDuration(e.elapsedSeconds)} |`,
      `| ETA | ${formatDuration(e.etaSeconds)} |`,
    ].join('\n'),
  );
  item.tooltip = md;
}

function showEnd(item: vscode.StatusBarItem, session: RunSession, exit: RunExit): void {
  const icon = exit.state === 'completed' ? '$(check)' : exit.state === 'stopped' ? '$(debug-pause)' : '$(error)';
  item.text = `${icon} LoRA ${session.name}: ${exit.state}`;
  item.tooltip = exit.message;
  if (exit.state === 'failed') item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
}

async function announceEnd(session: RunSession, exit: RunExit, log: TrainerLog, actions: RunUiActions): Promise<void> {
  if (exit.state === 'completed') {
    const lora = exit.finished?.outputs.lora;
    const buttons = lora ? ['Generate Image…', 'Open Dashboard', 'Reveal File'] : ['Open Dashboard'];
    const choice = await vscode.window.showInformationMessage(
      `LoRA training finished: ${session.name}, ${exit.finished?.step ?? ''} steps.${lora ? ` Saved ${path.basename(lora)}.` : ''}`,
      ...buttons,
    );
    if (choice === 'Generate Image…' && lora) actions.generate(lora, session.configPath);
    else if (choice === 'Open Dashboard') actions.openDashboard(session);
    else if (choice === 'Reveal File' && lora) void vscode.commands.executeCommand('revealInExplorer', vscode.Uri.file(lora));
  } else if (exit.state === 'stopped') {
    const choice = await vscode.window.showInformationMessage(`LoRA training stopped: ${session.name}. ${exit.message}.`, 'Resume', 'Open Dashboard');
    if (choice === 'Resume') actions.resume(session.configPath);
    else if (choice === 'Open Dashboard') actions.openDashboard(session);
  } else {
    const choice = await vscode.window.showErrorMessage(`LoRA training failed: ${session.name}. ${exit.message}`, 'Show Log', 'Resume');
    if (choice === 'Show Log') log.show();
    else if (choice === 'Resume') actions.resume(session.configPath);
  }
}

function quoteArg(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}
