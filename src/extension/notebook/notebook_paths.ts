// Where a notebook's relative paths start and where its images go. No `vscode` import.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isInside } from '../../core/config/paths.js';
import { isHubId } from '../../core/config/hub_cache.js';

export interface NotebookLocation {
  /** URI scheme of the notebook (`file`, `untitled`, …). */
  scheme: string;
  /** fsPath of the notebook (meaningful for `file`). */
  fsPath: string;
  /** The first workspace folder, if any. */
  workspaceFolder?: string;
}

/** Relative paths in cells are relative to the notebook's folder; an untitled notebook uses the workspace folder. */
export function notebookDir(loc: NotebookLocation): string {
  if (loc.scheme === 'file') return path.dirname(loc.fsPath);
  return loc.workspaceFolder ?? os.homedir();
}

/** `shapes.loranb` → `shapes.outputs/` beside it; untitled notebooks → `.lora-studio/notebook-outputs/` in the workspace. */
export function notebookOutputDir(loc: NotebookLocation): string {
  if (loc.scheme === 'file') return path.join(path.dirname(loc.fsPath), `${path.basename(loc.fsPath).replace(/\.loranb$/i, '')}.outputs`);
  return path.join(loc.workspaceFolder ?? path.join(os.tmpdir(), 'lora-studio'), '.lora-studio', 'notebook-outputs');
}

/** A file-name prefix unique to one run of one cell: `cell3-20261128-101502-123`. */
export function runFileBase(cellIndex: number, now = new Date()): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const stamp = `${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}-${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}-${p(now.getMilliseconds(), 3)}`;
  return `cell${cellIndex + 1}-${stamp}`;
}

/**
 * Whether `file` (relative to `dir`) is named inside one of `roots`, symlinks left as they are: for paths the
 * extension only hands to the worker to load (a sweep's model and LoRAs), where a model folder the user
 * linked into the workspace is theirs to use. `../../x` and absolute paths elsewhere are still refused.
 */
export function namedInside(file: string, dir: string, roots: readonly string[]): boolean {
  const target = path.resolve(dir, file);
  return roots.some((root) => isInside(root, target));
}

/**
 * `file` (relative to `dir`) as an absolute path when it lies inside one of `roots` once symlinks are
 * resolved, else undefined. Paths read from a notebook's outputs come from whoever wrote the file: this is
 * what keeps `../../../etc/passwd` or a symlink out of the folder from being read.
 */
export function containedPath(file: string, dir: string, roots: readonly string[]): string | undefined {
  let real: string;
  try {
    real = fs.realpathSync(path.resolve(dir, file));
  } catch {
    return undefined;
  }
  for (const root of roots) {
    let r: string;
    try {
      r = fs.realpathSync(root);
    } catch {
      continue;
    }
    if (isInside(r, real)) return real;
  }
  return undefined;
}

/**
 * A cell's `model:` as the worker is told it: a Hugging Face Hub id (`org/name`, no such path beside the
 * notebook) as it is — the worker takes it from the Hugging Face cache or downloads it — else the absolute path.
 */
export function modelForWorker(model: string, dir: string): string {
  return isHubId(model, dir) ? model : path.resolve(dir, model);
}

/** Whether a model a notebook names may be handed to the worker: a Hub id, or a path inside one of `roots`. */
export function modelAllowed(model: string, dir: string, roots: readonly string[]): boolean {
  return isHubId(model, dir) || namedInside(model, dir, roots);
}
