// `lora-studio convert IN OUT --to diffusers|kohya|peft [--model M]`: rewrites a LoRA file in another layout.
// The modules are read off the file itself (each module's shapes, its alpha, DoRA magnitude) through the one
// reader (readLoraFile), then written by the one writer (writeLoraFile), so a converted file means exactly
// what the original meant: alpha is stored (kohya), packed into the header (PEFT) or folded (diffusers).
// SGM/LDM UNet names (SDXL kohya files, ComfyUI's diffusion_model.) become diffusers paths only with the
// model's layout (`modelLoraLayout`: its UNet config, no weights read); with an SDXL model, --to kohya writes
// the SGM names sd-scripts writes.
import fs from 'node:fs';
import { SafetensorsFile } from '../io/safetensors.js';
import { DiffusersFolder } from '../io/diffusers_folder.js';
import { SingleFileCheckpoint } from '../models/from_single_file.js';
import { UNet2DConditionModel } from '../models/unet_2d_condition.js';
import { modelSource } from '../config/model_source.js';
import { guessPathFromKohya, ldmUnetPaths, parseLoraKey, usesLdmBlockNames, type LoraComponent, type LoraTarget } from './formats.js';
import { LoraFileError, readLoraFile, type LoraModelTargets } from './lora_file.js';
import { writeLoraFile, type LoraLayout, type LoraModuleToWrite } from './lora_writer.js';
import type { SavePrecision } from '../config/run_config.js';

export interface ConvertResult {
  readonly modules: number;
  readonly from: string;
}

/** Header keys that describe the file's own layout or tensors: the writer makes them afresh. */
const LAYOUT_KEYS = new Set(['format', 'lora_adapter_metadata', 'sshs_model_hash', 'sshs_legacy_hash']);

/** The LoRA targets a file's own keys and shapes describe (paths of kohya names are the best guess, checked by readLoraFile). */
function targetsOfFile(file: string): LoraModelTargets {
  const f = SafetensorsFile.open(file);
  try {
    const found = new Map<string, { component: LoraComponent; path: string; down?: readonly number[]; up?: readonly number[] }>();
    for (const key of f.names()) {
      const p = parseLoraKey(key);
      if (p.kind !== 'lora') continue;
      const path = p.naming === 'kohya' ? guessPathFromKohya(p.module) : p.module;
      const id = `${p.component}:${path}`;
      const e = found.get(id) ?? { component: p.component, path };
      found.set(id, e);
      if (p.part === 'down') e.down = f.info(key).shape;
      if (p.part === 'up') e.up = f.info(key).shape;
    }
    const out: Record<LoraComponent, LoraTarget[]> = { unet: [], text_encoder: [], text_encoder_2: [] };
    for (const e of found.values()) {
      if (!e.down || !e.up) continue; // readLoraFile names the incomplete module
      out[e.component].push({ path: e.path, inFeatures: e.down[1], outFeatures: e.up[0], kernelSize: e.down[2] ?? 1, ...(e.down.length === 4 ? { conv: true } : {}) });
    }
    return { unet: out.unet, ...(out.text_encoder.length ? { text_encoder: out.text_encoder } : {}), ...(out.text_encoder_2.length ? { text_encoder_2: out.text_encoder_2 } : {}) };
  } finally {
    f.close();
  }
}

/** A model's UNet as LoRA files see it: every Linear and Conv2d layer, and whether it is SDXL's (kohya names it the SGM way). */
export interface ModelLoraLayout {
  readonly unet: readonly LoraTarget[];
  readonly sdxl: boolean;
}

/**
 * The UNet layout of a base model (a diffusers folder, or a single-file checkpoint with the bundled config of
 * its family or `config`, a diffusers folder): every layer a LoRA can attach to, from the UNet config alone —
 * the parameters the model declares (`expectedParamShapes`), 2-D weights being Linears and 4-D ones Conv2ds.
 */
export function modelLoraLayout(model: string, opts: { config?: string } = {}): ModelLoraLayout {
  const source = modelSource(model);
  if (source.kind === 'problem') throw new Error(source.message);
  const config = source.kind === 'folder' ? DiffusersFolder.open(model).component('unet').config : SingleFileCheckpoint.open(model, opts).config('unet');
  const unet: LoraTarget[] = [];
  for (const [name, shape] of UNet2DConditionModel.expectedParamShapes(config)) {
    if (!name.endsWith('.weight') || (shape.length !== 2 && shape.length !== 4)) continue;
    const p = name.slice(0, -'.weight'.length);
    unet.push(shape.length === 2 ? { path: p, inFeatures: shape[1], outFeatures: shape[0] } : { path: p, inFeatures: shape[1], outFeatures: shape[0], kernelSize: shape[2], conv: true });
  }
  return { unet, sdxl: config.addition_embed_type === 'text_time' };
}

/**
 * Converts `input` to `layout` at `output` (atomically); the header's training metadata is kept. `model`: the
 * UNet layout its SGM/LDM names are read against (needed for those names --to diffusers or peft).
 */
export function convertLoraFile(input: string, output: string, layout: LoraLayout, precision: SavePrecision = 'fp32', model?: ModelLoraLayout): ConvertResult {
  if (!fs.existsSync(input)) throw new LoraFileError(input, undefined, 'file not found');
  const own = targetsOfFile(input);
  const weights = readLoraFile(input, model ? { ...own, unet: model.unet } : own);
  const components = weights.components ?? new Map([['unet' as LoraComponent, weights.modules]]);
  const sgm = [...(components.get('unet')?.keys() ?? [])].find(usesLdmBlockNames);
  if (sgm && layout !== 'kohya') {
    throw new LoraFileError(
      input,
      undefined,
      `names UNet modules by SGM/LDM blocks ("${sgm}"); their diffusers names depend on the model's layout, which the file does not hold. ` +
        'Name the model it is for with --model (its diffusers folder, single-file checkpoint or Hub id), or convert it --to kohya (ComfyUI, A1111, sd-scripts and diffusers read SGM names).',
    );
  }
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(weights.metadata)) if (!LAYOUT_KEYS.has(k)) metadata[k] = v;
  const all = [...components.values()].flatMap((m) => [...m.values()]);
  if (layout === 'kohya') {
    metadata.ss_network_module ??= 'networks.lora';
    metadata.ss_network_dim ??= String(all[0].rank);
    metadata.ss_network_alpha ??= String(all[0].alpha);
  } else {
    // A diffusers or PEFT file is no kohya network: A1111 would list a file claiming networks.lora as one and apply nothing.
    delete metadata.ss_network_module;
  }
  const sdxl = model?.sdxl ?? components.has('text_encoder_2');
  // sd-scripts names an SDXL UNet's modules the SGM way: so does the kohya file of an SDXL model.
  const unetSgmNames = layout === 'kohya' && model?.sdxl ? ldmUnetPaths(model.unet.map((t) => t.path)) : undefined;
  const lora = { components: components as ReadonlyMap<LoraComponent, ReadonlyMap<string, LoraModuleToWrite>>, ...(sdxl ? { sdxl } : {}), ...(unetSgmNames ? { unetSgmNames } : {}) };
  writeLoraFile(output, layout, lora, { precision, metadata });
  return { modules: all.length, from: weights.format };
}
