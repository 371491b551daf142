// Parity: every sampler trajectory in golden/scheduler_* against diffusers, and the schedules they run
// on (timesteps, sigmas). MANIFEST gives each scheduler's config (built in diffusers with
// `Class.from_config(model scheduler config)`) and the fake model used to drive it:
//   model_output_i = 0.3·scale_model_input(x, t_i) + randn_seeded(100 + i)·0.5
// The goldens store only the samples after each step, not the initial sample nor that noise. Both are
// torch draws (`torch.manual_seed(s); torch.randn(1, 4, 8, 8)`), which src/core/engine/torch_random.ts
// reproduces: the noise is seed 100 + i, and the initial sample is randn_seeded(31)·init_noise_sigma.
// Seed 31 was found, not guessed: Euler's first step is linear in x (x₁ = x + dt·(0.3·x/√(σ²+1) +
// 0.5·n₁₀₀)), so the golden step0 gives x exactly; x / init_noise_sigma equals torch's seed-31 draw to
// 2e-6, and no other seed in 0..4999 comes within 1e-2. With it, all five trajectories match, so the
// inputs are pinned by the data, not assumed.
//
// Everything runs in NHWC as the engine does (goldens are NCHW; the arithmetic is elementwise, but the
// DDPM variance noise is drawn in torch's NCHW order and transposed, which this exercises).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { assertClose, golden, goldenTensor, manifest, nchwToNhwc, needs, nhwcToNchw, useTestBackend } from '../helpers/fixtures.js';
import { createScheduler, DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler, type Scheduler } from '../../src/core/schedulers/index.js';
import type { SchedulerName } from '../../src/core/config/generation.js';
import { TorchGenerator, torchRandn } from '../../src/core/engine/torch_random.js';

const SHAPE = [1, 4, 8, 8];
const INITIAL_SAMPLE_SEED = 31;
const MODEL_NOISE_SEED = 100;
// scheduler_ddpm's variance noise (DESIGN: "torch's CPU generator, seed 7"). Solving each golden step for
// its noise ((x_prev − mean)/std) shows the same draw every step: the generator was seeded afresh for
// each step (torch.Generator().manual_seed(7) per call), not drawn from sequentially.
const DDPM_GENERATOR_SEED = 7;

const randnNhwc = (seed: number) => nchwToNhwc(tf.tensor(torchRandn(seed, SHAPE), SHAPE));

// Tolerance. Each step mirrors diffusers' operation order in float32 and its scalar coefficients are
// computed with float32 rounding after every op as torch does, so the arithmetic itself agrees to the
// ulp. What remains: torch's vectorised log/sincos in randn differ from ours by ≤ 1 ulp (2.4e-7 at
// |n| ≈ 3) on ~15% of draws, carried through the steps, plus ulp differences in float32 exp/log of the
// coefficients. Measured on cpu (max error over all steps / largest |sample|): DDIM 3.0e-7 / 1.7,
// Euler 1.9e-6 / 26, DPM++ 2M 1.9e-6 / 13, PNDM 1.4e-6 / 12, DDPM 4.8e-7 / 5.2 — about one float32
// ulp of the largest value. The bound 1e-5·(1 + max|ref|) leaves room for backends whose division is
// not correctly rounded (WGSL allows 2.5 ulp) while still catching any real error: a wrong coefficient
// or an off-by-one timestep moves the samples by 1e-2 or more.
const tol = (ref: tf.Tensor) => 1e-5 * (1 + tf.max(tf.abs(ref)).dataSync()[0]);

async function runTrajectory(name: SchedulerName, key: string, configure?: (s: Scheduler) => void, ddpmGen?: () => TorchGenerator) {
  await useTestBackend();
  const files = manifest().files[key];
  const g = golden(key);
  const s = createScheduler(name, files.meta.config);
  configure?.(s);
  const nSteps = g.get('timesteps')!.shape[0];
  // PNDM with skip_prk_steps visits one timestep twice: 10 inference steps give 11 timesteps.
  s.setTimesteps(name === 'pndm' ? nSteps - 1 : nSteps);
  assert.deepEqual(s.timesteps, Array.from(g.get('timesteps')!.data), `${key}: timesteps`);
  if (g.has('sigmas')) {
    const sig = (s as EulerDiscreteScheduler | DPMSolverMultistepScheduler).sigmas;
    await assertClose(sig, g.get('sigmas')!.data, 0, `${key}: sigmas`);
  }
  let x = tf.tidy(() => randnNhwc(INITIAL_SAMPLE_SEED).mul(s.initNoiseSigma));
  let worst = 0;
  for (let i = 0; i < s.timesteps.length; i++) {
    const t = s.timesteps[i];
    const modelOutput = tf.tidy(() => s.scaleModelInput(x, t).mul(0.3).add(randnNhwc(MODEL_NOISE_SEED + i).mul(0.5)));
    const next = ddpmGen ? (s as DDPMScheduler).step(modelOutput, t, x, ddpmGen()) : s.step(modelOutput, t, x);
    modelOutput.dispose();
    x.dispose();
    x = next;
    const ref = goldenTensor(g, `step${i}`);
    const got = nhwcToNchw(x);
    worst = Math.max(worst, await assertClose(got, ref, tol(ref), `${key}: step${i}`));
    tf.dispose([ref, got]);
  }
  x.dispose();
  s.dispose();
  console.log(`${key}: max abs error over ${s.timesteps.length} steps ${worst.toExponential(2)}`);
}

test('DDIM trajectory (leading spacing, clip_sample, set_alpha_to_one=false) matches diffusers', needs('scheduler_ddim'), () => runTrajectory('ddim', 'scheduler_ddim'));

test('Euler trajectory and sigmas match diffusers', needs('scheduler_euler'), () => runTrajectory('euler', 'scheduler_euler'));

test('DPM++ 2M trajectory and sigmas match diffusers', needs('scheduler_dpmpp_2m'), () => runTrajectory('dpmpp-2m', 'scheduler_dpmpp_2m'));

test('PNDM (PLMS, skip_prk_steps) trajectory matches diffusers', needs('scheduler_pndm'), () => runTrajectory('pndm', 'scheduler_pndm'));

test('DDPM ancestral trajectory with torch-compatible variance noise (seed 7) matches diffusers', needs('scheduler_ddpm'), () =>
  runTrajectory('ddpm', 'scheduler_ddpm', (s) => ((s as DDPMScheduler).noiseLayout = 'NHWC'), () => new TorchGenerator(DDPM_GENERATOR_SEED)));

test('from_config on the model\'s PNDM config gives each class its own defaults', needs('scheduler_ddim'), () => {
  // The pipeline builds its sampler from model/scheduler/scheduler_config.json (a PNDM config); the
  // MANIFEST records the configs diffusers derived from it — ours must resolve to the same values.
  const modelConfig = manifest().files.scheduler_ddim.meta.config; // has set_alpha_to_one, skip_prk_steps, …
  const ddim = new DDIMScheduler(modelConfig);
  assert.equal(ddim.config.clip_sample, true);
  assert.equal(ddim.config.set_alpha_to_one, false);
  const dpm = new DPMSolverMultistepScheduler({ _class_name: 'PNDMScheduler', beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, skip_prk_steps: true, steps_offset: 1, timestep_spacing: 'leading' });
  assert.equal(dpm.config.solver_order, 2);
  assert.equal(dpm.config.algorithm_type, 'dpmsolver++');
  assert.equal(dpm.config.final_sigmas_type, 'zero');
  assert.equal((dpm.config as unknown as Record<string, unknown>).skip_prk_steps, undefined, 'keys of another class are ignored');
  // `_use_default_values` names values that were another class's defaults: they are not inherited.
  const euler = createScheduler('euler', { timestep_spacing: 'trailing', _use_default_values: ['timestep_spacing'] });
  assert.equal(euler.config.timestep_spacing, 'linspace');
  assert.throws(() => createScheduler('ddim', { beta_schedule: 'cubic' }), /beta_schedule.*"cubic".*linear, scaled_linear, squaredcos_cap_v2/);
  assert.throws(() => createScheduler('euler', { steps_offset: 'one' }), /steps_offset/);
});

test('torch-compatible randn: the ddpm_train latents and noise are torch.manual_seed(41/42) draws', needs('ddpm_train'), async () => {
  // An independent check of the generator on stored torch output (768 values each, ≥16 path, with a
  // tail of 0 mod 16) — and of the <16 path against torch's documented torch.manual_seed(0) values.
  const g = golden('ddpm_train');
  for (const [key, seed] of [['latents', 41], ['noise', 42]] as const) {
    const ref = g.get(key)!;
    // ≤ 1 float ulp at |x| ≤ 4: torch's AVX2 log/sincos are polynomial approximations.
    await assertClose(torchRandn(seed, ref.shape), ref.data, 5e-7, `randn seed ${seed} vs ddpm_train.${key}`);
  }
  const small = Array.from(torchRandn(0, [6])).map((v) => +v.toFixed(4));
  assert.deepEqual(small, [1.541, -0.2934, -2.1788, 0.5684, -1.0845, -1.3986]);
});

test('torch-compatible generator: a saved state continues the same stream (checkpoint resume)', () => {
  const a = new TorchGenerator(1234);
  a.randn([3]); // leaves a cached Box–Muller value behind (the < 16 path)
  const saved = JSON.parse(JSON.stringify(a.getState()));
  const expected = [...a.randn([5]), ...a.randn([40])];
  const b = new TorchGenerator(0);
  b.setState(saved);
  assert.deepEqual([...b.randn([5]), ...b.randn([40])], expected);
});

// ───────────── configurations without a golden: checked against closed forms ─────────────

const SD_BETAS = { beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, num_train_timesteps: 1000 };

test('timestep spacings and σ tables of other configs', () => {
  // Values from diffusers' docs / arXiv 2305.08891 Table 2 and the well-known SD σ range.
  const ddim = (spacing: string, extra = {}) => {
    const s = new DDIMScheduler({ ...SD_BETAS, timestep_spacing: spacing, ...extra });
    s.setTimesteps(10);
    return s.timesteps;
  };
  assert.deepEqual(ddim('trailing'), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
  assert.deepEqual(ddim('linspace'), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
  assert.deepEqual(ddim('leading', { steps_offset: 1 }), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  // Euler with its own default (linspace) spacing: σ_max = σ(999) ≈ 14.6146 is also the initial noise scale.
  const euler = new EulerDiscreteScheduler(SD_BETAS);
  euler.setTimesteps(25);
  assert.ok(Math.abs(euler.initNoiseSigma - 14.6146) < 1e-4, `Euler σ_max ${euler.initNoiseSigma}`);
  assert.equal(euler.timesteps[0], 999);
  // Karras σ's run from σ_max to σ_min = σ(0) ≈ 0.0292, then 0; DPM's timesteps are their rounded inverses.
  const karras = new DPMSolverMultistepScheduler({ ...SD_BETAS, use_karras_sigmas: true });
  karras.setTimesteps(20);
  assert.ok(Math.abs(karras.sigmas[0] - 14.6146) < 1e-4 && Math.abs(karras.sigmas[19] - 0.0292) < 1e-4 && karras.sigmas[20] === 0);
  assert.equal(karras.timesteps[0], 999);
  assert.ok(karras.timesteps.every((t, i) => Number.isInteger(t) && (i === 0 || t < karras.timesteps[i - 1])), `${karras.timesteps}`);
});

/**
 * With an oracle model — one that returns the exact ε, v or x₀ of a sample on the forward process
 * x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε (Euler: x₀ + σ·ε) with fixed x₀, ε — every deterministic step must land
 * on the forward process at the next noise level: DDIM, DPM-Solver and PLMS are exact for a constant
 * x₀ prediction. This exercises the prediction types and configs the goldens do not cover.
 */
async function oracleTrajectory(s: Scheduler, kind: 'vp' | 've', levelAfter: (k: number) => number, levelAt: (k: number) => number, steps: number, label: string) {
  const x0 = tf.tensor(torchRandn(1, SHAPE), SHAPE).mul(0.5);
  const eps = tf.tensor(torchRandn(2, SHAPE), SHAPE);
  const pred = s.config.prediction_type;
  // Noise level as ᾱ (VP) or σ (Euler, whose samples are x₀ + σ·ε).
  const onProcess = (level: number) => (kind === 'vp' ? x0.mul(Math.sqrt(level)).add(eps.mul(Math.sqrt(1 - level))) : x0.add(eps.mul(level)));
  const vpAlpha = (level: number) => (kind === 'vp' ? level : 1 / (level * level + 1));
  let x = onProcess(levelAt(0));
  for (let k = 0; k < steps; k++) {
    const t = s.timesteps[k];
    const a = vpAlpha(levelAt(k));
    const out = pred === 'epsilon' ? eps : pred === 'sample' ? x0 : eps.mul(Math.sqrt(a)).sub(x0.mul(Math.sqrt(1 - a)));
    const next = s.step(out, t, x);
    const expected = onProcess(levelAfter(k));
    await assertClose(next, expected, 1e-4 * (1 + tf.max(tf.abs(expected)).dataSync()[0]), `${label} step ${k}`);
    x = next;
  }
}

for (const pred of ['epsilon', 'v_prediction', 'sample'] as const) {
  test(`oracle model (${pred}): DDIM, Euler and DPM++ 2M land on the forward process`, async () => {
    await useTestBackend();
    const base = { ...SD_BETAS, prediction_type: pred };
    const ddim = new DDIMScheduler({ ...base, clip_sample: false, timestep_spacing: 'trailing' });
    ddim.setTimesteps(8);
    const stride = 1000 / 8;
    await oracleTrajectory(ddim, 'vp', (k) => { const p = ddim.timesteps[k] - Math.floor(stride); return p >= 0 ? ddim.alphasCumprod[p] : 1; }, (k) => ddim.alphasCumprod[ddim.timesteps[k]], 8, `DDIM ${pred}`);
    const euler = new EulerDiscreteScheduler({ ...base, use_karras_sigmas: true });
    euler.setTimesteps(8);
    await oracleTrajectory(euler, 've', (k) => euler.sigmas[k + 1], (k) => euler.sigmas[k], 8, `Euler karras ${pred}`);
    for (const solver_order of [2, 3]) {
      const dpm = new DPMSolverMultistepScheduler({ ...base, solver_order, timestep_spacing: 'trailing', final_sigmas_type: 'sigma_min' });
      dpm.setTimesteps(8);
      const vp = (sigma: number) => 1 / (sigma * sigma + 1);
      await oracleTrajectory(dpm, 'vp', (k) => vp(dpm.sigmas[k + 1]), (k) => vp(dpm.sigmas[k]), 8, `DPM++ order ${solver_order} ${pred}`);
      dpm.dispose();
    }
  });
}

test('oracle model: PNDM with Runge–Kutta warm-up (skip_prk_steps false) and with PLMS only', async () => {
  await useTestBackend();
  for (const skip of [false, true]) {
    const s = new PNDMScheduler({ ...SD_BETAS, skip_prk_steps: skip, steps_offset: 1 });
    s.setTimesteps(10);
    if (!skip) {
      // 12 RK4 visits over the last four intervals (with half steps), then PLMS.
      assert.deepEqual(s.timesteps, [901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1]);
    }
    const level = (k: number) => (k < s.timesteps.length ? s.alphasCumprod[s.timesteps[k]] : s.finalAlphaCumprod);
    await oracleTrajectory(s, 'vp', (k) => level(k + 1), level, s.timesteps.length, `PNDM skip_prk_steps=${skip}`);
    s.dispose();
  }
});

test('DPM-Solver++ multistep terms: heun 2M exact for x₀ linear in λ; 3M exact up to its D2 weight', async () => {
  // The oracle above keeps x₀ constant, which zeroes the multistep differences D1, D2. Here the model
  // predicts x₀(λ) = A + B·λ + Q·λ² (λ = log α/σ = −log σ), for which the data-prediction ODE has the
  // closed form x(λ) = σ_t(λ)·[K + e^λ·(A + B(λ−1) + Q(λ² − 2λ + 2))] (DPM-Solver++ eq. 9). Feeding the
  // exact x at each step, a step whose order covers the polynomial lands on x at the next λ:
  // - heun 2M is exact for linear x₀ (midpoint 2M — the default, checked against diffusers by the
  //   golden above — is exact only for constant x₀);
  // - 3M builds D1 = h·x₀' and D2 = h²·Q exactly from three unevenly spaced outputs, but diffusers
  //   weights D2 by α_t(½ − φ/h²), φ = e^{−h} − 1 + h, half of the exact ∫ e^u u² du weight; measured:
  //   without that correction the error is h³Q·α_t/6 (≈ 6e-5 here), with it ≤ 7e-7. So the 3M check is
  //   the exact solution minus that half, which pins both the D1/D2 construction and diffusers' weight.
  await useTestBackend();
  const r = (seed: number, scale: number) => tf.tensor(torchRandn(seed, SHAPE), SHAPE).mul(scale);
  for (const [order, solverType, quadratic] of [[2, 'heun', false], [3, 'midpoint', true]] as const) {
    const [A, B, Q, K] = [r(3, 0.5), r(4, 0.2), quadratic ? r(5, 0.05) : tf.zeros(SHAPE), r(6, 1)];
    const s = new DPMSolverMultistepScheduler({ ...SD_BETAS, prediction_type: 'sample', solver_order: order, solver_type: solverType, final_sigmas_type: 'sigma_min' });
    s.setTimesteps(20);
    const lambda = (sigma: number) => -Math.log(sigma);
    const exact = (sigma: number) => {
      const l = lambda(sigma);
      const sigmaT = sigma / Math.sqrt(sigma * sigma + 1);
      return K.add(A.add(B.mul(l - 1)).add(Q.mul(l * l - 2 * l + 2)).mul(Math.exp(l))).mul(sigmaT);
    };
    for (let k = 0; k < 19; k++) {
      const l = lambda(s.sigmas[k]);
      const x0 = A.add(B.mul(l)).add(Q.mul(l * l));
      const next = s.step(x0, s.timesteps[k], exact(s.sigmas[k]));
      if (k >= order - 1) {
        const h = lambda(s.sigmas[k + 1]) - l;
        const alphaT = 1 / Math.sqrt(s.sigmas[k + 1] ** 2 + 1);
        const phi = Math.exp(-h) - 1 + h;
        const expected = exact(s.sigmas[k + 1]).sub(Q.mul(alphaT * (0.5 - phi / (h * h)) * h * h));
        // f32 rounding of the coefficients and of the terms: measured ≤ 7.2e-7 on values ≤ 3.2.
        await assertClose(next, expected, 1e-5 * (1 + tf.max(tf.abs(expected)).dataSync()[0]), `DPM++ ${order}M (${solverType}) step ${k}`);
      }
    }
    s.dispose();
  }
});
