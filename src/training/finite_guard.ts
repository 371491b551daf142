// The NaN/Inf guard: a run whose numbers go bad stops at the step they went bad, and what it leaves on disk
// is a state it can resume from. Checked:
//
//   before each update    the loss and the gradient norm are finite (else the update is not applied);
//   after each update     every LoRA weight is finite and |w| ≤ DIVERGED_LORA_WEIGHT (one reduction on the
//                         device, two numbers per tensor): lr 1e6 passes the first check — the loss stays
//                         finite for a step or two, GroupNorm hides the weights — and is caught here;
//   before each write     a checkpoint (LoRA weights and AdamW moments) or a LoRA file holds finite
//                         numbers only, so a non-finite state is never saved;
//   on resume             the checkpoint's weights, so a bad checkpoint from an older version is named
//                         instead of failing one step later.
//
// Every refusal names the step, the tensor where there is one, the last step whose state was finite and
// the last checkpoint kept.
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { AdamWState } from './adamw.js';
import type { LoraModuleWeights } from './lora_params.js';

/**
 * A LoRA weight beyond this has diverged: trained LoRAs hold weights of about 1e-3 to 1 (the guide's init is
 * N(0, 1/r) for down and 0 for up; kohya and diffusers files of real runs stay below ~10), and at 1e4 the
 * product up·down is ≥ 1e8 times the base weights (|W| ≲ 1), so the model's output no longer depends on its
 * input. The first AdamW step moves each weight by about lr, so this catches lr ≳ 1e4 at step 1.
 */
export const DIVERGED_LORA_WEIGHT = 1e4;

export class NonFiniteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NonFiniteError';
  }
}

export const NON_FINITE_HINT = 'lower learning_rate (and keep max_grad_norm at 1), or check the dataset for broken images; resume_from_checkpoint: latest continues from the last finite checkpoint';

/** The first non-finite value of `a` (its index), or -1. */
function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}

function describeValue(x: number): string {
  return Number.isNaN(x) ? 'NaN' : Number.isFinite(x) ? x.toExponential(2) : x > 0 ? '+Inf' : '-Inf';
}

export class FiniteGuard {
  /** The last optimizer step whose state passed every check (the start step to begin with). */
  lastFiniteStep: number;
  /** The newest checkpoint written or resumed from (all of them are finite: checkCheckpoint). */
  private lastCheckpoint?: { step: number; dir: string };

  constructor(startStep: number, resumedFrom?: string) {
    this.lastFiniteStep = startStep;
    if (resumedFrom) this.lastCheckpoint = { step: startStep, dir: resumedFrom };
  }

  /** Records a checkpoint that was written (after checkCheckpoint passed). */
  checkpointWritten(step: number, dir: string): void {
    this.lastCheckpoint = { step, dir };
  }

  /** What is left: "step 4 was the last finite state; the last checkpoint, checkpoint-4, is finite and was kept". */
  private kept(lastFinite: boolean): string {
    const c = this.lastCheckpoint;
    const where = c ? `the last checkpoint, ${path.basename(c.dir)} (${c.dir}), is finite and was kept` : 'no checkpoint was written before it';
    return lastFinite ? `step ${this.lastFiniteStep} was the last finite state; ${where}` : where;
  }

  /** `lastFinite`: whether lastFiniteStep is known to be finite in full (not when the optimizer's moments are what failed). */
  private fail(step: number, what: string, lastFinite = true): never {
    throw new NonFiniteError(`${what} at step ${step}; training stopped and nothing of step ${step} was saved: ${this.kept(lastFinite)}`);
  }

  /** Before an update: the accumulated loss and the gradient norm. */
  checkStep(step: number, loss: number, gradNorm: number): void {
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) this.fail(step, `the loss became ${describeValue(loss)} (gradient norm ${describeValue(gradNorm)})`);
  }

  /** After an update: every LoRA weight finite and below DIVERGED_LORA_WEIGHT; then `step` counts as finite. */
  async checkWeights(step: number, params: ReadonlyMap<string, tf.Tensor>): Promise<void> {
    const names = [...params.keys()];
    if (!names.length) return;
    const stats = tf.tidy(() => tf.concat(names.map((n) => {
      const a = params.get(n)!.abs();
      return tf.stack([a.sum(), a.max()]);
    })));
    const v = (await stats.data()) as Float32Array;
    stats.dispose();
    for (let i = 0; i < names.length; i++) {
      const [sum, max] = [v[2 * i], v[2 * i + 1]];
      if (!Number.isFinite(sum)) this.fail(step, `the LoRA weight ${names[i]} became non-finite (NaN or Inf) after the update`);
      if (max > DIVERGED_LORA_WEIGHT) this.fail(step, `the LoRA weight ${names[i]} reached ${describeValue(max)} after the update (beyond ${DIVERGED_LORA_WEIGHT.toExponential(0)}: the run diverged)`);
    }
    this.lastFiniteStep = step;
  }

  /** Before a LoRA file is written: every weight finite (names the first that is not). */
  checkModules(step: number, what: string, modules: ReadonlyMap<string, LoraModuleWeights>): void {
    for (const [p, m] of modules) {
      this.checkArray(step, what, `${p}.lora.down.weight`, m.down, true);
      this.checkArray(step, what, `${p}.lora.up.weight`, m.up, true);
    }
  }

  /** Before a checkpoint is written: its LoRA weights and AdamW moments finite. */
  checkCheckpoint(step: number, modules: ReadonlyMap<string, LoraModuleWeights>, optimizer: AdamWState): void {
    this.checkModules(step, 'the checkpoint\'s LoRA weight', modules);
    for (const [n, a] of optimizer.expAvg) this.checkArray(step, 'the checkpoint\'s AdamW moment', `${n}.exp_avg`, a, false);
    for (const [n, a] of optimizer.expAvgSq) this.checkArray(step, 'the checkpoint\'s AdamW moment', `${n}.exp_avg_sq`, a, false);
  }

  private checkArray(step: number, what: string, name: string, a: Float32Array, lastFinite: boolean): void {
    const i = firstNonFinite(a);
    if (i >= 0) this.fail(step, `${what} ${name} holds ${describeValue(a[i])} (at index ${i}), so it was not written`, lastFinite);
  }
}

/** A resumed checkpoint's weights must be finite: names the checkpoint and the tensor otherwise. */
export function checkResumedWeights(dir: string, lora: ReadonlyMap<string, { down: Float32Array; up: Float32Array }>): void {
  for (const [p, w] of lora) {
    for (const [which, a] of [['down', w.down], ['up', w.up]] as const) {
      const i = firstNonFinite(a);
      if (i >= 0) {
        throw new NonFiniteError(`${dir}: the LoRA weight ${p}.lora.${which}.weight holds ${describeValue(a[i])} (at index ${i}); this checkpoint cannot be resumed — resume from an earlier checkpoint-<step> folder`);
      }
    }
  }
}
