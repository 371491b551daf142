// A dataset folder's index: which images it holds and each one's caption, in the two layouts people use:
// - diffusers/🤗 `imagefolder`: a `metadata.jsonl` whose rows name an image (`file_name`, relative to the
//   folder) and hold the caption column (`text` by default; a list of strings means "pick one at random");
// - kohya: `<image>.txt` beside each image holding its caption.
// The one reader for the trainer (src/training/dataset.ts, which then decodes every image) and the Dataset view
// (dataset_view.ts). Every problem is collected by file name; images without a caption are also listed.
import fs from 'node:fs';
import path from 'node:path';
import { CAPTION_EXTENSION, IMAGE_EXTENSIONS, MAX_CAPTION_CHARS, METADATA_FILE, UNSUPPORTED_IMAGE_EXTENSIONS, isImageFile } from './dataset_files.js';
import { READ_LIMITS, readRegularText } from '../io/safe_read.js';
import { isInside } from './paths.js';

/** Where an image's caption lives: its `.txt`, or a line (1-based) of metadata.jsonl. */
export type CaptionSource = { readonly kind: 'caption file'; readonly file: string } | { readonly kind: 'metadata.jsonl'; readonly line: number };

export interface IndexedImage {
  /** Absolute path of the image. */
  readonly file: string;
  /** Path relative to the dataset folder, for messages. */
  readonly name: string;
  /** One caption, or several to choose from at random each time the image is used. */
  readonly captions: readonly string[];
  readonly source: CaptionSource;
}

export interface IndexOptions {
  /** Which metadata column names the image: `image` means the imagefolder's `file_name`. */
  readonly imageColumn: string;
  readonly captionColumn: string;
  /** The folder images must resolve inside (symlinks followed); default the dataset folder. */
  readonly imagesWithin?: string;
}

export interface DatasetIndex {
  readonly layout: 'metadata.jsonl' | 'caption files';
  /** The captioned images, in the index's order (metadata lines; caption files: sorted paths). */
  readonly images: readonly IndexedImage[];
  /** Images of the folder with no caption (relative names): no `.txt`, no metadata line, or a line without the caption column. */
  readonly uncaptioned: readonly string[];
}

/** Reads the folder's index; problems (by file name) are pushed onto `problems`. */
export function readDatasetIndex(dir: string, o: IndexOptions, problems: string[]): DatasetIndex {
  const metadataFile = path.join(dir, METADATA_FILE);
  const layout = fs.existsSync(metadataFile) ? 'metadata.jsonl' : 'caption files';
  const uncaptioned: string[] = [];
  const images = layout === 'metadata.jsonl' ? readMetadata(dir, metadataFile, o, problems, uncaptioned) : readCaptionFiles(dir, o, problems, uncaptioned);
  return { layout, images, uncaptioned };
}

function readMetadata(dir: string, file: string, o: IndexOptions, problems: string[], uncaptioned: string[]): IndexedImage[] {
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
  const examples: IndexedImage[] = [];
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
      uncaptioned.push(name);
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
    examples.push({ file: imageFile, name, captions, source: { kind: 'metadata.jsonl', line: i + 1 } });
  });
  // Images in the folder that no line lists have no caption (the trainer does not see them).
  for (const rel of listFiles(dir)) if (isImageFile(rel) && !listed.has(rel)) uncaptioned.push(rel);
  return examples;
}

function captionList(v: unknown): string[] | undefined {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.length > 0 && v.every((c) => typeof c === 'string')) return v as string[];
  return undefined;
}

function readCaptionFiles(dir: string, o: IndexOptions, problems: string[], uncaptioned: string[]): IndexedImage[] {
  const examples: IndexedImage[] = [];
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
      uncaptioned.push(rel);
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
    examples.push({ file, name: rel, captions: [caption], source: { kind: 'caption file', file: captionFile } });
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
export function listFiles(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (entry.name.startsWith('.')) continue;
    const p = rel ? path.join(rel, entry.name) : entry.name;
    if (entry.isDirectory()) out.push(...listFiles(dir, p));
    else out.push(p);
  }
  return out;
}

