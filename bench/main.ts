// The benchmarks. Prints JSON on stdout (progress on stderr), and writes it to --out after every item, so a
// run cut short still leaves what it measured.
//
// `npm run bench` (`--only tiny`): the tiny-shapes LoRA step — the one `npm run demo` trains — on every CPU
// path side by side (wasm, cpu, webgpu on lavapipe, the planned webgpu step; `--paths` picks), each in a
// child process, with PyTorch's figure and the README's demo time (bench/tiny_shapes.ts).
//
// The GPU benchmark of the training hot path (scripts/device-bench.sh):
//   node dist/bench.mjs [--backend webgpu|wasm|cpu] [--out FILE] [--small] [--only micro,tiles,step]
//                       [--batches 1,4] [--modes unet_only,full] [--stock-step] [--steps N] [--budget-s S]
//                       [--planned-channels 8,16,32,32]
//
// `planned` (in --only; webgpu) runs the planned LoRA step next to the eager one on a UNet of SD 1.5's
// topology with narrowed channels (bench/planned.ts): host ms/step, dispatches/step, submits/step, plan bytes.
// `plan-memory` computes the plans of the real SD 1.5 step at 512 px and the real SDXL step at 1024 px
// (128×128 latents, with its added conditioning) without allocating them (peak bytes, without and with gradient checkpointing).
//
// --small uses tiny shapes and a tiny model of the same layout (a smoke test that runs on cpu/wasm).
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/core/engine/backend.js';
import type { BackendName } from '../src/core/config/run_config.js';
import { setOps, tfjsOps } from '../src/core/engine/ops.js';
import { installWebgpuKernels, probeFeatures, registerWebgpuBackend, webgpuDeviceInfo, webgpuOps } from '../src/core/engine/webgpu/index.js';
import { webgpuErrorCount } from '../src/core/engine/webgpu/device.js';
import { gemmTile } from '../src/core/engine/webgpu/matmul.js';
import { FULL_SHAPES, SMALL_SHAPES, microKernels, sweepGemmTiles } from './micro.js';
import { StepBench, type StepResult } from './step.js';
import { TINY_PATHS, compareTinyPaths, readTorchReference, readmeDemoTime, runTinyStep, tinyTable, type TinyPath } from './tiny_shapes.js';
import { benchPlanned, planArithmetic, SD15_512, SDXL_1024, type PlanArithmetic, type PlannedBenchResult } from './planned.js';

interface Args {
  backend: BackendName;
  out?: string;
  small: boolean;
  only: Set<string>;
  batches: number[];
  modes: ('unet_only' | 'full')[];
  stockStep: boolean;
  steps: number;
  warmup: number;
  budgetS: number;
  plannedChannels: number[];
  /** `tiny`: the paths to compare; `--tiny-path`: run one (a child of `tiny`) and print its JSON line. */
  paths: TinyPath[];
  tinyPath?: TinyPath;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { backend: 'webgpu', small: false, only: new Set(['probe', 'micro', 'tiles', 'step']), batches: [1, 4], modes: ['unet_only', 'full'], stockStep: false, steps: 5, warmup: 2, budgetS: 480, plannedChannels: [8, 16, 32, 32], paths: [...TINY_PATHS] };
  let stepsGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    if (k === '--backend') a.backend = v() as BackendName;
    else if (k === '--out') a.out = v();
    else if (k === '--small') a.small = true;
    else if (k === '--only') a.only = new Set(v().split(','));
    else if (k === '--batches') a.batches = v().split(',').map(Number);
    else if (k === '--modes') a.modes = v().split(',') as Args['modes'];
    else if (k === '--stock-step') a.stockStep = true;
    else if (k === '--steps') {
      a.steps = Number(v());
      stepsGiven = true;
    }
    else if (k === '--warmup') a.warmup = Number(v());
    else if (k === '--budget-s') a.budgetS = Number(v());
    else if (k === '--planned-channels') a.plannedChannels = v().split(',').map(Number);
    else if (k === '--paths' || k === '--tiny-path') {
      const ps = v().split(',') as TinyPath[];
      const bad = ps.find((p) => !TINY_PATHS.includes(p));
      if (bad) throw new Error(`${k}: unknown path "${bad}" (one of ${TINY_PATHS.join(', ')})`);
      if (k === '--paths') a.paths = ps;
      else a.tinyPath = ps[0];
    }
    else if (k === '--help' || k === '-h') {
      console.error(fs.readFileSync(new URL(import.meta.url)).toString().split('\n').filter((l) => l.startsWith('//')).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown argument ${k} (see --help)`);
  }
  // The tiny step is short: three timed steps are enough, and the cpu path is slow.
  if (a.only.has('tiny') && !stepsGiven) a.steps = 3;
  return a;
}

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const log = (m: string) => console.error(`[bench ${((performance.now() - started) / 1000).toFixed(1)}s] ${m}`);
  const overBudget = () => (performance.now() - started) / 1000 > args.budgetS;
  const report: Record<string, unknown> = {
    tool: 'lora-studio bench',
    started: new Date().toISOString(),
    args: { ...args, only: [...args.only] },
    versions: { node: process.version, tfjs: tf.version.tfjs },
  };
  const save = () => {
    if (args.out) {
      fs.mkdirSync(path.dirname(path.resolve(args.out)), { recursive: true });
      fs.writeFileSync(args.out, JSON.stringify(report, null, 1));
    }
  };
  const skipped: string[] = [];
  report.skipped = skipped;

  if (args.tinyPath) {
    process.stdout.write(`${JSON.stringify(await runTinyStep(args.tinyPath, path.join(REPO, 'examples/tiny-shapes/model'), args.warmup, args.steps))}\n`);
    return;
  }
  if (args.only.has('tiny')) {
    const paths = args.paths;
    report.tiny = await compareTinyPaths(process.argv[1], paths, { warmup: args.warmup, steps: args.steps, timeoutS: args.budgetS }, log);
    report.torch = readTorchReference(REPO);
    report.readmeDemo = readmeDemoTime(REPO);
    save();
    console.error(tinyTable(report.tiny as never, report.torch as never, report.readmeDemo as never));
    if (args.only.size === 1) {
      process.stdout.write(`${JSON.stringify(report, null, 1)}\n`);
      return;
    }
  }

  if (args.backend === 'webgpu') {
    if (args.only.has('probe')) {
      // Which optional features Dawn offers, with and without its unsafe-APIs toggle (on devices of its own).
      report.featureProbe = await probeFeatures();
      log(`feature probe: ${JSON.stringify(report.featureProbe)}`);
    }
    await registerWebgpuBackend();
  }
  const info = await initBackend(args.backend);
  if (info.name === 'webgpu') installWebgpuKernels();
  report.backend = { ...info, device: webgpuDeviceInfo() };
  const dev = webgpuDeviceInfo();
  log(`backend ${info.name} ${info.adapter ?? ''}; device: ${dev ? `${dev.adapter} [${dev.dawnFlags.join(' ')}]` : 'none of ours'}`);
  save();

  const shapes = args.small ? SMALL_SHAPES : FULL_SHAPES;
  const ours = info.name === 'webgpu';
  if (args.only.has('micro')) {
    report.micro = await microKernels(shapes, ours, log);
    save();
  }
  if (ours && args.only.has('tiles')) {
    if (overBudget()) skipped.push('tiles');
    else {
      report.gemmTiles = await sweepGemmTiles(shapes, log);
      save();
    }
  }
  report.gemmTileUsed = ours ? gemmTile() : undefined;

  if (args.only.has('step')) {
    const steps: StepResult[] = [];
    report.step = steps;
    const bench = new StepBench(args.small);
    const plan: { batch: number; mode: 'unet_only' | 'full'; kernels: 'ours' | 'stock' }[] = [];
    for (const batch of args.batches) for (const mode of args.modes) plan.push({ batch, mode, kernels: ours ? 'ours' : 'stock' });
    // The stock kernels (for the same call's comparison) last: they are slow and may run out of memory.
    if (ours && args.stockStep) plan.push({ batch: args.batches[0], mode: 'unet_only', kernels: 'stock' });
    for (const p of plan) {
      if (overBudget()) {
        skipped.push(`step ${p.kernels} bs${p.batch} ${p.mode} (time budget)`);
        continue;
      }
      setOps(p.kernels === 'ours' ? webgpuOps : tfjsOps);
      const errorsBefore = webgpuErrorCount();
      const r = await bench.run({ ...p, small: args.small, warmup: args.warmup, steps: args.steps }, p.kernels, log);
      if (webgpuErrorCount() > errorsBefore) r.error = `${r.error ?? ''} WebGPU reported ${webgpuErrorCount() - errorsBefore} error(s) (out of memory?), figures invalid`.trim();
      steps.push(r);
      save();
      if (ours) installWebgpuKernels();
    }
    bench.dispose();
  }
  if (ours && args.only.has('planned')) {
    const planned: PlannedBenchResult[] = [];
    report.planned = planned;
    for (const batch of args.batches) {
      if (overBudget()) {
        skipped.push(`planned bs${batch} (time budget)`);
        continue;
      }
      const small = args.small;
      planned.push(await benchPlanned({ batch, channels: small ? [32, 64] : args.plannedChannels, latent: small ? 8 : 64, steps: args.steps, small }, log));
      save();
    }
  }
  if (ours && args.only.has('plan-memory')) {
    // The real SD 1.5 (512 px) and SDXL (1024 px) steps' plans, computed without allocating (any device, the null one included).
    const mem: PlanArithmetic[] = [];
    report.planMemory = mem;
    for (const model of [SD15_512, SDXL_1024]) {
      for (const batch of args.batches) {
        if (overBudget()) {
          skipped.push(`plan-memory ${model.name} bs${batch} (time budget)`);
          continue;
        }
        mem.push(await planArithmetic(model, batch, log));
        save();
      }
    }
  }
  report.seconds = Math.round((performance.now() - started) / 100) / 10;
  save();
  process.stdout.write(`${JSON.stringify(report, null, 1)}\n`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`bench failed: ${(e as Error).stack ?? e}`);
    process.exit(1);
  },
);
