import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { REPO, TINY_SHAPES } from '../helpers/fixtures.js';
import { configFromFlags } from '../../src/core/config/flags.js';
import { planRun } from '../../src/training/loop.js';

const cfg = (...flags: string[]) => {
  const l = configFromFlags([`--pretrained_model_name_or_path=${path.join(TINY_SHAPES, 'model')}`, `--train_data_dir=${path.join(TINY_SHAPES, 'dataset-corner')}`, '--resolution=64', ...flags], { cwd: REPO, disk: false });
  assert.ok(l.config, l.problems.map((p) => p.message).join('\n'));
  return l.config!;
};

test('run length as the guide computes it: update steps per epoch, max_train_steps vs epochs, scale_lr', () => {
  // 10 examples, batch 4 → 3 batches an epoch; accumulation 2 → 2 updates an epoch (the last group short).
  assert.deepEqual(planRun(cfg('--train_batch_size=4', '--gradient_accumulation_steps=2', '--num_train_epochs=7'), 10), {
    numExamples: 10, batchesPerEpoch: 3, updatesPerEpoch: 2, maxTrainSteps: 14, numEpochs: 7, learningRate: 1e-4,
  });
  // max_train_steps wins and sets the number of epochs: ceil(5 / 2) = 3.
  const p = planRun(cfg('--train_batch_size=4', '--gradient_accumulation_steps=2', '--max_train_steps=5', '--num_train_epochs=7'), 10);
  assert.equal(p.maxTrainSteps, 5);
  assert.equal(p.numEpochs, 3);
  // scale_lr: lr · accumulation · batch (· processes = 1).
  assert.equal(planRun(cfg('--train_batch_size=4', '--gradient_accumulation_steps=2', '--learning_rate=1e-4', '--scale_lr'), 10).learningRate, 1e-4 * 8);
});
