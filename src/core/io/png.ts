// Images in and out of tensors. PNGs are written with sharp, atomically.
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { writeFileAtomic } from '../config/run_folder.js';

/** [H, W, 3] or [1, H, W, 3] floats in [0, 1] → 8-bit RGB, rounded as diffusers' numpy_to_pil does ((x·255).round()). */
export async function tensorToRgb8(image: tf.Tensor): Promise<{ data: Buffer; width: number; height: number }> {
  const hwc = image.rank === 4 ? image.squeeze([0]) : image;
  const [height, width, channels] = hwc.shape as [number, number, number];
  if (channels !== 3) throw new Error(`expected an RGB image tensor, got shape ${JSON.stringify(image.shape)}`);
  const values = await hwc.data();
  if (hwc !== image) hwc.dispose();
  const data = Buffer.alloc(values.length);
  for (let i = 0; i < values.length; i++) data[i] = Math.round(Math.min(1, Math.max(0, values[i])) * 255);
  return { data, width, height };
}

export async function writePng(file: string, image: tf.Tensor, metadata?: Record<string, string>): Promise<void> {
  const { data, width, height } = await tensorToRgb8(image);
  const png = await sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
  // Generation parameters go into tEXt chunks (A1111 uses "parameters"), so an image can be reproduced.
  writeFileAtomic(file, metadata ? addTextChunks(png, metadata) : png);
}

/** Inserts PNG tEXt chunks right after IHDR. */
function addTextChunks(png: Buffer, text: Record<string, string>): Buffer {
  const ihdrEnd = 8 + 8 + png.readUInt32BE(8) + 4;
  const chunks = Object.entries(text).map(([k, v]) => pngChunk('tEXt', Buffer.concat([Buffer.from(k, 'latin1'), Buffer.from([0]), Buffer.from(v, 'latin1')])));
  return Buffer.concat([png.subarray(0, ihdrEnd), ...chunks, png.subarray(ihdrEnd)]);
}

function pngChunk(type: string, body: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  const typeAndBody = Buffer.concat([Buffer.from(type, 'latin1'), body]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typeAndBody));
  return Buffer.concat([len, typeAndBody, crc]);
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const byte of b) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
