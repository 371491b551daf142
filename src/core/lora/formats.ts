// LoRA key conventions: which module a tensor name belongs to, in each of the layouts found in the wild.
//
//   diffusers  `unet.<module>.lora.down.weight` [r, in], `.lora.up.weight` [out, r]; no alpha (alpha = r).
//              What diffusers' `save_lora_weights` writes today (fixtures/tiny-sd/lora_diffusers, diffusers
//              0.40) and what `load_lora_weights`, ComfyUI and the kohya tools read.
//              Older diffusers (attention processors) wrote `<attn>.processor.to_q_lora.down.weight`.
//   PEFT       `<module>.lora_A.weight` [r, in], `.lora_B.weight` [out, r], optionally prefixed `unet.` or
//              `base_model.model.`; alpha lives in adapter_config.json (or diffusers' `lora_adapter_metadata`).
//   kohya      `lora_unet_<module with . → _>.lora_down.weight`, `.lora_up.weight`, `.alpha` (a scalar);
//              the effective scale is alpha / rank. Used by sd-scripts, A1111 and most shared LoRAs.
//              Text encoders: `lora_te_text_model_encoder_layers_0_self_attn_q_proj` (SDXL: lora_te1_/lora_te2_).
//              The module names are diffusers' for SD 1.x/2.x, or the LDM/SGM ones (input_blocks.4.1…).
//              Underscores are ambiguous (`to_out_0` vs `down_blocks`), so names are matched by building
//              the kohya name of every module the model has, never by guessing.
//   ComfyUI    LoraSave: `diffusion_model.<LDM module>.lora_up.weight`, `text_encoders.clip_l.transformer.
//              text_model.…` (clip_g: the second text encoder), no alpha.
//   LoCon      any of these on a Conv2d: down [r, in, k, k], up [out, r, 1, 1].
//   DoRA       `.dora_scale` (kohya/LyCORIS, [out, 1, …]) or `.lora_magnitude_vector` (PEFT, [out]).
//
// Module paths are diffusers' module names inside the UNet, e.g.
// `down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`.
import { SafetensorsFile } from '../io/safetensors.js';
import { unetLdmKey, type UNetLdmLayout } from '../io/single_file.js';

/** A Linear or Conv2d layer that accepts a LoRA: its module path, [out, in] and its kernel size (1: Linear or 1×1). */
export interface LoraTarget {
  readonly path: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly kernelSize?: number;
  /** A torch Conv2d (any kernel size), not a Linear. */
  readonly conv?: boolean;
}

/** The projections of every attention that LoRA Studio trains and applies adapters to (as diffusers' guide does). */
export const ATTENTION_PROJECTIONS = ['to_q', 'to_k', 'to_v', 'to_out.0'] as const;

const TARGET_WEIGHT = /^(.*\.(?:to_q|to_k|to_v|to_out\.0))\.weight$/;

/**
 * The LoRA targets of a UNet, read from its weight files' headers alone (no tensor data, no model built):
 * every `….to_q/to_k/to_v/to_out.0.weight`, whose stored shape is [out, in]. Sorted by path.
 */
export function loraTargetsFromUnetWeights(files: readonly string[]): LoraTarget[] {
  const targets: LoraTarget[] = [];
  for (const file of files) {
    const f = SafetensorsFile.open(file);
    try {
      for (const [name, info] of f.tensors) {
        const m = TARGET_WEIGHT.exec(name);
        if (!m) continue;
        // A 1×1 conv weight [out, in, 1, 1] is the same linear map.
        const [outFeatures, inFeatures, ...rest] = info.shape;
        if (info.shape.length < 2 || rest.some((d) => d !== 1)) continue;
        targets.push({ path: m[1], inFeatures, outFeatures });
      }
    } finally {
      f.close();
    }
  }
  return targets.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export type LoraFormat = 'diffusers' | 'peft' | 'kohya';
export type LoraPart = 'down' | 'up' | 'alpha' | 'magnitude';
/** The model component a LoRA key is for. */
export type LoraComponent = 'unet' | 'text_encoder' | 'text_encoder_2';

/** What one tensor name in a LoRA file means. */
export type ParsedLoraKey =
  | {
      readonly kind: 'lora';
      /** Undefined for `.alpha`, which every layout spells the same way. */
      readonly format: LoraFormat | undefined;
      readonly component: LoraComponent;
      /**
       * A dotted module path, or for kohya keys the underscored name after `lora_unet_` / `lora_te_`.
       * Text-encoder paths are relative to the text model (`encoder.layers.0.mlp.fc1`: `text_model.` dropped).
       */
      readonly module: string;
      readonly naming: 'dotted' | 'kohya';
      readonly part: LoraPart;
    }
  /** A recognised adapter kind that LoRA Studio cannot apply (DoRA, LoHa, LoKr, …); `what` says which. */
  | { readonly kind: 'unsupported'; readonly what: string }
  | { readonly kind: 'unknown' };

/** `lora_unet_down_blocks_1_…_to_out_0`: the name A1111 and sd-scripts give a UNet module. */
export function kohyaName(path: string, prefix = 'lora_unet_'): string {
  return prefix + path.replace(/\./g, '_');
}

/** The diffusers keys of one module's LoRA, as `save_lora_weights` writes them. */
export function diffusersKeys(path: string): { down: string; up: string } {
  return { down: `unet.${path}.lora.down.weight`, up: `unet.${path}.lora.up.weight` };
}

/** Suffixes after the kohya module name that belong to adapters other than plain LoRA. */
const KOHYA_UNSUPPORTED: [RegExp, string][] = [
  [/^hada_/, 'LoHa (LyCORIS)'],
  [/^lokr_/, 'LoKr (LyCORIS)'],
  [/^lora_mid\.weight$/, 'LoCon with a Tucker mid weight (LyCORIS)'],
  [/^(oft_|oft_blocks|oft_diag)/, 'OFT'],
  [/^(on_input|weight)$/, 'IA3 (LyCORIS)'],
  [/^(diff|diff_b)$/, 'full weight difference (LyCORIS)'],
  [/^(w_norm|b_norm)$/, 'norm-layer adapter (LyCORIS)'],
  [/^(a1|a2|b1|b2)\.weight$/, 'GLoRA (LyCORIS)'],
];

const KOHYA_PART: Record<string, LoraPart> = { 'lora_down.weight': 'down', 'lora_up.weight': 'up', alpha: 'alpha', dora_scale: 'magnitude' };

/** Dotted-key suffixes and what they are. Order matters: longer, more specific suffixes first. */
const DOTTED_PARTS: [string, LoraFormat | undefined, LoraPart][] = [
  ['.lora.down.weight', 'diffusers', 'down'],
  ['.lora.up.weight', 'diffusers', 'up'],
  ['.lora_linear_layer.down.weight', 'diffusers', 'down'],
  ['.lora_linear_layer.up.weight', 'diffusers', 'up'],
  ['.lora_A.weight', 'peft', 'down'],
  ['.lora_B.weight', 'peft', 'up'],
  ['.lora_magnitude_vector.weight', 'peft', 'magnitude'],
  ['.lora_magnitude_vector', 'peft', 'magnitude'],
  ['.dora_scale', 'kohya', 'magnitude'],
  ['.lora_down.weight', 'kohya', 'down'],
  ['.lora_up.weight', 'kohya', 'up'],
  ['.alpha', undefined, 'alpha'],
];

/** Dotted-key prefixes naming the component: diffusers/PEFT's, and ComfyUI LoraSave's (comfy_extras/nodes_lora_extract.py). */
const COMPONENT_PREFIXES: [string, LoraComponent][] = [
  ['unet.', 'unet'],
  ['text_encoder_2.', 'text_encoder_2'],
  ['text_encoder.', 'text_encoder'],
  ['diffusion_model.', 'unet'],
  ['text_encoders.clip_l.transformer.', 'text_encoder'],
  ['text_encoders.clip_g.transformer.', 'text_encoder_2'],
];

/** Old diffusers attention-processor keys: `<attn>.processor.to_q_lora.down.weight` → `<attn>.to_q`. */
const PROCESSOR_KEY = /^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/;

/** Classifies one tensor name of a LoRA file. Never throws; `unknown` for names that are not LoRA keys. */
export function parseLoraKey(key: string): ParsedLoraKey {
  const kohya = /^lora_(unet|te1|te2|te)_([^.]+)\.(.+)$/.exec(key);
  if (kohya) {
    const [, comp, name, suffix] = kohya;
    const component: LoraComponent = comp === 'unet' ? 'unet' : comp === 'te2' ? 'text_encoder_2' : 'text_encoder';
    const module = component === 'unet' ? name : name.replace(/^text_model_/, '');
    const part = KOHYA_PART[suffix];
    if (part) return { kind: 'lora', format: 'kohya', component, module, naming: 'kohya', part };
    for (const [re, what] of KOHYA_UNSUPPORTED) if (re.test(suffix)) return { kind: 'unsupported', what };
    return { kind: 'unknown' };
  }

  let rest = key.startsWith('base_model.model.') ? key.slice('base_model.model.'.length) : key;
  // PEFT names the adapter inside the key when saved without get_peft_model_state_dict: lora_A.default.weight.
  rest = rest.replace(/\.(lora_A|lora_B|lora_magnitude_vector)\.(?!weight$)[A-Za-z0-9_-]+(\.weight)?$/, '.$1$2');
  let component: LoraComponent | undefined;
  for (const [prefix, c] of COMPONENT_PREFIXES) {
    if (rest.startsWith(prefix)) {
      component = c;
      rest = rest.slice(prefix.length);
      break;
    }
  }
  if (/\.lora_B\.bias$/.test(rest)) return { kind: 'unsupported', what: 'LoRA with a bias on lora_B' };
  if (/\.lora_embedding_[AB]$/.test(rest)) return { kind: 'unsupported', what: 'LoRA on an embedding layer' };

  const proc = PROCESSOR_KEY.exec(rest);
  let module: string | undefined;
  let format: LoraFormat | undefined;
  let part: LoraPart | undefined;
  if (proc) {
    module = `${proc[1]}.${proc[2] === 'to_out' ? 'to_out.0' : proc[2]}`;
    format = 'diffusers';
    part = proc[3] as LoraPart;
  } else {
    for (const [suffix, f, p] of DOTTED_PARTS) {
      if (rest.endsWith(suffix) && rest.length > suffix.length) {
        module = rest.slice(0, -suffix.length);
        format = f;
        part = p;
        break;
      }
    }
  }
  if (module === undefined || part === undefined) return { kind: 'unknown' };
  // PEFT files saved from a bare text encoder carry no component prefix; their module names say what they are.
  component ??= /^(text_model\.|encoder\.layers\.|embeddings\.)/.test(module) ? 'text_encoder' : 'unet';
  if (component !== 'unet') module = module.replace(/^text_model\./, '');
  return { kind: 'lora', format, component, module, naming: 'dotted', part };
}

/** Word pairs that an underscore joins inside one diffusers/transformers name (restored after `_` → `.`). */
const JOINED_WORDS: [RegExp, string][] = [
  [/down\.blocks/g, 'down_blocks'],
  [/up\.blocks/g, 'up_blocks'],
  [/mid\.block/g, 'mid_block'],
  [/input\.blocks/g, 'input_blocks'],
  [/output\.blocks/g, 'output_blocks'],
  [/middle\.block/g, 'middle_block'],
  [/transformer\.blocks/g, 'transformer_blocks'],
  [/to\.(q|k|v|out)\b/g, 'to_$1'],
  [/proj\.(in|out)\b/g, 'proj_$1'],
  [/conv\.(in|out|shortcut)\b/g, 'conv_$1'],
  [/time\.emb\.proj/g, 'time_emb_proj'],
  [/time\.embedding/g, 'time_embedding'],
  [/add\.embedding/g, 'add_embedding'],
  [/linear\.(\d)/g, 'linear_$1'],
  [/text\.model/g, 'text_model'],
  [/self\.attn/g, 'self_attn'],
  [/(q|k|v|out)\.proj\b/g, '$1_proj'],
  [/layer\.norm(\d)/g, 'layer_norm$1'],
  [/final\.layer\.norm/g, 'final_layer_norm'],
];

/**
 * A best guess at the dotted module path behind a kohya name (`down_blocks_1_…_to_out_0` →
 * `down_blocks.1.….to_out.0`), for messages and `inspect` only: loading matches names exactly.
 */
export function guessPathFromKohya(name: string): string {
  let p = name.replace(/_/g, '.');
  for (const [re, s] of JOINED_WORDS) p = p.replace(re, s);
  return p;
}

/** The last part of a module path that says what kind of layer it is (`to_q`, `to_out.0`, `ff.net.2`, `conv1`). */
export function moduleKind(path: string): string {
  const m = /(to_out\.0|ff\.net\.0\.proj|ff\.net\.2|time_embedding\.linear_\d|add_embedding\.linear_\d|[^.]+)$/.exec(path);
  return m ? m[1] : path;
}

/**
 * UNet layers that exist in every Stable Diffusion UNet but are not LoRA targets here (kohya's sd-scripts
 * also trains proj_in/proj_out and the feed-forward layers; LyCORIS/LoCon the convolutions). A LoRA part
 * on one of these is left out with a warning instead of failing the whole LoRA.
 */
const OTHER_UNET_LAYER = /^(?:(?:down_blocks|mid_block|up_blocks)\..*\.(?:proj_in|proj_out|ff\.net\.0\.proj|ff\.net\.2|conv1|conv2|conv_shortcut|time_emb_proj|conv)|conv_in|conv_out|time_embedding\.linear_[12]|add_embedding\.linear_[12])$/;

export function isOtherUnetLayer(path: string): boolean {
  return OTHER_UNET_LAYER.test(path);
}

/** The LDM/SGM block names (input_blocks, middle_block, output_blocks) of original Stable Diffusion checkpoints. */
export function usesLdmBlockNames(path: string): boolean {
  return /^(input_blocks|middle_block|output_blocks)\./.test(path);
}

/**
 * The LoRA hyper-parameters PEFT keeps beside a LoRA (adapter_config.json, or diffusers' packed
 * `lora_adapter_metadata` header entry).
 */
export interface AdapterConfig {
  readonly r?: number;
  readonly lora_alpha?: number;
  readonly rank_pattern?: Record<string, number>;
  readonly alpha_pattern?: Record<string, number>;
  readonly use_rslora?: boolean;
  readonly use_dora?: boolean;
}

/** PEFT's pattern rule (peft.utils.other.get_pattern_key): a key matches a module path ending in `.key` or equal to it. */
function patternValue(patterns: Record<string, number> | undefined, path: string): number | undefined {
  for (const [key, value] of Object.entries(patterns ?? {})) {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:.*\\.)?(?:${key})$`);
    } catch {
      continue;
    }
    if (re.test(path)) return value;
  }
  return undefined;
}

/**
 * The alpha that gives a module of `rank` the scale PEFT would use under `config`: alpha / rank, or
 * alpha / √rank with rsLoRA (returned as an equivalent alpha so that scale is always alpha / rank).
 * Undefined when the config says nothing about alpha.
 */
export function alphaFromAdapterConfig(config: AdapterConfig, path: string, rank: number): number | undefined {
  const alpha = patternValue(config.alpha_pattern, path) ?? config.lora_alpha;
  if (alpha === undefined || !Number.isFinite(alpha)) return undefined;
  return config.use_rslora ? alpha * Math.sqrt(rank) : alpha;
}

/**
 * diffusers packs its adapter config into the header as JSON under `lora_adapter_metadata`, each key
 * prefixed with the component (`unet.lora_alpha`); this unpacks the part for one component.
 */
export function adapterConfigFromHeader(metadata: Readonly<Record<string, string>>, component: LoraComponent): AdapterConfig | undefined {
  const raw = metadata['lora_adapter_metadata'];
  if (raw) {
    try {
      const packed = JSON.parse(raw) as Record<string, unknown>;
      const mine: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(packed)) {
        if (k.startsWith(component + '.')) mine[k.slice(component.length + 1)] = v;
        else if (!/^(unet|text_encoder(_2)?|transformer)\./.test(k)) mine[k] = v;
      }
      if (Object.keys(mine).length) return mine as AdapterConfig;
    } catch {
      // A damaged entry is treated as absent: the weights alone still define a LoRA with alpha = rank.
    }
  }
  // Some exporters write a bare alpha (and rank) into the header.
  const alpha = Number(metadata['lora_alpha'] ?? metadata['alpha']);
  if (metadata['lora_alpha'] !== undefined || metadata['alpha'] !== undefined) {
    if (Number.isFinite(alpha)) return { lora_alpha: alpha };
  }
  return undefined;
}

/**
 * The LDM/SGM path (`input_blocks.4.1.transformer_blocks.0.attn1.to_q`, the names of original Stable Diffusion
 * and SDXL checkpoints, ComfyUI's and many kohya files') of each diffusers UNet module path. The mapping is
 * the single-file loader's (`unetLdmKey`, diffusers' convert_ldm_unet_checkpoint inverted); its layout is
 * read off the paths themselves, as ComfyUI's `unet_to_diffusers` reads it off the config: resnets per down
 * block, and which up blocks have attentions. Returns diffusers path → LDM path.
 */
export function ldmUnetPaths(paths: readonly string[]): Map<string, string> {
  const countOf = (re: RegExp) => {
    let n = 0;
    for (const p of paths) {
      const m = re.exec(p);
      if (m) n = Math.max(n, Number(m[1]) + 1);
    }
    return n;
  };
  const downBlocks = countOf(/^down_blocks\.(\d+)\./);
  const upBlocks = countOf(/^up_blocks\.(\d+)\./);
  // Layers per down block from its resnets; a block whose resnets are not among the paths (only attention
  // projections given, as loraTargetsFromUnetWeights reads them) has as many as the others (diffusers'
  // layers_per_block is one number in every Stable Diffusion config): the most any block shows.
  const resnets = Array.from({ length: downBlocks }, (_, b) => countOf(new RegExp(`^down_blocks\\.${b}\\.resnets\\.(\\d+)\\.`)));
  const seen = Math.max(
    ...resnets,
    ...Array.from({ length: downBlocks }, (_, b) => countOf(new RegExp(`^down_blocks\\.${b}\\.attentions\\.(\\d+)\\.`))),
    ...Array.from({ length: upBlocks }, (_, b) => countOf(new RegExp(`^up_blocks\\.${b}\\.(?:resnets|attentions)\\.(\\d+)\\.`)) - 1),
  );
  const layout: UNetLdmLayout = {
    layersPerBlock: resnets.map((n) => n || seen),
    upBlockTypes: Array.from({ length: upBlocks }, (_, b) => (paths.some((p) => p.startsWith(`up_blocks.${b}.attentions.`)) ? 'CrossAttnUpBlock2D' : 'UpBlock2D')),
  };
  const out = new Map<string, string>();
  // unetLdmKey names parameters: ask for each module's weight and drop the suffix again. Paths already in
  // SGM/LDM form (a file read without its model) are their own LDM names.
  for (const p of paths) {
    if (usesLdmBlockNames(p)) {
      out.set(p, p);
      continue;
    }
    try {
      out.set(p, unetLdmKey(`${p}.weight`, layout).replace(/\.weight$/, ''));
    } catch {
      // A module the LDM layout has no name for (not a UNet module): it has only its diffusers name.
    }
  }
  return out;
}
