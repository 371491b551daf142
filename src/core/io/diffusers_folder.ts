// A diffusers pipeline folder: model_index.json naming the components, each in its own sub-folder with
// config.json and weights. Only safetensors weights are read; pickle files are refused with the fix.
import fs from 'node:fs';
import path from 'node:path';
import { refusePickle } from './safetensors.js';
import { READ_LIMITS, readRegularText } from './safe_read.js';

export class ModelFolderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelFolderError';
  }
}

export interface ModelIndex {
  readonly _class_name: string;
  readonly [component: string]: unknown;
}

export interface ComponentFiles {
  readonly dir: string;
  readonly config: Record<string, unknown>;
  /** Safetensors weight files (several when sharded). */
  readonly weights: readonly string[];
}

export type Variant = 'fp32' | 'fp16';

export class DiffusersFolder {
  private constructor(
    readonly dir: string,
    readonly index: ModelIndex,
  ) {}

  static open(dir: string): DiffusersFolder {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new ModelFolderError(`${dir}: model folder not found`);
    const indexPath = path.join(dir, 'model_index.json');
    if (!fs.existsSync(indexPath)) {
      throw new ModelFolderError(
        `${dir}: no model_index.json — this is not a diffusers pipeline folder. Point to the folder that holds model_index.json, unet/, vae/, text_encoder/, tokenizer/ and scheduler/, or to a single-file .safetensors checkpoint.`,
      );
    }
    return new DiffusersFolder(dir, readJson(indexPath) as ModelIndex);
  }

  /** The folder and files of one component (unet, vae, text_encoder, tokenizer, scheduler). */
  component(name: string, opts: { variant?: Variant; configFile?: string } = {}): ComponentFiles {
    const dir = path.join(this.dir, name);
    if (!fs.existsSync(dir)) throw new ModelFolderError(`${this.dir}: component folder ${name}/ is missing (model_index.json lists: ${this.componentNames().join(', ')})`);
    const configFile = opts.configFile ?? (name === 'scheduler' ? 'scheduler_config.json' : 'config.json');
    const configPath = path.join(dir, configFile);
    const config = fs.existsSync(configPath) ? (readJson(configPath) as Record<string, unknown>) : {};
    if (name === 'scheduler' || name.startsWith('tokenizer')) return { dir, config, weights: [] };
    return { dir, config, weights: findWeights(dir, opts.variant) };
  }

  componentNames(): string[] {
    return Object.keys(this.index).filter((k) => !k.startsWith('_') && Array.isArray(this.index[k]) && (this.index[k] as unknown[])[0] !== null);
  }
}

/**
 * Picks a component's safetensors weights: a sharded index if present, else the single file.
 * With variant fp16 the `*.fp16.safetensors` files are preferred; without, the plain files are, and the
 * fp16 variant is used when it is the only one there.
 */
export function findWeights(dir: string, variant: Variant | undefined): string[] {
  const files = fs.readdirSync(dir);
  const st = files.filter((f) => f.endsWith('.safetensors'));
  const isFp16 = (f: string) => /\.fp16\.safetensors$/.test(f);
  const indexFile = files.find((f) => f.endsWith('.safetensors.index.json') && (variant === 'fp16') === f.includes('.fp16.'));
  if (indexFile) {
    const idx = readJson(path.join(dir, indexFile)) as { weight_map?: Record<string, string> };
    const shards = [...new Set(Object.values(idx.weight_map ?? {}))];
    return shards.map((s) => path.join(dir, s));
  }
  const preferred = st.filter((f) => (variant === 'fp16' ? isFp16(f) : !isFp16(f)));
  const chosen = preferred.length ? preferred : st;
  if (chosen.length === 0) {
    const pickle = files.find((f) => /\.(bin|ckpt|pt|pth)$/.test(f));
    if (pickle) refusePickle(path.join(dir, pickle));
    throw new ModelFolderError(`${dir}: no .safetensors weights found`);
  }
  return chosen.map((f) => path.join(dir, f));
}

export function readJson(file: string): unknown {
  let text: string;
  try {
    text = readRegularText(file, READ_LIMITS.json, 'a JSON file');
  } catch (e) {
    throw new ModelFolderError((e as Error).name === 'FileRefusedError' ? (e as Error).message : `${file}: cannot read (${(e as Error).message})`);
  }
  try {
    // Python's json writes NaN/Infinity/-Infinity, which JSON.parse rejects.
    return JSON.parse(text.replace(/(?<=[:\[,]\s*)-?(?:Infinity|NaN)(?=\s*[,\]}])/g, (m) => `"${m.trim()}"`));
  } catch (e) {
    throw new ModelFolderError(`${file}: invalid JSON (${(e as Error).message})`);
  }
}
