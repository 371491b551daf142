// safetensors: https://github.com/huggingface/safetensors — an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the bytes.
// Reads are lazy (the header first, each tensor on demand through a file descriptor) so that a 4 GB
// checkpoint is not read whole to answer "what is in this file?". Every offset is validated before use.
import fs from 'node:fs';
import { float16ToFloat32, bfloat16ToFloat32 } from './half.js';
import { writeFileAtomic } from '../config/run_folder.js';
import { checkRegular } from './safe_read.js';

export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const ITEM_SIZE: Record<DType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
/** A header larger than this is not a safetensors file (the format caps it at 100 MB). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export class SafetensorsError extends Error {
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Absolute position of the first byte in the file. */
  readonly fileOffset: number;
  readonly byteLength: number;
}

export interface SafetensorsHeader {
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Validates a raw header (JSON text already decoded) against the size of the file it came from. */
export function parseHeader(json: string, headerLength: number, fileSize: number, source: string): SafetensorsHeader {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new SafetensorsError(source, `header is not valid JSON (${(e as Error).message}); the file is not safetensors or is damaged`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SafetensorsError(source, 'header is not a JSON object');
  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  const spans: [number, number, string][] = [];
  for (const [name, entry] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null) throw new SafetensorsError(source, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw new SafetensorsError(source, `__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) throw new SafetensorsError(source, `tensor "${name}": entry is not an object`);
    if (typeof e.dtype !== 'string' || !Object.hasOwn(ITEM_SIZE, e.dtype)) {
      throw new SafetensorsError(source, `tensor "${name}": unknown dtype ${JSON.stringify(e.dtype)} (supported: ${Object.keys(ITEM_SIZE).join(', ')})`);
    }
    const dtype = e.dtype as DType;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(source, `tensor "${name}": shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`);
    }
    const shape = e.shape as number[];
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      throw new SafetensorsError(source, `tensor "${name}": data_offsets ${JSON.stringify(offsets)} are not [begin, end] with begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    const expected = numel(shape) * ITEM_SIZE[dtype];
    if (end - begin !== expected) {
      throw new SafetensorsError(source, `tensor "${name}": ${end - begin} bytes stored but ${dtype}${JSON.stringify(shape)} needs ${expected}`);
    }
    if (end > dataSize) {
      throw new SafetensorsError(source, `tensor "${name}": data ends at byte ${end} of the data section but the file has only ${Math.max(0, dataSize)} (truncated file?)`);
    }
    spans.push([begin, end, name]);
    tensors.set(name, { name, dtype, shape, fileOffset: dataStart + begin, byteLength: end - begin });
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] < spans[i - 1][1]) {
      throw new SafetensorsError(source, `tensors "${spans[i - 1][2]}" and "${spans[i][2]}" overlap in the data section`);
    }
  }
  // As the reference reader (safetensors' MetadataIncompleteBuffer): the tensors fill the data section
  // exactly, so a header length that is off by a byte cannot shift every tensor silently.
  const covered = spans.reduce((m, s) => Math.max(m, s[1]), 0);
  if (covered !== dataSize) {
    throw new SafetensorsError(
      source,
      `the tensors cover ${covered} bytes of the ${Math.max(0, dataSize)}-byte data section after the ${headerLength}-byte header: the header length is wrong or the file has bytes no tensor owns`,
    );
  }
  return { metadata, tensors };
}

/** An open safetensors file. Only the header is read on open; tensors are read on demand. */
export class SafetensorsFile implements SafetensorsHeader {
  private fd: number | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: ReadonlyMap<string, TensorInfo>;

  private constructor(readonly path: string, fd: number, header: SafetensorsHeader) {
    this.fd = fd;
    this.metadata = header.metadata;
    this.tensors = header.tensors;
  }

  static open(file: string): SafetensorsFile {
    refusePickle(file);
    // Without blocking: a FIFO would wait for a writer; the descriptor is then checked to be a regular file.
    const fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
    try {
      const st = fs.fstatSync(fd);
      checkRegular(file, st, Number.MAX_SAFE_INTEGER, 'a safetensors file');
      const size = st.size;
      if (size < 8) throw new SafetensorsError(file, `file is ${size} bytes, too short for a safetensors header`);
      const lenBuf = Buffer.alloc(8);
      fs.readSync(fd, lenBuf, 0, 8, 0);
      const headerLength = Number(lenBuf.readBigUInt64LE(0));
      if (headerLength > size - 8) {
        throw new SafetensorsError(file, `header length ${headerLength} runs past the end of the ${size}-byte file (truncated or not safetensors)`);
      }
      if (headerLength > MAX_HEADER_BYTES) throw new SafetensorsError(file, `header length ${headerLength} exceeds the 100 MB limit`);
      const headerBuf = Buffer.alloc(headerLength);
      fs.readSync(fd, headerBuf, 0, headerLength, 8);
      const header = parseHeader(headerBuf.toString('utf8'), headerLength, size, file);
      return new SafetensorsFile(file, fd, header);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(this.path, `no tensor named "${name}"`);
    return t;
  }

  /** The tensor's bytes exactly as stored (little-endian). */
  readBytes(name: string): Buffer {
    const t = this.info(name);
    if (this.fd === undefined) throw new SafetensorsError(this.path, 'file is closed');
    const buf = Buffer.alloc(t.byteLength);
    let read = 0;
    while (read < t.byteLength) {
      const n = fs.readSync(this.fd, buf, read, t.byteLength - read, t.fileOffset + read);
      if (n === 0) throw new SafetensorsError(this.path, `unexpected end of file reading "${name}"`);
      read += n;
    }
    return buf;
  }

  /** The tensor converted to float32, whatever its stored dtype. */
  readFloat32(name: string): Float32Array {
    return toFloat32(this.info(name).dtype, this.readBytes(name));
  }

  /** Integer tensors (token ids, step counters) as int32; int64 values must fit. */
  readInt32(name: string): Int32Array {
    const t = this.info(name);
    const b = this.readBytes(name);
    const n = numel(t.shape);
    const out = new Int32Array(n);
    if (t.dtype === 'I64') {
      for (let i = 0; i < n; i++) {
        const v = b.readBigInt64LE(i * 8);
        if (v > 2147483647n || v < -2147483648n) throw new SafetensorsError(this.path, `"${name}"[${i}] = ${v} does not fit in int32`);
        out[i] = Number(v);
      }
    } else if (t.dtype === 'I32') {
      for (let i = 0; i < n; i++) out[i] = b.readInt32LE(i * 4);
    } else {
      const f = toFloat32(t.dtype, b);
      for (let i = 0; i < n; i++) out[i] = Math.round(f[i]);
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** How many values are NaN or ±Infinity, and the index of the first (-1 when none): a weight file's sanity check. */
export function nonFinite(values: Float32Array): { count: number; first: number } {
  let count = 0;
  let first = -1;
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      if (first < 0) first = i;
      count++;
    }
  }
  return { count, first };
}

function toFloat32(dtype: DType, b: Buffer): Float32Array {
  const n = b.byteLength / ITEM_SIZE[dtype];
  // Copy into an aligned buffer: a Buffer's byteOffset into Node's pool is not always a multiple of 4.
  const aligned = new Uint8Array(b.byteLength);
  aligned.set(b);
  switch (dtype) {
    case 'F32':
      return new Float32Array(aligned.buffer);
    case 'F16':
      return float16ToFloat32(new Uint16Array(aligned.buffer));
    case 'BF16':
      return bfloat16ToFloat32(new Uint16Array(aligned.buffer));
    case 'F64':
      return Float32Array.from(new Float64Array(aligned.buffer));
    case 'I64':
      return Float32Array.from(new BigInt64Array(aligned.buffer), (v) => Number(v));
    case 'I32':
      return Float32Array.from(new Int32Array(aligned.buffer));
    case 'I16':
      return Float32Array.from(new Int16Array(aligned.buffer));
    case 'I8':
      return Float32Array.from(new Int8Array(aligned.buffer));
    case 'U8':
    case 'BOOL':
      return Float32Array.from(aligned);
  }
  void n;
}

/** Reads every tensor of a (small) file as float32. For large files use SafetensorsFile and read lazily. */
export function readAllFloat32(file: string): { metadata: Record<string, string>; tensors: Map<string, { shape: number[]; data: Float32Array }> } {
  const f = SafetensorsFile.open(file);
  try {
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, info] of f.tensors) tensors.set(name, { shape: [...info.shape], data: f.readFloat32(name) });
    return { metadata: { ...f.metadata }, tensors };
  } finally {
    f.close();
  }
}

export interface TensorToWrite {
  readonly dtype?: 'F32' | 'F16' | 'BF16' | 'I32' | 'I64';
  readonly shape: readonly number[];
  readonly data: Float32Array | Int32Array | ArrayLike<number>;
}

/**
 * The order the reference writer (safetensors' Rust `prepare`) lays tensors out in: by dtype, largest
 * first in its `Dtype` enum order (F64, F32, … BF16, F16, …), then by name. Files hashed by their data
 * section (sd-scripts' `sshs_model_hash`) only hash alike when the bytes are laid out alike.
 */
const DTYPE_ORDER: Record<string, number> = { BOOL: 0, U8: 1, I8: 2, I16: 5, F16: 7, BF16: 8, I32: 9, F32: 11, F64: 12, I64: 13 };

/** Serializes tensors (in the reference implementation's order) with optional metadata. */
export function encodeSafetensors(tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>, metadata?: Record<string, string>): Buffer {
  const rank = (t: TensorToWrite) => DTYPE_ORDER[t.dtype ?? 'F32'];
  const entries = (tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors)).sort(
    ([a, ta], [b, tb]) => rank(tb) - rank(ta) || (a < b ? -1 : a > b ? 1 : 0),
  );
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of entries) {
    const dtype = t.dtype ?? 'F32';
    const n = numel(t.shape);
    if (t.data.length !== n) throw new Error(`encodeSafetensors: "${name}" has ${t.data.length} values for shape ${JSON.stringify(t.shape)}`);
    const bytes = Buffer.alloc(n * ITEM_SIZE[dtype]);
    for (let i = 0; i < n; i++) {
      const v = t.data[i];
      if (dtype === 'F32') bytes.writeFloatLE(v, i * 4);
      else if (dtype === 'F16') bytes.writeUInt16LE(float32ToFloat16Bits(v), i * 2);
      else if (dtype === 'BF16') bytes.writeUInt16LE(float32ToBfloat16Bits(v), i * 2);
      else if (dtype === 'I32') bytes.writeInt32LE(v, i * 4);
      else bytes.writeBigInt64LE(BigInt(Math.trunc(v)), i * 8);
    }
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.byteLength] };
    offset += bytes.byteLength;
    chunks.push(bytes);
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data section starts 8-byte aligned (as the reference writer does).
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json, 'utf8'), ...chunks]);
}

export function writeSafetensors(file: string, tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>, metadata?: Record<string, string>): void {
  writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}

/** Pickle-based checkpoints can run arbitrary code when loaded; we never open them. */
export function refusePickle(file: string): void {
  if (/\.(ckpt|bin|pt|pth|pkl|pickle)$/i.test(file)) {
    throw new SafetensorsError(
      file,
      'this is a pickle checkpoint, which can run arbitrary code when loaded, so LoRA Studio does not open it. ' +
        'Convert it to safetensors first, e.g. in Python: `from safetensors.torch import save_file; ' +
        "save_file(torch.load(path, weights_only=True), 'model.safetensors')`, or download the repository's .safetensors files.",
    );
  }
}

/** bf16 is the top half of an f32, rounded to nearest even (as torch's `.to(torch.bfloat16)`); NaN stays NaN. */
function float32ToBfloat16Bits(v: number): number {
  const x = new Uint32Array(new Float32Array([v]).buffer)[0];
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

function float32ToFloat16Bits(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    if ((mant >>> (shift - 1)) & 1 && ((mant & ((1 << (shift - 1)) - 1)) || h & 1)) h++;
    return sign | h;
  }
  let h = sign | (e << 10) | (mant >>> 13);
  if (mant & 0x1000 && (mant & 0x2fff)) h++; // round to nearest even
  return h;
}
