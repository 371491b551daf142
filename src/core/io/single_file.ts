// Single-file checkpoints: one .safetensors in the original (LDM / SGM) layout, as A1111, ComfyUI and
// Civitai hold Stable Diffusion 1.x, 2.x and SDXL:
//
//   model.diffusion_model.*                 the UNet (CompVis names: input_blocks / middle_block / output_blocks)
//   first_stage_model.*                     the VAE (encoder.down.N.block.M, mid.attn_1.{q,k,v,proj_out} as 1×1 convs)
//   cond_stage_model.transformer.*          SD 1.x text encoder (transformers' CLIPTextModel names)
//   cond_stage_model.model.*                SD 2.x text encoder (OpenCLIP names: resblocks, in_proj_weight)
//   conditioner.embedders.0.transformer.*   SDXL text_encoder (CLIPTextModel names)
//   conditioner.embedders.1.model.*         SDXL text_encoder_2 (OpenCLIP names, text_projection transposed)
//
// The family is told from keys and shapes as diffusers' single_file_utils.infer_diffusers_model_type does,
// restricted to what this engine builds. The key maps are written diffusers → LDM (`ldmSource`): the
// loader asks, for every parameter the model declares, where it lies in the file, and reads only those
// tensors (no converted copy is ever written). The same functions make LDM files from diffusers folders
// (tests), so the two directions cannot drift apart. Light: no tensors, so config checks may import it.
import { SafetensorsFile, type TensorInfo } from './safetensors.js';

export type SingleFileFamily = 'v1' | 'v2' | 'xl_base';
/** A model named as one file: .safetensors (loaded) or a pickle (.ckpt/.pt/.pth/.bin, refused with the conversion hint). */
export const SINGLE_FILE_NAME = /\.(safetensors|ckpt|pt|pth|bin)$/i;
export const SINGLE_FILE_FAMILY_NAMES: Record<SingleFileFamily, string> = { v1: 'Stable Diffusion 1.x', v2: 'Stable Diffusion 2.x', xl_base: 'SDXL base' };
/** The image size each family's standard config was trained at (its UNet sample_size × 8; a test holds it to standard_configs/), for the extension, which reads no model configs. */
export const SINGLE_FILE_FAMILY_RESOLUTION: Record<SingleFileFamily, number> = { v1: 512, v2: 768, xl_base: 1024 };
export type SingleFileComponent = 'unet' | 'vae' | 'text_encoder' | 'text_encoder_2';

export class SingleFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SingleFileError';
  }
}

/** diffusers' CHECKPOINT_KEY_NAMES, for the families (and the look-alikes refused) here. */
export const CHECKPOINT_KEYS = {
  v2: 'model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight',
  xl_base: 'conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias',
  xl_refiner: 'conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias',
  inpainting: 'model.diffusion_model.input_blocks.0.0.weight',
  upscale: 'model.diffusion_model.input_blocks.10.0.skip_connection.bias',
  playground: 'edm_mean',
} as const;

const SDXL_TEXT_ENCODER_2_KEY = 'conditioner.embedders.1.model.ln_final.weight';
const SDXL_ADD_EMBEDDING_KEY = 'model.diffusion_model.label_emb.0.0.weight';

export const UNET_PREFIX = 'model.diffusion_model.';
export const VAE_PREFIX = 'first_stage_model.';

/** Where each component's tensors live in a file of each family, and which text-encoder naming they use. */
export const COMPONENT_PREFIXES: Record<SingleFileFamily, Partial<Record<SingleFileComponent, { prefix: string; naming: 'ldm' | 'clip' | 'open_clip' }>>> = {
  v1: { unet: { prefix: UNET_PREFIX, naming: 'ldm' }, vae: { prefix: VAE_PREFIX, naming: 'ldm' }, text_encoder: { prefix: 'cond_stage_model.transformer.text_model.', naming: 'clip' } },
  v2: { unet: { prefix: UNET_PREFIX, naming: 'ldm' }, vae: { prefix: VAE_PREFIX, naming: 'ldm' }, text_encoder: { prefix: 'cond_stage_model.model.', naming: 'open_clip' } },
  xl_base: {
    unet: { prefix: UNET_PREFIX, naming: 'ldm' },
    vae: { prefix: VAE_PREFIX, naming: 'ldm' },
    text_encoder: { prefix: 'conditioner.embedders.0.transformer.text_model.', naming: 'clip' },
    text_encoder_2: { prefix: 'conditioner.embedders.1.model.', naming: 'open_clip' },
  },
};

export interface FamilyVerdict {
  readonly family: SingleFileFamily;
  /** The keys (and shapes) that decided it, for `inspect` and error messages. */
  readonly because: string;
}

const shapeOf = (tensors: ReadonlyMap<string, Pick<TensorInfo, 'shape'>>, key: string) => tensors.get(key)?.shape;

/**
 * The family of a whole checkpoint, or an error saying what the file is instead (a UNet or VAE alone, a
 * LoRA, an inpainting/refiner/upscaler model, or something unknown, naming the keys that decided it).
 */
export function inferFamily(tensors: ReadonlyMap<string, Pick<TensorInfo, 'shape'>>, source: string): FamilyVerdict {
  const names = [...tensors.keys()];
  const has = (k: string) => tensors.has(k);
  const count = (p: string) => names.filter((n) => n.startsWith(p)).length;
  const fail = (what: string): never => {
    throw new SingleFileError(`${source}: ${what}`);
  };
  const lora = names.find((n) => /(^lora_(unet|te\d?)_|\.lora_(down|up|A|B)\.weight$|\.lora\.(down|up)\.weight$|^lycoris_)/.test(n));
  if (lora) fail(`this is a LoRA file (key "${lora}"), not a base model. Use it as a LoRA (\`--lora\`, a notebook cell's lora list), and name the base model it was trained for in pretrained_model_name_or_path.`);
  const unetKeys = count(UNET_PREFIX);
  if (unetKeys === 0) {
    if (names.some((n) => n.startsWith('down_blocks.') || n.startsWith('conv_in.'))) fail('this is a diffusers UNet alone (keys like "down_blocks.…", no "model.diffusion_model.…"), not a whole checkpoint. Name its diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) or a single-file checkpoint.');
    if (names.some((n) => /^(first_stage_model\.|vae\.)?(encoder\.down\.|decoder\.up\.|encoder\.down_blocks\.|decoder\.up_blocks\.)/.test(n))) fail('this is a VAE alone (encoder/decoder keys, no "model.diffusion_model.…" UNet), not a whole checkpoint. Name a whole checkpoint or a diffusers pipeline folder.');
    fail(`not a Stable Diffusion checkpoint: no "model.diffusion_model.…" (UNet) keys; its first keys are ${names.slice(0, 3).map((n) => `"${n}"`).join(', ') || '(none: the file holds no tensors)'}.`);
  }
  if (count(VAE_PREFIX) === 0 && !names.some((n) => n.startsWith('conditioner.') || n.startsWith('cond_stage_model.'))) {
    fail('this holds a UNet alone ("model.diffusion_model.…" but no "first_stage_model.…" VAE and no text encoder), not a whole checkpoint.');
  }
  const inpaint = shapeOf(tensors, CHECKPOINT_KEYS.inpainting);
  if (inpaint?.length === 4 && inpaint[1] !== 4) fail(`an inpainting or other image-conditioned model ("${CHECKPOINT_KEYS.inpainting}" takes ${inpaint[1]} input channels, not 4); only text-to-image models are supported.`);
  const toK = shapeOf(tensors, CHECKPOINT_KEYS.v2);
  if (toK && toK[toK.length - 1] === 1024) return { family: 'v2', because: `"${CHECKPOINT_KEYS.v2}" has ${toK[toK.length - 1]} context channels (OpenCLIP ViT-H)` };
  if (has(CHECKPOINT_KEYS.playground)) fail(`a Playground v2.5 model ("${CHECKPOINT_KEYS.playground}"), which is not supported.`);
  if (has(CHECKPOINT_KEYS.xl_base)) return { family: 'xl_base', because: `"${CHECKPOINT_KEYS.xl_base}" (second text encoder, OpenCLIP ViT-bigG)` };
  // diffusers' key names layer 9 of the second encoder; a smaller SDXL-layout model (fewer layers) is told by the same parts.
  if (has(SDXL_TEXT_ENCODER_2_KEY) && has(SDXL_ADD_EMBEDDING_KEY)) return { family: 'xl_base', because: `"${SDXL_TEXT_ENCODER_2_KEY}" (second text encoder) and "${SDXL_ADD_EMBEDDING_KEY}" (added conditioning)` };
  if (has(CHECKPOINT_KEYS.xl_refiner)) fail(`an SDXL refiner ("${CHECKPOINT_KEYS.xl_refiner}"), which is not supported: use an SDXL base model.`);
  if (has(CHECKPOINT_KEYS.upscale)) fail(`an upscaler ("${CHECKPOINT_KEYS.upscale}"), which is not supported.`);
  if (has('cond_stage_model.transformer.text_model.embeddings.position_embedding.weight')) {
    return { family: 'v1', because: `"cond_stage_model.transformer.text_model.…" (CLIP ViT-L text encoder)${toK ? ` and "${CHECKPOINT_KEYS.v2}" with ${toK[toK.length - 1]} context channels` : ''}` };
  }
  const te = names.find((n) => n.startsWith('cond_stage_model.') || n.startsWith('conditioner.'));
  return fail(
    `a UNet in the LDM layout, but of no family this engine knows: it has neither "${CHECKPOINT_KEYS.v2}" with 1024 channels (SD 2.x), nor "${CHECKPOINT_KEYS.xl_base}" (SDXL), nor "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" (SD 1.x)` +
      (te ? `; its text encoder starts with "${te}"` : '; it holds no text encoder') +
      '.',
  );
}

/** Where a diffusers parameter is in an LDM file: a key, and how the stored tensor becomes the parameter. */
export interface LdmSource {
  readonly key: string;
  /** Rows [start, end) of a fused tensor (OpenCLIP's in_proj_weight/bias holds q, k and v). */
  readonly rows?: readonly [number, number];
  /** OpenCLIP's text_projection is stored [hidden, projection], the Linear weight is its transpose. */
  readonly transpose?: boolean;
  /** The VAE's mid-block attention q/k/v/proj_out are 1×1 convs [C, C, 1, 1] in LDM, linears in diffusers. */
  readonly squeeze?: boolean;
}

/** What the UNet key map needs of the model's config. */
export interface UNetLdmLayout {
  readonly layersPerBlock: readonly number[];
  /** Up block types in up order (CrossAttnUpBlock2D puts its upsampler at index 2, UpBlock2D at 1). */
  readonly upBlockTypes: readonly string[];
}

const RESNET_TO_LDM: Record<string, string> = { norm1: 'in_layers.0', conv1: 'in_layers.2', norm2: 'out_layers.0', conv2: 'out_layers.3', time_emb_proj: 'emb_layers.1', conv_shortcut: 'skip_connection' };
const UNET_TOP: Record<string, string> = {
  'time_embedding.linear_1': 'time_embed.0',
  'time_embedding.linear_2': 'time_embed.2',
  'add_embedding.linear_1': 'label_emb.0.0',
  'add_embedding.linear_2': 'label_emb.0.2',
  conv_in: 'input_blocks.0.0',
  conv_norm_out: 'out.0',
  conv_out: 'out.2',
};

/** The LDM name (without model.diffusion_model.) of a diffusers UNet parameter: convert_ldm_unet_checkpoint, inverted. */
export function unetLdmKey(name: string, layout: UNetLdmLayout): string {
  const resnet = (rest: string) => {
    const [layer, ...tail] = rest.split('.');
    const mapped = RESNET_TO_LDM[layer];
    if (!mapped) throw new Error(`internal: no LDM name for resnet parameter ${rest}`);
    return [mapped, ...tail].join('.');
  };
  const top = /^([a-z_]+\.linear_[12]|conv_in|conv_norm_out|conv_out)\.(weight|bias)$/.exec(name);
  if (top && UNET_TOP[top[1]]) return `${UNET_TOP[top[1]]}.${top[2]}`;
  const L = layout.layersPerBlock;
  const n = L.length;
  let m = /^down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.+)$/.exec(name);
  if (m) {
    const b = Number(m[1]);
    const j = Number(m[3]);
    const start = 1 + L.slice(0, b).reduce((a, l) => a + l + 1, 0);
    if (m[2] === 'resnets') return `input_blocks.${start + j}.0.${resnet(m[4])}`;
    if (m[2] === 'attentions') return `input_blocks.${start + j}.1.${m[4]}`;
    return `input_blocks.${start + L[b]}.0.op.${m[4].replace(/^conv\./, '')}`;
  }
  m = /^mid_block\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(name);
  if (m) return m[1] === 'resnets' ? `middle_block.${2 * Number(m[2])}.${resnet(m[3])}` : `middle_block.${2 * Number(m[2]) + 1}.${m[3]}`;
  m = /^up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)$/.exec(name);
  if (m) {
    const b = Number(m[1]);
    const j = Number(m[3]);
    const start = L.slice(n - b).reduce((a, l) => a + l + 1, 0);
    if (m[2] === 'resnets') return `output_blocks.${start + j}.0.${resnet(m[4])}`;
    if (m[2] === 'attentions') return `output_blocks.${start + j}.1.${m[4]}`;
    const at = layout.upBlockTypes[b] === 'CrossAttnUpBlock2D' ? 2 : 1;
    return `output_blocks.${start + L[n - 1 - b]}.${at}.${m[4]}`;
  }
  throw new Error(`internal: no LDM name for UNet parameter ${name}`);
}

const VAE_ATTENTION_TO_LDM: Record<string, string> = { group_norm: 'norm', to_q: 'q', to_k: 'k', to_v: 'v', 'to_out.0': 'proj_out' };

/** The LDM source (without first_stage_model.) of a diffusers AutoencoderKL parameter: convert_ldm_vae_checkpoint, inverted. */
export function vaeLdmSource(name: string, numBlocks: number): LdmSource {
  const resnet = (rest: string) => rest.replace(/^conv_shortcut\./, 'nin_shortcut.');
  let m = /^(encoder|decoder)\.conv_norm_out\.(.+)$/.exec(name);
  if (m) return { key: `${m[1]}.norm_out.${m[2]}` };
  m = /^encoder\.down_blocks\.(\d+)\.(resnets|downsamplers)\.(\d+)\.(.+)$/.exec(name);
  if (m) return { key: m[2] === 'resnets' ? `encoder.down.${m[1]}.block.${m[3]}.${resnet(m[4])}` : `encoder.down.${m[1]}.downsample.${m[4]}` };
  m = /^decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.+)$/.exec(name);
  if (m) {
    const level = numBlocks - 1 - Number(m[1]);
    return { key: m[2] === 'resnets' ? `decoder.up.${level}.block.${m[3]}.${resnet(m[4])}` : `decoder.up.${level}.upsample.${m[4]}` };
  }
  m = /^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)$/.exec(name);
  if (m) return { key: `${m[1]}.mid.block_${Number(m[2]) + 1}.${resnet(m[3])}` };
  m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(name);
  if (m) return { key: `${m[1]}.mid.attn_1.${VAE_ATTENTION_TO_LDM[m[2]]}.${m[3]}`, squeeze: m[2] !== 'group_norm' && m[3] === 'weight' };
  return { key: name }; // conv_in, conv_out, quant_conv, post_quant_conv keep their names
}

/** The LDM source (after the component prefix) of a CLIP text-model parameter stored under OpenCLIP names: convert_open_clip_checkpoint, inverted. */
export function openClipLdmSource(name: string, hiddenSize: number): LdmSource {
  if (name === 'embeddings.position_embedding.weight') return { key: 'positional_embedding' };
  if (name === 'embeddings.token_embedding.weight') return { key: 'token_embedding.weight' };
  if (name === 'text_projection.weight') return { key: 'text_projection', transpose: true };
  let m = /^final_layer_norm\.(weight|bias)$/.exec(name);
  if (m) return { key: `ln_final.${m[1]}` };
  m = /^encoder\.layers\.(\d+)\.(.+)$/.exec(name);
  if (m) {
    const block = `transformer.resblocks.${m[1]}`;
    const rest = m[2];
    const qkv = /^self_attn\.([qkv])_proj\.(weight|bias)$/.exec(rest);
    if (qkv) {
      const i = 'qkv'.indexOf(qkv[1]);
      return { key: `${block}.attn.in_proj_${qkv[2]}`, rows: [i * hiddenSize, (i + 1) * hiddenSize] };
    }
    const mapped = rest.replace(/^self_attn\./, 'attn.').replace(/^layer_norm1\./, 'ln_1.').replace(/^layer_norm2\./, 'ln_2.').replace(/^mlp\.fc1\./, 'mlp.c_fc.').replace(/^mlp\.fc2\./, 'mlp.c_proj.');
    return { key: `${block}.${mapped}` };
  }
  throw new Error(`internal: no OpenCLIP name for text encoder parameter ${name}`);
}

/**
 * Keys of a component's part of the file that diffusers' converters drop on purpose: SD 2.x keeps 23 of
 * OpenCLIP's 24 layers (it conditions on the penultimate one) and has no use for its text_projection;
 * the CLIP position_ids buffer; OpenCLIP's logit_scale and attention-mask buffers.
 */
export function isIgnoredLdmKey(key: string): boolean {
  return /(^|\.)(position_ids|logit_scale|attn_mask)$/.test(key);
}

export interface SingleFileSummary {
  readonly family: SingleFileFamily;
  readonly because: string;
  /** Tensors per component prefix, and the rest (e.g. the LDM schedule buffers). */
  readonly components: Record<string, number>;
  readonly dtypes: string[];
}

/** Opens a file's header only and tells what it holds (inspect, config checks). */
export function describeSingleFile(file: string): SingleFileSummary {
  const f = SafetensorsFile.open(file);
  try {
    const { family, because } = inferFamily(f.tensors, file);
    const components: Record<string, number> = {};
    const prefixes = COMPONENT_PREFIXES[family];
    for (const name of f.tensors.keys()) {
      const c = (Object.keys(prefixes) as SingleFileComponent[]).find((k) => name.startsWith(prefixes[k]!.prefix)) ?? 'other';
      components[c] = (components[c] ?? 0) + 1;
    }
    return { family, because, components, dtypes: [...new Set([...f.tensors.values()].map((t) => t.dtype))].sort() };
  } finally {
    f.close();
  }
}
