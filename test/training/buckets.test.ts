// Aspect-ratio bucketing against sd-scripts' own code (test/fixtures/buckets/buckets.json, made by
// make_buckets.py running kohya's make_bucket_resolutions, BucketManager.select_bucket and get_crop_ltrb):
// bucket lists, the bucket and resize of 21 image sizes in three settings, and the SDXL crop condition,
// exactly (integers; the aspect error to 1e-12, float64 both sides). Then batches hold one bucket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from '../helpers/fixtures.js';
import { bucketResolutions, selectBucket, cropTopLeft, epochBatches, planBuckets, bucketInfoMetadata, fitToBucket } from '../../src/training/buckets.js';
import { epochOrder } from '../../src/training/random.js';

interface Ref {
  settings: { resolution: number; min: number; max: number; step: number; resolutions: [number, number][]; choices: { image: [number, number]; bucket: [number, number]; resized: [number, number]; ar_error: number; crop_left_top: [number, number] }[] }[];
}
const ref = JSON.parse(fs.readFileSync(path.join(REPO, 'test/fixtures/buckets/buckets.json'), 'utf8')) as Ref;

test("buckets, each image's bucket, its resize and its crop condition are sd-scripts'", () => {
  for (const s of ref.settings) {
    const buckets = bucketResolutions({ resolution: s.resolution, minReso: s.min, maxReso: s.max, step: s.step });
    assert.deepEqual(buckets.map((b) => [b.width, b.height]), s.resolutions, `buckets of ${JSON.stringify(s)}`);
    for (const c of s.choices) {
      const got = selectBucket(buckets, c.image[0], c.image[1]);
      const what = `${c.image.join('×')} at resolution ${s.resolution}`;
      assert.deepEqual([got.bucket.width, got.bucket.height], c.bucket, `${what}: bucket`);
      assert.deepEqual([got.resized.width, got.resized.height], c.resized, `${what}: resized size`);
      assert.ok(Math.abs(got.aspectError - c.ar_error) < 1e-12, `${what}: aspect error ${got.aspectError} vs ${c.ar_error}`);
      const crop = cropTopLeft(got.bucket, c.image[0], c.image[1]);
      assert.deepEqual([crop.left, crop.top], c.crop_left_top, `${what}: crop left/top`);
    }
  }
});

test('an image is resized to cover its bucket and cropped to exactly the bucket', () => {
  const buckets = bucketResolutions({ resolution: 64, minReso: 32, maxReso: 128, step: 8 });
  const img = { width: 100, height: 37, data: new Uint8Array(100 * 37 * 3).map((_, i) => i % 251) };
  const choice = selectBucket(buckets, img.width, img.height);
  const out = fitToBucket(img, choice);
  assert.deepEqual([out.width, out.height], [choice.bucket.width, choice.bucket.height]);
  assert.equal(out.data.length, out.width * out.height * 3);
});

test('batches hold images of one bucket, cover every image once an epoch, and without buckets are the guide\'s order', () => {
  const sizes = [[64, 64], [96, 64], [64, 96], [96, 64], [64, 64], [64, 96], [96, 64], [64, 64], [100, 37]].map(([width, height]) => ({ width, height }));
  const plan = planBuckets({ resolution: 64, minReso: 32, maxReso: 128, step: 8 }, sizes);
  const bucketOf = plan.choices.map((c) => c.index);
  for (const epoch of [0, 1, 2]) {
    const batches = epochBatches(7, epoch, sizes.length, 2, bucketOf);
    for (const b of batches) assert.equal(new Set(b.map((i) => bucketOf[i])).size, 1, `epoch ${epoch}: batch ${JSON.stringify(b)} mixes buckets`);
    assert.deepEqual(batches.flat().sort((a, b) => a - b), sizes.map((_, i) => i));
    // 4 buckets of 3, 3, 2, 1 images → ceil: 2 + 2 + 1 + 1 batches.
    assert.equal(batches.length, 6);
  }
  assert.notDeepEqual(epochBatches(7, 0, sizes.length, 2, bucketOf), epochBatches(7, 1, sizes.length, 2, bucketOf), 'each epoch reshuffles');
  assert.deepEqual(epochBatches(7, 3, 10, 4).flat(), epochOrder(7, 3, 10));
  // kohya's ss_bucket_info shape.
  const info = JSON.parse(bucketInfoMetadata(plan)) as { buckets: Record<string, { resolution: number[]; count: number }>; mean_img_ar_error: number };
  assert.equal(Object.values(info.buckets).reduce((a, b) => a + b.count, 0), sizes.length);
  assert.ok(info.mean_img_ar_error > 0 && info.mean_img_ar_error < 0.5);
});
