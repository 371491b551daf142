// Which program runs the trainer. The extension host is Electron in desktop VS Code (its process.execPath
// is the VS Code binary, which behaves as plain node with ELECTRON_RUN_AS_NODE=1) and plain node in
// code-server, Remote-SSH and Codespaces. A `loraStudio.nodePath` setting overrides both. No `vscode` import.
import path from 'node:path';
import type { TrainerLaunch } from './run_session.js';

export interface LaunchContext {
  extensionPath: string;
  /** The loraStudio.nodePath setting ('' when unset). */
  nodePathSetting: string;
  execPath: string;
  versions: NodeJS.ProcessVersions;
}

export function trainerLaunch(ctx: LaunchContext): TrainerLaunch {
  const trainerPath = path.join(ctx.extensionPath, 'dist', 'cli.mjs');
  const configured = ctx.nodePathSetting.trim();
  if (configured) return { nodePath: configured, trainerPath };
  if (ctx.versions.electron) return { nodePath: ctx.execPath, trainerPath, env: { ELECTRON_RUN_AS_NODE: '1' } };
  return { nodePath: ctx.execPath, trainerPath };
}

/** The setting's value for `--backend`, or undefined to keep the run config's own `backend`. */
export function backendOverride(setting: string | undefined): string | undefined {
  return !setting || setting === 'config' ? undefined : setting;
}
