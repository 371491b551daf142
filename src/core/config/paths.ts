// Path containment: whether a path lies in a folder. The extension (webview and notebook requests), the
// language server (watched files) and the trainer (dataset files, symlinks resolved by the caller) ask it.
import path from 'node:path';

/** True when `child` is `parent` or inside it, after resolving `.` and `..` (not symlinks: pass real paths for that). */
export function isInside(parent: string, child: string): boolean {
  const rel = path.relative(path.resolve(parent), path.resolve(child));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}
