// The planned step against the eager step it replays, shared by planned_step.test.ts (SD) and
// planned_step_sdxl.test.ts: one step of each on the same inputs, and the LoRA weights they end with.
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { maxAbsDiff } from '../helpers/fixtures.js';
import type { TrainableLora } from '../../src/training/lora_params.js';
import { lossAndGrads, type StepInputs, type StepModels } from '../../src/training/train_step.js';
import { clipGradNorm } from '../../src/training/grad_clip.js';
import type { AdamW } from '../../src/training/adamw.js';
import type { PlannedLoraStep } from '../../src/training/planned_step.js';

/**
 * Step `k` (0-based) of both: the eager loss, clipped gradients and AdamW update on `m.lora`, then the planned
 * step. The forward and backward are the same kernels on the same weights (they agree to rounding after the
 * first update): loss within 1e-5 relative, as the golden's losses, ‖g‖ within 1e-4.
 */
export async function stepBothAndCompare(k: number, m: StepModels, opt: AdamW, planned: PlannedLoraStep, x: StepInputs, lr: number, maxGradNorm: number): Promise<void> {
  const e = await lossAndGrads(m, x);
  const clipped = await clipGradNorm(e.grads, maxGradNorm);
  opt.update(m.lora.params, clipped.grads, lr);
  tf.dispose([...e.grads.values(), ...clipped.grads.values()]);
  const p = await planned.step(x, lr);
  assert.ok(Math.abs(p.loss - e.loss) <= 1e-5 * Math.abs(e.loss), `step ${k + 1}: planned loss ${p.loss}, eager ${e.loss}`);
  assert.ok(Math.abs(p.gradNorm - clipped.totalNorm) <= 1e-4 * clipped.totalNorm, `step ${k + 1}: planned ‖g‖ ${p.gradNorm}, eager ${clipped.totalNorm}`);
}

/**
 * The planned LoRA equals the eager one, and both moved from `init`. The two AdamW implementations differ
 * only in float32 rounding; Adam magnifies a gradient rounding δg by lr·δg/(4·eps) where |g| ≈ eps (see
 * golden_train.test.ts). Bound: 2% of one lr update; moved: more than half of one, so the check is not vacuous.
 */
export async function assertSameWeights(planned: TrainableLora, eager: TrainableLora, init: TrainableLora, lr: number): Promise<void> {
  let moved = 0;
  for (const [name, pe] of eager.params) {
    const err = await maxAbsDiff(planned.params.get(name)!, pe);
    assert.ok(err <= 0.02 * lr, `${name}: planned vs eager max abs diff ${err}`);
    moved = Math.max(moved, await maxAbsDiff(pe, init.params.get(name)!));
  }
  assert.ok(moved > 0.5 * lr, `the weights moved (${moved}), so the comparison is not vacuous`);
}
