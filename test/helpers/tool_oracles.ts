// Other tools' LoRA key acceptance, restated from their sources and applied with a model's real module list:
// each oracle returns the keys of a file the tool would not use. Used by tool_acceptance.test.ts and
// network_runs.test.ts.
//
// Rules restated (the sources read, and what each does with a file's keys):
//
// ComfyUI comfy/lora.py, model_lora_keys_unet: for every UNet state-dict key `diffusion_model.<SGM>.weight`:
//   key_map["lora_unet_<SGM with _>"], key_map["diffusion_model.<SGM>"]; for every diffusers key of
//   comfy.utils.unet_to_diffusers (diffusers name → SGM name): key_map["lora_unet_<diffusers with _>"], and for
//   p in ["", "unet."]: key_map[p + <diffusers name with ".to_" → ".processor.to_", a final ".to_out.0" → ".to_out">].
// ComfyUI comfy/lora.py, model_lora_keys_clip: key_map["text_encoders.<clip key>"] for every weight; for each
//   layer b and c in LORA_CLIP_MAP (mlp.fc1, mlp.fc2, self_attn.{q,k,v,out}_proj): clip_l → "lora_te_text_model_
//   encoder_layers_{b}_{c_}", "lora_te1_…", "text_encoder.text_model.encoder.layers.{b}.{c}"; clip_g (with clip_l
//   present) → "lora_te2_…", "text_encoder_2.text_model.encoder.layers.{b}.{c}".
// ComfyUI comfy/lora.py, load_lora: for each x in key_map, uses "{x}.alpha", "{x}.dora_scale" and the first pair
//   present of "{x}.lora_up/.lora_down.weight", "{x}_lora.up/down.weight", "{x}.lora_B/.lora_A.weight",
//   "{x}.lora.up/down.weight", "{x}.lora_linear_layer.up/down.weight"; every other key: "lora key not loaded".
// A1111 extensions-builtin/Lora/networks.py, load_network: key.split(".", 1) → (layer name, part); layer name →
//   convert_diffusers_name_to_compvis (restated in a1111Convert below); looked up in network_layer_mapping (every
//   named module of the LDM model with "." → "_": "diffusion_model_<SGM>", SD1 "transformer_text_model_…", SDXL
//   "0_transformer_text_model_…" and OpenCLIP "1_model_transformer_resblocks_{b}_attn" …); if missing, re_x_proj
//   "(.*)_([qkv]_proj)$" retries without the projection; then "lora_unet" → "diffusion_model", and
//   "lora_te1_text_model" → "0_transformer_text_model" (else "transformer_text_model"). Unmatched keys are
//   skipped ("Failed to match keys"). network_lora.py uses parts lora_up.weight, lora_down.weight, alpha (and
//   lora_mid); DoRA's dora_scale in newer versions.
// sd-scripts networks/lora.py, create_network_from_weights + LoRANetwork.create_modules: modules_dim from keys
//   containing "lora_down"; modules are created for every Linear/Conv2d child of a Transformer2DModel,
//   ResnetBlock2D, Downsample2D, Upsample2D (UNet; "lora_unet_" + module path with "_") and of a CLIPAttention /
//   CLIPMLP (text encoders; "lora_te_", SDXL "lora_te1_"/"lora_te2_"); the SDXL UNet's module paths are SGM's
//   (library/sdxl_original_unet.py). load_state_dict(strict=False): lora_down.weight, lora_up.weight and alpha
//   of those modules are used; anything else is unexpected.
import assert from 'node:assert/strict';
import { SafetensorsFile } from '../../src/core/io/safetensors.js';
import type { StableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { loraTargetsOf } from '../../src/core/pipeline/loras.js';
import { ldmUnetPaths } from '../../src/core/lora/formats.js';
import { toolSupport } from '../../src/core/lora/tool_support.js';

const us = (s: string) => s.replace(/\./g, '_');

/** What one tool's rule leaves over: keys it does not use. */
export type Oracle = (keys: readonly string[]) => string[];

export interface ModelNames {
  readonly sdxl: boolean;
  /** diffusers UNet module path → SGM path, every Linear/Conv2d. */
  readonly unet: Map<string, string>;
  /** text-encoder layer paths (relative to text_model), per encoder. */
  readonly te: string[];
  readonly te2: string[];
}

export function namesOf(sd: StableDiffusion): ModelNames {
  const t = loraTargetsOf(sd);
  return { sdxl: !!sd.textEncoder2, unet: ldmUnetPaths(t.unet.map((x) => x.path)), te: (t.text_encoder ?? []).map((x) => x.path), te2: (t.text_encoder_2 ?? []).map((x) => x.path) };
}

export const CLIP_MAP = ['mlp.fc1', 'mlp.fc2', 'self_attn.k_proj', 'self_attn.q_proj', 'self_attn.v_proj', 'self_attn.out_proj'];
export const clipLayers = (paths: string[]) => paths.map((p) => /^encoder\.layers\.(\d+)\.(.+)$/.exec(p)).filter((m): m is RegExpExecArray => !!m && CLIP_MAP.includes(m[2]));

export function comfyOracle(m: ModelNames): Oracle {
  const keyMap = new Set<string>();
  for (const [diffusers, sgm] of m.unet) {
    keyMap.add(`lora_unet_${us(sgm)}`);
    keyMap.add(`diffusion_model.${sgm}`);
    keyMap.add(`lora_unet_${us(diffusers)}`);
    for (const p of ['', 'unet.']) {
      let k = p + diffusers.replace(/\.to_/g, '.processor.to_');
      if (k.endsWith('.to_out.0')) k = k.slice(0, -2);
      keyMap.add(k);
    }
  }
  const clip = (paths: string[], name: 'clip_l' | 'clip_g') => {
    for (const p of paths) keyMap.add(`text_encoders.${name}.transformer.text_model.${p}`);
    for (const [, b, c] of clipLayers(paths)) {
      if (name === 'clip_l') {
        keyMap.add(`lora_te_text_model_encoder_layers_${b}_${us(c)}`);
        keyMap.add(`lora_te1_text_model_encoder_layers_${b}_${us(c)}`);
        keyMap.add(`text_encoder.text_model.encoder.layers.${b}.${c}`);
      } else {
        keyMap.add(`lora_te2_text_model_encoder_layers_${b}_${us(c)}`);
        keyMap.add(`text_encoder_2.text_model.encoder.layers.${b}.${c}`);
      }
    }
  };
  clip(m.te, 'clip_l');
  if (m.sdxl) clip(m.te2, 'clip_g');
  const pairs = [['.lora_up.weight', '.lora_down.weight'], ['_lora.up.weight', '_lora.down.weight'], ['.lora_B.weight', '.lora_A.weight'], ['.lora.up.weight', '.lora.down.weight'], ['.lora_linear_layer.up.weight', '.lora_linear_layer.down.weight']];
  return (keys) => {
    const file = new Set(keys);
    const loaded = new Set<string>();
    for (const x of keyMap) {
      for (const extra of ['.alpha', '.dora_scale']) if (file.has(x + extra)) loaded.add(x + extra);
      const pair = pairs.find(([up]) => file.has(x + up));
      if (pair) for (const s of pair) loaded.add(x + s);
    }
    return keys.filter((k) => !loaded.has(k));
  };
}

/** A1111's convert_diffusers_name_to_compvis (networks.py), restated. */
export function a1111Convert(key: string, isSd2: boolean): string {
  const resnet: Record<string, string> = { conv1: 'in_layers_2', conv2: 'out_layers_3', time_emb_proj: 'emb_layers_1', conv_shortcut: 'skip_connection' };
  const suffix = (kind: string, s: string) => (kind === 'resnets' ? (resnet[s] ?? s) : s);
  let r: RegExpExecArray | null;
  if ((r = /^lora_unet_conv_in(.*)$/.exec(key))) return `diffusion_model_input_blocks_0_0${r[1]}`;
  if ((r = /^lora_unet_conv_out(.*)$/.exec(key))) return `diffusion_model_out_2${r[1]}`;
  if ((r = /^lora_unet_time_embedding_linear_(\d+)(.*)$/.exec(key))) return `diffusion_model_time_embed_${Number(r[1]) * 2 - 2}${r[2]}`;
  if ((r = /^lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)$/.exec(key))) return `diffusion_model_input_blocks_${1 + Number(r[1]) * 3 + Number(r[3])}_${r[2] === 'attentions' ? 1 : 0}_${suffix(r[2], r[4])}`;
  if ((r = /^lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)$/.exec(key))) return `diffusion_model_middle_block_${r[1] === 'attentions' ? 1 : Number(r[2]) * 2}_${suffix(r[1], r[3])}`;
  if ((r = /^lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)$/.exec(key))) return `diffusion_model_output_blocks_${Number(r[1]) * 3 + Number(r[3])}_${r[2] === 'attentions' ? 1 : 0}_${suffix(r[2], r[4])}`;
  if ((r = /^lora_unet_down_blocks_(\d+)_downsamplers_0_conv/.exec(key))) return `diffusion_model_input_blocks_${3 + Number(r[1]) * 3}_0_op`;
  if ((r = /^lora_unet_up_blocks_(\d+)_upsamplers_0_conv/.exec(key))) return `diffusion_model_output_blocks_${2 + Number(r[1]) * 3}_${Number(r[1]) > 0 ? 2 : 1}_conv`;
  if ((r = /^lora_te_text_model_encoder_layers_(\d+)_(.+)$/.exec(key))) {
    if (isSd2) throw new Error('SD 2 text encoders are not exercised here');
    return `transformer_text_model_encoder_layers_${r[1]}_${r[2]}`;
  }
  if ((r = /^lora_te2_text_model_encoder_layers_(\d+)_(.+)$/.exec(key))) {
    const c = r[2].includes('mlp_fc1') ? r[2].replace('mlp_fc1', 'mlp_c_fc') : r[2].includes('mlp_fc2') ? r[2].replace('mlp_fc2', 'mlp_c_proj') : r[2].replace('self_attn', 'attn');
    return `1_model_transformer_resblocks_${r[1]}_${c}`;
  }
  return key;
}

export function a1111Oracle(m: ModelNames): Oracle {
  // network_layer_mapping: the LDM model's named modules, "." → "_".
  const mapping = new Set<string>();
  for (const sgm of m.unet.values()) mapping.add(`diffusion_model_${us(sgm)}`);
  const te = (p: string) => `text_model_${us(p)}`;
  if (!m.sdxl) {
    for (const p of m.te) mapping.add(`transformer_${te(p)}`);
  } else {
    for (const p of m.te) mapping.add(`0_transformer_${te(p)}`);
    // OpenCLIP (FrozenOpenCLIPEmbedder2): resblocks.{b}.attn (MultiheadAttention) with attn.out_proj, mlp.c_fc, mlp.c_proj.
    for (const [, b] of clipLayers(m.te2)) for (const s of ['attn', 'attn_out_proj', 'mlp_c_fc', 'mlp_c_proj']) mapping.add(`1_model_transformer_resblocks_${b}_${s}`);
  }
  const parts = new Set(['lora_up.weight', 'lora_down.weight', 'alpha', 'dora_scale']);
  return (keys) =>
    keys.filter((k) => {
      const [name, part] = [k.slice(0, k.indexOf('.')), k.slice(k.indexOf('.') + 1)];
      let key = a1111Convert(name, false);
      let found = mapping.has(key);
      if (!found) {
        const x = /^(.*)_([qkv]_proj)$/.exec(key);
        if (x) found = mapping.has(x[1]);
      }
      if (!found && name.includes('lora_unet')) {
        key = name.replace('lora_unet', 'diffusion_model');
        found = mapping.has(key);
      } else if (!found && name.includes('lora_te1_text_model')) {
        found = mapping.has(name.replace('lora_te1_text_model', '0_transformer_text_model')) || mapping.has(name.replace('lora_te1_text_model', 'transformer_text_model'));
      }
      return !(found && parts.has(part));
    });
}

export function sdScriptsOracle(m: ModelNames): Oracle {
  const modules = new Set<string>();
  // UNet children of Transformer2DModel (attentions.<j>), ResnetBlock2D (resnets.<j>), Downsample2D, Upsample2D;
  // named by sd-scripts' own UNet: diffusers paths for SD 1.x/2.x (original_unet.py), SGM paths for SDXL.
  for (const [diffusers, sgm] of m.unet) {
    if (!/(^|\.)(attentions|resnets)\.\d+\.|\.(downsamplers|upsamplers)\.0\./.test(diffusers)) continue;
    modules.add(`lora_unet_${us(m.sdxl ? sgm : diffusers)}`);
  }
  const clip = (paths: string[], prefix: string) => {
    for (const [p] of clipLayers(paths)) modules.add(`${prefix}_text_model_${us(p)}`);
  };
  if (m.sdxl) {
    clip(m.te, 'lora_te1');
    clip(m.te2, 'lora_te2');
  } else clip(m.te, 'lora_te');
  return (keys) => {
    const withDown = new Set(keys.filter((k) => k.includes('lora_down')).map((k) => k.split('.')[0]));
    return keys.filter((k) => {
      const [name, ...rest] = k.split('.');
      return !(modules.has(name) && withDown.has(name) && ['lora_down.weight', 'lora_up.weight', 'alpha'].includes(rest.join('.')));
    });
  };
}

export const ORACLES = { ComfyUI: comfyOracle, A1111: a1111Oracle, 'sd-scripts': sdScriptsOracle } as const;

export function keysOf(file: string): string[] {
  const f = SafetensorsFile.open(file);
  try {
    return f.names();
  } finally {
    f.close();
  }
}

/** Checks the kohya file is fully used by every tool and inspect agrees; returns each oracle's leftovers of the diffusers file. */
export function judge(m: ModelNames, kohya: string, diffusers: string, label: string): Record<string, string[]> {
  const kKeys = keysOf(kohya);
  const verdicts = new Map(toolSupport(kKeys).map((v) => [v.tool, v]));
  for (const [tool, make] of Object.entries(ORACLES)) {
    const left = make(m)(kKeys);
    assert.deepEqual(left, [], `${label}: ${tool} leaves ${left.length} of ${kKeys.length} kohya keys unused, e.g. ${left.slice(0, 3).join(', ')}`);
    assert.equal(verdicts.get(tool as 'ComfyUI')!.loads, true, `${label}: inspect says ${tool} does not load the kohya file: ${JSON.stringify(verdicts.get(tool as 'ComfyUI')!.reasons)}`);
  }
  const dKeys = keysOf(diffusers);
  const dVerdicts = new Map(toolSupport(dKeys).map((v) => [v.tool, v]));
  assert.equal(dVerdicts.get('diffusers')!.loads, true, `${label}: inspect says diffusers does not load its own file`);
  const leftovers: Record<string, string[]> = {};
  for (const [tool, make] of Object.entries(ORACLES)) {
    leftovers[tool] = make(m)(dKeys);
    const v = dVerdicts.get(tool as 'ComfyUI')!;
    assert.equal(v.loads, leftovers[tool].length === 0, `${label}: inspect's ${tool} verdict on the diffusers file disagrees with ${tool}'s rule`);
    assert.equal(v.rejected, leftovers[tool].length, `${label}: inspect counts ${v.rejected} keys ${tool} leaves unused, its rule ${leftovers[tool].length}`);
  }
  return leftovers;
}
