import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSamplePrompt, parseSamplePrompts } from '../../src/core/config/sample_prompts.js';

test("kohya's sample-prompt line: prompt, negative prompt, seed, steps, guidance, size, sampler", () => {
  assert.deepEqual(parseSamplePrompt('a red circle on grey --n blurry, low quality --d 42 --s 20 --l 7.5 --w 64 --h 96 --ss k_euler'), {
    prompt: 'a red circle on grey',
    negativePrompt: 'blurry, low quality',
    seed: 42,
    steps: 20,
    guidanceScale: 7.5,
    width: 64,
    height: 96,
    sampler: 'euler',
  });
  assert.deepEqual(parseSamplePrompt('just a prompt'), { prompt: 'just a prompt' });
  assert.equal(parseSamplePrompt('x --ss dpmpp-2m').sampler, 'dpmpp-2m');
});

test('a wrong option is an error naming the entry and the option', () => {
  assert.throws(() => parseSamplePrompts(['ok', 'a cat --q 3']), /sample_prompts\[1\]: --q is not a sample-prompt option/);
  assert.throws(() => parseSamplePrompts(['a cat --d -1']), /sample_prompts\[0\]: --d \(seed\) must be an integer ≥ 0/);
  assert.throws(() => parseSamplePrompts(['a cat --ss euler_a']), /--ss "euler_a" is not a sampler LoRA Studio has/);
  assert.throws(() => parseSamplePrompts([' --n blurry']), /has no prompt/);
});
