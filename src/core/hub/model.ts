// A Stable Diffusion pipeline by Hub id (`runwayml/stable-diffusion-v1-5`): only the files LoRA Studio
// reads — model_index.json, and in unet/, vae/, text_encoder/, tokenizer/, scheduler/ the configs, the
// tokenizer files and the chosen variant's .safetensors (never .bin/.ckpt, never the safety checker).
// Variant choice is the loader's (core/io/diffusers_folder.ts findWeights): `fp16` prefers
// `*.fp16.safetensors`, none prefers the plain files, and either falls back to what is there.
import fs from 'node:fs';
import path from 'node:path';
import { snapshotDownload, type DownloadProgress, type RepoFile, type Snapshot } from './download.js';
import type { Variant } from '../io/diffusers_folder.js';
import { isHubId } from '../config/hub_cache.js';

/** The pipeline components training and generation load. */
export const PIPELINE_COMPONENTS = ['unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler'] as const;
const WEIGHT_COMPONENTS = new Set(['unet', 'vae', 'text_encoder']);

export interface ModelDownloadOptions {
  revision?: string | null;
  variant?: Variant | null;
  cacheDir?: string | null;
  token?: string | null;
  onProgress?: (p: DownloadProgress) => void;
  onNotice?: (message: string) => void;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

/** The local snapshot folder of a Hub model (downloaded into the cache when needed). */
export function downloadModel(id: string, o: ModelDownloadOptions = {}): Promise<Snapshot> {
  return snapshotDownload({
    type: 'model',
    id,
    revision: o.revision,
    cacheDir: o.cacheDir,
    token: o.token,
    select: (files) => selectModelFiles(files, o.variant ?? undefined),
    missing: (dir) => missingModelFiles(dir, o.variant ?? undefined),
    onProgress: o.onProgress,
    onNotice: o.onNotice,
    signal: o.signal,
    env: o.env,
  });
}

export interface ResolvedModel {
  /** The local folder (or single file) to load. */
  dir: string;
  /** Set when the name was a Hub id: its cached snapshot. */
  hub?: Snapshot;
}

/**
 * What a model name means, wherever a model is named (run configs, `generate --model`, notebook cells, the
 * extension's pickers through the worker or the CLI): a path (relative to `baseDir`) when it is one, else a
 * Hub id whose snapshot is taken from the Hugging Face cache, downloaded first when the cache lacks it
 * (HF_HUB_OFFLINE: the cache only). The one place that rule is applied.
 */
export async function resolveModel(nameOrPath: string, baseDir: string, o: ModelDownloadOptions = {}): Promise<ResolvedModel> {
  if (path.isAbsolute(nameOrPath) || !isHubId(nameOrPath, baseDir)) return { dir: path.resolve(baseDir, nameOrPath) };
  const hub = await downloadModel(nameOrPath, o);
  return { dir: hub.dir, hub };
}

export function selectModelFiles(files: readonly RepoFile[], variant: Variant | undefined): string[] {
  const out = files.some((f) => f.path === 'model_index.json') ? ['model_index.json'] : [];
  for (const comp of PIPELINE_COMPONENTS) {
    const inside = files.map((f) => f.path).filter((p) => p.startsWith(`${comp}/`) && !p.slice(comp.length + 1).includes('/'));
    out.push(...inside.filter((p) => /\.(json|txt)$/.test(p)));
    out.push(...chooseWeights(inside, variant));
  }
  return out;
}

function chooseWeights(names: readonly string[], variant: Variant | undefined): string[] {
  const isFp16 = (f: string) => /\.fp16\.safetensors$/.test(f);
  const st = names.filter((f) => f.endsWith('.safetensors'));
  const preferred = st.filter((f) => (variant === 'fp16' ? isFp16(f) : !isFp16(f)));
  return preferred.length ? preferred : st;
}

/** What a cached snapshot lacks for training: model_index.json, each component's config and weights. */
export function missingModelFiles(dir: string, variant: Variant | undefined): string[] {
  if (!fs.existsSync(path.join(dir, 'model_index.json'))) return ['model_index.json'];
  const missing: string[] = [];
  for (const comp of PIPELINE_COMPONENTS) {
    const d = path.join(dir, comp);
    const has = (f: string) => fs.existsSync(path.join(d, f));
    const names = fs.existsSync(d) ? fs.readdirSync(d) : [];
    if (comp === 'scheduler' && !has('scheduler_config.json')) missing.push('scheduler/scheduler_config.json');
    if (comp === 'tokenizer' && !has('tokenizer.json') && !(has('vocab.json') && has('merges.txt'))) missing.push('tokenizer/vocab.json + merges.txt (or tokenizer.json)');
    if (WEIGHT_COMPONENTS.has(comp)) {
      if (!has('config.json')) missing.push(`${comp}/config.json`);
      if (!chooseWeights(names, variant).length) missing.push(`${comp}/*${variant === 'fp16' ? '.fp16' : ''}.safetensors`);
    }
  }
  return missing;
}
