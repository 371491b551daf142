// Whether training may write to a run config's output_dir without asking (issue 18: a cloned repository's
// config must not silently write to /etc or ../../). Inside a workspace folder or the home folder it may;
// anywhere else the user is asked once, with a modal naming the real path, and may allow it for that config
// (remembered with the path: a different output_dir asks again). No `vscode` import: unit-tested.
import { outsideTrustedFolders, realPathOfNearest, trustedWriteFolders } from '../core/config/paths.js';

/** workspaceState key: config path → the real output folder allowed for it. */
export const ALLOWED_OUTPUT_DIRS_KEY = 'loraStudio.allowedOutputDirs';

export interface OutputDirQuestion {
  /** The folder the run would really write (symlinks resolved). */
  realDir: string;
  message: string;
}

/** The question to ask before training, or undefined when the folder needs no confirmation. */
export function outputDirQuestion(
  configPath: string,
  outputDir: string,
  opts: { workspaceFolders: readonly string[]; home?: string; allowed?: Readonly<Record<string, string>> },
): OutputDirQuestion | undefined {
  const realDir = realPathOfNearest(outputDir);
  if (opts.allowed?.[configPath] === realDir) return undefined;
  if (!outsideTrustedFolders(realDir, trustedWriteFolders(opts.workspaceFolders, opts.home))) return undefined;
  const via = realDir === outputDir ? '' : ` (output_dir ${outputDir})`;
  return {
    realDir,
    message: `This run config writes its run to ${realDir}${via}, outside the workspace and your home folder. Train only if you mean to write there.`,
  };
}
