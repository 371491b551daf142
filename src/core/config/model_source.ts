// What a path named as the base model is: a diffusers pipeline folder, a single-file checkpoint (SD 1.x,
// 2.x, SDXL base; family told from its header), or neither — with the message saying why and the fix.
// The one test the run-config disk checks, the notebook worker, the language server and the extension's
// model pickers share (Hub ids are resolved to a cache folder before this). Light: headers only.
import fs from 'node:fs';
import path from 'node:path';
import { SINGLE_FILE_FAMILY_NAMES, SINGLE_FILE_FAMILY_RESOLUTION, SINGLE_FILE_NAME, describeSingleFile, type SingleFileFamily } from '../io/single_file.js';

export type ModelSource =
  | { readonly kind: 'folder'; readonly path: string }
  | { readonly kind: 'single-file'; readonly path: string; readonly family: SingleFileFamily; readonly label: string; /** The family's native image size. */ readonly resolution: number }
  | { readonly kind: 'problem'; readonly path: string; readonly message: string };

const PICKLE = /\.(ckpt|pt|pth|bin)$/i;

/** The base model at `p` (an absolute or already-resolved path). */
export function modelSource(p: string): ModelSource {
  const problem = (message: string): ModelSource => ({ kind: 'problem', path: p, message });
  if (!fs.existsSync(p)) return problem(SINGLE_FILE_NAME.test(p) ? `file not found: ${p}` : `folder not found: ${p}`);
  if (fs.statSync(p).isDirectory()) {
    if (fs.existsSync(path.join(p, 'model_index.json'))) return { kind: 'folder', path: p };
    return problem(`${p} has no model_index.json: it is not a diffusers pipeline folder. Name the folder that holds model_index.json, unet/, vae/, text_encoder/, tokenizer/ and scheduler/, or a single-file .safetensors checkpoint.`);
  }
  if (PICKLE.test(p)) return problem(`${p} is a pickle file, which is never loaded: convert it to .safetensors, or use the model's diffusers folder`);
  if (!/\.safetensors$/i.test(p)) return problem(`${p} is a file, not a folder — point to the diffusers folder that holds model_index.json, or a single-file .safetensors checkpoint`);
  try {
    const { family } = describeSingleFile(p);
    return { kind: 'single-file', path: p, family, label: `single-file ${SINGLE_FILE_FAMILY_NAMES[family]} checkpoint`, resolution: SINGLE_FILE_FAMILY_RESOLUTION[family] };
  } catch (e) {
    return problem((e as Error).message);
  }
}
