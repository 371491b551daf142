// One line about a run, read from its output folder (no `vscode`): what the Runs view lists for each run
// config — status, step, best loss — and the LoRA files it made.
import fs from 'node:fs';
import path from 'node:path';
import { validateRunConfigText } from '../core/config/validate.js';
import { readRunConfigText } from '../core/config/load.js';
import { LORA_FILE, listFinalLoraFiles } from '../core/config/run_folder.js';
import type { RunState } from '../protocol/dashboard.js';
import { formatLoss } from '../protocol/format.js';
import { readRunHistory } from './run_history.js';

export interface RunSummary {
  outputDir: string;
  /** `not trained`: the folder does not exist yet. `restored` on disk means interrupted (checkpoints, no final LoRA). */
  status: RunState | 'not trained';
  step: number;
  totalSteps?: number;
  bestLoss?: number;
  /** The LoRA files: the final ones, then each checkpoint's, newest first. */
  loras: { label: string; file: string }[];
}

/** output_dir of a run config, absolute (undefined when the config does not parse). */
export function configOutputDir(configPath: string): string | undefined {
  try {
    const { config } = validateRunConfigText(readRunConfigText(configPath), configPath);
    return config?.output_dir ? path.resolve(path.dirname(configPath), config.output_dir) : undefined;
  } catch {
    return undefined;
  }
}

/** `live`: the state of a run of this folder going on in this window, which beats what the disk says. */
export function summarizeRun(outputDir: string, live?: RunState, totalSteps?: number): RunSummary {
  if (!fs.existsSync(outputDir)) return { outputDir, status: live ?? 'not trained', step: 0, totalSteps, loras: [] };
  const h = readRunHistory(outputDir);
  const losses = h.points.map((p) => p.loss).filter(Number.isFinite);
  const loras: RunSummary['loras'] = [];
  for (const f of listFinalLoraFiles(outputDir)) loras.push({ label: path.basename(f), file: f });
  for (const c of [...h.checkpoints].reverse()) {
    const f = path.join(c.path, LORA_FILE);
    if (fs.existsSync(f)) loras.push({ label: `${path.basename(c.path)}/${LORA_FILE}`, file: f });
  }
  return {
    outputDir,
    status: live ?? (h.finished ? 'completed' : h.points.length || h.checkpoints.length ? 'stopped' : 'not trained'),
    step: h.finished?.step ?? h.points.at(-1)?.step ?? h.checkpoints.at(-1)?.step ?? 0,
    totalSteps,
    bestLoss: losses.length ? Math.min(...losses) : undefined,
    loras,
  };
}

/** "completed · step 40/40 · best loss 0.0612" */
export function describeRun(s: RunSummary): string {
  const parts: string[] = [s.status];
  if (s.step) parts.push(`step ${s.step}${s.totalSteps ? `/${s.totalSteps}` : ''}`);
  if (s.bestLoss !== undefined) parts.push(`best loss ${formatLoss(s.bestLoss)}`);
  return parts.join(' · ');
}
