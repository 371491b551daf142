import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { AdamW } from '../../src/training/adamw.js';
import { clipGradNorm } from '../../src/training/grad_clip.js';
import { Random } from '../../src/training/random.js';
import { maxAbsDiff } from '../helpers/fixtures.js';

const f = Math.fround;

/**
 * torch.optim.AdamW's _single_tensor_adam, element by element, every tensor operation rounded to float32
 * and every Python-scalar expression in double (then rounded to float32 where it meets a tensor).
 */
function torchAdamWReference(p: Float32Array, grads: Float32Array[], lrs: number[], o: { beta1: number; beta2: number; eps: number; weightDecay: number }) {
  const param = Float32Array.from(p);
  const m = new Float32Array(p.length);
  const v = new Float32Array(p.length);
  grads.forEach((g, k) => {
    const step = k + 1;
    const lr = lrs[k];
    const decay = f(1 - lr * o.weightDecay);
    const bc2Sqrt = f(Math.sqrt(1 - o.beta2 ** step));
    const negStepSize = f(-(lr / (1 - o.beta1 ** step)));
    for (let i = 0; i < p.length; i++) {
      param[i] = f(param[i] * decay); // param.mul_(1 − lr·wd)
      m[i] = f(m[i] + f(f(1 - o.beta1) * f(g[i] - m[i]))); // exp_avg.lerp_(grad, 1 − β1), weight < 0.5 branch
      v[i] = f(f(v[i] * f(o.beta2)) + f(f(f(1 - o.beta2) * g[i]) * g[i])); // mul_(β2).addcmul_(g, g, 1 − β2)
      const denom = f(f(f(Math.sqrt(v[i])) / bc2Sqrt) + f(o.eps)); // (√v / √bc2).add_(eps)
      param[i] = f(param[i] + f(f(negStepSize * m[i]) / denom)); // addcdiv_(m, denom, value=−step_size)
    }
  });
  return { param, m, v };
}

test('AdamW matches torch arithmetic (decoupled decay first, eps after the bias-corrected sqrt)', async () => {
  const rng = new Random(1);
  const n = 257;
  const p0 = rng.normal([n]);
  // Gradients from 1e-8 (where eps = 1e-8 halves the step, so its placement shows) up to 10.
  const grads = [1e-8, 1e-6, 1e-4, 1e-2, 1, 10].map((scale) => rng.normal([n]).map((x) => x * scale));
  const lrs = [1e-3, 5e-4, 1e-3, 2e-3, 1e-4, 1e-3];
  const o = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2 };
  const ref = torchAdamWReference(p0, grads, lrs, o);

  const opt = new AdamW(o);
  const params = new Map<string, tf.Tensor>([['w', tf.tensor(p0)]]);
  for (let k = 0; k < grads.length; k++) {
    const g = tf.tensor(grads[k]);
    opt.update(params, new Map([['w', g]]), lrs[k]);
    g.dispose();
  }
  // Each op rounds to float32 as torch does; only torch's fused lerp (one rounding) and the backend's sqrt
  // can differ, by an ulp or so of |p| ≈ 1: 1e-6 bounds that with room.
  const err = await maxAbsDiff(params.get('w')!, ref.param);
  if (process.env.LORA_STUDIO_REPORT) console.log(`[adamw] param max abs err vs torch arithmetic: ${err.toExponential(2)}`);
  assert.ok(err <= 1e-6, `param max abs error ${err}`);
  const st = await opt.exportState();
  assert.equal(st.step, 6);
  assert.ok((await maxAbsDiff(st.expAvg.get('w')!, ref.m)) <= 1e-6);
  assert.ok((await maxAbsDiff(st.expAvgSq.get('w')!, ref.v)) <= 1e-6);
  // Sanity: the update is not a no-op and decay with lr·wd applied.
  assert.ok((await maxAbsDiff(params.get('w')!, p0)) > 1e-3);
  params.get('w')!.dispose();
  opt.dispose();
});

test('AdamW state export/import continues bit-identically', async () => {
  const rng = new Random(2);
  const p0 = rng.normal([4, 8]);
  const gs = Array.from({ length: 4 }, () => rng.normal([4, 8]));
  const o = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
  const run = async (split: boolean) => {
    let opt = new AdamW(o);
    const params = new Map<string, tf.Tensor>([['a', tf.tensor(p0, [4, 8])]]);
    for (let k = 0; k < 4; k++) {
      if (split && k === 2) {
        const st = await opt.exportState();
        opt.dispose();
        opt = new AdamW(o);
        opt.importState(st, new Map([['a', [4, 8]]]));
      }
      const g = tf.tensor(gs[k], [4, 8]);
      opt.update(params, new Map([['a', g]]), 1e-3);
      g.dispose();
    }
    const out = await params.get('a')!.data();
    params.get('a')!.dispose();
    opt.dispose();
    return out;
  };
  assert.deepEqual(await run(true), await run(false));
});

test('clip_grad_norm_: total L2 norm over all tensors, coefficient max/(norm+1e-6) clamped at 1', async () => {
  const a = tf.tensor([3, 0, 0]);
  const b = tf.tensor([[0, 4]]);
  const grads = new Map([['a', a], ['b', b]]);
  const big = await clipGradNorm(grads, 1);
  assert.ok(Math.abs(big.totalNorm - 5) < 1e-6);
  const coef = Math.fround(1 / Math.fround(5 + 1e-6));
  assert.deepEqual([...(await big.grads.get('a')!.data())], [Math.fround(3 * coef), 0, 0]);
  const small = await clipGradNorm(grads, 10);
  assert.deepEqual([...(await small.grads.get('b')!.data())], [0, 4], 'under the limit: unchanged');
  const bad = await clipGradNorm(new Map([['x', tf.tensor([NaN, 1])]]), 1);
  assert.ok(Number.isNaN(bad.totalNorm));
  tf.dispose([a, b, ...big.grads.values(), ...small.grads.values(), ...bad.grads.values()]);
});
