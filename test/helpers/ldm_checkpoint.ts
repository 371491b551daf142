// Writes a single-file (LDM / SGM layout) checkpoint from a diffusers folder, by the loader's own key map
// run backwards (ldmSources): fused OpenCLIP q/k/v rows are concatenated again, text_projection transposed
// back, the VAE's mid-block attention linears stored as 1×1 convs. The tests make SD 2.x and SDXL files this
// way and check the round trip key by key; the SD 1.x map is also checked against diffusers' own (MANIFEST).
import path from 'node:path';
import { readAllFloat32, writeSafetensors, type TensorToWrite } from '../../src/core/io/safetensors.js';
import { readJson } from '../../src/core/io/diffusers_folder.js';
import type { SingleFileComponent, SingleFileFamily } from '../../src/core/io/single_file.js';
import { ldmSources } from '../../src/core/models/from_single_file.js';
import { UNet2DConditionModel } from '../../src/core/models/unet_2d_condition.js';
import { AutoencoderKL } from '../../src/core/models/autoencoder_kl.js';
import { CLIPTextModel } from '../../src/core/models/clip_text_model.js';
import { CLIPTextModelWithProjection } from '../../src/core/models/clip_text_model_with_projection.js';

const SHAPES: Record<SingleFileComponent, (c: Record<string, unknown>) => Map<string, number[]>> = {
  unet: (c) => UNet2DConditionModel.expectedParamShapes(c),
  vae: (c) => AutoencoderKL.expectedParamShapes(c),
  text_encoder: (c) => CLIPTextModel.expectedParamShapes(c),
  text_encoder_2: (c) => CLIPTextModelWithProjection.expectedParamShapes(c),
};

const WEIGHT_FILES: Record<SingleFileComponent, string> = {
  unet: 'diffusion_pytorch_model.safetensors',
  vae: 'diffusion_pytorch_model.safetensors',
  text_encoder: 'model.safetensors',
  text_encoder_2: 'model.safetensors',
};

/** The LDM tensors of one component of a diffusers folder; `ldmToDiffusers` records which diffusers name each key came from. */
export function ldmTensors(folder: string, family: SingleFileFamily, component: SingleFileComponent, ldmToDiffusers?: Map<string, string>): Map<string, TensorToWrite> {
  const config = readJson(path.join(folder, component, 'config.json')) as Record<string, unknown>;
  const { tensors } = readAllFloat32(path.join(folder, component, WEIGHT_FILES[component]));
  const get = (name: string) => tensors.get(name) ?? tensors.get(`text_model.${name}`);
  const source = ldmSources(family, component, config);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, shape] of SHAPES[component](config)) {
    const t = get(name);
    if (!t) throw new Error(`${folder}/${component}: no ${name}`);
    const s = source(name);
    ldmToDiffusers?.set(s.key, `${component}.${name}`);
    if (s.rows) {
      const cols = shape.slice(1).reduce((a, b) => a * b, 1);
      const fused = out.get(s.key) ?? { shape: [3 * shape[0], ...shape.slice(1)], data: new Float32Array(3 * shape[0] * cols) };
      fused.data.set(t.data, s.rows[0] * cols);
      out.set(s.key, fused);
    } else if (s.transpose) {
      const [r, c] = shape;
      const data = new Float32Array(r * c);
      for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) data[j * r + i] = t.data[i * c + j];
      out.set(s.key, { shape: [c, r], data });
    } else {
      out.set(s.key, { shape: s.squeeze ? [...shape, 1, 1] : [...shape], data: t.data });
    }
  }
  return out;
}

/** Writes `file` holding `components` of `folder` in `family`'s layout, plus `extra` tensors (e.g. keys converters drop). */
export function writeLdmCheckpoint(folder: string, family: SingleFileFamily, components: readonly SingleFileComponent[], file: string, extra: Record<string, TensorToWrite> = {}, ldmToDiffusers?: Map<string, string>): void {
  const all = new Map<string, TensorToWrite>();
  for (const c of components) for (const [k, v] of ldmTensors(folder, family, c, ldmToDiffusers)) all.set(k, v);
  for (const [k, v] of Object.entries(extra)) all.set(k, v);
  writeSafetensors(file, all);
}
