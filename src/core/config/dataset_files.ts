// What a training-image folder may hold, spelled once for the trainer (src/training/dataset.ts), the disk
// checks, the language server's completion and the extension's file watcher.
//
// Images: PNG, JPEG and WebP — the formats Stable Diffusion datasets come in, all decoded by sharp's
// prebuilt libvips (test/training/dataset.test.ts checks each against `sharp.format`). Other formats people
// drop in a folder are named so they are reported ("convert it to PNG") instead of silently skipped; sharp
// could read some of them (TIFF, GIF, AVIF) but the product promises PNG, JPEG and WebP, and an animated GIF
// or a 16-bit TIFF is a surprise in a training set.
import path from 'node:path';

/** Image files a dataset may hold (lower-case, with the dot). */
export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg', '.webp'];
/** Image files that are refused with a message naming the file. */
export const UNSUPPORTED_IMAGE_EXTENSIONS: readonly string[] = ['.bmp', '.gif', '.tif', '.tiff', '.avif', '.heic', '.heif'];
/** The 🤗 `imagefolder` index: one `{"file_name": …, "text": …}` object a line. */
export const METADATA_FILE = 'metadata.jsonl';
/** kohya's caption files: `<image name>.txt` beside each image. */
export const CAPTION_EXTENSION = '.txt';

/** Whether a file name is a dataset image by its extension (case-insensitive). */
export function isImageFile(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase());
}
