// The training images and their captions, in the two layouts people use (read by core/config/dataset_index.ts,
// the one reader the Dataset view shares): diffusers/🤗 `imagefolder` metadata.jsonl, or kohya's `<image>.txt`.
// Every problem (unreadable image, missing caption, bad metadata line) is collected and reported at once,
// by file name, before training starts: a run never dies at step 900 on a broken file.
import fs from 'node:fs';
import sharp from 'sharp';
import type { RgbImage } from './image_transforms.js';
import { Random, streamSeed } from './random.js';
import { IMAGE_EXTENSIONS, IMAGE_LIMITS } from '../core/config/dataset_files.js';
import { checkRegular } from '../core/io/safe_read.js';
import { readDatasetIndex } from '../core/config/dataset_index.js';


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
  const index = readDatasetIndex(dir, o, problems);
  const layout = index.layout;
  const examples: Example[] = index.images.map(({ file, name, captions }) => ({ file, name, captions }));
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
