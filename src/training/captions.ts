// Caption augmentation as sd-scripts' process_caption applies it each time an image is used:
//   caption_dropout_rate: with that probability the caption becomes "" (the unconditional case);
//   shuffle_caption: the comma-separated tags are shuffled, the first keep_tokens staying in front;
//   tags are stripped and joined with ", ".
// Draws come from the training generator, and only when a feature is on, so runs without them draw
// exactly what they drew before.
import type { Random } from './random.js';

export interface CaptionOptions {
  readonly dropoutRate: number;
  readonly shuffle: boolean;
  readonly keepTokens: number;
}

export const NO_CAPTION_AUGMENTATION: CaptionOptions = { dropoutRate: 0, shuffle: false, keepTokens: 0 };

/** Whether the text embedding of a caption can be computed once (no per-use change). */
export function captionsAreFixed(o: CaptionOptions): boolean {
  return !o.shuffle;
}

export function processCaption(caption: string, o: CaptionOptions, rng: Random): string {
  if (o.dropoutRate > 0 && rng.uniform([1])[0] < o.dropoutRate) return '';
  if (!o.shuffle) return caption;
  const tags = caption.trim().split(',').map((t) => t.trim());
  const fixed = tags.slice(0, o.keepTokens);
  const flex = tags.slice(o.keepTokens);
  const order = rng.randperm(flex.length);
  return [...fixed, ...order.map((i) => flex[i])].join(', ');
}
