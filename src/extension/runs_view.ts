// The Runs view (activity bar → LoRA Studio): every run config of the workspace with its run's status,
// step and best loss, and under it the config and the LoRA files it made. Clicking a run opens its
// dashboard from the output folder (a run trained earlier, or on a terminal); "Compare Runs" overlays the
// loss curves of the runs picked.
import path from 'node:path';
import * as vscode from 'vscode';
import { COMPARE_VIEW_TYPE, type ToCompare } from '../protocol/dashboard.js';
import type { Ctx } from './ctx.js';
import { dashboardHtml } from './dashboard_html.js';
import { COMMANDS, RUNS_VIEW } from './manifest.js';
import { readMetricsPoints } from './run_history.js';
import { configOutputDir, describeRun, summarizeRun, type RunSummary } from './run_summary.js';
import { FIND_EXCLUDE, RUN_CONFIG_FILE, RUN_CONFIG_GLOB } from './workspace.js';
import { METRICS_FILE } from '../core/config/run_folder.js';

type Node = { kind: 'run'; configPath: string; summary: RunSummary } | { kind: 'file'; label: string; file: string; lora: boolean };

export class RunsView implements vscode.TreeDataProvider<Node>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;
  private timer: NodeJS.Timeout | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(private readonly ctx: Ctx) {
    const watcher = vscode.workspace.createFileSystemWatcher(`**/{*.lora.yaml,*.lora.yml,${METRICS_FILE},*.safetensors}`);
    this.disposables.push(watcher, watcher.onDidCreate(() => this.refresh()), watcher.onDidChange(() => this.refresh()), watcher.onDidDelete(() => this.refresh()), this.changed);
    ctx.runs.onAdded.on((s) => {
      s.onState.on(() => this.refresh());
      s.onEvent.on((e) => (e.type === 'progress' || e.type === 'checkpoint' || e.type === 'finished') && this.refresh());
      this.refresh();
    });
  }

  /** Coalesces bursts (a progress event per step) into one redraw a second. */
  refresh(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.changed.fire();
    }, 1000);
  }

  async runs(): Promise<Extract<Node, { kind: 'run' }>[]> {
    const configs = (await vscode.workspace.findFiles(RUN_CONFIG_GLOB, FIND_EXCLUDE, 500)).map((u) => u.fsPath).sort();
    const out: Extract<Node, { kind: 'run' }>[] = [];
    for (const configPath of configs) {
      const session = this.ctx.runs.forConfig(configPath);
      const outputDir = session?.outputDir ?? configOutputDir(configPath);
      if (!outputDir) continue;
      const summary = summarizeRun(outputDir, session?.state, session?.history.started?.totalSteps ?? session?.history.progress.at(-1)?.totalSteps);
      out.push({ kind: 'run', configPath, summary });
    }
    return out;
  }

  async getChildren(node?: Node): Promise<Node[]> {
    if (!node) return this.runs();
    if (node.kind !== 'run') return [];
    return [{ kind: 'file', label: path.basename(node.configPath), file: node.configPath, lora: false }, ...node.summary.loras.map((l) => ({ kind: 'file' as const, label: l.label, file: l.file, lora: true }))];
  }

  getTreeItem(node: Node): vscode.TreeItem {
    if (node.kind === 'file') {
      const item = new vscode.TreeItem(node.label, vscode.TreeItemCollapsibleState.None);
      item.resourceUri = vscode.Uri.file(node.file);
      item.tooltip = node.file;
      item.contextValue = node.lora ? 'loraFile' : 'runConfig';
      item.command = node.lora
        ? { title: 'Generate Image…', command: COMMANDS.generateImage, arguments: [vscode.Uri.file(node.file)] }
        : { title: 'Open', command: 'vscode.open', arguments: [vscode.Uri.file(node.file)] };
      return item;
    }
    const s = node.summary;
    const item = new vscode.TreeItem(path.basename(node.configPath).replace(RUN_CONFIG_FILE, ''), vscode.TreeItemCollapsibleState.Collapsed);
    item.id = node.configPath;
    item.description = describeRun(s);
    item.tooltip = `${node.configPath}\n→ ${s.outputDir}\n${describeRun(s)}`;
    item.contextValue = 'run';
    const icon = { completed: 'pass', failed: 'error', running: 'sync~spin', starting: 'sync~spin', stopping: 'sync~spin', stopped: 'debug-pause', restored: 'history', 'not trained': 'circle-outline' }[s.status];
    item.iconPath = new vscode.ThemeIcon(icon);
    item.command = { title: 'Open Training Dashboard', command: COMMANDS.openDashboard, arguments: [vscode.Uri.file(node.configPath)] };
    return item;
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const d of this.disposables) d.dispose();
  }
}

export function registerRunsView(ctx: Ctx): RunsView {
  const view = new RunsView(ctx);
  ctx.pushCleanup(view, vscode.window.createTreeView(RUNS_VIEW, { treeDataProvider: view, showCollapseAll: true, canSelectMany: true }));
  return view;
}

/** "Compare Runs": pick runs that have metrics (all preselected when two to six), then one overlaid chart. */
export async function compareRuns(ctx: Ctx, view: RunsView): Promise<void> {
  const runs = (await view.runs()).filter((r) => r.summary.step > 0);
  if (runs.length < 1) {
    void vscode.window.showInformationMessage('No run with training metrics yet: train a run config first.');
    return;
  }
  const items = runs.map((r) => ({ label: path.basename(r.configPath).replace(RUN_CONFIG_FILE, ''), description: describeRun(r.summary), detail: r.summary.outputDir, picked: runs.length <= 6, run: r }));
  const picked = runs.length === 1 ? items : await vscode.window.showQuickPick(items, { canPickMany: true, title: 'Compare Runs: which runs?' });
  if (!picked?.length) return;
  const msg: ToCompare = {
    type: 'runs',
    runs: picked.map((p) => ({ title: p.label, outputDir: p.run.summary.outputDir, points: readMetricsPoints(path.join(p.run.summary.outputDir, METRICS_FILE)).map((q) => ({ step: q.step, loss: q.loss })) })),
  };
  const ext = ctx.extCtx.extensionUri;
  const panel = vscode.window.createWebviewPanel(COMPARE_VIEW_TYPE, `LoRA: compare ${msg.runs.length} runs`, vscode.ViewColumn.Active, {
    enableScripts: true,
    localResourceRoots: [vscode.Uri.joinPath(ext, 'dist', 'webview')],
  });
  const asset = (f: string) => panel.webview.asWebviewUri(vscode.Uri.joinPath(ext, 'dist', 'webview', f)).toString();
  panel.webview.html = dashboardHtml({ cspSource: panel.webview.cspSource, scriptUri: asset('compare.js'), styleUri: asset('compare.css'), title: 'Compare runs' });
  // The page says `ready` once it listens.
  panel.webview.onDidReceiveMessage((m: { type?: string }) => m?.type === 'ready' && void panel.webview.postMessage(msg));
}
