// The run-config language server's requests beyond LSP, shared by the server and the extension (like
// rust-analyzer's lsp_ext.ts). Types only, plus the request objects: import from both sides.
import { RequestType } from 'vscode-languageserver-protocol';

/** The language id of `*.lora.yaml` files. */
export const LANGUAGE_ID = 'lora-yaml';

export interface ImportCommandParams {
  /** Pasted shell text: `export …` lines and an `accelerate launch train_text_to_image_lora.py --… \` command. */
  command: string;
}

export interface ImportCommandResult {
  /** The text of a commented `*.lora.yaml`. */
  text: string;
  /** Problems the imported config has without looking at the disk (errors, warnings, notes), 1-based lines. */
  problems: { severity: 'error' | 'warning' | 'info' | 'hint'; message: string; line: number }[];
}

/** `loraStudio/importCommand`: a pasted diffusers training command → `.lora.yaml` text. */
export const ImportCommandRequest = new RequestType<ImportCommandParams, ImportCommandResult, void>('loraStudio/importCommand');

export interface RunConfigSummaryParams {
  /** An open `*.lora.yaml` document. */
  uri: string;
}

export interface RunConfigSummary {
  uri: string;
  errors: number;
  warnings: number;
  /** Optimizer steps of the run, when known (max_train_steps, or epochs × the dataset size). */
  totalSteps?: number;
  epochs?: number;
  /** The dataset as the disk checks found it. */
  dataset?: { dir: string; images: number; captions: number; captionSource: string };
  /** Absolute output folder, and whether it already holds a trained LoRA. */
  outputDir?: string;
  hasFinishedLora?: boolean;
  /** checkpoint-<step> folders found in output_dir. */
  checkpoints: string[];
}

/** `loraStudio/runConfigSummary`: what the server knows about an open config (for a status bar or a Train button). */
export const RunConfigSummaryRequest = new RequestType<RunConfigSummaryParams, RunConfigSummary | null, void>('loraStudio/runConfigSummary');

/** What the server reads from initializationOptions. */
export interface LoraServerInitOptions {
  /** Milliseconds to wait after an edit before checking (default 50); opening a file checks at once. */
  debounceMs?: number;
}
