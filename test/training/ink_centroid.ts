// The effect measure of examples/tiny-shapes/reference-lora/REFERENCE_LORA.json: the mean "ink" centroid
// of generations of the 12 captions (red, green, blue, yellow × circle, square, triangle), caption i with
// seed i, DPM++ 2M, CFG 5; ink = pixels whose smallest channel is below 0.75 (on the 8-bit image).
// The initial noise is torch's randn for the seed (engine/torch_random.ts), so generations start from
// the same latents as diffusers' and the base model's figure can be compared with the reference's.
import { generate, type StableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import type { LoraLookup } from '../../src/core/engine/ops.js';
import type { RgbImage } from '../../src/training/image_transforms.js';

export const SHAPE_PROMPTS = ['red', 'green', 'blue', 'yellow'].flatMap((c) => ['circle', 'square', 'triangle'].map((s) => `a ${c} ${s}`));

/** Ink centroid (x, y) in pixel indices of one 8-bit RGB image; undefined when it has no ink. */
export function imageInkCentroid(img: RgbImage): [number, number] | undefined {
  let sx = 0, sy = 0, n = 0;
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const i = (y * img.width + x) * 3;
      if (Math.min(img.data[i], img.data[i + 1], img.data[i + 2]) / 255 < 0.75) {
        sx += x;
        sy += y;
        n++;
      }
    }
  }
  return n ? [sx / n, sy / n] : undefined;
}

export function meanCentroid(images: readonly RgbImage[]): [number, number] {
  const cs = images.map(imageInkCentroid).filter((c): c is [number, number] => c !== undefined);
  return [cs.reduce((a, c) => a + c[0], 0) / cs.length, cs.reduce((a, c) => a + c[1], 0) / cs.length];
}

/** Generates the 12 captions (seeds 0..11) in one batch and returns the 8-bit images. */
export async function generateShapes(sd: StableDiffusion, o: { lora?: LoraLookup; steps?: number; guidance?: number; prompts?: readonly string[] } = {}): Promise<RgbImage[]> {
  const size = (sd.unet.config.sample_size as number) * sd.vaeScaleFactor;
  const prompts = o.prompts ?? SHAPE_PROMPTS;
  const images = await generate(sd, { prompt: prompts, seed: prompts.map((_, i) => i), scheduler: 'dpmpp-2m', steps: o.steps ?? 20, guidanceScale: o.guidance ?? 5, lora: o.lora, width: size, height: size });
  const v = await images.data();
  images.dispose();
  // As diffusers' numpy_to_pil: (x · 255).round() to bytes.
  const n = size * size * 3;
  return prompts.map((_, i) => ({ width: size, height: size, data: Uint8Array.from(v.subarray(i * n, (i + 1) * n), (x) => Math.round(Math.min(1, Math.max(0, x)) * 255)) }));
}
