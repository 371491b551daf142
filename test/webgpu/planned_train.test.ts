// `lora-studio train` on webgpu runs the planned step (src/training/planned_step.ts): on lavapipe, a short
// run of the tiny-shapes example completes and exits 0 (the run's end used to throw in tfjs' buffer manager,
// disposing a scheduler tensor the trace had made: exit 1 after every GPU run), says its planned peak
// before the first step, and gives the losses of the same run on the eager step (LORA_STUDIO_EAGER_STEP=1).
// Tolerance 1e-5 relative: both paths run the same WGSL kernels in the same order (measured: 2e-7).
// Skipped when there is no WebGPU adapter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO } from '../helpers/fixtures.js';
import { EAGER_STEP_ENV } from '../../src/training/planned_step.js';
import { webgpuOrSkip } from './setup.js';

const skip = await webgpuOrSkip();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'planned-train-'));
const EXAMPLE = path.join(REPO, 'examples/tiny-shapes');

function run(name: string, env: Record<string, string> = {}) {
  const config = path.join(tmp, `${name}.lora.yaml`);
  fs.writeFileSync(
    config,
    [`pretrained_model_name_or_path: ${path.join(EXAMPLE, 'model')}`, `train_data_dir: ${path.join(EXAMPLE, 'dataset-corner')}`, `output_dir: ${path.join(tmp, name)}`, 'resolution: 64', 'center_crop: true', 'train_batch_size: 2', 'max_train_steps: 2', 'learning_rate: 1.0e-3', 'rank: 4', 'seed: 0', 'backend: webgpu', ''].join('\n'),
  );
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), 'train', config], { cwd: REPO, encoding: 'utf8', env: { ...process.env, ...env, LORA_STUDIO_DEBUG: '1' } });
  assert.equal(r.status, 0, `train (${name}) exited ${r.status}:\n${r.stderr.slice(-2000)}`);
  const events = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; loss?: number; plannedPeakBytes?: number });
  assert.ok(fs.existsSync(path.join(tmp, name, 'pytorch_lora_weights.safetensors')));
  return { plannedPeakBytes: events.find((e) => e.type === 'started')?.plannedPeakBytes, losses: events.filter((e) => e.type === 'progress').map((e) => e.loss!) };
}

test('train on webgpu: the planned step completes a run, states its peak, and matches the eager step', { skip }, () => {
  const planned = run('planned');
  assert.ok((planned.plannedPeakBytes ?? 0) > 0, `started says the planned peak (${planned.plannedPeakBytes})`);
  const eager = run('eager', { [EAGER_STEP_ENV]: '1' });
  assert.equal(eager.plannedPeakBytes, undefined, 'the eager step plans nothing');
  assert.equal(planned.losses.length, 2);
  planned.losses.forEach((l, i) => assert.ok(Math.abs(l - eager.losses[i]) <= 1e-5 * Math.abs(eager.losses[i]), `step ${i + 1}: planned ${l}, eager ${eager.losses[i]}`));
});
