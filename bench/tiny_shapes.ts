// The step `npm run demo` trains, on each CPU path side by side (issue 16): the tiny-shapes UNet
// (examples/tiny-shapes/model, its real weights), batch 4 of cached 16×16×4 latents, 77-token text
// embeddings, LoRA r = 4, alpha 4 on to_q/to_k/to_v/to_out.0, epsilon MSE, backward, clip 1.0, AdamW —
// the recipe of bench/reference/torch_tiny_shapes_step.py, whose PyTorch figure (measured on this
// machine, bench/reference/torch_tiny_shapes_step.json) is printed next to ours.
//
// tfjs keeps one backend per process, so each path runs in a child (`--tiny-path NAME`):
//   wasm            tfjs-wasm (XNNPACK, one thread in Node) with engine/wasm_ops.ts — `backend: auto` without a GPU
//   cpu             tfjs' pure-JavaScript kernels
//   webgpu          tfjs-webgpu with the project's kernels on whatever adapter Dawn finds (lavapipe here)
//   webgpu-planned  the same, through the planned step (src/training/planned_step.ts)
// Each reports wall and CPU ms per step (CPU: the process's user + system time, all its threads; on a
// loaded machine the fair figure for a one-thread path, while a threaded one needs a quiet machine's wall).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { BackendName } from '../src/core/config/run_config.js';
import { initBackend } from '../src/core/engine/backend.js';
import { UNet2DConditionModel } from '../src/core/models/unet_2d_condition.js';
import { DDPMScheduler } from '../src/core/schedulers/ddpm.js';
import { TrainableLora } from '../src/training/lora_params.js';
import { Random } from '../src/training/random.js';
import { AdamW, type AdamWOptions } from '../src/training/adamw.js';
import { clipGradNorm } from '../src/training/grad_clip.js';
import { lossAndGrads, type StepInputs, type StepModels } from '../src/training/train_step.js';
import { round } from './timing.js';

export const TINY_PATHS = ['wasm', 'cpu', 'webgpu', 'webgpu-planned'] as const;
export type TinyPath = (typeof TINY_PATHS)[number];

export interface TinyStepResult {
  readonly path: TinyPath;
  adapter?: string;
  wall_ms_per_step?: number;
  cpu_ms_per_step?: number;
  first_step_ms?: number;
  steps?: number;
  loss?: number;
  error?: string;
}

/** PyTorch's figure for the same step (bench/reference/torch_tiny_shapes_step.json). */
export interface TorchReference {
  readonly wall_ms: number;
  readonly cpu_ms: number;
  readonly threads: number;
  readonly torch: string;
  readonly measured: string;
}

const BATCH = 4;
const ADAM: AdamWOptions = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-2 };

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** In this process: `warmup` untimed steps, then the mean of `steps` timed ones. */
export async function runTinyStep(p: TinyPath, modelDir: string, warmup: number, steps: number): Promise<TinyStepResult> {
  const r: TinyStepResult = { path: p };
  const info = await initBackend((p === 'webgpu-planned' ? 'webgpu' : p) as BackendName);
  r.adapter = info.adapter;
  const unet = UNet2DConditionModel.fromPretrained(modelDir);
  const size = unet.config.sample_size as number;
  const channels = unet.config.in_channels as number;
  const hidden = unet.config.cross_attention_dim as number;
  const lora = TrainableLora.gaussian(unet.loraTargets(), 4, 4, new Random(0));
  const scheduler = new DDPMScheduler({ num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear' });
  const models: StepModels = { unet, scheduler, lora, predictionType: 'epsilon', snrGamma: null };
  const latents = tf.randomNormal([BATCH, size, size, channels], 0, 1, 'float32', 11) as tf.Tensor4D;
  const text = tf.randomNormal([BATCH, 77, hidden], 0, 1, 'float32', 12) as tf.Tensor3D;
  const rng = new Random(7);
  const inputs = (): StepInputs => ({
    latents,
    noise: tf.tensor4d(rng.normal([BATCH, size, size, channels]), [BATCH, size, size, channels]),
    timesteps: Int32Array.from(rng.randint(0, 1000, BATCH)),
    encoderHiddenStates: text,
  });
  let step: () => Promise<number>;
  let release = () => {};
  if (p === 'webgpu-planned') {
    const { PlannedLoraStep } = await import('../src/training/planned_step.js');
    const planned = new PlannedLoraStep(models, ADAM, 1.0);
    release = () => planned.dispose();
    step = async () => {
      const x = inputs();
      const out = await planned.step(x, 1e-4);
      x.noise.dispose();
      return out.loss;
    };
  } else {
    const opt = new AdamW(ADAM);
    release = () => opt.dispose();
    step = async () => {
      const x = inputs();
      const { loss, grads } = await lossAndGrads(models, x);
      const clipped = await clipGradNorm(grads, 1.0);
      opt.update(lora.params, clipped.grads, 1e-4);
      tf.dispose([...grads.values(), ...clipped.grads.values(), x.noise]);
      return loss;
    };
  }
  try {
    let t0 = performance.now();
    r.loss = round(await step(), 6);
    r.first_step_ms = round(performance.now() - t0, 0);
    for (let i = 1; i < warmup; i++) await step();
    t0 = performance.now();
    const c0 = cpuMs();
    for (let i = 0; i < steps; i++) r.loss = round(await step(), 6);
    r.cpu_ms_per_step = round((cpuMs() - c0) / steps, 0);
    r.wall_ms_per_step = round((performance.now() - t0) / steps, 0);
    r.steps = steps;
  } catch (e) {
    r.error = (e as Error).message;
  } finally {
    release();
    lora.dispose();
    tf.dispose([latents, text]);
    unet.params.dispose();
  }
  return r;
}

/** Runs every path in its own child of `script` (this bundle) and collects their results. */
export async function compareTinyPaths(script: string, paths: readonly TinyPath[], o: { warmup: number; steps: number; timeoutS: number }, log: (m: string) => void): Promise<TinyStepResult[]> {
  const results: TinyStepResult[] = [];
  for (const p of paths) {
    log(`tiny-shapes step on ${p} …`);
    const r = await new Promise<TinyStepResult>((resolve) => {
      const child = spawn(process.execPath, [script, '--tiny-path', p, '--warmup', String(o.warmup), '--steps', String(o.steps)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutS * 1000);
      child.on('close', (code) => {
        clearTimeout(timer);
        const line = out.trim().split('\n').at(-1) ?? '';
        try {
          resolve(JSON.parse(line) as TinyStepResult);
        } catch {
          const why = code === null ? `killed after ${o.timeoutS} s` : `exit ${code}`;
          resolve({ path: p, error: `${why}: ${err.trim().split('\n').slice(-3).join(' | ').slice(0, 400)}` });
        }
      });
    });
    log(`  ${p}: ${r.error ? `ERROR ${r.error}` : `${r.wall_ms_per_step} ms wall, ${r.cpu_ms_per_step} ms CPU per step`}`);
    results.push(r);
  }
  return results;
}

export function readTorchReference(repo: string): TorchReference | undefined {
  const file = path.join(repo, 'bench/reference/torch_tiny_shapes_step.json');
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as TorchReference) : undefined;
}

/** The demo's time as the README states it (its "needs about …" sentence), for the table's last line. */
export function readmeDemoTime(repo: string): string | undefined {
  const text = fs.readFileSync(path.join(repo, 'README.md'), 'utf8').replace(/\s+/g, ' ');
  return /The whole demo \([^)]*\) (?:needs|takes) (.+?)\.(?: |$)/.exec(text)?.[1];
}

/** The side-by-side table printed on stderr (stdout keeps the JSON). */
export function tinyTable(results: readonly TinyStepResult[], torch: TorchReference | undefined, demo: string | undefined): string {
  const lines = ['tiny-shapes LoRA step (batch 4, 16×16 latents, cached; r 4):', '  path                 wall ms/step   CPU ms/step   vs PyTorch (CPU)'];
  const ratio = (cpu?: number) => (torch && cpu ? `${(cpu / torch.cpu_ms).toFixed(1)}×` : '');
  for (const r of results) {
    const name = `${r.path}${r.adapter ? ` (${r.adapter})` : ''}`;
    lines.push(r.error ? `  ${name.padEnd(20)} ${r.error.slice(0, 100)}` : `  ${name.padEnd(20)} ${String(r.wall_ms_per_step).padStart(12)}   ${String(r.cpu_ms_per_step).padStart(11)}   ${ratio(r.cpu_ms_per_step).padStart(8)}`);
  }
  if (torch) lines.push(`  ${`PyTorch ${torch.torch} ${torch.threads}T`.padEnd(20)} ${String(torch.wall_ms).padStart(12)}   ${String(torch.cpu_ms).padStart(11)}   (${torch.measured})`);
  // Issue 11's figure, on its own line: the planned executor next to wasm, same run.
  const planned = results.find((r) => r.path === 'webgpu-planned' && !r.error);
  const wasm = results.find((r) => r.path === 'wasm' && !r.error);
  if (planned) lines.push(`tiny-shapes step, planned on lavapipe: ${planned.wall_ms_per_step} ms/step wall, ${planned.cpu_ms_per_step} CPU${wasm ? ` (wasm: ${wasm.wall_ms_per_step} wall, ${wasm.cpu_ms_per_step} CPU)` : ''}`);
  if (demo) lines.push(`README: the whole demo needs ${demo}`);
  return lines.join('\n');
}
