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
import { crop, resizeBilinear, type RgbImage } from './image_transforms.js';

export interface Bucket {
  readonly width: number;
  readonly height: number;
}

export interface BucketSettings {
  /** The training resolution: buckets hold about resolution² pixels. */
  readonly resolution: number;
  readonly minReso: number;
  readonly maxReso: number;
  readonly step: number;
}

/** make_bucket_resolutions((res, res), min, max, step), sorted as Python sorts (width, height) tuples. */
export function bucketResolutions(s: BucketSettings): Bucket[] {
  const maxArea = s.resolution * s.resolution;
  const key = (w: number, h: number) => `${w}x${h}`;
  const resos = new Map<string, Bucket>();
  const square = Math.floor(Math.floor(Math.sqrt(maxArea)) / s.step) * s.step;
  resos.set(key(square, square), { width: square, height: square });
  for (let width = s.minReso; width <= s.maxReso; width += s.step) {
    const height = Math.min(s.maxReso, Math.floor(Math.floor(maxArea / width) / s.step) * s.step);
    if (height >= s.minReso) {
      resos.set(key(width, height), { width, height });
      resos.set(key(height, width), { width: height, height: width });
    }
  }
  return [...resos.values()].sort((a, b) => a.width - b.width || a.height - b.height);
}

export interface BucketChoice {
  readonly bucket: Bucket;
  /** The size the image is resized to before the crop (covers the bucket). */
  readonly resized: { readonly width: number; readonly height: number };
  /** The bucket's aspect ratio minus the image's. */
  readonly aspectError: number;
}

/** select_bucket (no_upscale false): the bucket and the resize for an image of width × height. */
export function selectBucket(buckets: readonly Bucket[], width: number, height: number): BucketChoice {
  const ar = width / height;
  let bucket = buckets.find((b) => b.width === width && b.height === height);
  if (!bucket) {
    // numpy's argmin: the first of equal errors.
    let best = Infinity;
    for (const b of buckets) {
      const err = Math.abs(b.width / b.height - ar);
      if (err < best) {
        best = err;
        bucket = b;
      }
    }
  }
  const b = bucket!;
  const scale = ar > b.width / b.height ? b.height / height : b.width / width;
  const resized = { width: Math.trunc(width * scale + 0.5), height: Math.trunc(height * scale + 0.5) };
  return { bucket: b, resized, aspectError: b.width / b.height - ar };
}

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

/** Where every training example goes. */
export interface BucketPlan {
  readonly buckets: readonly Bucket[];
  /** Per example (by index), the bucket index into `buckets` and the resize. */
  readonly choices: readonly (BucketChoice & { readonly index: number })[];
  /** Used buckets and how many examples each holds (kohya's ss_bucket_info "buckets"). */
  readonly counts: readonly { readonly width: number; readonly height: number; readonly count: number }[];
  /** Mean |aspect error| over the examples (kohya's mean_img_ar_error). */
  readonly meanAspectError: number;
}

export function planBuckets(s: BucketSettings, sizes: readonly { width: number; height: number }[]): BucketPlan {
  const buckets = bucketResolutions(s);
  const choices = sizes.map((z) => {
    const c = selectBucket(buckets, z.width, z.height);
    return { ...c, index: buckets.indexOf(c.bucket) };
  });
  const counts = buckets
    .map((b, i) => ({ width: b.width, height: b.height, count: choices.filter((c) => c.index === i).length }))
    .filter((b) => b.count > 0);
  const meanAspectError = choices.length ? choices.reduce((a, c) => a + Math.abs(c.aspectError), 0) / choices.length : 0;
  return { buckets, choices, counts, meanAspectError };
}

/** kohya's ss_bucket_info metadata value: {"buckets": {"0": {"resolution": [w, h], "count": n}, …}, "mean_img_ar_error": e}. */
export function bucketInfoMetadata(plan: BucketPlan): string {
  const buckets: Record<string, { resolution: [number, number]; count: number }> = {};
  plan.counts.forEach((b, i) => (buckets[String(i)] = { resolution: [b.width, b.height], count: b.count }));
  return JSON.stringify({ buckets, mean_img_ar_error: plan.meanAspectError });
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
