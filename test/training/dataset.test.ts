import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { openDataset, DatasetError, pickCaption, decodeRgb } from '../../src/training/dataset.js';
import { Random } from '../../src/training/random.js';
import { IMAGE_EXTENSIONS, UNSUPPORTED_IMAGE_EXTENSIONS } from '../../src/core/config/dataset_files.js';
import { FIXTURES, TINY_SHAPES } from '../helpers/fixtures.js';

const opts = { imageColumn: 'image', captionColumn: 'text' };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ds-'));
const png = (w: number, h: number) => sharp({ create: { width: w, height: h, channels: 3, background: { r: 200, g: 10, b: 10 } } }).png().toBuffer();

async function folder(name: string, files: Record<string, Buffer | string>): Promise<string> {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [f, body] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), body);
  }
  return dir;
}

async function problemsOf(dir: string, o = opts): Promise<readonly string[]> {
  await assert.rejects(openDataset(dir, o), DatasetError);
  try {
    await openDataset(dir, o);
  } catch (e) {
    return (e as DatasetError).problems;
  }
  return [];
}

test('reads the imagefolder layout (metadata.jsonl) in file order', async () => {
  const ds = await openDataset(path.join(FIXTURES, 'dataset'), opts);
  assert.equal(ds.layout, 'metadata.jsonl');
  assert.deepEqual(ds.examples.map((e) => [e.name, e.captions[0]]), [['img0.png', 'a red circle'], ['img1.png', 'a blue square']]);
  const corner = await openDataset(path.join(TINY_SHAPES, 'dataset-corner'), opts);
  assert.equal(corner.examples.length, 16);
});

test('every accepted image extension is one sharp decodes; the refused ones are not accepted', async () => {
  const decodable = new Set(Object.values(sharp.format).flatMap((f) => (f.input.file ? (f.input.fileSuffix ?? []) : [])));
  for (const ext of IMAGE_EXTENSIONS) assert.ok(decodable.has(ext), `sharp ${sharp.versions.sharp} reads ${ext}`);
  assert.deepEqual(UNSUPPORTED_IMAGE_EXTENSIONS.filter((e) => IMAGE_EXTENSIONS.includes(e)), []);
  // And the decoder is the dataset's: one PNG written as each accepted format reads back at its size.
  const png = await sharp({ create: { width: 5, height: 3, channels: 3, background: { r: 200, g: 10, b: 10 } } }).png().toBuffer();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'exts-'));
  for (const ext of IMAGE_EXTENSIONS) {
    const file = path.join(dir, `x${ext}`);
    await sharp(png).toFile(file); // the format follows the extension
    const im = await decodeRgb(file);
    assert.deepEqual([im.width, im.height], [5, 3], ext);
  }
});

test('every problem of a metadata.jsonl dataset is reported at once, by file name', async () => {
  const good = await png(8, 8);
  const dir = await folder('meta-bad', {
    'a.png': good,
    'broken.png': Buffer.from('this is not a png at all'),
    'truncated.png': good.subarray(0, 40),
    'nocap.png': good,
    'sub/b.jpg': await sharp(good).jpeg().toBuffer(),
    'metadata.jsonl': [
      '{"file_name": "a.png", "text": "fine"}',
      '{"file_name": "broken.png", "text": "x"}',
      '{"file_name": "truncated.png", "text": "x"}',
      '{"file_name": "nocap.png", "caption": "in the wrong column"}',
      '{"file_name": "gone.png", "text": "x"}',
      'not json',
      '{"file_name": "sub/b.jpg", "text": ["one", "two"]}',
      '{"text": "no file name"}',
    ].join('\n'),
  });
  const problems = await problemsOf(dir);
  const has = (re: RegExp) => assert.ok(problems.some((p) => re.test(p)), `expected a problem matching ${re}, got:\n${problems.join('\n')}`);
  has(/^broken\.png: unreadable image/);
  has(/^truncated\.png: unreadable image/);
  has(/^nocap\.png: missing caption .*"text".*caption/);
  has(/^gone\.png: image file not found/);
  has(/line 6: not valid JSON/);
  has(/line 8: no "file_name"/);
  assert.equal(problems.length, 6, problems.join('\n'));
  // The error message names them too.
  await assert.rejects(openDataset(dir, opts), /dataset .*: 6 problems:(?=[\s\S]*broken\.png)(?=[\s\S]*gone\.png)/);
});

test('kohya layout: .txt captions beside the images, missing ones reported', async () => {
  const good = await png(10, 6);
  const dir = await folder('kohya', { 'x.png': good, 'x.txt': '  a caption \n', 'y.webp': await sharp(good).webp().toBuffer(), 'z.png': good, 'w.bmp': 'BM', 'notes.md': 'ignored' });
  const problems = await problemsOf(dir);
  assert.deepEqual(problems.map((p) => p.split(':')[0]).sort(), ['w.bmp', 'y.webp', 'z.png']);
  fs.writeFileSync(path.join(dir, 'y.txt'), '');
  fs.writeFileSync(path.join(dir, 'z.txt'), 'zed');
  fs.rmSync(path.join(dir, 'w.bmp'));
  const ds = await openDataset(dir, opts);
  assert.equal(ds.layout, 'caption files');
  assert.deepEqual(ds.examples.map((e) => [e.name, e.captions[0]]), [['x.png', 'a caption'], ['y.webp', ''], ['z.png', 'zed']]);
  const img = await decodeRgb(path.join(dir, 'y.webp'));
  assert.deepEqual([img.width, img.height, img.data.length], [10, 6, 180]);
});

test('several captions: one is picked with the training generator; max_train_samples takes a seeded subset', async () => {
  const good = await png(4, 4);
  const rows = Array.from({ length: 6 }, (_, i) => JSON.stringify({ file_name: `${i}.png`, text: i === 0 ? ['p', 'q', 'r'] : `c${i}` }));
  const files: Record<string, Buffer | string> = { 'metadata.jsonl': rows.join('\n') };
  for (let i = 0; i < 6; i++) files[`${i}.png`] = good;
  const dir = await folder('multi', files);
  const ds = await openDataset(dir, opts);
  const rng = new Random(3);
  const picks = new Set(Array.from({ length: 30 }, () => pickCaption(ds.examples[0], rng)));
  assert.deepEqual([...picks].sort(), ['p', 'q', 'r']);
  const sub = await openDataset(dir, { ...opts, maxTrainSamples: 3, seed: 9 });
  assert.equal(sub.examples.length, 3);
  assert.deepEqual((await openDataset(dir, { ...opts, maxTrainSamples: 3, seed: 9 })).examples, sub.examples);
});

test('an empty or missing folder says what to do', async () => {
  const empty = await folder('empty', {});
  assert.match((await problemsOf(empty))[0], /no images found.*metadata\.jsonl/);
  assert.match((await problemsOf(path.join(tmp, 'nope')))[0], /folder not found/);
});

// Hostile folders (issue 17): each refusal names the file and the limit, and none reads past its cap.
test('a metadata.jsonl that is not a regular file is refused by name, without reading it', async () => {
  const dir = await folder('meta-devzero', { 'a.png': await png(8, 8) });
  fs.symlinkSync('/dev/zero', path.join(dir, 'metadata.jsonl'));
  const started = Date.now();
  const problems = await problemsOf(dir);
  assert.ok(Date.now() - started < 10_000, 'refused before reading /dev/zero to its end');
  assert.ok(problems.some((p) => p.includes('metadata.jsonl') && p.includes('must be a regular file')), problems.join('\n'));
});

test('a caption over the length limit is refused naming its file and the limit', async () => {
  const dir = await folder('long-caption', { 'a.png': await png(8, 8), 'a.txt': 'x'.repeat(1_000_000) });
  const problems = await problemsOf(dir);
  assert.ok(problems.some((p) => p.includes('a.txt') && p.includes('10000-character limit')), problems.join('\n'));
});

test('an image that is a symlink out of the dataset folder is refused', async () => {
  const outside = await folder('outside', { 'secret.png': await png(8, 8) });
  const dir = await folder('symlink-out', { 'a.txt': 'a red circle' });
  fs.symlinkSync(path.join(outside, 'secret.png'), path.join(dir, 'a.png'));
  const problems = await problemsOf(dir);
  assert.ok(problems.some((p) => p.includes('a.png') && p.includes('outside the dataset folder')), problems.join('\n'));
});

test('an image too elongated to crop a square from is refused before decoding, naming the limit', async () => {
  const file = path.join(tmp, 'thin.png');
  fs.writeFileSync(file, await sharp({ create: { width: 200_000, height: 1, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png().toBuffer());
  await assert.rejects(decodeRgb(file), /200000×1 is more elongated than 32:1/);
});
