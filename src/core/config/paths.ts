// Path containment: whether a path lies in a folder. The extension (webview and notebook requests), the
// language server (watched files) and the trainer (dataset files, symlinks resolved by the caller) ask it;
// and which folders a run may write into without asking (the extension's confirmation, the CLI's line).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** True when `child` is `parent` or inside it, after resolving `.` and `..` (not symlinks: pass real paths for that). */
export function isInside(parent: string, child: string): boolean {
  const rel = path.relative(path.resolve(parent), path.resolve(child));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * The real path of a folder that may not exist yet: symlinks resolved in the part that exists (a link in
 * the home folder to /etc is /etc), the rest appended. What a write under `p` would really touch.
 */
export function realPathOfNearest(p: string): string {
  let dir = path.resolve(p);
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync.native(dir), ...rest);
    } catch {
      const up = path.dirname(dir);
      if (up === dir) return path.join(dir, ...rest);
      rest.unshift(path.basename(dir));
      dir = up;
    }
  }
}

/**
 * The folders a run writes into without asking: the given ones (the workspace's, or the config's own) and the
 * user's home — unless home is `/`, which would trust everything. Real paths, so a folder reached through a
 * symlink counts where it lies.
 */
export function trustedWriteFolders(folders: readonly string[], home = os.homedir()): string[] {
  const all = [...folders, ...(path.resolve(home) === path.parse(path.resolve(home)).root ? [] : [home])];
  return [...new Set(all.map(realPathOfNearest))];
}

/** Whether `dir` (a real path) lies outside every trusted folder: a run there needs the user's word. */
export function outsideTrustedFolders(dir: string, trusted: readonly string[]): boolean {
  return !trusted.some((t) => isInside(t, dir));
}
