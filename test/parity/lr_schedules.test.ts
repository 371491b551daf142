// Parity: the six learning-rate schedules against MANIFEST.files.lr_schedules — diffusers'
// get_scheduler(name, optimizer, **kwargs) stepped num_training_steps times, lr recorded before each
// step. Both sides evaluate the same formula in double precision in the same order, so the values are
// expected to be identical; the tolerance of 1e-12 relative (far below any lr that matters) only
// absorbs a possible last-bit difference between V8's and CPython's cos.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { manifest, needs } from '../helpers/fixtures.js';
import { lrAt } from '../../src/training/lr_schedules.js';
import { LR_SCHEDULERS, type LrSchedulerName } from '../../src/core/config/run_config.js';

interface LrGolden {
  kwargs: { num_warmup_steps?: number; num_cycles?: number; power?: number };
  num_training_steps: number;
  lr: number[];
}

const schedules = (manifest().files.lr_schedules ?? {}) as Record<string, LrGolden>;
const baseLr = schedules.constant?.lr[0] ?? NaN;

for (const name of LR_SCHEDULERS) {
  test(`lr schedule ${name} matches diffusers at every step`, needs('lr_schedules'), () => {
    const g = schedules[name];
    assert.ok(g, `MANIFEST has no lr_schedules.${name}`);
    let worst = 0;
    g.lr.forEach((expected, step) => {
      const got = lrAt(name as LrSchedulerName, step, {
        baseLr,
        numWarmupSteps: g.kwargs.num_warmup_steps ?? 0,
        numTrainingSteps: g.num_training_steps,
        numCycles: g.kwargs.num_cycles,
        power: g.kwargs.power,
      });
      const err = Math.abs(got - expected);
      worst = Math.max(worst, err);
      assert.ok(err <= 1e-12 * baseLr, `${name} step ${step}: ${got} vs ${expected}`);
    });
    console.log(`lr_schedules.${name}: ${g.lr.length} values, max abs error ${worst.toExponential(2)}`);
  });
}

test('polynomial refuses a learning rate not above lr_end, as diffusers does', () => {
  assert.throws(() => lrAt('polynomial', 0, { baseLr: 1e-8, numWarmupSteps: 0, numTrainingSteps: 10 }), /lr_end \(1e-7\) must be smaller than the learning rate \(1e-8\)/);
});
