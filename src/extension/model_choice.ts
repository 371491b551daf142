// What the base-model pickers (Generate Image, New Run Config) offer and accept, without `vscode` so tests
// can call it: the workspace's diffusers folders, the Hub models already in the Hugging Face cache, and a
// typed path or Hub id. A Hub id is passed on as it is: the trainer, `generate` and the notebook worker take
// it from the cache or download it (core/hub/model.ts resolveModel, the one place that rule is applied).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cachedHubModels, hasHubIdShape, hubCacheDir, isHubId } from '../core/config/hub_cache.js';
import { modelSource } from '../core/config/model_source.js';

export interface ModelChoice {
  label: string;
  description: string;
  /** What the run config, `--model` or the cell is given: an absolute path or a Hub id. */
  model: string;
}

/** The workspace's models (pipeline folders and single-file checkpoints: workspace.ts findModels), then the Hub models in the cache. */
export function modelChoices(folders: readonly string[], root: string | undefined, env: NodeJS.ProcessEnv = process.env): ModelChoice[] {
  const local = [...new Set(folders)].sort().map((dir) => ({ label: root ? path.relative(root, dir) || '.' : dir, description: dir, model: dir }));
  const cache = hubCacheDir(null, env);
  const hub = cachedHubModels(null, env).map(({ id }) => ({ label: `$(cloud) ${id}`, description: `Hugging Face Hub, in the cache ${cache}`, model: id }));
  return [...local, ...hub];
}

/** A pick-or-type quick pick's answer: a row of the list, or the text typed into it. */
export type PickOrTyped<T> = { pick: T } | { typed: string };

/**
 * What Enter answers in a quick pick that also takes a typed path or Hub id: the highlighted row, unless text is
 * typed and the highlighted row is only a Browse… one — then the typed text, not a dialog. Nothing when there is
 * neither (Enter on an empty list).
 */
export function acceptedAnswer<T extends { label: string }>(highlighted: T | undefined, value: string, browseLabels: readonly string[]): PickOrTyped<T> | undefined {
  const typed = value.trim();
  if (highlighted && (!typed || !browseLabels.includes(highlighted.label))) return { pick: highlighted };
  return typed ? { typed } : undefined;
}

/** A folder typed into a picker: `~` is home, a relative path starts at the workspace folder. */
export function typedFolder(typed: string, root: string | undefined): string {
  const t = typed.replace(/^["']|["']$/g, '');
  if (t === '~' || t.startsWith('~/')) return path.join(os.homedir(), t.slice(1));
  return path.resolve(root ?? process.cwd(), t);
}

/** A model typed into a picker: a Hub id (`org/name`, no such path in the workspace), a pipeline folder or a single-file checkpoint; else why not. */
export function typedModel(typed: string, root: string | undefined): { model: string } | { problem: string } {
  const t = typed.trim().replace(/^["']|["']$/g, '');
  if (hasHubIdShape(t) && isHubId(t, root ?? process.cwd())) return { model: t };
  const dir = typedFolder(t, root);
  const source = modelSource(dir);
  if (source.kind !== 'problem') return { model: dir };
  if (fs.existsSync(dir)) return { problem: `${source.message.replace(/\.$/, '')}, or type a Hugging Face Hub id such as runwayml/stable-diffusion-v1-5.` };
  return { problem: `${dir} does not exist. Type a diffusers pipeline folder, a single-file .safetensors checkpoint, or a Hugging Face Hub id such as runwayml/stable-diffusion-v1-5 (downloaded into the Hugging Face cache when first used).` };
}

/** The model a run config names, for Generate Image: its Hub id as it is, a path against the config's folder. */
export function configModel(value: string, configDir: string): string {
  return isHubId(value, configDir) ? value : path.resolve(configDir, value);
}
