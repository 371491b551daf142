// `lora-studio convert IN OUT --to diffusers|kohya|peft`: rewrites a LoRA file in another layout, without a
// model. The modules are read off the file itself (each module's shapes, its alpha, DoRA magnitude) through
// the one reader (readLoraFile), then written by the one writer (writeLoraFile), so a converted file means
// exactly what the original meant: alpha is stored (kohya), packed into the header (PEFT) or folded (diffusers).
import { SafetensorsFile } from '../io/safetensors.js';
import { guessPathFromKohya, parseLoraKey, usesLdmBlockNames, type LoraComponent, type LoraTarget } from './formats.js';
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

/** Converts `input` to `layout` at `output` (atomically); the header's training metadata is kept. */
export function convertLoraFile(input: string, output: string, layout: LoraLayout, precision: SavePrecision = 'fp32'): ConvertResult {
  const weights = readLoraFile(input, targetsOfFile(input));
  const components = weights.components ?? new Map([['unet' as LoraComponent, weights.modules]]);
  const sgm = [...(components.get('unet')?.keys() ?? [])].find(usesLdmBlockNames);
  if (sgm && layout !== 'kohya') {
    throw new LoraFileError(
      input,
      undefined,
      `names UNet modules by SGM/LDM blocks ("${sgm}"); their diffusers names depend on the model's layout, which the file does not hold. ` +
        'Convert it --to kohya (ComfyUI, A1111, sd-scripts and diffusers read SGM names), or load it as it is: generate and the notebook map SGM names with the model.',
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
  const sdxl = components.has('text_encoder_2');
  writeLoraFile(output, layout, { components: components as ReadonlyMap<LoraComponent, ReadonlyMap<string, LoraModuleToWrite>>, ...(sdxl ? { sdxl } : {}) }, { precision, metadata });
  return { modules: all.length, from: weights.format };
}
