import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { resizeBilinear, resizedSize, centerCrop, randomCrop, toNormalizedPixels, trainTransform, flipHorizontal, type RgbImage } from '../../src/training/image_transforms.js';
import { decodeRgb } from '../../src/training/dataset.js';
import { Random } from '../../src/training/random.js';
import { FIXTURES, golden } from '../helpers/fixtures.js';

/** A one-channel-looking RGB image (all three channels equal) from a row-major array of values. */
const grey = (width: number, height: number, values: number[]): RgbImage => ({ width, height, data: Uint8Array.from(values.flatMap((v) => [v, v, v])) });
const channel0 = (img: RgbImage) => Array.from({ length: img.width * img.height }, (_, i) => img.data[i * 3]);

test('Resize(int) keeps the aspect ratio and truncates the long side, as torchvision does', () => {
  assert.deepEqual(resizedSize(100, 50, 32), { width: 64, height: 32 });
  assert.deepEqual(resizedSize(50, 100, 32), { width: 32, height: 64 });
  assert.deepEqual(resizedSize(300, 200, 64), { width: 96, height: 64 });
  assert.deepEqual(resizedSize(301, 200, 64), { width: 96, height: 64 }); // 96.32 truncated
});

test('bilinear shrinking antialiases with PIL weights (triangle widened by the scale)', () => {
  // 4 → 2 pixels (scale 2, support 2): output 0 centred at 1.0 takes inputs 0,1,2 with weights 0.75,0.75,0.25
  // normalised to 3/7, 3/7, 1/7; output 1 (centre 3.0) takes inputs 1,2,3 with 1/7, 3/7, 3/7. In PIL's
  // 22-bit fixed point with rounding: (3·70 + 3·140 + 210)/7 = 120 and (140 + 3·210 + 3·140)/7 = 170.
  const img = grey(4, 1, [70, 140, 210, 140]);
  assert.deepEqual(channel0(resizeBilinear(img, 2, 1)), [120, 170]);
  // Vertical pass does the same along columns.
  const col = grey(1, 4, [70, 140, 210, 140]);
  assert.deepEqual(channel0(resizeBilinear(col, 1, 2)), [120, 170]);
  // Enlarging interpolates between neighbours (2 → 4: centres at 0.25 and 0.75 of a pixel).
  assert.deepEqual(channel0(resizeBilinear(grey(2, 1, [0, 200]), 4, 1)), [0, 50, 150, 200]);
  // A constant image stays constant at any size.
  const flat = grey(7, 5, Array(35).fill(77));
  assert.ok(channel0(resizeBilinear(flat, 3, 11)).every((v) => v === 77));
});

test('center crop rounds half to even (Python round), random crop draws top then left', () => {
  const img = grey(5, 7, Array.from({ length: 35 }, (_, i) => i));
  // (5−2)/2 = 1.5 → 2, (7−2)/2 = 2.5 → 2.
  assert.deepEqual(channel0(centerCrop(img, 2)), [12, 13, 17, 18]);
  const rng = new Random(0);
  const expect = new Random(0);
  const top = expect.randint(0, 7 - 3 + 1)[0];
  const left = expect.randint(0, 5 - 3 + 1)[0];
  const c = randomCrop(img, 3, rng);
  assert.equal(c.data[0], top * 5 + left);
  // No draws when the image already has the crop's size.
  const before = JSON.stringify(rng.getState());
  randomCrop(grey(3, 3, Array(9).fill(0)), 3, rng);
  assert.equal(JSON.stringify(rng.getState()), before);
});

test('flip, and ToTensor + Normalize(0.5, 0.5) in float32', () => {
  assert.deepEqual(channel0(flipHorizontal(grey(3, 1, [1, 2, 3]))), [3, 2, 1]);
  const px = toNormalizedPixels(grey(3, 1, [0, 128, 255]));
  assert.equal(px[0], -1);
  assert.equal(px[8], 1);
  assert.equal(px[3], Math.fround(Math.fround(Math.fround(128 / 255) - 0.5) / 0.5));
});

test('the dataset images become exactly the pixel_values diffusers trained on (golden train_lora)', async () => {
  const g = golden('train_lora').get('pixel_values')!; // [2, 3, 64, 64] NCHW
  const [n, c, h, w] = g.shape;
  for (let b = 0; b < n; b++) {
    const img = await decodeRgb(path.join(FIXTURES, 'dataset', `img${b}.png`));
    const px = trainTransform(img, { resolution: h, centerCrop: true, randomFlip: false }, new Random(0));
    let maxErr = 0;
    for (let ch = 0; ch < c; ch++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      maxErr = Math.max(maxErr, Math.abs(px[(y * w + x) * 3 + ch] - g.data[((b * c + ch) * h + y) * w + x]));
    }
    // Exact: the same 8-bit decode and the same float32 arithmetic.
    assert.equal(maxErr, 0, `img${b}`);
  }
});
