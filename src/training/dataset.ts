// The training images and their captions, in the two layouts people use:
// - diffusers/🤗 `imagefolder`: a `metadata.jsonl` whose rows name an image (`file_name`, relative to the
//   folder) and hold the caption column (`text` by default; a list of strings means "pick one at random");
// - kohya: `<image>.txt` beside each image holding its caption.
// Every problem (unreadable image, missing caption, bad metadata line) is collected and reported at once,
// by file name, before training starts: a run never dies at step 900 on a broken file.
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { RgbImage } from './image_transforms.js';
import { Random, streamSeed } from './random.js';
import { CAPTION_EXTENSION, IMAGE_EXTENSIONS, IMAGE_LIMITS, MAX_CAPTION_CHARS, METADATA_FILE, UNSUPPORTED_IMAGE_EXTENSIONS } from '../core/config/dataset_files.js';
import { checkRegular, READ_LIMITS, readRegularText } from '../core/io/safe_read.js';
import { isInside } from '../core/config/paths.js';


export interface Example {
  /** Absolute path of the image. */
  readonly file: string;
  /** Path relative to the dataset folder, for messages. */
  readonly name: string;
  /** One caption, or several to choose from at random each time the image is used. */
  readonly captions: readonly string[];
  /** The encoded image itself, when it is not a file (a Hub dataset's Parquet rows: hub_dataset.ts). */
  readonly image?: Uint8Array;
}

export interface Dataset {
  readonly dir: string;
  readonly layout: 'metadata.jsonl' | 'caption files' | 'hub parquet' | 'hub imagefolder (metadata.jsonl)' | 'hub imagefolder (caption files)';
  readonly examples: readonly Example[];
}

export class DatasetError extends Error {
  constructor(
    readonly dir: string,
    readonly problems: readonly string[],
  ) {
    const shown = problems.slice(0, 40);
    const more = problems.length > shown.length ? `\n  … and ${problems.length - shown.length} more` : '';
    super(`dataset ${dir}: ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n  ${shown.join('\n  ')}${more}`);
    this.name = 'DatasetError';
  }
}

export interface DatasetOptions {
  /** Which metadata column names the image: `image` means the imagefolder's `file_name`. */
  readonly imageColumn: string;
  readonly captionColumn: string;
  /** Keep only this many examples (a seeded random subset, as the guide's shuffle(seed).select). */
  readonly maxTrainSamples?: number | null;
  readonly seed?: number;
  /** Decode every image to prove it readable (default true). */
  readonly checkImages?: boolean;
  /**
   * The folder images must resolve inside (symlinks followed); default the dataset folder. A Hub dataset's
   * snapshot gives its repository's cache folder: the snapshot's files are links into its blobs/.
   */
  readonly imagesWithin?: string;
}

/** Reads the folder's index, checks every image decodes and every image has a caption. Throws DatasetError listing all problems. */
export async function openDataset(dir: string, o: DatasetOptions): Promise<Dataset> {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new DatasetError(dir, [`train_data_dir: folder not found`]);
  const problems: string[] = [];
  const metadataFile = path.join(dir, METADATA_FILE);
  const layout = fs.existsSync(metadataFile) ? 'metadata.jsonl' : 'caption files';
  const examples = layout === 'metadata.jsonl' ? readMetadata(dir, metadataFile, o, problems) : readCaptionFiles(dir, o, problems);
  if (examples.length === 0 && problems.length === 0) {
    problems.push(`no images found (supported: ${IMAGE_EXTENSIONS.join(', ')}); put images with a metadata.jsonl ({"file_name": …, "${o.captionColumn}": …} per line) or a .txt caption beside each image`);
  }
  if (o.checkImages !== false) {
    const unreadable = await findUnreadable(examples);
    problems.push(...unreadable);
  }
  if (problems.length) throw new DatasetError(dir, problems);
  return { dir, layout, examples: sampleExamples(examples, o.maxTrainSamples, o.seed) };
}

/** max_train_samples: a seeded random subset, as the guide's `shuffle(seed).select(range(n))`. */
export function sampleExamples(examples: Example[], maxTrainSamples: number | null | undefined, seed: number | undefined): Example[] {
  if (maxTrainSamples == null || maxTrainSamples >= examples.length) return examples;
  const order = new Random(streamSeed(seed ?? 0, 'max_samples')).randperm(examples.length);
  return order.slice(0, maxTrainSamples).map((i) => examples[i]);
}

function readMetadata(dir: string, file: string, o: DatasetOptions, problems: string[]): Example[] {
  const imageKey = o.imageColumn === 'image' ? 'file_name' : `${o.imageColumn}_file_name`;
  let text: string;
  try {
    text = readRegularText(file, READ_LIMITS.metadata, METADATA_FILE);
  } catch (e) {
    problems.push((e as Error).message);
    return [];
  }
  const lines = text.split(/\r?\n/);
  const realDir = fs.realpathSync(o.imagesWithin ?? dir);
  const examples: Example[] = [];
  const listed = new Set<string>();
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    const where = `metadata.jsonl line ${i + 1}`;
    let row: Record<string, unknown>;
    try {
      row = JSON.parse(line) as Record<string, unknown>;
      if (typeof row !== 'object' || row === null || Array.isArray(row)) throw new Error('not a JSON object');
    } catch (e) {
      problems.push(`${where}: not valid JSON (${(e as Error).message})`);
      return;
    }
    const name = row[imageKey] ?? (o.imageColumn !== 'image' ? row[o.imageColumn] : undefined);
    if (typeof name !== 'string' || !name) {
      problems.push(`${where}: no "${imageKey}" (the image's path relative to the folder)${o.imageColumn !== 'image' ? ` — image_column "${o.imageColumn}" reads "${imageKey}"; the imagefolder default is image_column: image with "file_name"` : ''}`);
      return;
    }
    const imageFile = path.resolve(dir, name);
    listed.add(path.relative(dir, imageFile));
    const ext = path.extname(name).toLowerCase();
    if (!fs.existsSync(imageFile)) {
      problems.push(`${name}: image file not found (listed on ${where})`);
      return;
    }
    const outside = outsideFolder(realDir, imageFile);
    if (outside) {
      problems.push(`${name}: ${outside} (listed on ${where}); a dataset's images must lie inside its folder`);
      return;
    }
    if (!IMAGE_EXTENSIONS.includes(ext)) {
      problems.push(`${name}: unsupported image format "${ext}" (supported: ${IMAGE_EXTENSIONS.join(', ')}; convert it, e.g. to PNG)`);
      return;
    }
    const caption = row[o.captionColumn];
    const captions = captionList(caption);
    if (!captions) {
      const columns = Object.keys(row).filter((k) => k !== imageKey);
      problems.push(
        caption === undefined || caption === null
          ? `${name}: missing caption — ${where} has no "${o.captionColumn}"${columns.length ? ` (its columns: ${columns.join(', ')}; set caption_column to the right one)` : ''}`
          : `${name}: caption "${o.captionColumn}" on ${where} is neither a string nor a list of strings`,
      );
      return;
    }
    const tooLong = captions.find((c) => c.length > MAX_CAPTION_CHARS);
    if (tooLong !== undefined) {
      problems.push(`${name}: caption on ${where} is ${tooLong.length} characters, over the ${MAX_CAPTION_CHARS}-character limit (CLIP keeps only its first 77 tokens)`);
      return;
    }
    examples.push({ file: imageFile, name, captions });
  });
  return examples;
}

function captionList(v: unknown): string[] | undefined {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.length > 0 && v.every((c) => typeof c === 'string')) return v as string[];
  return undefined;
}

function readCaptionFiles(dir: string, o: DatasetOptions, problems: string[]): Example[] {
  const examples: Example[] = [];
  const realDir = fs.realpathSync(o.imagesWithin ?? dir);
  for (const rel of listFiles(dir)) {
    const ext = path.extname(rel).toLowerCase();
    if (UNSUPPORTED_IMAGE_EXTENSIONS.includes(ext)) {
      problems.push(`${rel}: unsupported image format "${ext}" (supported: ${IMAGE_EXTENSIONS.join(', ')}; convert it or move it out of the folder)`);
      continue;
    }
    if (!IMAGE_EXTENSIONS.includes(ext)) continue;
    const file = path.join(dir, rel);
    const captionFile = file.slice(0, -ext.length) + CAPTION_EXTENSION;
    if (!fs.existsSync(captionFile)) {
      problems.push(`${rel}: missing caption — no ${path.basename(captionFile)} beside it and no metadata.jsonl in the folder`);
      continue;
    }
    let caption: string;
    try {
      // kohya strips surrounding whitespace; an empty caption is allowed (it trains the unconditional case).
      caption = readRegularText(captionFile, READ_LIMITS.caption, 'a caption file').trim();
    } catch (e) {
      problems.push(`${rel}: ${(e as Error).message}`);
      continue;
    }
    if (caption.length > MAX_CAPTION_CHARS) {
      problems.push(`${rel}: caption ${path.basename(captionFile)} is ${caption.length} characters, over the ${MAX_CAPTION_CHARS}-character limit (CLIP keeps only its first 77 tokens)`);
      continue;
    }
    const outside = outsideFolder(realDir, file);
    if (outside) {
      problems.push(`${rel}: ${outside}; a dataset's images must lie inside its folder`);
      continue;
    }
    examples.push({ file, name: rel, captions: [caption] });
  }
  return examples;
}

/** Why `file` is not an image inside `realDir` (symlinks resolved), or undefined when it is. */
function outsideFolder(realDir: string, file: string): string | undefined {
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch (e) {
    return `cannot be read (${(e as Error).message})`;
  }
  return isInside(realDir, real) ? undefined : `resolves to ${real}, outside the dataset folder`;
}

/** Files under dir (relative paths, sorted, hidden entries skipped), as imagefolder's `**` glob sees them. */
function listFiles(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (entry.name.startsWith('.')) continue;
    const p = rel ? path.join(rel, entry.name) : entry.name;
    if (entry.isDirectory()) out.push(...listFiles(dir, p));
    else out.push(p);
  }
  return out;
}

async function findUnreadable(examples: readonly Example[]): Promise<string[]> {
  const problems: string[] = [];
  // Two at a time: decoding is CPU-bound and the machine may be small.
  let next = 0;
  const worker = async () => {
    while (next < examples.length) {
      const ex = examples[next++];
      try {
        await decodeRgb(ex.file);
      } catch (e) {
        problems.push(`${ex.name}: unreadable image (${(e as Error).message.split('\n')[0]})`);
      }
    }
  };
  await Promise.all([worker(), worker()]);
  return problems.sort();
}

/**
 * Decodes an image to 8-bit RGB as PIL's `image.convert("RGB")` does: no EXIF rotation, alpha dropped
 * (not composited), grey and palette images expanded to three channels.
 */
export async function decodeRgb(file: string | Uint8Array): Promise<RgbImage> {
  // Limits before decoding: a regular file (or bytes) within the byte cap, a header within the pixel and aspect caps.
  if (typeof file === 'string') checkRegular(file, fs.statSync(file), IMAGE_LIMITS.maxBytes, 'an image');
  else if (file.byteLength > IMAGE_LIMITS.maxBytes) throw new Error(`${file.byteLength} bytes is over the image size limit`);
  const { width: w = 0, height: h = 0 } = await sharp(file, { limitInputPixels: IMAGE_LIMITS.maxPixels }).metadata();
  if (w * h > IMAGE_LIMITS.maxPixels) throw new Error(`${w}×${h} is over the ${IMAGE_LIMITS.maxPixels / 1e6}-megapixel limit`);
  if (Math.max(w, h) > IMAGE_LIMITS.maxAspect * Math.max(1, Math.min(w, h))) {
    throw new Error(`${w}×${h} is more elongated than ${IMAGE_LIMITS.maxAspect}:1, too thin to crop a square training image from`);
  }
  const { data, info } = await sharp(file, { failOn: 'error', limitInputPixels: IMAGE_LIMITS.maxPixels }).toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  const { width, height, channels } = info;
  if (channels === 3) return { width, height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) rgb[i * 3 + c] = data[i * channels + Math.min(c, channels - 1)];
  }
  return { width, height, data: rgb };
}

/** The caption to use this time: the only one, or a random one of several (drawn from `rng` only then). */
export function pickCaption(ex: Example, rng: Random): string {
  return ex.captions.length === 1 ? ex.captions[0] : ex.captions[rng.randint(0, ex.captions.length)[0]];
}
