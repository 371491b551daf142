// Which tools load a LoRA file, judged key by key from the names alone (no model needed), by each tool's own
// loading rule as its source has it:
//
//   diffusers  load_lora_weights (loaders/lora_pipeline.py, lora_conversion_utils.py): `unet.` / `text_encoder(_2).`
//              keys in diffusers, PEFT or old attention-processor form, and kohya keys, which it converts
//              (`_convert_non_diffusers_lora_to_diffusers`, SGM block names through `_maybe_map_sgm_blocks_to_diffusers`).
//              Not ComfyUI's own `diffusion_model.` / `text_encoders.` layout; not LoHa/LoKr.
//   ComfyUI    comfy/lora.py model_lora_keys_unet / model_lora_keys_clip + load_lora: `lora_unet_<SGM or diffusers
//              name>`, `diffusion_model.<SGM name>`, `lora_te_/lora_te1_/lora_te2_text_model_encoder_layers_<n>_<layer>`,
//              `text_encoder(_2).text_model.encoder.layers.<n>.<layer>`, `text_encoders.<clip>.transformer.…`; diffusers
//              UNet keys only as `unet.<block>.processor.to_q` (attention projections) or `unet.<module>` (others),
//              with the suffixes `.lora_up/.lora_down.weight`, `_lora.up/down.weight`, `.lora_B/.lora_A.weight`,
//              `.lora.up/down.weight`, `.lora_linear_layer.up/down.weight`, `.alpha`, `.dora_scale`.
//              Forge vendors the same map.
//   A1111      extensions-builtin/Lora/networks.py load_network: the name before the first `.` is converted by
//              convert_diffusers_name_to_compvis (diffusers block names), else `lora_unet` → `diffusion_model` (SGM
//              names), `lora_te1_text_model` → `0_transformer_text_model`; dotted diffusers/PEFT names give the base
//              name `unet`/`text_encoder` and match nothing. Parts: `lora_up.weight`, `lora_down.weight`, `alpha`,
//              `dora_scale` (network_lora.py).
//   sd-scripts networks/lora.py create_network_from_weights: `lora_unet_` + the name of a Linear/Conv2d inside a
//              Transformer2DModel (`…attentions_<n>_…`, SGM `…_<i>_1_…`) or a ResnetBlock2D/Downsample2D/Upsample2D,
//              `lora_te_`/`lora_te1_`/`lora_te2_` + a CLIPAttention/CLIPMLP layer; parts `lora_down.weight`,
//              `lora_up.weight`, `alpha` (no DoRA in networks.lora).
//
// The tests (test/training/tool_acceptance.test.ts) check these verdicts against each tool's full rule applied
// with a real model's module list.
import { parseLoraKey } from './formats.js';

export const LORA_TOOLS = ['diffusers', 'ComfyUI', 'A1111', 'sd-scripts'] as const;
export type LoraTool = (typeof LORA_TOOLS)[number];

export interface ToolVerdict {
  readonly tool: LoraTool;
  readonly loads: boolean;
  /** How many keys the tool would leave unused. */
  readonly rejected: number;
  /** One line per distinct reason: the reason and the first key it applies to. */
  readonly reasons: { readonly reason: string; readonly key: string; readonly count: number }[];
}

const KOHYA = /^lora_(unet|te1|te2|te)_([^.]+)\.(.+)$/;
const KOHYA_PARTS_A1111 = new Set(['lora_up.weight', 'lora_down.weight', 'alpha', 'dora_scale']);
const KOHYA_PARTS_SD_SCRIPTS = new Set(['lora_up.weight', 'lora_down.weight', 'alpha']);
const COMFY_SUFFIXES = ['.lora_up.weight', '.lora_down.weight', '_lora.up.weight', '_lora.down.weight', '.lora_B.weight', '.lora_A.weight', '.lora.up.weight', '.lora.down.weight', '.lora_linear_layer.up.weight', '.lora_linear_layer.down.weight', '.alpha', '.dora_scale'];
/** CLIP layers ComfyUI's LORA_CLIP_MAP (and sd-scripts' CLIPAttention/CLIPMLP targets) name. */
const CLIP_LAYER = /^text_model_encoder_layers_\d+_(mlp_fc1|mlp_fc2|self_attn_(q|k|v|out)_proj)$/;
const CLIP_LAYER_DOTTED = /^text_model\.encoder\.layers\.\d+\.(mlp\.fc1|mlp\.fc2|self_attn\.(q|k|v|out)_proj)$/;
/** A1111's convert_diffusers_name_to_compvis patterns for the UNet (diffusers block names). */
const A1111_DIFFUSERS_UNET = /^(conv_in|conv_out|time_embedding_linear_\d+|(down_blocks|up_blocks)_\d+_(attentions|resnets)_\d+_.+|mid_block_(attentions|resnets)_\d+_.+|down_blocks_\d+_downsamplers_0_conv|up_blocks_\d+_upsamplers_0_conv)$/;
const SGM_UNET = /^(input_blocks|middle_block|output_blocks|time_embed|label_emb|out)_/;
/** sd-scripts' target modules: inside a Transformer2DModel, or a ResnetBlock2D / Downsample2D / Upsample2D. */
const SD_SCRIPTS_UNET = /^((down_blocks|up_blocks)_\d+_(attentions|resnets)_\d+_.+|mid_block_(attentions|resnets)_\d+_.+|(down_blocks_\d+_downsamplers|up_blocks_\d+_upsamplers)_0_conv|(input_blocks|output_blocks)_\d+_\d+_.+|middle_block_\d+_.+)$/;
/** ComfyUI's diffusers UNet keys: attention projections only in the attention-processor form. */
const DIFFUSERS_ATTENTION = /\.(to_q|to_k|to_v|to_out\.0)$/;

type Rule = (key: string) => string | undefined;

function diffusersRule(key: string): string | undefined {
  const p = parseLoraKey(key);
  if (p.kind === 'unsupported') return `${p.what} is not loaded by load_lora_weights`;
  if (p.kind === 'unknown') return 'not a LoRA key diffusers converts';
  if (/^(diffusion_model|text_encoders)\./.test(key)) return "ComfyUI's own LoraSave layout (diffusion_model./text_encoders.) is not one diffusers converts for Stable Diffusion";
  return undefined;
}

function comfyRule(key: string): string | undefined {
  const k = KOHYA.exec(key);
  if (k) {
    const [, comp, name, part] = k;
    if (!COMFY_SUFFIXES.includes(`.${part}`)) return `part ".${part}" is not one comfy/lora.py load_lora reads`;
    if (comp === 'unet') return undefined;
    return CLIP_LAYER.test(name) ? undefined : `text-encoder layer "${name}" is not in comfy/lora.py's LORA_CLIP_MAP`;
  }
  if (/^text_encoders\./.test(key) || /^diffusion_model\./.test(key)) return COMFY_SUFFIXES.some((s) => key.endsWith(s)) ? undefined : 'unknown LoRA part for ComfyUI';
  const suffix = COMFY_SUFFIXES.find((s) => key.endsWith(s));
  if (!suffix) return 'unknown LoRA part for ComfyUI';
  const module = key.slice(0, -suffix.length);
  const te = /^(text_encoder|text_encoder_2)\.(.+)$/.exec(module);
  if (te) return CLIP_LAYER_DOTTED.test(te[2]) ? undefined : `text-encoder layer "${te[2]}" is not in comfy/lora.py's LORA_CLIP_MAP`;
  const unet = module.replace(/^unet\./, '');
  if (/\.processor\.to_(q|k|v|out)$/.test(unet) || suffix.startsWith('_lora.')) return undefined;
  if (DIFFUSERS_ATTENTION.test(unet)) return 'diffusers attention-projection keys are matched only in the old "<attn>.processor.to_q" form (comfy/lora.py model_lora_keys_unet)';
  return /^(down_blocks|mid_block|up_blocks|conv_in|conv_out|time_embedding|add_embedding)\b/.test(unet) ? undefined : 'not a UNet module name ComfyUI maps';
}

function a1111Rule(key: string): string | undefined {
  const k = KOHYA.exec(key);
  if (!k) {
    const base = key.split('.')[0];
    return `networks.py takes the name before the first "." ("${base}") as the layer name, which names no layer: the key is skipped`;
  }
  const [, comp, name, part] = k;
  if (!KOHYA_PARTS_A1111.has(part)) return `part "${part}" is not one network_lora.py reads`;
  if (comp === 'unet') return A1111_DIFFUSERS_UNET.test(name) || SGM_UNET.test(name) ? undefined : `UNet layer "${name}" is neither a diffusers block name convert_diffusers_name_to_compvis maps nor an SGM name`;
  return CLIP_LAYER.test(name) ? undefined : `text-encoder layer "${name}" is not one convert_diffusers_name_to_compvis maps`;
}

function sdScriptsRule(key: string): string | undefined {
  const k = KOHYA.exec(key);
  if (!k) return 'create_network_from_weights reads only kohya names (lora_unet_…/lora_te…_); this key names no module';
  const [, comp, name, part] = k;
  if (!KOHYA_PARTS_SD_SCRIPTS.has(part)) return `part "${part}" is not one networks/lora.py LoRAModule has (no DoRA, no LyCORIS)`;
  if (comp === 'unet') return SD_SCRIPTS_UNET.test(name) ? undefined : `UNet layer "${name}" is outside the modules networks/lora.py wraps (Transformer2DModel, ResnetBlock2D, Down/Upsample2D)`;
  return CLIP_LAYER.test(name) ? undefined : `text-encoder layer "${name}" is outside CLIPAttention/CLIPMLP`;
}

const RULES: Record<LoraTool, Rule> = { diffusers: diffusersRule, ComfyUI: comfyRule, A1111: a1111Rule, 'sd-scripts': sdScriptsRule };

/** Each tool's verdict on a LoRA file's keys: loads when it would use every key. */
export function toolSupport(keys: readonly string[]): ToolVerdict[] {
  return LORA_TOOLS.map((tool) => {
    const reasons = new Map<string, { reason: string; key: string; count: number }>();
    let rejected = 0;
    for (const key of keys) {
      const reason = RULES[tool](key);
      if (reason === undefined) continue;
      rejected++;
      const r = reasons.get(reason) ?? { reason, key, count: 0 };
      r.count++;
      reasons.set(reason, r);
    }
    return { tool, loads: keys.length > 0 && rejected === 0, rejected, reasons: [...reasons.values()] };
  });
}
