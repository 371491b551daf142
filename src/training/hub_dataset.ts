// Training data from a Hub dataset (`dataset_name: lambdalabs/pokemon-blip-captions`), as the guide's
// `load_dataset(args.dataset_name, args.dataset_config_name)["train"]` reads it: the repository's Parquet
// files for the train split — its own, or else the ones the Hub converted (the `refs/convert/parquet`
// branch, `<config>/train/*.parquet`) — downloaded into the Hugging Face cache, read with hyparquet.
// Images are `{bytes, path}` structs (the `datasets` Image feature) or paths into the repository; captions
// a string or a list of strings (one is drawn at random each time, as the guide does). A repository with no
// Parquet of its own but images with a metadata.jsonl (or .txt captions) is an imagefolder, as `datasets`
// infers it: its train images are downloaded into the cache and read as a local imagefolder is.
import fs from 'node:fs';
import path from 'node:path';
import { parquetReadObjects, parquetSchema, parquetMetadata } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { snapshotDownload, type DownloadProgress, type RepoFile } from '../core/hub/download.js';
import { CAPTION_EXTENSION, IMAGE_EXTENSIONS, METADATA_FILE } from '../core/config/dataset_files.js';
import { DatasetError, decodeRgb, openDataset, sampleExamples, type Dataset, type Example } from './dataset.js';

export const PARQUET_CONVERSION_REVISION = 'refs/convert/parquet';

export interface HubDatasetOptions {
  datasetName: string;
  configName?: string | null;
  imageColumn: string;
  captionColumn: string;
  maxTrainSamples?: number | null;
  seed?: number;
  cacheDir?: string | null;
  token?: string | null;
  onProgress?: (p: DownloadProgress) => void;
  onNotice?: (message: string) => void;
  signal?: AbortSignal;
}

/** The train split's Parquet files in a listing: `data/train-*.parquet`, `train/*.parquet`, `<config>/train…`. */
export function trainParquetFiles(files: readonly RepoFile[], configName?: string | null): string[] {
  let parquet = files.map((f) => f.path).filter((p) => p.endsWith('.parquet'));
  if (configName) parquet = parquet.filter((p) => p.split('/').includes(configName));
  const train = parquet.filter((p) => /(^|\/)train([-_.\/]|$)/.test(p));
  return (train.length ? train : parquet).sort();
}

export async function openHubDataset(o: HubDatasetOptions): Promise<Dataset> {
  const common = { type: 'dataset' as const, id: o.datasetName, cacheDir: o.cacheDir, token: o.token, onProgress: o.onProgress, onNotice: o.onNotice, signal: o.signal };
  let files: string[] = [];
  let folder: ImageFolder | undefined;
  let imagePaths: string[] = [];
  // The train split's Parquet files; without any, an imagefolder (metadata.jsonl or .txt captions + images).
  const pick = (listing: readonly RepoFile[]) => {
    files = trainParquetFiles(listing, o.configName);
    imagePaths = listing.map((f) => f.path).filter((p) => IMAGE_EXTENSIONS.includes(path.extname(p).toLowerCase()));
    folder = files.length ? undefined : trainImageFolder(listing.map((f) => f.path), o.configName);
    return files.length ? files : (folder?.files ?? []);
  };
  const usable = (dir: string) => {
    pick(listSnapshot(dir).map((p) => ({ path: p, size: 0, etag: '', lfs: false })));
    return files.length || folder ? [] : ['*.parquet (or metadata.jsonl and images)'];
  };
  let snap = await snapshotDownload({ ...common, select: pick, missing: usable });
  if (snap.fromCache) usable(snap.dir);
  if (!files.length && !folder) {
    snap = await snapshotDownload({ ...common, revision: PARQUET_CONVERSION_REVISION, select: pick, missing: usable });
    if (snap.fromCache) usable(snap.dir);
  }
  if (folder) {
    // The cached imagefolder is read as a local one; its files are links into the repository's blobs/.
    const repoDir = path.dirname(path.dirname(snap.dir));
    const dir = path.join(snap.dir, ...folder.dir.split('/').filter(Boolean));
    const ds = await openDataset(dir, { imageColumn: o.imageColumn, captionColumn: o.captionColumn, maxTrainSamples: o.maxTrainSamples, seed: o.seed, imagesWithin: repoDir });
    return { ...ds, layout: ds.layout === 'metadata.jsonl' ? 'hub imagefolder (metadata.jsonl)' : 'hub imagefolder (caption files)' };
  }
  const where = `${o.datasetName}${o.configName ? ` (${o.configName})` : ''}`;
  if (!files.length) throw new DatasetError(where, [`dataset_name: no Parquet files for the train split in ${where}, nor on its ${PARQUET_CONVERSION_REVISION} branch`]);

  const problems: string[] = [];
  let examples: Example[] = [];
  const repoPaths = new Set<string>();
  for (const rel of files) {
    const file = path.join(snap.dir, ...rel.split('/'));
    const buf = fs.readFileSync(file);
    const arrayBuffer = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
    const columns = parquetSchema(parquetMetadata(arrayBuffer)).children.map((c) => c.element.name);
    for (const col of [o.imageColumn, o.captionColumn]) {
      if (!columns.includes(col)) {
        const key = col === o.imageColumn ? 'image_column' : 'caption_column';
        throw new DatasetError(where, [`${key}: "${col}" is not a column of ${rel} (its columns: ${columns.join(', ')}); set ${key} to one of them`]);
      }
    }
    // utf8: false keeps un-annotated BYTE_ARRAY (the image bytes) as bytes; string columns stay strings.
    const rows = await parquetReadObjects({ file: arrayBuffer, columns: [o.imageColumn, o.captionColumn], compressors, utf8: false });
    rows.forEach((row, i) => {
      const name = `${rel} row ${i}`;
      const image = imageOf(row[o.imageColumn]);
      const captions = captionsOf(row[o.captionColumn]);
      if ('problem' in image) problems.push(`${name}: ${image.problem}`);
      else if (!captions) problems.push(`${name}: caption "${o.captionColumn}" is neither a string nor a list of strings`);
      else if ('bytes' in image) examples.push({ file: name, name, captions, image: image.bytes });
      else {
        if (!imagePaths.includes(image.repoPath) && !snap.fromCache) problems.push(`${name}: image path "${image.repoPath}" is not a file of the dataset repository`);
        repoPaths.add(image.repoPath);
        examples.push({ file: path.join(snap.dir, ...image.repoPath.split('/')), name, captions });
      }
    });
  }
  // Images given as paths into the repository: fetched from the same commit.
  const absent = [...repoPaths].filter((p) => !fs.existsSync(path.join(snap.dir, ...p.split('/'))));
  if (absent.length && !problems.length) await snapshotDownload({ ...common, revision: snap.commit, select: () => absent, missing: () => absent.filter((p) => !fs.existsSync(path.join(snap.dir, p))) });
  if (problems.length) throw new DatasetError(where, problems);
  examples = sampleExamples(examples, o.maxTrainSamples, o.seed);
  for (const ex of examples) {
    try {
      await decodeRgb(ex.image ?? ex.file);
    } catch (e) {
      problems.push(`${ex.name}: unreadable image (${(e as Error).message.split('\n')[0]})`);
    }
  }
  if (problems.length) throw new DatasetError(where, problems);
  return { dir: snap.dir, layout: 'hub parquet', examples };
}

/** Every file of a snapshot folder, as repo paths. */
function listSnapshot(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listSnapshot(dir, p));
    else out.push(p);
  }
  return out;
}

interface ImageFolder {
  /** The folder read as the dataset (repo path; '' for the root): where its metadata.jsonl is, else the images' common folder. */
  dir: string;
  /** What to fetch: the metadata.jsonl, the train images and their .txt captions. */
  files: string[];
}

/**
 * An imagefolder dataset in a repository's files, as `datasets` infers one: images (the train split's —
 * under a `train` folder when there is one — within `configName`'s folder when given), read with the
 * metadata.jsonl of their folder or one above it, else with a .txt caption beside each image; undefined when
 * there are no images, or no captions for them.
 */
export function trainImageFolder(paths: readonly string[], configName?: string | null): ImageFolder | undefined {
  const inConfig = configName ? paths.filter((p) => p.split('/').includes(configName)) : paths;
  const images = inConfig.filter((p) => IMAGE_EXTENSIONS.includes(path.posix.extname(p).toLowerCase()));
  const train = images.filter((p) => p.split('/').slice(0, -1).includes('train'));
  const chosen = train.length ? train : images;
  if (!chosen.length) return undefined;
  // The common folder of the chosen images, then the nearest folder at or above it with a metadata.jsonl.
  let common = chosen[0].split('/').slice(0, -1);
  for (const p of chosen) {
    const parts = p.split('/').slice(0, -1);
    let i = 0;
    while (i < common.length && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  const set = new Set(inConfig);
  let dir: string | undefined;
  for (let n = common.length; n >= 0 && dir === undefined; n--) {
    const d = common.slice(0, n).join('/');
    if (set.has(d ? `${d}/${METADATA_FILE}` : METADATA_FILE)) dir = d;
  }
  if (dir !== undefined) return { dir, files: [dir ? `${dir}/${METADATA_FILE}` : METADATA_FILE, ...chosen] };
  const captions = chosen.map((p) => p.slice(0, -path.posix.extname(p).length) + CAPTION_EXTENSION).filter((p) => set.has(p));
  // Images without any caption are no text-to-image dataset: the Hub's Parquet conversion may have what they lack.
  return captions.length ? { dir: common.join('/'), files: [...chosen, ...captions] } : undefined;
}

/** PNG/JPEG bytes, a path into the repository, or what is wrong. */
function imageOf(v: unknown): { bytes: Uint8Array } | { repoPath: string } | { problem: string } {
  if (v && typeof v === 'object' && ('bytes' in v || 'path' in v)) {
    const { bytes, path: p } = v as { bytes?: unknown; path?: unknown };
    if (bytes instanceof Uint8Array && bytes.byteLength) return { bytes };
    if (typeof p === 'string' && p) return { repoPath: p };
    return { problem: 'the image struct has neither bytes nor a path' };
  }
  if (typeof v === 'string' && v) return { repoPath: v };
  return { problem: 'no image (expected a {bytes, path} struct or a path)' };
}

function captionsOf(v: unknown): string[] | undefined {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.length && v.every((c) => typeof c === 'string')) return v as string[];
  return undefined;
}
