// The training dashboard's host side: one webview panel per run output folder. It forwards the run
// session's events to the page, answers the page's buttons, and after a window reload rebuilds the page
// from the output folder (metrics.jsonl, samples/, checkpoints) through the panel serializer.
import fs from 'node:fs';
import path from 'node:path';
import * as vscode from 'vscode';
import { validateRunConfigText } from '../core/config/validate.js';
import { readRunConfigText } from '../core/config/load.js';
import { errorMessage } from './util.js';
import type { TrainerEvent } from '../protocol/training.js';
import { dashboardHtml } from './dashboard_html.js';
import { readRunHistory, type DiskSample } from './run_history.js';
import { LORA_FILE, listCheckpoints } from '../core/config/run_folder.js';
import type { RunSession } from './run_session.js';
import type { Disposable } from './util.js';
import { isInside } from '../core/config/paths.js';
import {
  DASHBOARD_VIEW_TYPE,
  type DashboardHistory,
  type DashboardPersistedState,
  type DashboardPoint,
  type DashboardRun,
  type DashboardSample,
  DASHBOARD_MESSAGES,
  type FromDashboard,
  type ToDashboard,
} from '../protocol/dashboard.js';

/** What the dashboard's buttons do; the extension's commands implement them. */
export interface DashboardActions {
  stop(session: RunSession): void;
  resume(configPath: string): void;
  generate(weightsFile: string, configPath: string | undefined): void;
  showLog(): void;
  /** A line for the extension's log. */
  log(line: string): void;
}

export class DashboardPanels implements vscode.WebviewPanelSerializer<DashboardPersistedState>, vscode.Disposable {
  private readonly panels = new Map<string, DashboardPanel>();

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly actions: DashboardActions,
  ) {}

  /** Opens (or reveals) the dashboard of a session; the panel follows later sessions of the same folder. */
  showSession(session: RunSession, preserveFocus = false): DashboardPanel | undefined {
    const outputDir = session.outputDir;
    if (!outputDir) return undefined;
    const panel = this.panels.get(key(outputDir)) ?? this.create(outputDir, session.configPath, session.name, preserveFocus);
    panel.bind(session);
    panel.reveal(preserveFocus);
    return panel;
  }

  /** Opens the dashboard of an output folder with no live run (a finished or interrupted run). */
  showFolder(outputDir: string, configPath: string | undefined, title: string): DashboardPanel {
    const panel = this.panels.get(key(outputDir)) ?? this.create(outputDir, configPath, title, false);
    panel.reveal(false);
    return panel;
  }

  async deserializeWebviewPanel(webviewPanel: vscode.WebviewPanel, state: DashboardPersistedState | undefined): Promise<void> {
    if (!state?.outputDir) {
      webviewPanel.dispose();
      return;
    }
    const panel = new DashboardPanel(webviewPanel, state.outputDir, state.configPath, state.title, this.extensionUri, this.actions);
    this.track(panel);
  }

  dispose(): void {
    for (const p of [...this.panels.values()]) p.dispose();
  }

  private create(outputDir: string, configPath: string | undefined, title: string, preserveFocus: boolean): DashboardPanel {
    const webviewPanel = vscode.window.createWebviewPanel(
      DASHBOARD_VIEW_TYPE,
      `LoRA: ${title}`,
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus },
      webviewOptions(this.extensionUri, outputDir),
    );
    const panel = new DashboardPanel(webviewPanel, outputDir, configPath, title, this.extensionUri, this.actions);
    this.track(panel);
    return panel;
  }

  private track(panel: DashboardPanel): void {
    this.panels.get(key(panel.outputDir))?.dispose();
    this.panels.set(key(panel.outputDir), panel);
    panel.onDispose(() => {
      if (this.panels.get(key(panel.outputDir)) === panel) this.panels.delete(key(panel.outputDir));
    });
  }
}

function key(outputDir: string): string {
  return path.resolve(outputDir);
}

function webviewOptions(extensionUri: vscode.Uri, outputDir: string): vscode.WebviewPanelOptions & vscode.WebviewOptions {
  return {
    enableScripts: true,
    // Charts and zoom state survive hiding the tab; after a reload the serializer rebuilds from disk.
    retainContextWhenHidden: true,
    // The page may load the extension's bundles and the run's own images, nothing else.
    localResourceRoots: [vscode.Uri.joinPath(extensionUri, 'dist', 'webview'), vscode.Uri.file(outputDir)],
  };
}

export class DashboardPanel {
  private session: RunSession | undefined;
  private sessionListeners: Disposable[] = [];
  private readonly disposables: vscode.Disposable[] = [];
  private readonly disposeListeners: (() => void)[] = [];
  private ready = false;
  private disposed = false;

  constructor(
    private readonly panel: vscode.WebviewPanel,
    readonly outputDir: string,
    private configPath: string | undefined,
    private title: string,
    extensionUri: vscode.Uri,
    private readonly actions: DashboardActions,
  ) {
    const webview = panel.webview;
    webview.options = webviewOptions(extensionUri, outputDir);
    const asset = (f: string) => webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview', f)).toString();
    webview.html = dashboardHtml({ cspSource: webview.cspSource, scriptUri: asset('dashboard.js'), styleUri: asset('dashboard.css'), title });
    this.disposables.push(
      webview.onDidReceiveMessage((m: unknown) => {
        // The page is ours, but it is a web page: act only on messages of the protocol's shape.
        const checked = DASHBOARD_MESSAGES.check(m);
        if (checked.ok) this.onMessage(checked.message);
        else this.actions.log(`dashboard: ignored a message from the page: ${checked.problem}`);
      }),
      panel.onDidDispose(() => this.dispose()),
    );
  }

  onDispose(listener: () => void): void {
    this.disposeListeners.push(listener);
  }

  reveal(preserveFocus: boolean): void {
    this.panel.reveal(undefined, preserveFocus);
  }

  /** Follows a session: its events go to the page as they come. */
  bind(session: RunSession): void {
    if (this.session === session) return;
    for (const d of this.sessionListeners) d.dispose();
    this.session = session;
    this.configPath = session.configPath;
    this.title = session.name;
    this.panel.title = `LoRA: ${session.name}`;
    this.sessionListeners = [
      session.onEvent.on((e) => this.forward(e)),
      session.onState.on(() => this.post({ type: 'run', run: this.runInfo() })),
    ];
    this.sendReset();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const d of this.sessionListeners) d.dispose();
    for (const d of this.disposables) d.dispose();
    this.panel.dispose();
    for (const l of this.disposeListeners) l();
  }

  private forward(e: TrainerEvent): void {
    switch (e.type) {
      case 'started':
        return this.sendReset();
      case 'progress': {
        const { type: _t, v: _v, ...point } = e;
        return this.post({ type: 'progress', point });
      }
      case 'sample':
        return this.post({ type: 'sample', sample: this.sampleForPage(e) });
      case 'checkpoint':
        return this.post({ type: 'checkpoint', step: e.step, path: e.path, removed: e.removed });
      case 'phase': {
        const { type: _t, v: _v, ...phase } = e;
        return this.post({ type: 'phase', phase });
      }
      case 'validation_loss': {
        const { type: _t, v: _v, ...point } = e;
        return this.post({ type: 'validationLoss', point });
      }
      case 'warning':
        return this.post({ type: 'warning', message: e.message });
      case 'error': {
        const { v: _v, ...error } = e;
        return this.post({ type: 'error', error });
      }
      case 'finished': {
        const { v: _v, ...finished } = e;
        this.post({ type: 'finished', finished });
        return this.post({ type: 'run', run: this.runInfo() });
      }
    }
  }

  private onMessage(m: FromDashboard): void {
    switch (m.type) {
      case 'ready':
        this.ready = true;
        return this.sendReset();
      case 'stop':
        if (this.session?.live) this.actions.stop(this.session);
        return;
      case 'resume':
        if (this.configPath) this.actions.resume(this.configPath);
        return;
      case 'generate': {
        const weights = this.weightsFile(m.weights);
        if (weights) this.actions.generate(weights, this.configPath);
        else void vscode.window.showWarningMessage(`No LoRA weights in ${m.weights}.`);
        return;
      }
      case 'openFile':
        if (isInside(this.outputDir, m.path)) void vscode.commands.executeCommand('vscode.open', vscode.Uri.file(m.path), vscode.ViewColumn.Active);
        return;
      case 'openConfig':
        if (this.configPath) void vscode.window.showTextDocument(vscode.Uri.file(this.configPath), { viewColumn: vscode.ViewColumn.One });
        return;
      case 'showLog':
        return this.actions.showLog();
    }
  }

  /** A checkpoint folder or a LoRA file named by the page, only if it lies inside this run's folder. */
  private weightsFile(p: string): string | undefined {
    if (!isInside(this.outputDir, p)) return undefined;
    const file = fs.existsSync(p) && fs.statSync(p).isDirectory() ? path.join(p, LORA_FILE) : p;
    return fs.existsSync(file) ? file : undefined;
  }

  private sendReset(): void {
    if (!this.ready) return; // the page asks with `ready` once it can listen
    this.post({ type: 'reset', run: this.runInfo(), history: this.history() });
  }

  private post(msg: ToDashboard): void {
    if (this.ready && !this.disposed) void this.panel.webview.postMessage(msg);
  }

  private runInfo(): DashboardRun {
    const s = this.session;
    const live = !!s && (s.live || s.state === 'starting');
    const finishedOnDisk = !s && fs.existsSync(path.join(this.outputDir, LORA_FILE));
    const canResume =
      !live && !!this.configPath && s?.state !== 'completed' && !finishedOnDisk && listCheckpoints(this.outputDir).length > 0;
    return {
      title: this.title,
      outputDir: this.outputDir,
      configPath: this.configPath,
      configText: this.readConfigText(),
      // No process: what the folder says — a final LoRA means it completed.
      state: s ? s.state : finishedOnDisk ? 'completed' : 'restored',
      live,
      canResume,
    };
  }

  /** max_train_steps of the run config as it is now (metrics rows do not carry the run's length). */
  private configuredSteps(): number | undefined {
    const text = this.readConfigText();
    return (text && validateRunConfigText(text).config?.max_train_steps) || undefined;
  }

  private readConfigText(): string | undefined {
    if (!this.configPath) return undefined;
    try {
      return readRunConfigText(this.configPath);
    } catch (e) {
      // Gone is fine (the page then shows no config); a refused one (a FIFO, /dev/zero, over the cap) is logged, naming it.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.actions.log(errorMessage(e));
      return undefined;
    }
  }

  /** The run so far: the output folder's record, with the live session's own events on top. */
  private history(): DashboardHistory {
    const disk = readRunHistory(this.outputDir);
    const s = this.session;
    const toPage = (samples: DiskSample[]) => samples.map((x) => this.sampleForPage(x));
    if (!s) return { ...disk, samples: toPage(disk.samples), totalSteps: this.configuredSteps() };
    // Before a resumed run's checkpoint the folder is the record; after it, this session is.
    const from = s.history.started?.startStep ?? 0;
    const points: DashboardPoint[] = [
      ...disk.points.filter((p) => p.step <= from),
      ...s.history.progress.map(({ type: _t, v: _v, ...p }) => p),
    ];
    const started = s.history.started ? (({ v: _v, ...rest }) => rest)(s.history.started) : undefined;
    const strip = <T extends { v: number }>(e: T | undefined) => (e ? (({ v: _v, ...rest }) => rest)(e) : undefined);
    return {
      started,
      totalSteps: s.history.started?.totalSteps,
      points,
      samples: toPage([...disk.samples.filter((x) => x.step <= from), ...s.history.samples]),
      checkpoints: disk.checkpoints,
      warnings: [...s.history.warnings],
      error: strip(s.history.error),
      finished: strip(s.history.finished),
      phase: s.history.phase && (({ v: _v, type: _t, ...rest }) => rest)(s.history.phase),
      validationLosses: s.history.validationLosses.map(({ v: _v, type: _t, ...rest }) => rest),
    };
  }

  private sampleForPage(s: DiskSample): DashboardSample {
    let version = '';
    try {
      version = String(Math.round(fs.statSync(s.path).mtimeMs));
    } catch {
      /* not written yet: no cache-busting needed */
    }
    // The query defeats the webview's cache when a later run writes a sample of the same name.
    const src = this.panel.webview.asWebviewUri(vscode.Uri.file(s.path).with({ query: version })).toString();
    return { ...s, src };
  }
}
