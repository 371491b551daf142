// Caption augmentation (sd-scripts' process_caption): dropout to "", tag shuffling with keep_tokens.
// Dropout is random, so it is tested by its statistics: over 4000 draws at rate 0.25 the fraction of
// empty captions lies within 4 standard deviations (±0.027) of 0.25; seeded, so the test is deterministic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { processCaption, NO_CAPTION_AUGMENTATION } from '../../src/training/captions.js';
import { Random } from '../../src/training/random.js';

test('caption dropout empties the caption at its rate, and draws nothing when off', () => {
  const rng = new Random(11);
  const n = 4000;
  let empty = 0;
  for (let i = 0; i < n; i++) if (processCaption('a red circle', { dropoutRate: 0.25, shuffle: false, keepTokens: 0 }, rng) === '') empty++;
  const sd = Math.sqrt((0.25 * 0.75) / n);
  assert.ok(Math.abs(empty / n - 0.25) < 4 * sd, `dropout fraction ${empty / n}`);
  const a = new Random(3);
  const b = new Random(3);
  assert.equal(processCaption('a red circle', NO_CAPTION_AUGMENTATION, a), 'a red circle');
  assert.deepEqual(a.uniform([2]), b.uniform([2]), 'no draw when dropout and shuffle are off');
});

test('shuffle_caption permutes the tags, keeping the first keep_tokens in place', () => {
  const rng = new Random(5);
  const caption = 'sks, red circle,  grey background, centered, small';
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const out = processCaption(caption, { dropoutRate: 0, shuffle: true, keepTokens: 1 }, rng);
    const tags = out.split(', ');
    assert.equal(tags[0], 'sks');
    assert.deepEqual([...tags].sort(), ['sks', 'red circle', 'grey background', 'centered', 'small'].sort());
    seen.add(out);
  }
  // 4 movable tags: 24 orders; 200 draws see nearly all of them.
  assert.ok(seen.size >= 20, `only ${seen.size} orders`);
});
