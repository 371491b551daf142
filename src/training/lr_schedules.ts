// Learning-rate schedules as diffusers.optimization.get_scheduler builds them: a torch LambdaLR whose
// lr after `step` optimizer steps is base_lr · λ(step). Evaluated in double, as Python does, so the
// values equal diffusers' exactly.
import { LR_SCHEDULERS, type LrSchedulerName } from '../core/config/run_config.js';

export interface LrScheduleOptions {
  baseLr: number;
  /** lr_warmup_steps: λ rises linearly from 0 over these steps (all schedules but `constant`). */
  numWarmupSteps: number;
  /** The total number of optimizer steps (max_train_steps), where the decaying schedules reach their end. */
  numTrainingSteps: number;
  /**
   * cosine_with_restarts: the number of hard restarts (get_scheduler's default 1). get_scheduler does
   * not pass it to `cosine`, which always does half a cosine wave (num_cycles 0.5).
   */
  numCycles?: number;
  /** polynomial: the power of the decay (default 1, i.e. linear down to lrEnd). */
  power?: number;
  /** polynomial: the final lr (diffusers fixes 1e-7). */
  lrEnd?: number;
}

const warmup = (step: number, warmupSteps: number) => step / Math.max(1, warmupSteps);

/** The multiplier λ(step) of the schedule: lr = baseLr · λ. */
export function lrLambda(name: LrSchedulerName, step: number, o: LrScheduleOptions): number {
  const { numWarmupSteps: w, numTrainingSteps: total } = o;
  if (name === 'constant') return 1;
  if (step < w) return warmup(step, w);
  switch (name) {
    case 'constant_with_warmup':
      return 1;
    case 'linear':
      return Math.max(0, (total - step) / Math.max(1, total - w));
    case 'cosine': {
      const progress = (step - w) / Math.max(1, total - w);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 0.5 * 2 * progress)));
    }
    case 'cosine_with_restarts': {
      const progress = (step - w) / Math.max(1, total - w);
      if (progress >= 1) return 0;
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * (((o.numCycles ?? 1) * progress) % 1))));
    }
    case 'polynomial': {
      const lrInit = o.baseLr;
      const lrEnd = o.lrEnd ?? 1e-7;
      if (step > total) return lrEnd / lrInit;
      const pctRemaining = 1 - (step - w) / (total - w);
      return ((lrInit - lrEnd) * pctRemaining ** (o.power ?? 1) + lrEnd) / lrInit;
    }
    default:
      throw new Error(`unknown lr_scheduler "${String(name)}" (choose one of ${LR_SCHEDULERS.join(', ')})`);
  }
}

/** The learning rate after `step` optimizer steps (LambdaLR's last_epoch), as diffusers' get_scheduler gives it. */
export function lrAt(name: LrSchedulerName, step: number, o: LrScheduleOptions): number {
  checkOptions(name, o);
  return o.baseLr * lrLambda(name, step, o);
}

function checkOptions(name: LrSchedulerName, o: LrScheduleOptions): void {
  if (!LR_SCHEDULERS.includes(name)) throw new Error(`unknown lr_scheduler "${String(name)}" (choose one of ${LR_SCHEDULERS.join(', ')})`);
  if (name === 'polynomial' && !(o.baseLr > (o.lrEnd ?? 1e-7))) {
    throw new Error(`lr_scheduler polynomial: lr_end (${o.lrEnd ?? 1e-7}) must be smaller than the learning rate (${o.baseLr})`);
  }
}
