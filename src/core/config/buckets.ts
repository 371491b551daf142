// Aspect-ratio bucketing, by sd-scripts' rule (library/model_util.py make_bucket_resolutions and
// library/train_util.py BucketManager.select_bucket / trim_and_resize_if_required, with upscaling allowed):
//
//   buckets: (⌊√(res²) / step⌋·step)² and, for w = min, min+step, … ≤ max:
//            h = min(max, ⌊(res² // w) / step⌋·step); when h ≥ min, (w, h) and (h, w); sorted
//   an image w×h goes to the bucket of the same size if there is one, else to the first bucket whose aspect
//   ratio is nearest w/h; it is resized (PIL bilinear) by the scale that makes it cover the bucket,
//   (⌊w·s + 0.5⌋, ⌊h·s + 0.5⌋), then the excess is cropped: centred, or at a random offset.
//
// Pure arithmetic (no images, no tensors): the trainer (src/training/buckets.ts resizes, crops and batches) and
// the Dataset view (dataset_view.ts: the bucket each image falls in) share it.
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

/** The bound of the bucket range that `resolution` lies outside of, and the value that fixes it. */
export interface BucketRangeProblem {
  readonly key: 'min_bucket_reso' | 'max_bucket_reso';
  /** The bound's value that takes `resolution` in: resolution itself. */
  readonly fixedValue: number;
  readonly message: string;
}

/**
 * sd-scripts' check (train_util.py: "min_bucket_reso must be equal or less than resolution", "max_bucket_reso must be
 * equal or greater than resolution"): the training resolution must lie inside min_bucket_reso … max_bucket_reso, or
 * the square bucket the resolution stands for is not among the buckets. `name` spells a key as the config does.
 */
export function bucketRangeProblem(
  c: { readonly resolution: number; readonly min_bucket_reso: number; readonly max_bucket_reso: number },
  name: (key: string) => string = (k) => k,
): BucketRangeProblem | undefined {
  const key = c.resolution < c.min_bucket_reso ? 'min_bucket_reso' : c.resolution > c.max_bucket_reso ? 'max_bucket_reso' : undefined;
  if (!key) return undefined;
  const side = key === 'min_bucket_reso' ? 'below' : 'above';
  return {
    key,
    fixedValue: c.resolution,
    message: `${name('resolution')} ${c.resolution} is ${side} the bucket range ${name('min_bucket_reso')} ${c.min_bucket_reso} … ${name('max_bucket_reso')} ${c.max_bucket_reso} — set ${name(key)} to ${c.resolution} or ${key === 'min_bucket_reso' ? 'less' : 'more'} (kohya's defaults: 256 ≤ 512 ≤ 1024)`,
  };
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

