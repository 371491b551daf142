// Aspect-ratio bucketing, by sd-scripts' rule (library/model_util.py make_bucket_resolutions and
// library/train_util.py BucketManager.select_bucket / trim_and_resize_if_required, with upscaling allowed):
//
//   buckets: (⌊√(res²) / step⌋·step)² and, for w = min, min+step, … ≤ max:
//            h = min(max, ⌊(res² // w) / step⌋·step); when h ≥ min, (w, h) and (h, w); sorted
//   an image w×h goes to the bucket of the same size if there is one, else to the first bucket whose aspect
//   ratio is nearest w/h; it is resized (PIL bilinear) by the scale that makes it cover the bucket,
//   (⌊w·s + 0.5⌋, ⌊h·s + 0.5⌋), then the excess is cropped: centred, or at a random offset.
//
// Batches hold one bucket: each epoch shuffles every bucket's images, cuts them into batches of
// train_batch_size (the last of a bucket may be short) and shuffles the batches, as BucketManager does.
import { Random, streamSeed } from './random.js';
import type { Bucket, BucketChoice } from '../core/config/buckets.js';
// The bucket arithmetic lives in src/core/config/buckets.ts (one home, shared with the Dataset view).
export { bucketRangeProblem, bucketResolutions, selectBucket, planBuckets, bucketInfoMetadata, type Bucket, type BucketSettings, type BucketChoice, type BucketPlan } from '../core/config/buckets.js';
import { crop, resizeBilinear, type RgbImage } from './image_transforms.js';

/** Resize to `choice.resized`, then crop to the bucket (centred, or randomly from `rng`: left, then top). */
export function fitToBucket(img: RgbImage, choice: BucketChoice, rng?: Random): RgbImage {
  const { bucket, resized } = choice;
  let x = resizeBilinear(img, resized.width, resized.height);
  const excessW = x.width - bucket.width;
  const excessH = x.height - bucket.height;
  // trim_and_resize_if_required: p = trim // 2, or random.randint(0, trim) (both ends included).
  const left = excessW > 0 ? (rng ? rng.randint(0, excessW + 1)[0] : Math.floor(excessW / 2)) : 0;
  const top = excessH > 0 ? (rng ? rng.randint(0, excessH + 1)[0] : Math.floor(excessH / 2)) : 0;
  if (excessW > 0 || excessH > 0) x = crop(x, top, left, bucket.height, bucket.width);
  return x;
}

/**
 * SDXL's crop condition for an image in a bucket, as sd-scripts' get_crop_ltrb computes it (the centred
 * placement of the whole image scaled to fit inside the bucket): [top, left] of crops_coords_top_left.
 * With original size (width, height) and target size (bucket) these give SDXL's six time ids.
 */
export function cropTopLeft(bucket: Bucket, width: number, height: number): { top: number; left: number } {
  const bucketAr = bucket.width / bucket.height;
  const imageAr = width / height;
  const [rw, rh] = bucketAr > imageAr ? [bucket.height * imageAr, bucket.height] : [bucket.width, bucket.width / imageAr];
  return { left: Math.floor((bucket.width - rw) / 2), top: Math.floor((bucket.height - rh) / 2) };
}

/**
 * The batches of one epoch: without buckets, the epoch's permutation cut into batches (the guide's
 * DataLoader); with buckets, each bucket's examples shuffled and cut, then the batches shuffled.
 * A function of (seed, epoch), so a resumed run sees the same batches.
 */
export function epochBatches(seed: number, epoch: number, n: number, batchSize: number, bucketOf?: readonly number[]): number[][] {
  const rng = new Random(streamSeed(seed, 'data_order', epoch));
  const cut = (xs: readonly number[]) => Array.from({ length: Math.ceil(xs.length / batchSize) }, (_, i) => xs.slice(i * batchSize, (i + 1) * batchSize));
  if (!bucketOf) return cut(rng.randperm(n));
  const groups = new Map<number, number[]>();
  for (let i = 0; i < n; i++) groups.set(bucketOf[i], [...(groups.get(bucketOf[i]) ?? []), i]);
  const batches: number[][] = [];
  for (const key of [...groups.keys()].sort((a, b) => a - b)) {
    const members = groups.get(key)!;
    batches.push(...cut(rng.randperm(members.length).map((j) => members[j])));
  }
  return rng.randperm(batches.length).map((j) => batches[j]);
}
