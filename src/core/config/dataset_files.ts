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

/**
 * Per-image limits, checked before decoding (sharp reads the header first): a file larger than this is not a
 * training image, nor is a picture with more pixels (sharp's `limitInputPixels`), nor one so elongated that
 * resizing its short side to the resolution makes it huge (a 200000×1 PNG).
 */
export const IMAGE_LIMITS = { maxBytes: 256 * 1024 * 1024, maxPixels: 100_000_000, maxAspect: 32 } as const;
/**
 * Longest caption, in characters. CLIP keeps 77 tokens; even one character a token, this is far past them, so
 * nothing the tokenizer would keep is refused.
 */
export const MAX_CAPTION_CHARS = 10_000;
