import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SafetensorsFile, encodeSafetensors, writeSafetensors, readAllFloat32 } from '../../src/core/io/safetensors.js';
import { FIXTURES } from '../helpers/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'st-'));
const write = (name: string, bytes: Buffer) => {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, bytes);
  return p;
};
/** A file with a hand-written header, to build malformed cases. */
const raw = (header: object, dataBytes: number) => {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.alloc(dataBytes)]);
};

test('round-trips f32, f16, i32, i64 and metadata', () => {
  const p = path.join(tmp, 'rt.safetensors');
  writeSafetensors(
    p,
    {
      a: { shape: [2, 2], data: new Float32Array([1, -2.5, 3e-3, 65504]) },
      h: { dtype: 'F16', shape: [3], data: [1, -0.333251953125, 65504] },
      i: { dtype: 'I32', shape: [2], data: new Int32Array([7, -9]) },
      l: { dtype: 'I64', shape: [2], data: [49406, 49407] },
    },
    { format: 'pt', rank: '4' },
  );
  const f = SafetensorsFile.open(p);
  assert.deepEqual(f.metadata, { format: 'pt', rank: '4' });
  assert.deepEqual([...f.readFloat32('a')], [1, -2.5, Math.fround(3e-3), 65504]);
  assert.deepEqual([...f.readFloat32('h')], [1, -0.333251953125, 65504]);
  assert.deepEqual([...f.readInt32('i')], [7, -9]);
  assert.deepEqual([...f.readInt32('l')], [49406, 49407]);
  assert.equal(f.info('h').dtype, 'F16');
  f.close();
  // The data section starts 8-byte aligned, as the reference writer pads it.
  assert.equal(fs.readFileSync(p).readBigUInt64LE(0) % 8n, 0n);
});

test('decodes bf16 (top 16 bits of f32)', () => {
  const data = Buffer.alloc(4);
  data.writeUInt16LE(0x3f80, 0); // 1.0
  data.writeUInt16LE(0xc040, 2); // -3.0
  const header = raw({ b: { dtype: 'BF16', shape: [2], data_offsets: [0, 4] } }, 0);
  const p = write('bf16.safetensors', Buffer.concat([header, data]));
  assert.deepEqual([...SafetensorsFile.open(p).readFloat32('b')], [1, -3]);
});

test('reads the header without reading the data', () => {
  // A "large" file: the header says 64 MiB of data; only the header is read on open.
  const f = SafetensorsFile.open(path.join(FIXTURES, 'model/unet/diffusion_pytorch_model.safetensors'));
  assert.ok(f.tensors.size > 50);
  assert.ok(f.tensors.has('conv_in.weight'));
  f.close();
});

test('rejects malformed files with a clear error', () => {
  const cases: [string, Buffer, RegExp][] = [
    ['short', Buffer.alloc(3), /too short/],
    ['header-past-end', (() => { const b = Buffer.alloc(16); b.writeBigUInt64LE(1000n); return b; })(), /runs past the end/],
    ['bad-json', (() => { const j = Buffer.from('{not json'); const l = Buffer.alloc(8); l.writeBigUInt64LE(BigInt(j.length)); return Buffer.concat([l, j]); })(), /not valid JSON/],
    ['unknown-dtype', raw({ x: { dtype: 'F8_E9', shape: [1], data_offsets: [0, 1] } }, 1), /unknown dtype/],
    ['wrong-size', raw({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4), /needs 8/],
    ['truncated', raw({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8), /truncated/],
    ['overlap', raw({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, y: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12), /overlap/],
    ['bad-shape', raw({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), /shape/],
  ];
  for (const [name, bytes, re] of cases) {
    const p = write(`${name}.safetensors`, bytes);
    assert.throws(() => SafetensorsFile.open(p), (e: Error) => re.test(e.message) && e.message.includes(p), name);
  }
  // A truncated copy of a real file.
  const real = fs.readFileSync(path.join(FIXTURES, 'golden/unet.safetensors'));
  const p = write('cut.safetensors', real.subarray(0, real.length - 100));
  assert.throws(() => readAllFloat32(p), /truncated/);
});

test('refuses pickle checkpoints and says how to convert', () => {
  const p = write('model.ckpt', Buffer.from('PK\x03\x04'));
  assert.throws(() => SafetensorsFile.open(p), /pickle.*Convert it to safetensors/s);
  for (const ext of ['bin', 'pt']) assert.throws(() => SafetensorsFile.open(path.join(tmp, `x.${ext}`)), /pickle/);
});

test('encode sorts keys so output is deterministic', () => {
  const a = encodeSafetensors({ b: { shape: [1], data: [2] }, a: { shape: [1], data: [1] } });
  const b = encodeSafetensors(new Map([['a', { shape: [1], data: [1] }], ['b', { shape: [1], data: [2] }]]));
  assert.deepEqual(a, b);
});
