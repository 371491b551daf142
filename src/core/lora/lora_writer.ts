// Writing LoRA files, in the three layouts other tools read (see formats.ts for the key conventions):
//
//   diffusers  what `save_lora_weights` writes (`convert_state_dict_to_diffusers` of PEFT's state dict):
//              `unet.<path>.lora.down/up.weight` on the attention projections, `text_encoder.text_model.<path>
//              .lora_linear_layer.down/up.weight` on CLIP's q/k/v/out_proj, `.lora_A/.lora_B.weight` on every
//              other layer (diffusers' PEFT_TO_DIFFUSERS renames only those), `.lora_magnitude_vector` (DoRA).
//              No alpha: alpha / rank is folded into up, so every loader applies the same update.
//   kohya      what sd-scripts' networks/lora.py saves: `lora_unet_<path with _>`, `lora_te_` (SDXL: `lora_te1_`,
//              `lora_te2_`) + `text_model_<path>`, `.lora_down.weight`, `.lora_up.weight`, `.alpha` (a scalar,
//              same dtype), `.dora_scale`. SDXL UNet names are the SGM ones (`input_blocks_4_1_…`), as sd-scripts'
//              own SDXL UNet is named; SD 1.x/2.x names are diffusers'.
//   peft       `<component>.<path>.lora_A.weight` / `.lora_B.weight` / `.lora_magnitude_vector`, rank and alpha
//              in the header's `lora_adapter_metadata` (diffusers' packed adapter config).
//
// Conv2d layers (`conv: true`) are stored as convolutions — down [r, in, k, k], up [out, r, 1, 1] — even at
// k = 1: A1111 and PEFT refuse a 2-D weight on a Conv2d. Precision: fp32, fp16 or bf16 for every tensor.
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { ATTENTION_PROJECTIONS, kohyaName, type LoraComponent } from './formats.js';
import { additionalNetworksHashes } from './metadata.js';
import type { SavePrecision } from '../config/run_config.js';
import type { LoraModule } from './lora_file.js';

/** One module's LoRA to write: a read module's fields, with alpha optional (defaults to rank: scale 1). */
export type LoraModuleToWrite = Omit<LoraModule, 'alpha'> & { readonly alpha?: number };

/** The file layouts LoRA Studio writes (`lora-studio convert --to`). */
export const LORA_LAYOUTS = ['diffusers', 'kohya', 'peft'] as const;
export type LoraLayout = (typeof LORA_LAYOUTS)[number];

const DTYPE: Record<SavePrecision, 'F32' | 'F16' | 'BF16'> = { fp32: 'F32', fp16: 'F16', bf16: 'BF16' };

/** A whole LoRA: each component's modules by module path (text encoders: relative to the text model, `encoder.layers.0.self_attn.q_proj`). */
export interface LoraToWrite {
  readonly components: ReadonlyMap<LoraComponent, ReadonlyMap<string, LoraModuleToWrite>>;
  /**
   * Diffusers UNet path → SGM/LDM path (`ldmUnetPaths` of every UNet layer): given for SDXL, whose kohya files
   * sd-scripts names the SGM way. Without it kohya UNet names are diffusers' (SD 1.x/2.x).
   */
  readonly unetSgmNames?: ReadonlyMap<string, string>;
  /** Two text encoders (kohya names the first `lora_te1_`): implied by a text_encoder_2 component or unetSgmNames. */
  readonly sdxl?: boolean;
}

export interface WriteLoraOptions {
  readonly precision?: SavePrecision;
  /** Header metadata (string values). */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** A UNet-only LoRA (what the trainer makes today), as a LoraToWrite. */
export function unetLora(modules: ReadonlyMap<string, LoraModuleToWrite>, unetSgmNames?: ReadonlyMap<string, string>): LoraToWrite {
  return { components: new Map([['unet', modules]]), ...(unetSgmNames ? { unetSgmNames } : {}) };
}

const CLIP_ATTENTION = /\.(q_proj|k_proj|v_proj|out_proj)$/;
const UNET_ATTENTION = new RegExp(`\\.(${ATTENTION_PROJECTIONS.map((p) => p.replace('.', '\\.')).join('|')})$`);
const KOHYA_TE_PREFIX: Record<LoraComponent, string> = { unet: 'lora_unet_', text_encoder: 'lora_te_', text_encoder_2: 'lora_te2_' };

/** The tensor names of one module in `layout`. `sdxl`: two text encoders (kohya's lora_te1_/lora_te2_). */
export function loraModuleKeys(
  layout: LoraLayout,
  component: LoraComponent,
  modulePath: string,
  sdxl = false,
  unetSgmNames?: ReadonlyMap<string, string>,
): { down: string; up: string; alpha?: string; magnitude: string } {
  const dotted = component === 'unet' ? modulePath : `text_model.${modulePath}`;
  if (layout === 'kohya') {
    const prefix = component === 'text_encoder' && sdxl ? 'lora_te1_' : KOHYA_TE_PREFIX[component];
    const name = kohyaName(component === 'unet' ? (unetSgmNames?.get(modulePath) ?? modulePath) : dotted, prefix);
    return { down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, alpha: `${name}.alpha`, magnitude: `${name}.dora_scale` };
  }
  const base = `${component}.${dotted}`;
  if (layout === 'diffusers' && component === 'unet' && UNET_ATTENTION.test(modulePath)) {
    return { down: `${base}.lora.down.weight`, up: `${base}.lora.up.weight`, magnitude: `${base}.lora_magnitude_vector` };
  }
  if (layout === 'diffusers' && component !== 'unet' && CLIP_ATTENTION.test(modulePath)) {
    return { down: `${base}.lora_linear_layer.down.weight`, up: `${base}.lora_linear_layer.up.weight`, magnitude: `${base}.lora_magnitude_vector` };
  }
  return { down: `${base}.lora_A.weight`, up: `${base}.lora_B.weight`, magnitude: `${base}.lora_magnitude_vector` };
}

function checkModule(component: LoraComponent, modulePath: string, m: LoraModuleToWrite): void {
  const k = m.kernelSize ?? 1;
  const inSize = m.inFeatures * k * k;
  if (m.down.length !== m.rank * inSize || m.up.length !== m.outFeatures * m.rank || (m.magnitude && m.magnitude.length !== m.outFeatures)) {
    throw new Error(
      `LoRA ${component} module "${modulePath}": down has ${m.down.length} values, up ${m.up.length}${m.magnitude ? `, magnitude ${m.magnitude.length}` : ''}, ` +
        `but rank ${m.rank}, in ${m.inFeatures}${k > 1 ? ` (${k}×${k} kernel)` : ''}, out ${m.outFeatures} need ${m.rank * inSize} and ${m.outFeatures * m.rank}`,
    );
  }
  if (k > 1 && !m.conv) throw new Error(`LoRA ${component} module "${modulePath}": a ${k}×${k} kernel needs conv: true`);
}

/** The tensors of a LoRA in `layout` (what `writeLoraFile` writes, before the header metadata). */
export function loraTensors(layout: LoraLayout, lora: LoraToWrite, precision: SavePrecision = 'fp32'): Map<string, TensorToWrite> {
  const dtype = DTYPE[precision];
  const sdxl = lora.sdxl || lora.components.has('text_encoder_2') || lora.unetSgmNames !== undefined;
  const tensors = new Map<string, TensorToWrite>();
  const put = (key: string, t: TensorToWrite) => {
    if (tensors.has(key)) throw new Error(`LoRA tensor "${key}" would be written twice (two modules with one name)`);
    tensors.set(key, t);
  };
  for (const [component, modules] of lora.components) {
    for (const [modulePath, m] of modules) {
      checkModule(component, modulePath, m);
      const k = m.kernelSize ?? 1;
      const keys = loraModuleKeys(layout, component, modulePath, sdxl, lora.unetSgmNames);
      const alpha = m.alpha ?? m.rank;
      // diffusers files have no alpha: fold alpha / rank into up (the same update in every loader).
      const scale = layout === 'diffusers' ? alpha / m.rank : 1;
      put(keys.down, { dtype, shape: m.conv ? [m.rank, m.inFeatures, k, k] : [m.rank, m.inFeatures], data: m.down });
      put(keys.up, { dtype, shape: m.conv ? [m.outFeatures, m.rank, 1, 1] : [m.outFeatures, m.rank], data: scale === 1 ? m.up : m.up.map((v) => v * scale) });
      if (layout === 'kohya') put(keys.alpha!, { dtype, shape: [], data: [alpha] });
      // PEFT and diffusers: [out]; kohya/LyCORIS (wd_on_out): [out, 1] or [out, 1, 1, 1].
      if (m.magnitude) put(keys.magnitude, { dtype, shape: layout === 'kohya' ? (m.conv ? [m.outFeatures, 1, 1, 1] : [m.outFeatures, 1]) : [m.outFeatures], data: m.magnitude });
    }
  }
  return tensors;
}

/**
 * diffusers' packed adapter config (`lora_adapter_metadata`): per component `r` and `lora_alpha` of its first
 * module and, for modules that differ, `rank_pattern` / `alpha_pattern` by full path (PEFT matches a
 * pattern equal to the path), `use_dora` when any module has a magnitude.
 */
function adapterMetadata(lora: LoraToWrite): string {
  const packed: Record<string, unknown> = {};
  for (const [component, modules] of lora.components) {
    const first = modules.values().next().value;
    if (!first) continue;
    const rankPattern: Record<string, number> = {};
    const alphaPattern: Record<string, number> = {};
    for (const [p, m] of modules) {
      if (m.rank !== first.rank) rankPattern[p] = m.rank;
      if ((m.alpha ?? m.rank) !== (first.alpha ?? first.rank)) alphaPattern[p] = m.alpha ?? m.rank;
    }
    packed[`${component}.r`] = first.rank;
    packed[`${component}.lora_alpha`] = first.alpha ?? first.rank;
    packed[`${component}.rank_pattern`] = rankPattern;
    packed[`${component}.alpha_pattern`] = alphaPattern;
    packed[`${component}.use_dora`] = [...modules.values()].some((m) => m.magnitude);
  }
  return JSON.stringify(packed);
}

/**
 * Writes a LoRA file in `layout`, atomically. The diffusers file's header starts with `{"format": "pt"}`
 * (as `save_lora_weights`), the PEFT file's carries `lora_adapter_metadata`. When the metadata holds
 * sd-scripts' `ss_*` keys, the additional-networks hashes of these tensors are added as sd-scripts does.
 */
export function writeLoraFile(file: string, layout: LoraLayout, lora: LoraToWrite, options: WriteLoraOptions = {}): void {
  const tensors = loraTensors(layout, lora, options.precision);
  const given = options.metadata ?? {};
  const metadata: Record<string, string> = {
    ...(layout === 'kohya' ? {} : { format: 'pt' }),
    ...(layout === 'peft' ? { lora_adapter_metadata: adapterMetadata(lora) } : {}),
    ...given,
    ...(Object.keys(given).some((k) => k.startsWith('ss_')) ? additionalNetworksHashes(tensors, given) : {}),
  };
  writeSafetensors(file, tensors, metadata);
}
