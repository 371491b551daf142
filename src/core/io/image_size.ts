// An image's stored width × height from its header, for the three dataset formats (dataset_files.ts): PNG's IHDR,
// JPEG's first SOFn frame, WebP's VP8/VP8L/VP8X chunk. No decoding and no sharp, so the extension and the language
// server can use it; the sizes are the ones sharp's metadata() reports (no EXIF rotation, as the trainer reads them).
import fs from 'node:fs';

/** The first bytes a header needs (a JPEG's SOF may follow EXIF/ICC segments: read on until it is found). */
const HEAD = 64 * 1024;
const MAX_JPEG_SCAN = 16 * 1024 * 1024;

/** width × height from `file`'s header, or undefined when it is no PNG, JPEG or WebP (or is cut short). */
export function imageSize(file: string): { width: number; height: number } | undefined {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  try {
    if (!fs.fstatSync(fd).isFile()) return undefined;
    const read = (pos: number, n: number): Buffer => {
      const b = Buffer.alloc(n);
      return b.subarray(0, fs.readSync(fd, b, 0, n, pos));
    };
    const b = read(0, HEAD);
    if (b.length >= 24 && b.readUInt32BE(0) === 0x89504e47 && b.toString('latin1', 12, 16) === 'IHDR') return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
    if (b.length >= 30 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return webpSize(b);
    if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) return jpegSize(read);
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

function webpSize(b: Buffer): { width: number; height: number } | undefined {
  const chunk = b.toString('latin1', 12, 16);
  // VP8 (lossy): 14-bit sizes after the frame tag and start code; VP8L: 14-bit sizes − 1 packed after 0x2f; VP8X: 24-bit sizes − 1.
  if (chunk === 'VP8 ') return { width: b.readUInt16LE(26) & 0x3fff, height: b.readUInt16LE(28) & 0x3fff };
  if (chunk === 'VP8L') {
    const bits = b.readUInt32LE(21);
    return { width: (bits & 0x3fff) + 1, height: ((bits >> 14) & 0x3fff) + 1 };
  }
  if (chunk === 'VP8X') return { width: b.readUIntLE(24, 3) + 1, height: b.readUIntLE(27, 3) + 1 };
  return undefined;
}

function jpegSize(read: (pos: number, n: number) => Buffer): { width: number; height: number } | undefined {
  let pos = 2;
  while (pos < MAX_JPEG_SCAN) {
    const m = read(pos, 9);
    if (m.length < 4 || m[0] !== 0xff) return undefined;
    const marker = m[1];
    if (marker === 0xff) {
      pos += 1; // fill byte
      continue;
    }
    // SOF0–SOF15 but DHT (C4), JPG (C8) and DAC (CC): [length, precision, height, width].
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return m.length >= 9 ? { width: m.readUInt16BE(7), height: m.readUInt16BE(5) } : undefined;
    }
    if (marker === 0xd9 || marker === 0xda) return undefined; // end of image, start of scan: no frame header before them
    pos += 2 + m.readUInt16BE(2);
  }
  return undefined;
}
