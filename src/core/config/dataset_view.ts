// The Dataset view's model: a training folder as the trainer reads it (dataset_index.ts), with each image's size
// (its header) and the bucket it falls in (buckets.ts, kohya's rule), and the one way a caption is saved — its
// `.txt`, or its own line of metadata.jsonl with every other byte of the file kept. No `vscode`: the extension's
// panel (src/extension/dataset_panel.ts) and test/unit/dataset_view.test.ts both use it.
import fs from 'node:fs';
import path from 'node:path';
import { readDatasetIndex, type CaptionSource } from './dataset_index.js';
import { planBuckets, type Bucket, type BucketSettings } from './buckets.js';
import { MAX_CAPTION_CHARS, METADATA_FILE } from './dataset_files.js';
import { writeFileAtomic } from './run_folder.js';
import { imageSize } from '../io/image_size.js';
import { READ_LIMITS, readRegularText } from '../io/safe_read.js';

export interface DatasetViewOptions {
  readonly captionColumn: string;
  readonly imageColumn: string;
  /** The run's resolution: without buckets every image is resized and cropped to resolution². */
  readonly resolution: number;
  /** kohya's bucket settings when enable_bucket is on. */
  readonly buckets?: Omit<BucketSettings, 'resolution'>;
}

export interface DatasetViewImage {
  /** Relative to the folder. */
  readonly name: string;
  readonly file: string;
  /** Undefined for an image without a caption. */
  readonly captions?: readonly string[];
  readonly source?: CaptionSource;
  /** From the header; undefined when it cannot be read. */
  readonly width?: number;
  readonly height?: number;
  /** The size it is trained at: its bucket, or resolution² without buckets. */
  readonly bucket?: Bucket;
}

export interface DatasetView {
  readonly dir: string;
  readonly layout: 'metadata.jsonl' | 'caption files';
  /** Captioned images first (the index's order), then those without a caption. */
  readonly images: readonly DatasetViewImage[];
  readonly counts: { readonly images: number; readonly captioned: number; readonly uncaptioned: number };
  /** Times each image is seen per epoch: LoRA Studio trains each once (kohya's `<N>_name` folder repeats are not read). */
  readonly repeats: 1;
  /** The trained sizes and how many images each holds. */
  readonly buckets: readonly { readonly width: number; readonly height: number; readonly count: number }[];
  /** What the trainer would refuse (by file name), as its dataset check says it. */
  readonly problems: readonly string[];
}

/** Reads `dir` for the view. Never throws for a bad file: problems are listed. */
export function readDatasetView(dir: string, o: DatasetViewOptions): DatasetView {
  const problems: string[] = [];
  const index = readDatasetIndex(dir, o, problems);
  const withSize = <T extends { file: string }>(x: T) => {
    let size: { width: number; height: number } | undefined;
    try {
      size = imageSize(x.file);
    } catch {
      size = undefined;
    }
    return { ...x, ...(size ? size : {}) };
  };
  const images: DatasetViewImage[] = [
    ...index.images.map((i) => withSize({ name: i.name, file: i.file, captions: i.captions, source: i.source })),
    ...index.uncaptioned.map((name) => withSize({ name, file: path.join(dir, name) })),
  ];
  const sized = images.filter((i) => i.width !== undefined && i.height !== undefined);
  let placed: DatasetViewImage[];
  let buckets: DatasetView['buckets'];
  if (o.buckets) {
    const plan = planBuckets({ resolution: o.resolution, ...o.buckets }, sized.map((i) => ({ width: i.width!, height: i.height! })));
    const bucketOf = new Map(sized.map((img, k) => [img, plan.choices[k].bucket]));
    placed = images.map((img) => (bucketOf.has(img) ? { ...img, bucket: bucketOf.get(img)! } : img));
    buckets = plan.counts;
  } else {
    const square = { width: o.resolution, height: o.resolution };
    placed = images.map((img) => (img.width !== undefined ? { ...img, bucket: square } : img));
    buckets = sized.length ? [{ ...square, count: sized.length }] : [];
  }
  const captioned = index.images.length;
  return { dir, layout: index.layout, images: placed, counts: { images: images.length, captioned, uncaptioned: index.uncaptioned.length }, repeats: 1, buckets, problems };
}

export class CaptionSaveError extends Error {
  override name = 'CaptionSaveError';
}

/**
 * Saves `caption` as the caption of image `name` in `dir`: in metadata.jsonl when the folder has one (only that
 * image's line changes; the line gets the caption column, other columns and every other line stay byte for byte),
 * else in the `.txt` beside the image (created for an image without one). Returns the file written.
 */
export function saveCaption(dir: string, name: string, caption: string, o: Pick<DatasetViewOptions, 'captionColumn' | 'imageColumn'>): string {
  if (caption.length > MAX_CAPTION_CHARS) throw new CaptionSaveError(`${name}: the caption is ${caption.length} characters, over the ${MAX_CAPTION_CHARS}-character limit`);
  const image = path.resolve(dir, name);
  if (path.relative(dir, image).startsWith('..') || !fs.existsSync(image)) throw new CaptionSaveError(`${name}: no such image in ${dir}`);
  const metadata = path.join(dir, METADATA_FILE);
  if (!fs.existsSync(metadata)) {
    const txt = image.slice(0, image.length - path.extname(image).length) + '.txt';
    writeFileAtomic(txt, caption);
    return txt;
  }
  const imageKey = o.imageColumn === 'image' ? 'file_name' : `${o.imageColumn}_file_name`;
  const text = readRegularText(metadata, READ_LIMITS.metadata, METADATA_FILE);
  // Split keeping each line's own ending, so the untouched lines are written back exactly.
  const lines = text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  const rel = path.relative(dir, image);
  let found = -1;
  const rows = lines.map((l) => {
    try {
      const row = JSON.parse(l) as unknown;
      return row && typeof row === 'object' && !Array.isArray(row) ? (row as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  });
  rows.forEach((row, i) => {
    const n = row?.[imageKey];
    if (found < 0 && typeof n === 'string' && path.relative(dir, path.resolve(dir, n)) === rel) found = i;
  });
  let out: string;
  if (found >= 0) {
    const line = lines[found];
    const ending = /\r?\n$/.exec(line)?.[0] ?? '';
    lines[found] = pythonJsonLine({ ...rows[found]!, [o.captionColumn]: caption }) + ending;
    out = lines.join('');
  } else {
    // An image no line lists: a new line at the end (after a newline if the file lacks a final one).
    const ending = /\r\n/.test(text) ? '\r\n' : '\n';
    out = text + (text && !text.endsWith('\n') ? ending : '') + pythonJsonLine({ [imageKey]: rel.split(path.sep).join('/'), [o.captionColumn]: caption }) + ending;
  }
  writeFileAtomic(metadata, out);
  return metadata;
}

/** One JSON object as Python's json.dumps writes it (`{"k": v, "k2": v2}`), the style 🤗 datasets' metadata files use. */
function pythonJsonLine(row: Record<string, unknown>): string {
  return `{${Object.entries(row).map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(', ')}}`;
}
