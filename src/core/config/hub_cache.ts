// The Hugging Face Hub facts that the config checks, the downloader and the uploader share: what a Hub id
// looks like, where the Hub is (HF_ENDPOINT), whether it may be contacted (HF_HUB_OFFLINE), the token
// (hub_token, HF_TOKEN, the token file `huggingface-cli login` writes) and the standard cache layout that
// huggingface_hub, diffusers and `huggingface-cli` read and write:
//
//   <cache>/models--<org>--<name>/blobs/<etag>                 file contents, named by their etag
//          /models--<org>--<name>/snapshots/<commit>/<path>     relative symlinks into blobs/
//          /models--<org>--<name>/refs/<revision>               the commit a branch or tag pointed to
//
// with <cache> = cache_dir, else $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
// else ~/.cache/huggingface/hub. Light (fs and path only) so the language server can use it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileRefusedError, READ_LIMITS, readRegularText } from '../io/safe_read.js';

export type HubRepoType = 'model' | 'dataset';

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';
export const DEFAULT_REVISION = 'main';

/** `org/name` as the Hub spells repository ids (a bare `name` is a local folder here). */
export function hasHubIdShape(value: string): boolean {
  return /^[\w][\w.-]*\/[\w][\w.-]*$/.test(value) && !value.includes('..');
}

/** A Hub id when it has the shape and no file or folder of that name exists (diffusers' own rule). */
export function isHubId(value: string, baseDir: string): boolean {
  return hasHubIdShape(value) && !fs.existsSync(path.resolve(baseDir, value));
}

export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT || DEFAULT_HUB_ENDPOINT).replace(/\/+$/, '');
}

/** HF_HUB_OFFLINE=1 (also true/yes/on, as huggingface_hub reads it): use the cache only. */
export function hubOffline(env: NodeJS.ProcessEnv = process.env): boolean {
  return /^(1|true|yes|on)$/i.test(env.HF_HUB_OFFLINE ?? '');
}

function hfHome(env: NodeJS.ProcessEnv): string {
  return env.HF_HOME || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'huggingface');
}

/** The hub cache folder: `cache_dir` (absolute), else the environment's. */
export function hubCacheDir(cacheDir?: string | null, env: NodeJS.ProcessEnv = process.env): string {
  return cacheDir || env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE || path.join(hfHome(env), 'hub');
}

/** The token file `huggingface-cli login` (and `hf auth login`) writes. */
export function hubTokenFile(env: NodeJS.ProcessEnv = process.env): string {
  return env.HF_TOKEN_PATH || path.join(hfHome(env), 'token');
}

export interface HubToken {
  token: string;
  /** Where it came from, for messages (never the token itself). */
  source: string;
}

/**
 * hub_token, else $HF_TOKEN (or the older $HUGGING_FACE_HUB_TOKEN), else the token file; undefined when none.
 * A token file that is not a regular file (a folder, /dev/zero) or is over READ_LIMITS.hubText is refused, naming it.
 */
export function hubToken(explicit?: string | null, env: NodeJS.ProcessEnv = process.env): HubToken | undefined {
  if (explicit) return { token: explicit, source: 'hub_token' };
  if (env.HF_TOKEN) return { token: env.HF_TOKEN, source: '$HF_TOKEN' };
  if (env.HUGGING_FACE_HUB_TOKEN) return { token: env.HUGGING_FACE_HUB_TOKEN, source: '$HUGGING_FACE_HUB_TOKEN' };
  const file = hubTokenFile(env);
  let token: string;
  try {
    token = readRegularText(file, READ_LIMITS.hubText, 'the Hugging Face token file').trim();
  } catch (e) {
    if (e instanceof FileRefusedError) throw new FileRefusedError(file, `${e.message} — remove it and run \`huggingface-cli login\` again, or set HF_TOKEN`);
    return undefined; // no token file (or none readable): anonymous
  }
  return token ? { token, source: file } : undefined;
}

/** `models--org--name` (`datasets--org--name`). */
export function repoFolderName(type: HubRepoType, id: string): string {
  return [`${type}s`, ...id.split('/')].join('--');
}

/** The repository's page, for messages. */
export function hubRepoUrl(type: HubRepoType, id: string, env: NodeJS.ProcessEnv = process.env): string {
  return `${hubEndpoint(env)}/${type === 'dataset' ? 'datasets/' : ''}${id}`;
}

export const isCommitHash = (revision: string) => /^[0-9a-f]{40}$/.test(revision);

/** The commit a revision points to in the cache (refs/<revision>, or the revision itself when it is a commit). */
export function cachedCommit(repoDir: string, revision: string): string | undefined {
  if (isCommitHash(revision)) return revision;
  try {
    // Only a regular file of a few bytes (a refs/ entry that is a FIFO or /dev/zero is no cached commit).
    const commit = readRegularText(path.join(repoDir, 'refs', revision), READ_LIMITS.hubText, 'a Hub cache ref').trim();
    return isCommitHash(commit) ? commit : undefined;
  } catch {
    return undefined;
  }
}

/** The cached snapshot folder of a repository at a revision, when the cache has one. */
export function cachedSnapshot(type: HubRepoType, id: string, revision: string | null | undefined, cacheDir?: string | null): string | undefined {
  const repoDir = path.join(hubCacheDir(cacheDir), repoFolderName(type, id));
  const commit = cachedCommit(repoDir, revision || DEFAULT_REVISION);
  if (!commit) return undefined;
  const dir = path.join(repoDir, 'snapshots', commit);
  return fs.existsSync(dir) ? dir : undefined;
}

/** The Hub models the cache holds a pipeline of (model_index.json at `main`), by id: what the model pickers offer. */
export function cachedHubModels(cacheDir?: string | null, env: NodeJS.ProcessEnv = process.env): { id: string; dir: string }[] {
  const root = hubCacheDir(cacheDir, env);
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch {
    return [];
  }
  const out: { id: string; dir: string }[] = [];
  for (const name of names.sort()) {
    const parts = name.split('--');
    if (parts.length !== 3 || parts[0] !== 'models') continue;
    const commit = cachedCommit(path.join(root, name), DEFAULT_REVISION);
    const dir = commit && path.join(root, name, 'snapshots', commit);
    if (dir && fs.existsSync(path.join(dir, 'model_index.json'))) out.push({ id: `${parts[1]}/${parts[2]}`, dir });
  }
  return out;
}
