// The Dataset view's model (core/config/dataset_view.ts) on small folders made here: what a user reads in the view
// (counts, images without captions, each image's size and the bucket kohya's rule puts it in) and what a caption
// edit does on disk (the right file and nothing else; in metadata.jsonl only that image's line, other lines byte
// for byte, CRLF endings and a missing final newline kept). Image sizes from headers must equal sharp's.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { readDatasetView, saveCaption } from '../../src/core/config/dataset_view.js';
import { planBuckets } from '../../src/core/config/buckets.js';
import { imageSize } from '../../src/core/io/image_size.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dataset-view-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const O = { captionColumn: 'text', imageColumn: 'image', resolution: 64 };
const BUCKETS = { minReso: 32, maxReso: 128, step: 16 };

async function image(file: string, width: number, height: number, format: 'png' | 'jpeg' | 'webp' = 'png'): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp({ create: { width, height, channels: 3, background: { r: 200, g: 10, b: 10 } } })[format]().toFile(file);
}

/** Every file under dir with its bytes, to show a save touched only what it should. */
const snapshot = (dir: string) => new Map(fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => [path.join(e.parentPath, e.name), fs.readFileSync(path.join(e.parentPath, e.name))]));

test('image sizes from headers are what sharp reads (PNG, JPEG, lossy and lossless WebP)', async () => {
  const cases = [['png', 37, 21], ['jpeg', 64, 40], ['webp', 33, 90]] as const;
  for (const [format, w, h] of cases) {
    const f = path.join(tmp, `size.${format}`);
    await image(f, w, h, format);
    const m = await sharp(f).metadata();
    assert.deepEqual(imageSize(f), { width: m.width, height: m.height }, format);
  }
  const lossless = path.join(tmp, 'lossless.webp');
  await sharp({ create: { width: 17, height: 300, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0.5 } } }).webp({ lossless: true }).toFile(lossless);
  assert.deepEqual(imageSize(lossless), { width: 17, height: 300 });
  fs.writeFileSync(path.join(tmp, 'not-an-image.png'), 'hello');
  assert.equal(imageSize(path.join(tmp, 'not-an-image.png')), undefined);
});

test('caption files: counts, an image without a caption, sizes and buckets; a save writes that image’s .txt only', async () => {
  const dir = path.join(tmp, 'kohya');
  await image(path.join(dir, 'a.png'), 64, 64);
  await image(path.join(dir, 'b.jpg'), 128, 64);
  await image(path.join(dir, 'sub/c.webp'), 40, 100, 'webp');
  fs.writeFileSync(path.join(dir, 'a.txt'), 'a red square\n');
  fs.writeFileSync(path.join(dir, 'sub/c.txt'), 'a tall one');
  const v = readDatasetView(dir, { ...O, buckets: BUCKETS });
  assert.equal(v.layout, 'caption files');
  assert.deepEqual(v.counts, { images: 3, captioned: 2, uncaptioned: 1 });
  assert.deepEqual(v.images.map((i) => [i.name, i.captions?.[0], i.width, i.height]), [['a.png', 'a red square', 64, 64], [path.join('sub', 'c.webp'), 'a tall one', 40, 100], ['b.jpg', undefined, 128, 64]]);
  // The buckets are the trainer's: planBuckets over the same sizes (kohya's rule, matched against sd-scripts in buckets.test.ts).
  const plan = planBuckets({ resolution: 64, ...BUCKETS }, [{ width: 64, height: 64 }, { width: 40, height: 100 }, { width: 128, height: 64 }]);
  assert.deepEqual(v.images.map((i) => i.bucket), plan.choices.map((c) => c.bucket));
  assert.deepEqual(v.images.map((i) => `${i.bucket!.width}x${i.bucket!.height}`), ['64x64', '32x96', '80x48']); // ≈64² pixels, nearest aspect (0.33 for 0.4, 1.67 for 2)
  assert.deepEqual(v.buckets, plan.counts);
  assert.ok(v.problems.some((p) => p.startsWith('b.jpg: missing caption')), v.problems.join('; '));
  // Without buckets every image trains at resolution².
  assert.deepEqual(new Set(readDatasetView(dir, O).images.map((i) => `${i.bucket!.width}x${i.bucket!.height}`)), new Set(['64x64']));

  const before = snapshot(dir);
  assert.equal(saveCaption(dir, 'b.jpg', 'a wide red rectangle', O), path.join(dir, 'b.txt'));
  assert.equal(saveCaption(dir, path.join('sub', 'c.webp'), 'a tall red one', O), path.join(dir, 'sub/c.txt'));
  const after = snapshot(dir);
  assert.equal(after.get(path.join(dir, 'b.txt'))!.toString(), 'a wide red rectangle');
  assert.equal(after.get(path.join(dir, 'sub/c.txt'))!.toString(), 'a tall red one');
  for (const [f, bytes] of before) if (!f.endsWith('c.txt')) assert.deepEqual(after.get(f), bytes, `${f} untouched`);
  assert.deepEqual([...after.keys()].filter((f) => !before.has(f)), [path.join(dir, 'b.txt')], 'one new file, no temporaries left');
  assert.deepEqual(readDatasetView(dir, O).counts, { images: 3, captioned: 3, uncaptioned: 0 });
  assert.throws(() => saveCaption(dir, '../x.png', 'no', O), /no such image/);
});

test('metadata.jsonl: a caption edit changes only that image’s line; an unlisted image gets a new line', async () => {
  const dir = path.join(tmp, 'imagefolder');
  await image(path.join(dir, 'img0.png'), 64, 64);
  await image(path.join(dir, 'img1.png'), 64, 32);
  await image(path.join(dir, 'img2.png'), 32, 64);
  // CRLF endings, an extra column, unicode escaped as Python writes it, no final newline.
  const lines = ['{"file_name": "img0.png", "text": "a red circle", "score": 5}', '{"file_name":"img1.png","text":"caf\\u00e9, two"}', '{"file_name": "other/missing.png", "text": "x"}'];
  fs.writeFileSync(path.join(dir, 'metadata.jsonl'), lines.join('\r\n'));
  const v = readDatasetView(dir, { ...O, buckets: BUCKETS });
  assert.equal(v.layout, 'metadata.jsonl');
  assert.deepEqual(v.counts, { images: 3, captioned: 2, uncaptioned: 1 });
  assert.deepEqual(v.images.map((i) => [i.name, i.captions?.[0], i.source]), [['img0.png', 'a red circle', { kind: 'metadata.jsonl', line: 1 }], ['img1.png', 'café, two', { kind: 'metadata.jsonl', line: 2 }], ['img2.png', undefined, undefined]]);
  assert.ok(v.problems.some((p) => p.startsWith('other/missing.png: image file not found')), v.problems.join('; '));

  const file = path.join(dir, 'metadata.jsonl');
  const before = snapshot(dir);
  assert.equal(saveCaption(dir, 'img0.png', 'a "red" circle', O), file);
  assert.equal(fs.readFileSync(file, 'utf8'), ['{"file_name": "img0.png", "text": "a \\"red\\" circle", "score": 5}', lines[1], lines[2]].join('\r\n'));
  saveCaption(dir, 'img2.png', 'a tall red rectangle', O);
  assert.equal(fs.readFileSync(file, 'utf8'), ['{"file_name": "img0.png", "text": "a \\"red\\" circle", "score": 5}', lines[1], lines[2], '{"file_name": "img2.png", "text": "a tall red rectangle"}', ''].join('\r\n'));
  const after = snapshot(dir);
  for (const [f, bytes] of before) if (f !== file) assert.deepEqual(after.get(f), bytes, `${f} untouched`);
  assert.equal(after.size, before.size, 'no other file written');
  const back = readDatasetView(dir, O);
  assert.deepEqual(back.images.map((i) => i.captions?.[0]), ['a "red" circle', 'café, two', 'a tall red rectangle']);
});
