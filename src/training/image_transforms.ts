// The guide's image transforms, as torchvision applies them to a PIL image:
//   Resize(resolution, BILINEAR) → CenterCrop | RandomCrop(resolution) → RandomHorizontalFlip → ToTensor → Normalize(0.5, 0.5)
// Resize is PIL's own resampling (Image.resize → ImagingResample), reproduced here integer for integer:
// a separable convolution with the triangle filter widened by the scale factor when shrinking (so it
// antialiases), 22-bit fixed-point coefficients and an 8-bit image between the horizontal and the
// vertical pass. A 8-bit RGB image resized here equals torchvision's result exactly.
import type { Random } from './random.js';

/** 8-bit RGB pixels, row-major, 3 bytes a pixel. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

/** torchvision's Resize(size) with an int: the shorter side becomes `size`, the longer keeps the aspect ratio (truncated). */
export function resizedSize(width: number, height: number, size: number): { width: number; height: number } {
  if (width <= height) return { width: size, height: Math.trunc((size * height) / width) };
  return { width: Math.trunc((size * width) / height), height: size };
}

export function resizeShortestSide(img: RgbImage, size: number): RgbImage {
  const out = resizedSize(img.width, img.height, size);
  return resizeBilinear(img, out.width, out.height);
}

// PIL: PRECISION_BITS = 32 - 8 - 2.
const PRECISION_BITS = 22;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

interface Coefficients {
  /** Per output pixel: first input pixel and number of taps. */
  readonly bounds: Int32Array;
  /** Per output pixel, `ksize` fixed-point weights. */
  readonly weights: Int32Array;
  readonly ksize: number;
}

/** PIL's precompute_coeffs + normalize_coeffs_8bpc for the bilinear (triangle, support 1) filter. */
function bilinearCoefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 1 * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    // C's (int) cast truncates toward zero.
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      const w = t < 1 ? 1 - t : 0;
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < ksize; x++) {
      const w = x < xmax && ww !== 0 ? k[x] / ww : x < xmax ? k[x] : 0;
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, weights, ksize };
}

/** PIL's clip8: the fixed-point sum back to a byte (arithmetic shift, then clamp). */
function clip8(ss: number): number {
  const v = Math.floor(ss / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** PIL Image.resize((width, height), Image.BILINEAR) for 8-bit RGB. */
export function resizeBilinear(img: RgbImage, width: number, height: number): RgbImage {
  if (width === img.width && height === img.height) return { width, height, data: img.data.slice() };
  let cur = img;
  // PIL resamples horizontally first, then vertically, each only when that dimension changes.
  if (width !== img.width) {
    const c = bilinearCoefficients(img.width, width);
    const out = new Uint8Array(width * img.height * 3);
    for (let y = 0; y < img.height; y++) {
      const row = y * img.width * 3;
      for (let xx = 0; xx < width; xx++) {
        const xmin = c.bounds[xx * 2];
        const n = c.bounds[xx * 2 + 1];
        let s0 = HALF, s1 = HALF, s2 = HALF;
        for (let x = 0; x < n; x++) {
          const w = c.weights[xx * c.ksize + x];
          const p = row + (xmin + x) * 3;
          s0 += cur.data[p] * w;
          s1 += cur.data[p + 1] * w;
          s2 += cur.data[p + 2] * w;
        }
        const o = (y * width + xx) * 3;
        out[o] = clip8(s0);
        out[o + 1] = clip8(s1);
        out[o + 2] = clip8(s2);
      }
    }
    cur = { width, height: img.height, data: out };
  }
  if (height !== cur.height) {
    const c = bilinearCoefficients(cur.height, height);
    const out = new Uint8Array(width * height * 3);
    for (let yy = 0; yy < height; yy++) {
      const ymin = c.bounds[yy * 2];
      const n = c.bounds[yy * 2 + 1];
      for (let x = 0; x < width * 3; x++) {
        let s = HALF;
        for (let y = 0; y < n; y++) s += cur.data[(ymin + y) * width * 3 + x] * c.weights[yy * c.ksize + y];
        out[yy * width * 3 + x] = clip8(s);
      }
    }
    cur = { width, height, data: out };
  }
  return cur;
}

export function crop(img: RgbImage, top: number, left: number, height: number, width: number): RgbImage {
  if (top < 0 || left < 0 || top + height > img.height || left + width > img.width) {
    throw new Error(`crop ${width}×${height} at (${left}, ${top}) falls outside the ${img.width}×${img.height} image`);
  }
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const src = ((top + y) * img.width + left) * 3;
    out.set(img.data.subarray(src, src + width * 3), y * width * 3);
  }
  return { width, height, data: out };
}

/** Python's round(): halves go to the even neighbour (torchvision's center_crop uses it). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torchvision CenterCrop(size) on an image at least `size` on both sides. */
export function centerCrop(img: RgbImage, size: number): RgbImage {
  const [top, left] = centerCropTopLeft(img.height, img.width, size);
  return crop(img, top, left, size, size);
}

/** Where CenterCrop(size) starts in a height × width image: (top, left), as SDXL's crop_top_left conditioning records it. */
export function centerCropTopLeft(height: number, width: number, size: number): [number, number] {
  return [roundHalfEven((height - size) / 2), roundHalfEven((width - size) / 2)];
}

/** torchvision RandomCrop(size): top from randint(0, h−size+1), then left likewise; no draws when nothing to choose. */
export function randomCrop(img: RgbImage, size: number, rng: Random): RgbImage {
  if (img.width === size && img.height === size) return img;
  const top = rng.randint(0, img.height - size + 1)[0];
  const left = rng.randint(0, img.width - size + 1)[0];
  return crop(img, top, left, size, size);
}

export function flipHorizontal(img: RgbImage): RgbImage {
  const { width, height } = img;
  const out = new Uint8Array(img.data.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const s = (y * width + x) * 3;
      const d = (y * width + (width - 1 - x)) * 3;
      out[d] = img.data[s];
      out[d + 1] = img.data[s + 1];
      out[d + 2] = img.data[s + 2];
    }
  }
  return { width, height, data: out };
}

/** RandomHorizontalFlip(p=0.5): flips when torch.rand(1) < 0.5. */
export function randomFlip(img: RgbImage, rng: Random): RgbImage {
  return rng.uniform([1])[0] < 0.5 ? flipHorizontal(img) : img;
}

/** ToTensor then Normalize([0.5], [0.5]), in float32 as torch computes it: (v/255 − 0.5)/0.5. HWC layout. */
export function toNormalizedPixels(img: RgbImage): Float32Array {
  const out = new Float32Array(img.data.length);
  const f = Math.fround;
  for (let i = 0; i < img.data.length; i++) out[i] = f(f(f(img.data[i] / 255) - 0.5) / 0.5);
  return out;
}

export interface TransformOptions {
  readonly resolution: number;
  readonly centerCrop: boolean;
  readonly randomFlip: boolean;
}

/**
 * The whole training transform: pixels in [−1, 1], HWC, resolution × resolution × 3.
 * Random draws (crop top, crop left, flip) come from `rng` in torchvision's order.
 */
export function trainTransform(img: RgbImage, o: TransformOptions, rng: Random): Float32Array {
  let x = resizeShortestSide(img, o.resolution);
  x = o.centerCrop ? centerCrop(x, o.resolution) : randomCrop(x, o.resolution, rng);
  if (o.randomFlip) x = randomFlip(x, rng);
  return toNormalizedPixels(x);
}
