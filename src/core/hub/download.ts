// Downloading a Hub repository's files into the standard Hugging Face cache (layout: core/config/hub_cache.ts),
// with @huggingface/hub for every request (repo info, file listing, file download). A snapshot already in
// the cache — put there by diffusers, huggingface-cli or an earlier run — is used without re-downloading;
// one made here is used by them.
//
// Each file is written to blobs/<etag>.incomplete and renamed when its size and hash match the listing
// (sha256 for LFS files, the git blob sha1 for the others), so a killed download resumes where it stopped
// (an HTTP Range request from the partial file's size) and a corrupt one is never used.
// HF_HUB_OFFLINE=1 uses the cache only; an unreachable Hub falls back to the cache, as huggingface_hub does.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { makeDirs } from '../config/run_folder.js';
import { datasetInfo, downloadFile, HubApiError, listFiles, modelInfo, type ListFileEntry } from '@huggingface/hub';
import {
  cachedSnapshot,
  DEFAULT_REVISION,
  hubCacheDir,
  hubEndpoint,
  hubOffline,
  hubRepoUrl,
  hubToken,
  isCommitHash,
  repoFolderName,
  type HubRepoType,
} from '../config/hub_cache.js';

export type HubErrorCode = 'unauthorized' | 'forbidden' | 'not_found' | 'offline' | 'network' | 'integrity' | 'cancelled' | 'hub';

/** A failure talking to the Hub, with the repository's URL and what to do. */
export class HubError extends Error {
  constructor(
    readonly code: HubErrorCode,
    /** What went wrong, without the hint. */
    readonly problem: string,
    readonly hint: string,
  ) {
    super(`${problem} — ${hint}`);
    this.name = 'HubError';
  }
}

export interface DownloadProgress {
  repo: string;
  /** The file being written (repo path). */
  file: string;
  /** Bytes in the cache so far, over all the files to get (resumed bytes count as done). */
  bytes: number;
  totalBytes: number;
  filesDone: number;
  totalFiles: number;
}

export interface RepoFile {
  path: string;
  size: number;
  /** The cache's blob name: the LFS sha256, else the git blob sha1. */
  etag: string;
  lfs: boolean;
}

export interface SnapshotOptions {
  type: HubRepoType;
  id: string;
  revision?: string | null;
  /** cache_dir (absolute); else the environment's cache. */
  cacheDir?: string | null;
  /** hub_token; else $HF_TOKEN or the token file. */
  token?: string | null;
  /** The files to fetch, from the repository's listing. */
  select: (files: readonly RepoFile[]) => string[];
  /** Checks a cached snapshot (offline use): the repo paths it lacks. */
  missing?: (snapshotDir: string) => string[];
  onProgress?: (p: DownloadProgress) => void;
  /** Said once when the cache is used instead of the Hub. */
  onNotice?: (message: string) => void;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

export interface Snapshot {
  /** snapshots/<commit>/ in the cache. */
  dir: string;
  commit: string;
  /** Files fetched over the network by this call (repo paths). */
  downloaded: string[];
  fromCache: boolean;
}

/** The snapshot folder holding the selected files of a repository at a revision, downloading what the cache lacks. */
export async function snapshotDownload(o: SnapshotOptions): Promise<Snapshot> {
  const env = o.env ?? process.env;
  const revision = o.revision || DEFAULT_REVISION;
  const cacheDir = hubCacheDir(o.cacheDir, env);
  const label = `${o.id}${revision === DEFAULT_REVISION ? '' : `@${revision}`}`;
  if (hubOffline(env)) return fromCache(o, revision, cacheDir, `HF_HUB_OFFLINE is set`);

  const token = hubToken(o.token, env);
  const hubUrl = hubEndpoint(env);
  const signalled: typeof fetch = (input, init) => fetch(input, { ...init, signal: o.signal });
  const common = { hubUrl, fetch: signalled, ...(token ? { accessToken: token.token } : {}) };
  let commit: string;
  let listing: ListFileEntry[];
  try {
    const info = o.type === 'model'
      ? await modelInfo({ ...common, name: o.id, revision, additionalFields: ['sha'] })
      : await datasetInfo({ ...common, name: o.id, revision, additionalFields: ['sha'] });
    commit = String((info as { sha?: string }).sha ?? '');
    if (!isCommitHash(commit)) throw new HubError('hub', `${hubUrl} gave no commit for ${label}`, 'check HF_ENDPOINT');
    listing = [];
    for await (const f of listFiles({ ...common, repo: { type: o.type, name: o.id }, revision: commit, recursive: true })) if (f.type === 'file') listing.push(f);
  } catch (e) {
    if (isNetworkError(e) && !o.signal?.aborted) {
      const cached = cachedSnapshot(o.type, o.id, revision, cacheDir);
      if (cached) return fromCache(o, revision, cacheDir, `${hubUrl} is not reachable (${causeOf(e)})`);
      throw new HubError(
        'network',
        `cannot reach ${hubUrl} to download ${label} (${causeOf(e)}), and the cache ${cacheDir} has no copy`,
        'check the network connection (and HF_ENDPOINT), or download it on a connected machine into the same cache',
      );
    }
    throw explain(e, o, label, token?.source, o.signal);
  }

  const files: RepoFile[] = listing.map((f) => ({ path: f.path, size: f.lfs?.size ?? f.size, etag: f.lfs?.oid ?? f.oid ?? '', lfs: !!f.lfs }));
  const byPath = new Map(files.map((f) => [f.path, f]));
  const wanted = o.select(files).map((p) => byPath.get(p)!).filter(Boolean);

  const repoDir = path.join(cacheDir, repoFolderName(o.type, o.id));
  const snapshotDir = path.join(repoDir, 'snapshots', commit);
  const totalBytes = wanted.reduce((s, f) => s + f.size, 0);
  const progress: DownloadProgress = { repo: o.id, file: '', bytes: 0, totalBytes, filesDone: 0, totalFiles: wanted.length };
  const downloaded: string[] = [];
  // At most one report per 100 ms, and the last bytes before a pause (a stalled connection) are reported
  // when the interval ends, not held back until the next chunk arrives.
  let lastReport = 0;
  let trailing: NodeJS.Timeout | undefined;
  const report = (force: boolean) => {
    const now = Date.now();
    const wait = 100 - (now - lastReport);
    if (!force && wait > 0) {
      trailing ??= setTimeout(() => report(true), wait).unref();
      return;
    }
    clearTimeout(trailing);
    trailing = undefined;
    lastReport = now;
    o.onProgress?.({ ...progress });
  };
  try {
    for (const f of wanted) {
      progress.file = f.path;
      const pointer = path.join(snapshotDir, ...f.path.split('/'));
      const blob = path.join(repoDir, 'blobs', f.etag);
      if (!fs.existsSync(pointer) || !sameSize(blob, f.size)) {
        if (!sameSize(blob, f.size)) {
          await fetchBlob(o, common, commit, f, blob, (n) => {
            progress.bytes += n;
            report(false);
          });
          downloaded.push(f.path);
        } else progress.bytes += f.size;
        link(blob, pointer);
      } else progress.bytes += f.size;
      progress.filesDone++;
      report(true);
    }
  } finally {
    clearTimeout(trailing);
  }
  if (!isCommitHash(revision)) writeRef(repoDir, revision, commit);
  return { dir: snapshotDir, commit, downloaded, fromCache: false };
}

function fromCache(o: SnapshotOptions, revision: string, cacheDir: string, why: string): Snapshot {
  const dir = cachedSnapshot(o.type, o.id, revision, cacheDir);
  const label = `${o.id}${revision === DEFAULT_REVISION ? '' : `@${revision}`}`;
  const repoDir = path.join(cacheDir, repoFolderName(o.type, o.id));
  if (!dir) {
    throw new HubError(
      'offline',
      `${why}, and ${label} is not in the cache (${path.join(repoDir, 'refs', revision)} is missing)`,
      `download it once with the network on (unset HF_HUB_OFFLINE), or set cache_dir / HF_HUB_CACHE to the cache that has it`,
    );
  }
  const missing = o.missing?.(dir) ?? [];
  if (missing.length) {
    throw new HubError('offline', `${why}, and the cached snapshot ${dir} lacks ${missing.join(', ')}`, 'download it once with the network on (unset HF_HUB_OFFLINE) to complete it');
  }
  o.onNotice?.(`${why}: using the cached ${label} (${dir})`);
  return { dir, commit: path.basename(dir), downloaded: [], fromCache: true };
}

/** Downloads one file into blobs/<etag>, resuming a partial `.incomplete`, and checks its size and hash. */
async function fetchBlob(
  o: SnapshotOptions,
  common: { hubUrl: string; fetch: typeof fetch; accessToken?: string },
  commit: string,
  f: RepoFile,
  blob: string,
  onBytes: (n: number) => void,
): Promise<void> {
  makeDirs(path.dirname(blob));
  const incomplete = `${blob}.incomplete`;
  let offset = fs.existsSync(incomplete) ? fs.statSync(incomplete).size : 0;
  if (offset > f.size) {
    fs.rmSync(incomplete);
    offset = 0;
  }
  const hash = startHash(f);
  if (offset) {
    for await (const chunk of fs.createReadStream(incomplete)) hash.update(chunk as Buffer);
    onBytes(offset);
  }
  if (offset < f.size) {
    let file: Blob | null;
    try {
      file = await downloadFile({ ...common, repo: { type: o.type, name: o.id }, path: f.path, revision: commit, xet: false });
    } catch (e) {
      throw explain(e, o, o.id, undefined, o.signal);
    }
    if (!file) throw new HubError('not_found', `${f.path} is listed in ${o.id} but cannot be downloaded`, 'try again later');
    const out = fs.createWriteStream(incomplete, { flags: 'a' });
    try {
      const reader = file.slice(offset).stream().getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        hash.update(value);
        if (!out.write(value)) await new Promise<void>((r) => out.once('drain', () => r()));
        onBytes(value.byteLength);
      }
    } catch (e) {
      if (o.signal?.aborted) throw new HubError('cancelled', `download of ${o.id} cancelled`, 'run again to resume it');
      throw new HubError('network', `downloading ${f.path} of ${o.id} failed (${causeOf(e)})`, `run again: the download resumes from ${incomplete}`);
    } finally {
      await new Promise<void>((r) => out.end(r));
    }
  }
  const size = fs.statSync(incomplete).size;
  const digest = hash.digest('hex');
  if (size !== f.size || digest !== f.etag) {
    fs.rmSync(incomplete);
    throw new HubError('integrity', `${f.path} of ${o.id} arrived corrupt (${size} of ${f.size} bytes, hash ${digest.slice(0, 12)}… instead of ${f.etag.slice(0, 12)}…)`, 'run again to download it afresh');
  }
  fs.renameSync(incomplete, blob);
}

/** LFS files are named by their sha256; other files by their git blob id, sha1("blob <size>\0" + content). */
function startHash(f: RepoFile): crypto.Hash {
  if (f.lfs || f.etag.length === 64) return crypto.createHash('sha256');
  return crypto.createHash('sha1').update(`blob ${f.size}\0`);
}

function sameSize(file: string, size: number): boolean {
  try {
    return fs.statSync(file).size === size;
  } catch {
    return false;
  }
}

/** snapshots/<commit>/<path> → a relative symlink to blobs/<etag> (a copy where symlinks are not allowed). */
function link(blob: string, pointer: string): void {
  makeDirs(path.dirname(pointer));
  fs.rmSync(pointer, { force: true });
  try {
    fs.symlinkSync(path.relative(path.dirname(pointer), blob), pointer);
  } catch {
    fs.copyFileSync(blob, pointer);
  }
}

function writeRef(repoDir: string, revision: string, commit: string): void {
  const ref = path.join(repoDir, 'refs', ...revision.split('/'));
  makeDirs(path.dirname(ref));
  fs.writeFileSync(ref, commit);
}

function isNetworkError(e: unknown): boolean {
  return e instanceof TypeError && /fetch failed|network/i.test(e.message);
}

function causeOf(e: unknown): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  return err.cause?.code ?? err.cause?.message ?? err.message;
}

/** A Hub API failure as the user must read it: the URL, why, and what to do. */
function explain(e: unknown, o: SnapshotOptions, label: string, tokenSource: string | undefined, signal?: AbortSignal): Error {
  if (e instanceof HubError) return e;
  if (signal?.aborted) return new HubError('cancelled', `download of ${label} cancelled`, 'run again to resume it');
  if (!(e instanceof HubApiError)) return e as Error;
  const url = hubRepoUrl(o.type, o.id, o.env);
  const login = 'create a token at https://huggingface.co/settings/tokens and set HF_TOKEN (or hub_token, or run `huggingface-cli login`)';
  const data = e.data as { error?: string } | undefined;
  if (e.statusCode === 401) {
    return new HubError('unauthorized', `${url} needs a login: the repository is private or gated${tokenSource ? `, and the token from ${tokenSource} was refused` : ' and no token was found'}`, `accept its terms on that page, ${login}`);
  }
  if (e.statusCode === 403) {
    return new HubError('forbidden', `${url}: the token from ${tokenSource ?? 'nowhere'} has no access (${data?.error ?? 'gated or private'})`, 'open the page and request access (gated repositories need you to accept their terms), or use a token that has it');
  }
  if (e.statusCode === 404) {
    const what = /\brev(ision)?\b/i.test(data?.error ?? "") && o.revision ? `revision "${o.revision}" of ${url}` : url;
    return new HubError('not_found', `${what} does not exist`, `check the ${o.type === 'model' ? 'pretrained_model_name_or_path' : 'dataset_name'} (and revision) spelling on the Hub`);
  }
  return new HubError('hub', `${url}: ${e.message}`, 'try again later');
}
