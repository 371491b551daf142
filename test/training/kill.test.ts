// A real trainer process (the CLI, on a run-config file) killed with SIGKILL in the middle of writing a
// checkpoint: every checkpoint finished before stays loadable, the half-written one is not taken for a
// checkpoint, and resuming from `latest` ends with the same weights as a run that was never interrupted.
// Also: SIGINT and a `stop` line on stdin save a checkpoint and exit 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, TINY_SHAPES } from '../helpers/fixtures.js';
import { loadRunConfig } from '../../src/core/config/load.js';
import { initBackend } from '../../src/core/engine/backend.js';
import type { BackendName } from '../../src/core/config/run_config.js';
import { train } from '../../src/training/loop.js';
import { MemoryEventSink } from '../../src/training/events.js';
import { loadCheckpoint } from '../../src/training/checkpoints.js';
import { listCheckpoints } from '../../src/core/config/run_folder.js';
import { readAllFloat32 } from '../../src/core/io/safetensors.js';
import { TRAINER_EVENTS, type TrainerEvent } from '../../src/protocol/training.js';

/** A stdout line → its event (undefined for a log line; a bad event fails the test). */
function eventOf(line: string): TrainerEvent | undefined {
  const r = TRAINER_EVENTS.read(line);
  assert.ok(!r || r.ok, r && !r.ok ? r.problem : '');
  return r?.ok ? r.message : undefined;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kill-'));
const backend = process.env.LORA_STUDIO_BACKEND ?? 'wasm';

function writeConfig(name: string, overrides: Record<string, string | number> = {}): string {
  const file = path.join(tmp, `${name}.lora.yaml`);
  let text = `pretrained_model_name_or_path: ${path.join(TINY_SHAPES, 'model')}
train_data_dir: ${path.join(TINY_SHAPES, 'dataset-corner')}
output_dir: ${name}-out
max_train_samples: 4
resolution: 64
train_batch_size: 2
max_train_steps: 3
checkpointing_steps: 1
learning_rate: 1.0e-3
lr_warmup_steps: 0
rank: 2
seed: 5
backend: ${backend}
`;
  for (const [k, v] of Object.entries(overrides)) {
    const line = `${k}: ${v}\n`;
    text = new RegExp(`^${k}:`, 'm').test(text) ? text.replace(new RegExp(`^${k}:.*\\n`, 'm'), line) : text + line;
  }
  fs.writeFileSync(file, text);
  return file;
}

interface Child {
  proc: ChildProcess;
  events: TrainerEvent[];
  stderr: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when a stderr line or event matches. */
  waitFor(match: (stderrLine: string | undefined, e: TrainerEvent | undefined) => boolean): Promise<void>;
}

function startTrainer(configFile: string, env: Record<string, string> = {}): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), 'train', configFile], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const child: Child = {
    proc,
    events: [],
    stderr: '',
    exited: new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal }))),
    waitFor: (match) =>
      new Promise((resolve, reject) => {
        const onOut = (line: string) => {
          const e = eventOf(line);
          if (e && match(undefined, e)) done();
        };
        const onErr = (line: string) => match(line, undefined) && done();
        const done = () => {
          lines.off('out', onOut);
          lines.off('err', onErr);
          resolve();
        };
        lines.on('out', onOut);
        lines.on('err', onErr);
        void child.exited.then(() => reject(new Error(`trainer exited before the awaited moment; stderr:\n${child.stderr}`)));
      }),
  };
  const lines = new EventEmitter();
  let outBuf = '';
  let errBuf = '';
  proc.stdout!.on('data', (d) => {
    outBuf += String(d);
    let i;
    while ((i = outBuf.indexOf('\n')) >= 0) {
      const line = outBuf.slice(0, i);
      outBuf = outBuf.slice(i + 1);
      const e = eventOf(line);
      if (e) child.events.push(e);
      lines.emit('out', line);
    }
  });
  proc.stderr!.on('data', (d) => {
    child.stderr += String(d);
    errBuf += String(d);
    let i;
    while ((i = errBuf.indexOf('\n')) >= 0) {
      lines.emit('err', errBuf.slice(0, i));
      errBuf = errBuf.slice(i + 1);
    }
  });
  return child;
}


const loraTensors = (file: string) => readAllFloat32(file).tensors;

test('SIGKILL while checkpoint-2 is being written: checkpoint-1 loads, resume ends identical to an uninterrupted run', async () => {
  await initBackend(backend as BackendName);
  const cfgFile = writeConfig('killed');
  const child = startTrainer(cfgFile, { LORA_STUDIO_TEST_PAUSE_CHECKPOINT: '2' });
  await child.waitFor((line) => line?.startsWith('test: checkpoint files written') ?? false);
  child.proc.kill('SIGKILL');
  const { signal } = await child.exited;
  assert.equal(signal, 'SIGKILL');

  const out = path.join(tmp, 'killed-out');
  assert.deepEqual(listCheckpoints(out).map((c) => c.step), [1], 'only the finished checkpoint counts');
  assert.ok(fs.readdirSync(out).some((f) => f.startsWith('.checkpoint-2.tmp-')), 'the interrupted write is left as a hidden temporary');
  const c1 = loadCheckpoint(path.join(out, 'checkpoint-1'));
  assert.equal(c1.step, 1);
  assert.equal(c1.optimizer.step, 1);
  // What the killed process said before dying is valid protocol.
  assert.ok(child.events.some((e) => e.type === 'checkpoint' && e.step === 1));
  for (const e of child.events) assert.deepEqual(TRAINER_EVENTS.check(e), { ok: true, message: e }, JSON.stringify(e));

  // Resume in this process from `latest`.
  const resumed = loadRunConfig(writeConfig('killed', { resume_from_checkpoint: 'latest' }));
  assert.ok(resumed.config, resumed.problems.map((p) => p.message).join('\n'));
  const r = await train({ config: resumed.config!, events: new MemoryEventSink() });
  assert.equal(r.status, 'completed');
  assert.ok(!fs.readdirSync(out).some((f) => f.startsWith('.checkpoint-')), 'stale temporaries cleaned up');

  const straightCfg = loadRunConfig(writeConfig('straight'));
  const s = await train({ config: straightCfg.config!, events: new MemoryEventSink() });
  assert.equal(s.status, 'completed');
  const a = loraTensors(path.join(tmp, 'straight-out', 'pytorch_lora_weights.safetensors'));
  const b = loraTensors(path.join(out, 'pytorch_lora_weights.safetensors'));
  for (const [k, t] of a) assert.deepEqual(b.get(k)!.data, t.data, `${k} differs`);
});

test('SIGINT, and `stop` on stdin, save a checkpoint and exit 0', async () => {
  for (const how of ['SIGINT', 'stdin'] as const) {
    const child = startTrainer(writeConfig(`stop-${how}`, { max_train_steps: 50, checkpointing_steps: 100 }));
    await child.waitFor((_, e) => e?.type === 'progress');
    if (how === 'SIGINT') child.proc.kill('SIGINT');
    else {
      // A person at the terminal: `checkpoint` saves one and training goes on; then a protocol stop.
      child.proc.stdin!.write('checkpoint\n');
      await child.waitFor((_, e) => e?.type === 'checkpoint');
      child.proc.stdin!.write('{"type":"stop"}\n');
    }
    const { code } = await child.exited;
    assert.equal(code, 0, child.stderr);
    const finished = child.events.find((e) => e.type === 'finished');
    assert.ok(finished && finished.type === 'finished' && finished.reason === 'stopped', `${how}: ${JSON.stringify(finished)}`);
    const steps = listCheckpoints(path.join(tmp, `stop-${how}-out`)).map((c) => c.step);
    assert.equal(steps.length, how === 'SIGINT' ? 1 : 2, `checkpoints ${steps}`);
    assert.ok(steps.every((s) => s >= 1 && s < 50));
    assert.equal(finished.outputs.checkpoint, path.join(tmp, `stop-${how}-out`, `checkpoint-${steps.at(-1)}`));
    for (const e of child.events) assert.deepEqual(TRAINER_EVENTS.check(e), { ok: true, message: e }, JSON.stringify(e));
  }
});
