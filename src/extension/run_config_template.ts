// The `*.lora.yaml` that "LoRA Studio: New Run Config" writes: the answers of the guided quick pick plus sound
// defaults, each key preceded by its one-line summary from the schema (the one definition), so the file
// documents itself. No `vscode` import; tested by validating the result with the trainer's own validator.
import fs from 'node:fs';
import path from 'node:path';
import { RUN_CONFIG_KEYS, defaultRunConfig, formatValue } from '../core/config/schema.js';
import type { RunConfig } from '../core/config/run_config.js';
import { readDatasetIndex } from '../core/config/dataset_index.js';
import { modelSource } from '../core/config/model_source.js';
import { FileRefusedError, READ_LIMITS, readRegularText } from '../core/io/safe_read.js';

export interface NewRunAnswers {
  /** Paths as they should be written: relative to the config's folder where possible. */
  modelPath: string;
  dataPath: string;
  outputPath: string;
  rank: number;
  steps: number;
  /** Square training size; the model's native size when known. */
  resolution: number;
  /** A caption from the dataset makes a good validation prompt. */
  validationPrompt?: string;
  /** Images in the dataset, when counted: sets how often validation runs. */
  numImages?: number;
}

/** Values chosen for a first run, after diffusers' LoRA guide command (batch 1 × accumulation 4, lr 1e-4). */
export function newRunConfig(a: NewRunAnswers): Partial<RunConfig> {
  const batch = 1;
  const accumulation = 4;
  const c: Partial<RunConfig> = {
    pretrained_model_name_or_path: a.modelPath,
    train_data_dir: a.dataPath,
    resolution: a.resolution,
    random_flip: true,
    train_batch_size: batch,
    gradient_accumulation_steps: accumulation,
    max_train_steps: a.steps,
    learning_rate: 1e-4,
    lr_scheduler: 'cosine',
    lr_warmup_steps: 0,
    rank: a.rank,
    seed: 1337,
    output_dir: a.outputPath,
    // About four checkpoints a run, never more steps apart than the run is long.
    checkpointing_steps: Math.max(1, Math.floor(a.steps / 4)),
    checkpoints_total_limit: 2,
    backend: 'auto',
  };
  if (a.validationPrompt) {
    c.validation_prompt = a.validationPrompt;
    c.num_validation_images = 4;
    // Validation runs every N epochs; aim at about four validations a run.
    if (a.numImages && a.numImages > 0) {
      const epochs = (a.steps * batch * accumulation) / a.numImages;
      c.validation_epochs = Math.max(1, Math.round(epochs / 4));
    }
  }
  return c;
}

export function renderRunConfig(a: NewRunAnswers, title = 'LoRA training run'): string {
  const values = newRunConfig(a);
  const lines = [
    `# ${title}`,
    '# Train it with "LoRA Studio: Train LoRA" (Command Palette), or on a terminal: lora-studio train <this file>.',
    '# Paths are relative to this file. Hover a key for its documentation; Ctrl+Space lists the others.',
  ];
  let group = '';
  for (const spec of RUN_CONFIG_KEYS) {
    if (!(spec.key in values)) continue;
    if (spec.group !== group) {
      group = spec.group;
      lines.push('', `# --- ${group} ---`);
    }
    lines.push(`# ${spec.summary}`, `${spec.key}: ${formatValue(values[spec.key])}`);
  }
  if (!a.validationPrompt) {
    lines.push('', '# Sample images during training: set a prompt.', '# validation_prompt: a photo of ...');
  }
  return lines.join('\n') + '\n';
}

/**
 * The model's native training size: the UNet's latent sample_size times the VAE's downscale
 * (2^(number of VAE blocks − 1)), as diffusers' pipelines compute it. undefined when unreadable; a config.json
 * that is not a regular file (or is over READ_LIMITS.json) is refused, naming it.
 */
export function modelResolution(modelDir: string): number | undefined {
  const source = modelSource(modelDir);
  if (source.kind === 'single-file') return source.resolution;
  const readConfig = <T>(component: string) => JSON.parse(readRegularText(path.join(modelDir, component, 'config.json'), READ_LIMITS.json, `${component}/config.json`)) as T;
  try {
    const unet = readConfig<{ sample_size?: number | number[] }>('unet');
    const vae = readConfig<{ block_out_channels?: number[] }>('vae');
    const size = Array.isArray(unet.sample_size) ? unet.sample_size[0] : unet.sample_size;
    const factor = 2 ** ((vae.block_out_channels?.length ?? 4) - 1);
    return typeof size === 'number' ? size * factor : undefined;
  } catch (e) {
    if (e instanceof FileRefusedError) throw e;
    return undefined;
  }
}

/**
 * How many images a dataset folder holds (captioned or not), its first caption, and what the trainer would
 * refuse in it (by file name: a metadata.jsonl that is /dev/zero, a caption over its cap): the trainer's own
 * reader, dataset_index.ts, with the default image and caption columns.
 */
export function datasetFacts(dataDir: string): { numImages: number; firstCaption?: string; problems: string[] } {
  const problems: string[] = [];
  if (!fs.statSync(dataDir, { throwIfNoEntry: false })?.isDirectory()) return { numImages: 0, problems };
  const defaults = defaultRunConfig();
  const index = readDatasetIndex(dataDir, { imageColumn: defaults.image_column, captionColumn: defaults.caption_column }, problems);
  const firstCaption = index.images[0]?.captions[0]?.trim();
  return { numImages: index.images.length + index.uncaptioned.length, firstCaption: firstCaption || undefined, problems };
}
