// AdamW exactly as torch.optim.AdamW computes it (torch/optim/adam.py, _single_tensor_adam with
// decoupled_weight_decay — the path torch takes for CPU tensors), operation for operation in float32:
//
//   step += 1
//   p ← p · (1 − lr·wd)                       decoupled decay first, on the old weights
//   m ← m + (1 − β1)·(g − m)                   exp_avg.lerp_(grad, 1 − β1)
//   v ← v·β2 + (1 − β2)·g·g                    exp_avg_sq.mul_(β2).addcmul_(grad, grad, 1 − β2)
//   step_size = lr / (1 − β1^step)             Python floats (double)
//   denom = √v / √(1 − β2^step) + eps          eps added AFTER the square root and the bias correction
//   p ← p − step_size · m / denom              param.addcdiv_(m, denom, value=−step_size)
//
// Scalars are computed in double, as Python does, and enter the float32 arithmetic rounded to float32,
// as torch's CPU kernels round a Python scalar for a float tensor. torch's vectorised lerp uses a fused
// multiply-add (one rounding instead of two), so m can differ from torch's by one float ulp.
import * as tf from '@tensorflow/tfjs';

export interface AdamWOptions {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
}

export interface AdamWState {
  readonly step: number;
  readonly expAvg: ReadonlyMap<string, Float32Array>;
  readonly expAvgSq: ReadonlyMap<string, Float32Array>;
}

export class AdamW {
  private stepCount = 0;
  private readonly m = new Map<string, tf.Tensor>();
  private readonly v = new Map<string, tf.Tensor>();

  constructor(readonly options: AdamWOptions) {}

  /** Optimizer steps taken (torch's state['step']). */
  get step(): number {
    return this.stepCount;
  }

  /**
   * One update of every parameter that has a gradient. `params` is updated in place: each entry is
   * replaced by its new tensor and the old one disposed.
   */
  update(params: Map<string, tf.Tensor>, grads: ReadonlyMap<string, tf.Tensor>, lr: number | ((name: string) => number)): void {
    const { beta1, beta2, eps, weightDecay } = this.options;
    this.stepCount += 1;
    const step = this.stepCount;
    const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) continue; // torch skips parameters whose .grad is None
      // A function gives each parameter its group's rate (torch's param_groups: the text encoder's own lr).
      const groupLr = typeof lr === 'number' ? lr : lr(name);
      const stepSize = groupLr / (1 - beta1 ** step);
      const decay = 1 - groupLr * weightDecay;
      const m0 = this.m.get(name);
      const v0 = this.v.get(name);
      const [p1, m1, v1] = tf.tidy(() => {
        const decayed = weightDecay !== 0 ? p.mul(decay) : p;
        const mPrev = m0 ?? tf.zerosLike(p);
        const vPrev = v0 ?? tf.zerosLike(p);
        const m = mPrev.add(g.sub(mPrev).mul(1 - beta1));
        const v = vPrev.mul(beta2).add(g.mul(1 - beta2).mul(g));
        const denom = v.sqrt().div(bc2Sqrt).add(eps);
        const updated = decayed.add(m.mul(-stepSize).div(denom));
        return [updated, m, v];
      });
      p.dispose();
      m0?.dispose();
      v0?.dispose();
      params.set(name, p1);
      this.m.set(name, m1);
      this.v.set(name, v1);
    }
  }

  async exportState(): Promise<AdamWState> {
    const expAvg = new Map<string, Float32Array>();
    const expAvgSq = new Map<string, Float32Array>();
    for (const [name, t] of this.m) expAvg.set(name, (await t.data()) as Float32Array);
    for (const [name, t] of this.v) expAvgSq.set(name, (await t.data()) as Float32Array);
    return { step: this.stepCount, expAvg, expAvgSq };
  }

  /** Restores a saved state; `shapes` gives each parameter's shape (the state stores flat values). */
  importState(state: AdamWState, shapes: ReadonlyMap<string, readonly number[]>): void {
    this.disposeState();
    for (const [name, shape] of shapes) {
      const m = state.expAvg.get(name);
      const v = state.expAvgSq.get(name);
      if (!m && !v) continue;
      if (!m || !v) throw new Error(`optimizer state for ${name} has only one of exp_avg / exp_avg_sq`);
      const n = shape.reduce((a, b) => a * b, 1);
      if (m.length !== n || v.length !== n) throw new Error(`optimizer state for ${name} has ${m.length} values, the parameter ${n}`);
      this.m.set(name, tf.tensor(m, [...shape], 'float32'));
      this.v.set(name, tf.tensor(v, [...shape], 'float32'));
    }
    this.stepCount = state.step;
  }

  private disposeState(): void {
    for (const t of this.m.values()) t.dispose();
    for (const t of this.v.values()) t.dispose();
    this.m.clear();
    this.v.clear();
  }

  dispose(): void {
    this.disposeState();
  }
}
