// "LoRA Studio: Open Dataset": a training folder as an image grid with each caption editable in place, counts,
// images without captions, sizes and buckets (the model: src/core/config/dataset_view.ts). Opened on a folder
// (Explorer context menu), on a run config (its train_data_dir and bucket settings), or on a folder picked.
import fs from 'node:fs';
import path from 'node:path';
import * as vscode from 'vscode';
import { readDatasetView, saveCaption, type DatasetViewOptions } from '../core/config/dataset_view.js';
import { loadRunConfig } from '../core/config/load.js';
import { DATASET_MESSAGES, DATASET_VIEW_TYPE, type ToDatasetView } from '../protocol/dataset_view.js';
import { dashboardHtml } from './dashboard_html.js';
import type { Ctx } from './ctx.js';
import { activeRunConfig, RUN_CONFIG_FILE } from './workspace.js';

const DEFAULTS: DatasetViewOptions = { captionColumn: 'text', imageColumn: 'image', resolution: 512 };

/** The folder and view options for `uri`: a folder as is, a run config's train_data_dir with its settings. */
function target(uri: vscode.Uri): { dir: string; options: DatasetViewOptions } | string {
  if (RUN_CONFIG_FILE.test(uri.fsPath)) {
    const c = loadRunConfig(uri.fsPath).config;
    if (!c?.train_data_dir) return `${path.basename(uri.fsPath)} names no train_data_dir folder (or has errors: see the Problems panel)`;
    const buckets = c.enable_bucket ? { minReso: c.min_bucket_reso, maxReso: c.max_bucket_reso, step: c.bucket_reso_steps } : undefined;
    return { dir: c.train_data_dir, options: { captionColumn: c.caption_column, imageColumn: c.image_column, resolution: c.resolution, ...(buckets ? { buckets } : {}) } };
  }
  return { dir: uri.fsPath, options: DEFAULTS };
}

export async function openDataset(ctx: Ctx, uri?: vscode.Uri): Promise<void> {
  let from = uri ?? activeRunConfig();
  if (!from) {
    const picked = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, title: 'Open Dataset: the training images folder' });
    if (!picked?.length) return;
    from = picked[0];
  }
  const t = target(from);
  if (typeof t === 'string') {
    void vscode.window.showErrorMessage(`Open Dataset: ${t}.`);
    return;
  }
  if (!fs.existsSync(t.dir) || !fs.statSync(t.dir).isDirectory()) {
    void vscode.window.showErrorMessage(`Open Dataset: ${t.dir} is not a folder.`);
    return;
  }
  const ext = ctx.extCtx.extensionUri;
  const panel = vscode.window.createWebviewPanel(DATASET_VIEW_TYPE, `Dataset: ${path.basename(t.dir)}`, vscode.ViewColumn.Active, {
    enableScripts: true,
    localResourceRoots: [vscode.Uri.joinPath(ext, 'dist', 'webview'), vscode.Uri.file(t.dir)],
  });
  const webview = panel.webview;
  const asset = (f: string) => webview.asWebviewUri(vscode.Uri.joinPath(ext, 'dist', 'webview', f)).toString();
  webview.html = dashboardHtml({ cspSource: webview.cspSource, scriptUri: asset('dataset.js'), styleUri: asset('dataset.css'), title: `Dataset ${path.basename(t.dir)}` });
  const post = (m: ToDatasetView) => void webview.postMessage(m);
  const send = () => {
    const view = readDatasetView(t.dir, t.options);
    post({ type: 'dataset', view: { ...view, images: view.images.map((i) => ({ ...i, src: webview.asWebviewUri(vscode.Uri.file(i.file)).toString() })) } });
  };
  webview.onDidReceiveMessage((m: unknown) => {
    const checked = DATASET_MESSAGES.check(m);
    if (!checked.ok) return ctx.log.channel.appendLine(`dataset view: ignored a message from the page: ${checked.problem}`);
    const msg = checked.message;
    if (msg.type === 'ready') return send();
    try {
      const file = saveCaption(t.dir, msg.name, msg.caption, t.options);
      post({ type: 'saved', name: msg.name, file });
      send();
    } catch (e) {
      post({ type: 'saveFailed', name: msg.name, error: (e as Error).message });
    }
  });
}
