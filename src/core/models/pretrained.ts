// `from_pretrained` for every model, in one place: the folder → config.json → the variant's safetensors →
// Params → the model, which checks every parameter by name and shape as it is built (layers.ts).
//
// Accepted sources, as diffusers' `Model.from_pretrained(repo, subfolder=…, variant=…)` reads them:
//   - a diffusers pipeline folder (model_index.json), or a DiffusersFolder: its `subfolder` (unet/, vae/, text_encoder/),
//   - a component folder itself (config.json + weights), inside a pipeline or stand-alone.
// Weights: `findWeights` (sharded index or single file; `*.fp16.safetensors` for variant fp16). fp16/bf16
// tensors become f32.
import fs from 'node:fs';
import path from 'node:path';
import { DiffusersFolder, ModelFolderError, findWeights, readJson, type Variant } from '../io/diffusers_folder.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { Params } from './params.js';

export interface PretrainedOptions {
  /** 'fp16' picks `*.fp16.safetensors` where the folder has them (diffusers' `variant="fp16"`). */
  readonly variant?: Variant;
}

export interface PretrainedModel<M> {
  /** The class name diffusers writes as config.json's `_class_name` (checked when present). */
  readonly className: string;
  /** The component folder of a pipeline this model lives in ('unet', 'vae', 'text_encoder'). */
  readonly subfolder: string;
  /**
   * State-dict name prefixes the file may carry that the model's names do not (transformers ≤ 4 writes
   * CLIPTextModel as `text_model.…`): the first one found on a tensor name is stripped from every name that
   * carries it (CLIPTextModelWithProjection's `text_projection.weight` has no such prefix and keeps its name).
   */
  readonly prefixes?: readonly string[];
  /** Renames a checkpoint's legacy keys in place before the model is built (diffusers' conversions on load). */
  readonly convertLegacyKeys?: (params: Params) => void;
  /** Builds the model; throws naming every missing, unexpected or wrong-shaped key. */
  readonly create: (config: Record<string, unknown>, params: Params) => M;
}

/** Loads `model` from `source` (see the top of this file for what a source may be). */
export function fromPretrained<M>(model: PretrainedModel<M>, source: string | DiffusersFolder, opts: PretrainedOptions = {}): M {
  const dir = componentDir(source, model.subfolder);
  const configPath = path.join(dir, 'config.json');
  if (!fs.existsSync(configPath)) throw new ModelFolderError(`${dir}: no config.json — expected a ${model.subfolder}/ folder (config.json + *.safetensors); the architecture cannot be known without it`);
  const config = readJson(configPath) as Record<string, unknown>;
  if (config._class_name !== undefined && config._class_name !== model.className) {
    throw new ModelFolderError(`${configPath}: _class_name is ${JSON.stringify(config._class_name)}, not ${model.className}`);
  }
  const weights = findWeights(dir, opts.variant);
  const params = Params.load(weights, stateDictPrefix(weights, model.prefixes ?? []));
  try {
    model.convertLegacyKeys?.(params);
    return model.create(config, params);
  } catch (e) {
    params.dispose();
    throw e;
  }
}

function componentDir(source: string | DiffusersFolder, subfolder: string): string {
  if (source instanceof DiffusersFolder) return source.component(subfolder).dir;
  if (fs.existsSync(path.join(source, 'model_index.json'))) return DiffusersFolder.open(source).component(subfolder).dir;
  if (!fs.existsSync(source) || !fs.statSync(source).isDirectory()) throw new ModelFolderError(`${source}: ${subfolder} folder not found`);
  return source;
}

/** The first of `prefixes` that the files' tensor names start with, or '' when they use the model's own names. */
function stateDictPrefix(files: readonly string[], prefixes: readonly string[]): string {
  if (prefixes.length === 0) return '';
  for (const file of files) {
    const f = SafetensorsFile.open(file);
    try {
      for (const name of f.tensors.keys()) {
        const p = prefixes.find((x) => name.startsWith(x));
        if (p) return p;
      }
    } finally {
      f.close();
    }
  }
  return '';
}
