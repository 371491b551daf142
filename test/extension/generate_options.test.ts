// Generate Image's seed, steps, guidance, sampler and negative prompt: diffusers' defaults to start, what a
// person types checked, the CLI arguments they become.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GENERATION_DEFAULTS } from '../../src/core/config/generation.js';
import { defaultGenerateOptions, describeGenerateOptions, generateOptionArgs, parseGenerateOption, restoreGenerateOptions } from '../../src/extension/generate_options.js';

test('the options start at the generation defaults and become `lora-studio generate` flags', () => {
  const d = defaultGenerateOptions();
  assert.deepEqual(d, { seed: GENERATION_DEFAULTS.seed, steps: GENERATION_DEFAULTS.steps, guidance: GENERATION_DEFAULTS.guidance, scheduler: GENERATION_DEFAULTS.scheduler, negativePrompt: '' });
  assert.deepEqual(generateOptionArgs({ ...d, seed: 7, negativePrompt: 'blurry' }), ['--seed', '7', '--steps', '20', '--guidance', '7.5', '--scheduler', 'dpmpp-2m', '--negative-prompt', 'blurry']);
  assert.deepEqual(describeGenerateOptions(d).map((r) => `${r.label}: ${r.value}`), ['Seed: 0', 'Steps: 20', 'Guidance: 7.5', 'Sampler: DPM++ 2M', 'Negative prompt: (none)']);
});

test('typed values are checked; remembered values that went bad fall back to the defaults', () => {
  assert.deepEqual(parseGenerateOption('steps', '30'), { value: 30 });
  assert.deepEqual(parseGenerateOption('steps', '0'), { problem: 'A whole number ≥ 1.' });
  assert.deepEqual(parseGenerateOption('seed', '1.5'), { problem: 'A whole number ≥ 0.' });
  assert.deepEqual(parseGenerateOption('guidance', '4'), { value: 4 });
  assert.ok('problem' in parseGenerateOption('guidance', 'high'));
  assert.deepEqual(restoreGenerateOptions({ seed: 3, steps: -1, scheduler: 'nope', guidance: 5, negativePrompt: 'x' }), { seed: 3, steps: 20, guidance: 5, scheduler: 'dpmpp-2m', negativePrompt: 'x' });
});
