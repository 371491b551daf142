// Reading files that come from someone else's repository (a cloned model, a dataset, a run folder): only
// regular files (a symlink is followed, then what it points at must be a regular file — never /dev/zero,
// a FIFO or a folder), and never more than a byte cap. Every refusal names the file and the limit.
// The byte caps live here, one each. The extension and the language server may import this file (and no
// other of core/io): it is the one safe read for everything they open too.
import fs from 'node:fs';

const MB = 1024 * 1024;

/** The most each kind of small file may hold (the real ones are far below these). */
export const READ_LIMITS = {
  /** metadata.jsonl: ~100 bytes a row, so a million rows. */
  metadata: 128 * MB,
  /** A run's metrics.jsonl: ~200 bytes a step, so over half a million steps. */
  metrics: 128 * MB,
  /** config.json, model_index.json, scheduler_config.json, *.index.json. */
  json: 16 * MB,
  /** tokenizer.json, vocab.json, merges.txt (CLIP's are 1–4 MB). */
  tokenizer: 64 * MB,
  /** A .txt caption beside an image. */
  caption: 1 * MB,
  /** A run config (*.lora.yaml). */
  config: 16 * MB,
  /** The Hub's one-line files: the token file `huggingface-cli login` writes, a cache's refs/<revision> (~40 characters each). */
  hubText: 64 * 1024,
  /** A generated PNG handed to the notebook renderer (a 64×64 one is ~6 kB, a 2048² one a few MB). */
  generatedImage: 64 * MB,
} as const;

export class FileRefusedError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(message);
    this.name = 'FileRefusedError';
  }
}

function kindOf(st: fs.Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

function formatBytes(n: number): string {
  return n >= MB ? `${(n / MB).toFixed(n >= 10 * MB ? 0 : 1)} MB` : n >= 1024 ? `${(n / 1024).toFixed(0)} kB` : `${n} bytes`;
}

/** Throws when `st` is not a regular file or is over the cap. */
export function checkRegular(file: string, st: fs.Stats, maxBytes: number, what: string): void {
  if (!st.isFile()) throw new FileRefusedError(file, `${file}: ${what} must be a regular file, but this is ${kindOf(st)}`);
  if (st.size > maxBytes) throw new FileRefusedError(file, `${file}: ${what} is ${formatBytes(st.size)}, over the ${formatBytes(maxBytes)} limit`);
}

/** True for a regular file (after following symlinks); false for anything else or nothing. */
export function isRegularFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * The bytes of a regular file of at most `maxBytes`. Opened without blocking (a FIFO would otherwise wait
 * for a writer) and checked on the open descriptor, so a file swapped after a stat is caught too; reads
 * stop at the cap even if the file grows meanwhile.
 */
export function readRegularFile(file: string, maxBytes: number, what = 'the file'): Buffer {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  try {
    const st = fs.fstatSync(fd);
    checkRegular(file, st, maxBytes, what);
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const n = fs.readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return got === buf.length ? buf : buf.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}

export function readRegularText(file: string, maxBytes: number, what = 'the file'): string {
  return readRegularFile(file, maxBytes, what).toString('utf8');
}
