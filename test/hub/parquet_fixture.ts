// A small Pokémon-style Hub dataset made by the tests: one Parquet file whose `image` column holds
// `{bytes, path}` structs with PNG bytes (the `datasets` Image feature) and whose `text` column holds the
// captions — written with hyparquet-writer, SNAPPY-compressed as `datasets` writes them.
import sharp from 'sharp';
import { ByteWriter, parquetWrite } from 'hyparquet-writer';

export interface Row {
  rgb: [number, number, number];
  text: string;
}

export async function pngOf(rgb: [number, number, number], size = 64): Promise<Buffer> {
  return sharp({ create: { width: size, height: size, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } }).png().toBuffer();
}

export async function pokemonParquet(rows: Row[]): Promise<Buffer> {
  const images = await Promise.all(rows.map(async (r, i) => ({ bytes: await pngOf(r.rgb), path: `${i}.png` })));
  const writer = new ByteWriter();
  parquetWrite({
    writer,
    columnData: [
      { name: 'image', data: images },
      { name: 'text', data: rows.map((r) => r.text) },
    ],
    schema: [
      { name: 'schema', num_children: 2 },
      { name: 'image', repetition_type: 'OPTIONAL', num_children: 2 },
      { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
      { name: 'path', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
      { name: 'text', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    ],
  });
  return Buffer.from(writer.getBuffer());
}

export const POKEMON_ROWS: Row[] = [
  { rgb: [230, 40, 40], text: 'a drawing of a red pokemon' },
  { rgb: [40, 200, 60], text: 'a green cartoon creature with leaves' },
  { rgb: [40, 60, 220], text: 'a blue water pokemon with a shell' },
];

/** A Parquet file whose `image` column holds paths into the dataset repository (strings), with `text` captions. */
export function pathsParquet(paths: string[], texts: string[]): Buffer {
  const writer = new ByteWriter();
  parquetWrite({
    writer,
    columnData: [
      { name: 'image', data: paths },
      { name: 'text', data: texts },
    ],
    schema: [
      { name: 'schema', num_children: 2 },
      { name: 'image', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
      { name: 'text', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    ],
  });
  return Buffer.from(writer.getBuffer());
}
