// torch.nn.utils.clip_grad_norm_(params, max_norm) with the L2 norm, as accelerate calls it in the guide:
//   total_norm = ‖(‖g₁‖₂, ‖g₂‖₂, …)‖₂          (the norm of the per-tensor norms = the norm of all gradients)
//   clip_coef  = max_norm / (total_norm + 1e-6), clamped to at most 1
//   every gradient ← gradient · clip_coef       (always multiplied, by 1.0 when under the limit)
// The total norm is returned as computed before clipping (what the guide logs as grad_norm).
import * as tf from '@tensorflow/tfjs';

export interface ClipResult {
  /** The L2 norm of all gradients together, before clipping (NaN/Infinity when a gradient is not finite). */
  readonly totalNorm: number;
  /** The gradients scaled by the clip coefficient (new tensors; the inputs are left alone). */
  readonly grads: Map<string, tf.Tensor>;
}

export async function clipGradNorm(grads: ReadonlyMap<string, tf.Tensor>, maxNorm: number): Promise<ClipResult> {
  const totalT = tf.tidy(() => {
    const norms = [...grads.values()].map((g) => tf.norm(g, 'euclidean'));
    return tf.norm(tf.stack(norms), 'euclidean');
  });
  const totalNorm = (await totalT.data())[0];
  totalT.dispose();
  const coef = Math.min(Math.fround(Math.fround(maxNorm) / Math.fround(totalNorm + 1e-6)), 1);
  const clipped = new Map<string, tf.Tensor>();
  for (const [name, g] of grads) clipped.set(name, tf.tidy(() => g.mul(coef)));
  return { totalNorm, grads: clipped };
}
