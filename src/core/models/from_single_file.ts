// diffusers' `from_single_file` for the models of this engine: a single-file checkpoint (io/single_file.ts
// tells its family and maps the names) becomes UNet, VAE and text encoder(s). The architectures come from
// the bundled diffusers configs of the standard models (standard_configs/: SD 1.5, SD 2.1, SDXL base), or
// from a diffusers folder the user names (`config`: its component config.json files, tokenizers and
// scheduler — what diffusers' `from_single_file(path, config=…)` reads). Weights are read lazily: for each
// parameter the model declares, the one tensor it comes from (fp32, fp16 or bf16 → f32); nothing is
// converted on disk.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import { DiffusersFolder, ModelFolderError } from '../io/diffusers_folder.js';
import { SafetensorsFile, refusePickle } from '../io/safetensors.js';
import {
  COMPONENT_PREFIXES,
  SINGLE_FILE_FAMILY_NAMES,
  SINGLE_FILE_NAME,
  SingleFileError,
  inferFamily,
  isIgnoredLdmKey,
  openClipLdmSource,
  unetLdmKey,
  vaeLdmSource,
  type LdmSource,
  type SingleFileComponent,
  type SingleFileFamily,
} from '../io/single_file.js';
import { Params } from './params.js';
import { CLIPTokenizer } from '../tokenizer/clip_tokenizer.js';
import { bundledClipTokenizer } from '../tokenizer/bundled.js';
import { UNet2DConditionModel, normalizeUNetConfig } from './unet_2d_condition.js';
import { AutoencoderKL } from './autoencoder_kl.js';
import { CLIPTextModel } from './clip_text_model.js';
import { CLIPTextModelWithProjection } from './clip_text_model_with_projection.js';
import V1 from './standard_configs/v1.json' with { type: 'json' };
import V2 from './standard_configs/v2.json' with { type: 'json' };
import XL_BASE from './standard_configs/xl_base.json' with { type: 'json' };

/** The bundled diffusers configs, one per family: model_index, each component's config.json, tokenizer special tokens, scheduler. */
export const STANDARD_CONFIGS: Record<SingleFileFamily, Record<string, Record<string, unknown>>> = { v1: V1, v2: V2, xl_base: XL_BASE };

export interface SingleFileOptions {
  /** A diffusers folder (model_index.json, unet/config.json, …, tokenizer/) describing the file's architecture instead of the bundled config. */
  readonly config?: string;
}

export const isSingleFile = (source: string): boolean => SINGLE_FILE_NAME.test(source) && !(fs.existsSync(source) && fs.statSync(source).isDirectory());

export class SingleFileCheckpoint {
  private constructor(
    readonly file: string,
    readonly family: SingleFileFamily,
    /** The keys that decided the family. */
    readonly because: string,
    /** The config folder, or null for the bundled standard config of the family. */
    readonly configFolder: DiffusersFolder | null,
  ) {}

  static open(file: string, opts: SingleFileOptions = {}): SingleFileCheckpoint {
    refusePickle(file);
    if (!fs.existsSync(file)) throw new ModelFolderError(`${file}: file not found`);
    const f = SafetensorsFile.open(file);
    try {
      const { family, because } = inferFamily(f.tensors, file);
      return new SingleFileCheckpoint(file, family, because, opts.config ? DiffusersFolder.open(opts.config) : null);
    } finally {
      f.close();
    }
  }

  /** Where the configs come from, for messages. */
  get configSource(): string {
    return this.configFolder ? this.configFolder.dir : `the bundled ${this.family} config (${String(STANDARD_CONFIGS[this.family].model_index._name_or_path)})`;
  }

  has(component: SingleFileComponent | 'tokenizer_2'): boolean {
    if (this.configFolder) return this.configFolder.componentNames().includes(component);
    return component in STANDARD_CONFIGS[this.family];
  }

  /** A component's config.json (scheduler: scheduler_config.json; model_index for the pipeline's own keys). */
  config(component: string): Record<string, unknown> {
    if (this.configFolder) {
      if (component === 'model_index') return this.configFolder.index as Record<string, unknown>;
      return this.configFolder.component(component).config;
    }
    const c = STANDARD_CONFIGS[this.family][component];
    if (!c) throw new ModelFolderError(`${this.configSource} has no ${component}`);
    return c;
  }

  /**
   * The tokenizer: single files carry none, so it is the config folder's (its tokenizer/ folder), or
   * CLIP's bundled vocabulary with the family's special tokens (tokenizer/bundled.ts).
   */
  tokenizer(component: 'tokenizer' | 'tokenizer_2'): CLIPTokenizer {
    if (this.configFolder) return CLIPTokenizer.fromPretrained(this.configFolder.component(component).dir);
    return bundledClipTokenizer(this.config(component), `${SINGLE_FILE_FAMILY_NAMES[this.family]} ${component}`);
  }

  /**
   * Reads the parameters `expected` (diffusers names → PyTorch shapes) of one component from the file.
   * Throws naming the LDM key for a parameter the file lacks, and the first keys of the component's part
   * of the file that no parameter took (the config does not describe this file).
   */
  params(component: SingleFileComponent, expected: ReadonlyMap<string, readonly number[]>): Params {
    const where = COMPONENT_PREFIXES[this.family][component];
    if (!where) throw new SingleFileError(`${this.file}: a ${this.family} checkpoint has no ${component}`);
    const config = this.config(component);
    const source = ldmSources(this.family, component, config);
    const f = SafetensorsFile.open(this.file);
    const tensors = new Map<string, tf.Tensor>();
    try {
      const missing: string[] = [];
      const taken = new Set<string>();
      for (const [name, shape] of expected) {
        const s = source(name);
        const key = s.key;
        if (!f.tensors.has(key)) {
          missing.push(`"${key}" (for ${component} ${name}, shape ${JSON.stringify(shape)})`);
          continue;
        }
        taken.add(key);
        tensors.set(name, readParam(f, key, s));
      }
      const left = [...f.tensors.keys()].filter((k) => k.startsWith(where.prefix) && !taken.has(k) && !isIgnoredLdmKey(k) && !this.droppedOnPurpose(component, k.slice(where.prefix.length), config));
      if (missing.length || left.length) {
        const list = (xs: string[]) => xs.slice(0, 5).join(', ') + (xs.length > 5 ? ` and ${xs.length - 5} more` : '');
        throw new SingleFileError(
          `${this.file}: the ${component} in this file does not fit ${this.configSource}` +
            (missing.length ? `; the file lacks ${list(missing)}` : '') +
            (left.length ? `; no parameter takes ${list(left.map((k) => `"${k}"`))}` : '') +
            '. If it is a model of another architecture, name its diffusers folder as the config.',
        );
      }
    } catch (e) {
      for (const t of tensors.values()) t.dispose();
      throw e;
    } finally {
      f.close();
    }
    return new Params(tensors, `${this.file} (${component})`);
  }

  /** SD 2.x: diffusers keeps 23 of OpenCLIP's 24 layers and drops text_projection (SD_2_TEXT_ENCODER_KEYS_TO_IGNORE). */
  private droppedOnPurpose(component: SingleFileComponent, key: string, config: Record<string, unknown>): boolean {
    if (component !== 'text_encoder' || COMPONENT_PREFIXES[this.family].text_encoder?.naming !== 'open_clip') return false;
    if (key === 'text_projection') return true;
    const m = /^transformer\.resblocks\.(\d+)\./.exec(key);
    return m !== null && Number(m[1]) >= Number(config.num_hidden_layers);
  }
}

/**
 * Where each diffusers parameter of `component` lies in a `family` file (full key, with the component's
 * prefix): the loader's map, and the tests' inverse when they write LDM files from diffusers folders.
 */
export function ldmSources(family: SingleFileFamily, component: SingleFileComponent, config: Record<string, unknown>): (name: string) => LdmSource {
  const where = COMPONENT_PREFIXES[family][component];
  if (!where) throw new SingleFileError(`a ${family} checkpoint has no ${component}`);
  const full = (s: LdmSource): LdmSource => ({ ...s, key: where.prefix + s.key });
  if (component === 'unet') {
    const c = normalizeUNetConfig(config);
    const layout = { layersPerBlock: c.blocks.layersPerBlock, upBlockTypes: c.up_block_types };
    return (name) => full({ key: unetLdmKey(name, layout) });
  }
  if (component === 'vae') {
    const n = (config.block_out_channels as unknown[] | undefined)?.length ?? 4;
    return (name) => full(vaeLdmSource(name, n));
  }
  if (where.naming === 'open_clip') {
    const hidden = Number((config.text_config as Record<string, unknown> | undefined)?.hidden_size ?? config.hidden_size);
    return (name) => full(openClipLdmSource(name, hidden));
  }
  return (name) => full({ key: name });
}

function readParam(f: SafetensorsFile, key: string, s: LdmSource): tf.Tensor {
  let shape = [...f.tensors.get(key)!.shape];
  let data = f.readFloat32(key);
  if (s.rows) {
    const cols = shape.slice(1).reduce((a, b) => a * b, 1);
    data = data.slice(s.rows[0] * cols, s.rows[1] * cols);
    shape = [s.rows[1] - s.rows[0], ...shape.slice(1)];
  }
  if (s.transpose) {
    const [r, c] = shape;
    const t = new Float32Array(data.length);
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) t[j * r + i] = data[i * c + j];
    data = t;
    shape = [c, r];
  }
  if (s.squeeze && shape.length === 4) shape = shape.slice(0, 2);
  const t = tf.tensor(data, shape, 'float32');
  if (shape.length !== 4) return t;
  // OIHW → HWIO, as Params.load does.
  const hwio = tf.tidy(() => t.transpose([2, 3, 1, 0]));
  t.dispose();
  return hwio;
}


/** The UNet of a single-file checkpoint. */
export function unetFromSingleFile(ckpt: SingleFileCheckpoint): UNet2DConditionModel {
  const config = ckpt.config('unet');
  return new UNet2DConditionModel(config, ckpt.params('unet', UNet2DConditionModel.expectedParamShapes(config)));
}

export function vaeFromSingleFile(ckpt: SingleFileCheckpoint): AutoencoderKL {
  const config = ckpt.config('vae');
  return new AutoencoderKL(config, ckpt.params('vae', AutoencoderKL.expectedParamShapes(config)));
}

export function textEncoderFromSingleFile(ckpt: SingleFileCheckpoint): CLIPTextModel {
  const config = ckpt.config('text_encoder');
  return new CLIPTextModel(config, ckpt.params('text_encoder', CLIPTextModel.expectedParamShapes(config)));
}

export function textEncoder2FromSingleFile(ckpt: SingleFileCheckpoint): CLIPTextModelWithProjection {
  const config = ckpt.config('text_encoder_2');
  return new CLIPTextModelWithProjection(config, ckpt.params('text_encoder_2', CLIPTextModelWithProjection.expectedParamShapes(config)));
}
