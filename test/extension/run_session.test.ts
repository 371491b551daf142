// The run session (src/extension/run_session.ts): the trainer as a child process, driven over the
// JSON-lines protocol. First against a fake trainer (every path in milliseconds), then against the real
// trainer on the tiny-shapes model (start, progress, stop → checkpoint, resume, crash).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it, before, after } from 'node:test';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { RunSession, type TrainerLaunch } from '../../src/extension/run_session.js';
import { acquireRunLock } from '../../src/core/config/run_lock.js';
import { RUN_LOCK_FILE } from '../../src/core/config/run_folder.js';
import { RunRegistry } from '../../src/extension/run_registry.js';
import { readRunHistory } from '../../src/extension/run_history.js';
import type { TrainerEvent } from '../../src/protocol/training.js';
import type { RunState } from '../../src/protocol/dashboard.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FAKE: TrainerLaunch = { nodePath: process.execPath, trainerPath: path.join(ROOT, 'test/extension/fake-trainer.mjs') };

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'lora-session-'));
}

function writeConfig(dir: string, name: string, body: string): string {
  const file = path.join(dir, `${name}.lora.yaml`);
  fs.writeFileSync(file, body);
  return file;
}

/** Starts a session and records what it reports. */
function record(session: RunSession) {
  const events: TrainerEvent[] = [];
  const states: RunState[] = [];
  const logs: string[] = [];
  session.onEvent.on((e) => events.push(e));
  session.onState.on((s) => states.push(s));
  session.onLog.on((l) => logs.push(l));
  return { events, states, logs };
}

describe('RunSession with the fake trainer', () => {
  let dir: string;
  before(() => (dir = tempDir()));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs to completion, reporting progress in order and the output file', async () => {
    const config = writeConfig(dir, 'complete', 'output_dir: out-complete\nmax_train_steps: 12\ncheckpointing_steps: 5\n');
    const session = new RunSession({ launch: FAKE, configPath: config });
    const r = record(session);
    const exit = await session.start().done;
    assert.equal(exit.state, 'completed', exit.message);
    assert.equal(session.name, 'complete');
    assert.deepEqual(r.states, ['running', 'completed']);
    assert.deepEqual(session.history.progress.map((p) => p.step), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert.deepEqual(session.history.checkpoints.map((c) => c.step), [5, 10]);
    assert.equal(session.outputDir, path.join(dir, 'out-complete'));
    assert.equal(exit.finished?.outputs.lora, path.join(dir, 'out-complete/pytorch_lora_weights.safetensors'));
    assert.ok(fs.existsSync(exit.finished!.outputs.lora!));
    assert.equal(r.events[0].type, 'started');
    assert.equal(r.events.at(-1)?.type, 'finished');
    assert.ok(r.logs.some((l) => l.includes('fake trainer: 12 steps')), 'stderr reaches the log');
    assert.equal(session.live, false);
  });

  it('a trainer line of another protocol version or with a bad field is logged and ignored; the run goes on', async () => {
    const config = writeConfig(dir, 'bad-lines', 'output_dir: out-bad-lines\nmax_train_steps: 3\ncheckpointing_steps: 5\n');
    const session = new RunSession({ launch: { ...FAKE, env: { FAKE_TRAINER_BAD_LINES: '1' } }, configPath: config });
    const r = record(session);
    const exit = await session.start().done;
    assert.equal(exit.state, 'completed', exit.message);
    assert.deepEqual(session.history.progress.map((p) => p.step), [1, 2, 3], 'the bad progress lines (step 99) are not events');
    assert.ok(!r.events.some((e) => e.type === 'progress' && e.step === 99));
    const ignored = r.logs.filter((l) => l.startsWith('ignored a line from the trainer: '));
    assert.deepEqual(ignored, [
      'ignored a line from the trainer: trainer event speaks version 2 of the training protocol, this side speaks version 1; use the extension and the lora-studio CLI of the same release',
      'ignored a line from the trainer: "loss" must be a number, got "low"',
    ]);
  });

  it('stop saves a checkpoint and exits cleanly; resume continues from it', async () => {
    const config = writeConfig(dir, 'stop', 'output_dir: out-stop\nmax_train_steps: 400\ncheckpointing_steps: 1000\n');
    const first = new RunSession({ launch: FAKE, configPath: config });
    const r1 = record(first);
    first.start();
    // Stop once training is under way, as a person would.
    await new Promise<void>((resolve) => first.onEvent.on((e) => e.type === 'progress' && e.step === 3 && resolve()));
    const exit = await first.stop();
    assert.equal(exit.state, 'stopped', exit.message);
    assert.ok(r1.states.includes('stopping'));
    const stoppedAt = exit.finished!.step;
    assert.ok(stoppedAt >= 3 && stoppedAt < 400, `stopped at ${stoppedAt}`);
    assert.equal(exit.finished?.outputs.checkpoint, path.join(dir, `out-stop/checkpoint-${stoppedAt}`));
    assert.ok(fs.existsSync(exit.finished!.outputs.checkpoint!));

    const resumed = new RunSession({ launch: { ...FAKE, env: { FAKE_TRAINER_STEP_MS: '1' } }, configPath: config, resume: true });
    assert.ok(resumed.commandLine.includes('--resume_from_checkpoint=latest'));
    const exit2 = await resumed.start().done;
    assert.equal(exit2.state, 'completed', exit2.message);
    assert.equal(resumed.history.started?.startStep, stoppedAt);
    assert.equal(resumed.history.progress[0].step, stoppedAt + 1);
  });

  it('an error event fails the run with the trainer’s message and hint', async () => {
    const config = writeConfig(dir, 'nan', 'output_dir: out-nan\nmax_train_steps: 10\n');
    const session = new RunSession({ launch: { ...FAKE, env: { FAKE_TRAINER_ERROR_AT: '4' } }, configPath: config });
    const exit = await session.start().done;
    assert.equal(exit.state, 'failed');
    assert.equal(exit.error?.code, 'nan_loss');
    assert.equal(exit.message, 'The loss became NaN at step 4. Lower the learning rate.');
    assert.equal(exit.code, 1);
  });

  it('a crash without an error event is explained by the last stderr line', async () => {
    const config = writeConfig(dir, 'crash', 'output_dir: out-crash\nmax_train_steps: 10\n');
    const session = new RunSession({ launch: { ...FAKE, env: { FAKE_TRAINER_CRASH_AT: '2' } }, configPath: config });
    const exit = await session.start().done;
    assert.equal(exit.state, 'failed');
    assert.equal(exit.code, 3);
    assert.match(exit.message, /^The trainer exited with code 3: TypeError: Cannot read properties of undefined/);
    assert.equal(session.history.progress.length, 1);
  });

  it('a node path that does not exist fails with a message naming it', async () => {
    const config = writeConfig(dir, 'nonode', 'output_dir: out-nonode\n');
    const session = new RunSession({ launch: { ...FAKE, nodePath: path.join(dir, 'no-such-node') }, configPath: config });
    const exit = await session.start().done;
    assert.equal(exit.state, 'failed');
    assert.match(exit.message, /Could not start the trainer \(.*no-such-node\): .*ENOENT/);
  });

  it('stopWithin kills a trainer that ignores stop', async () => {
    // A process that reads no stdin and sends no events: only the deadline can end it.
    const config = writeConfig(dir, 'deaf', 'output_dir: out-deaf\n');
    const sleeper = new RunSession({
      launch: { nodePath: process.execPath, nodeArgs: ['-e', 'setInterval(() => {}, 1000)'], trainerPath: 'unused' },
      configPath: config,
    });
    sleeper.start();
    const t0 = Date.now();
    const exit = await sleeper.stopWithin(300);
    assert.equal(exit.state, 'failed');
    assert.equal(exit.signal, 'SIGTERM');
    assert.ok(Date.now() - t0 >= 300);
  });

  it('the registry runs several sessions at once and stops them all, checkpoint first', async () => {
    const registry = new RunRegistry();
    const a = writeConfig(dir, 'many-a', 'output_dir: out-a\nmax_train_steps: 500\n');
    const b = writeConfig(dir, 'many-b', 'output_dir: out-b\nmax_train_steps: 500\n');
    const sa = registry.add(new RunSession({ launch: FAKE, configPath: a })).start();
    const sb = registry.add(new RunSession({ launch: FAKE, configPath: b })).start();
    assert.equal(registry.forConfig(a), sa);
    assert.throws(() => registry.add(new RunSession({ launch: FAKE, configPath: a })), /already training/);
    await Promise.all([sa, sb].map((s) => new Promise<void>((r) => s.onEvent.on((e) => e.type === 'progress' && r()))));
    assert.deepEqual(registry.active().map((s) => s.name).sort(), ['many-a', 'many-b']);
    const exits = await registry.stopAll(10_000);
    assert.deepEqual(exits.map((e) => e.state), ['stopped', 'stopped']);
    assert.ok(exits.every((e) => e.finished?.outputs.checkpoint && fs.existsSync(e.finished.outputs.checkpoint)));
    assert.deepEqual(registry.active(), []);
  });
});

// ---- the real trainer (src/cli/main.ts through tsx) on the tiny-shapes model --------------------------

// tsx by absolute URL: the trainer runs in the config's folder, where `tsx` would not resolve.
const REAL: TrainerLaunch = { nodePath: process.execPath, nodeArgs: ['--import', import.meta.resolve('tsx')], trainerPath: path.join(ROOT, 'src/cli/main.ts') };
const TINY = path.join(ROOT, 'examples/tiny-shapes');

/** A run short enough for two shared cores: batch 1 on 64×64 images, wasm (the fast CPU path). */
function tinyConfig(dir: string, name: string, o: { steps: number; checkpointing: number; validation?: boolean; extra?: string }): string {
  return writeConfig(
    dir,
    name,
    [
      `pretrained_model_name_or_path: ${path.join(TINY, 'model')}`,
      `train_data_dir: ${path.join(TINY, 'dataset-corner')}`,
      `output_dir: out-${name}`,
      'resolution: 64',
      'center_crop: true',
      'train_batch_size: 1',
      `max_train_steps: ${o.steps}`,
      'learning_rate: 1.0e-3',
      'lr_scheduler: constant',
      'lr_warmup_steps: 0',
      'rank: 4',
      'seed: 0',
      `checkpointing_steps: ${o.checkpointing}`,
      ...(o.validation ? ['validation_prompt: a red circle', 'num_validation_images: 1', 'validation_epochs: 100'] : []),
      'backend: wasm',
      o.extra ?? '',
    ].join('\n'),
  );
}

/** Resolves at the first progress event at or past `step`; rejects if the run ends first. */
const untilProgress = (s: RunSession, step: number) =>
  Promise.race([
    new Promise<void>((r) => s.onEvent.on((e) => e.type === 'progress' && e.step >= step && r())),
    s.done.then((e) => Promise.reject(new Error(`the run ended (${e.state}) before step ${step}: ${e.message}`))),
  ]);

describe('RunSession with the real trainer on tiny-shapes', () => {
  let dir: string;
  before(() => (dir = tempDir()));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs to completion: progress, checkpoints, a validation image, the LoRA; the folder tells the same story', async () => {
    const config = tinyConfig(dir, 'complete', { steps: 4, checkpointing: 2, validation: true });
    const session = new RunSession({ launch: REAL, configPath: config });
    const r = record(session);
    const exit = await session.start().done;
    assert.equal(exit.state, 'completed', `${exit.message}\n${r.logs.join('\n')}`);
    const out = path.join(dir, 'out-complete');
    assert.equal(session.history.started?.outputDir, out);
    assert.equal(session.history.started?.totalSteps, 4);
    assert.deepEqual(session.history.progress.map((p) => p.step), [1, 2, 3, 4]);
    assert.ok(session.history.progress.every((p) => Number.isFinite(p.loss) && p.loss > 0 && p.lr === 1e-3));
    assert.deepEqual(session.history.checkpoints.map((c) => c.step).filter((s) => s < 4), [2]);
    assert.equal(session.history.samples.length, 1);
    assert.ok(fs.existsSync(session.history.samples[0].path));
    assert.equal(exit.finished?.outputs.lora, path.join(out, 'pytorch_lora_weights.safetensors'));
    assert.ok(fs.statSync(exit.finished!.outputs.lora!).size > 1000);
    assert.ok(r.logs.length > 0, 'the trainer logs on stderr');

    // What a dashboard reopened after a reload reads back from the folder (run_history.ts).
    const disk = readRunHistory(out);
    assert.deepEqual(disk.points.map((p) => [p.step, p.loss, p.lr]), session.history.progress.map((p) => [p.step, p.loss, p.lr]));
    assert.deepEqual(disk.samples.map((s) => [s.step, s.prompt, s.seed, s.path]), session.history.samples.map((s) => [s.step, s.prompt, s.seed, s.path]));
    assert.deepEqual(disk.checkpoints.map((c) => c.path), session.history.checkpoints.map((c) => c.path));
    assert.equal(disk.finished?.outputs.lora, exit.finished?.outputs.lora);
  });

  it('stop saves a checkpoint and exits 0; resume continues from that step', async () => {
    const config = tinyConfig(dir, 'stop', { steps: 200, checkpointing: 1000 });
    const first = new RunSession({ launch: REAL, configPath: config });
    first.start();
    await untilProgress(first, 2);
    const exit = await first.stop();
    assert.equal(exit.state, 'stopped', exit.message);
    assert.equal(exit.code, 0);
    const step = exit.finished!.step;
    assert.ok(step >= 2 && step < 200);
    const checkpoint = path.join(dir, 'out-stop', `checkpoint-${step}`);
    assert.equal(exit.finished?.outputs.checkpoint, checkpoint);
    assert.ok(fs.existsSync(path.join(checkpoint, 'pytorch_lora_weights.safetensors')));

    const resumed = new RunSession({ launch: REAL, configPath: config, resume: true });
    const r = record(resumed);
    resumed.start();
    await untilProgress(resumed, step + 1);
    const exit2 = await resumed.stop();
    assert.equal(exit2.state, 'stopped', `${exit2.message}\n${r.logs.join('\n')}`);
    assert.equal(resumed.history.started?.startStep, step);
    assert.equal(resumed.history.progress[0].step, step + 1);
    // metrics.jsonl holds one consistent history across the interruption.
    const steps = readRunHistory(path.join(dir, 'out-stop')).points.map((p) => p.step);
    assert.deepEqual(steps, Array.from({ length: exit2.finished!.step }, (_, i) => i + 1));
  });

  it('a config the trainer rejects fails with its `config` error, and no run starts', async () => {
    const config = tinyConfig(dir, 'bad', { steps: 4, checkpointing: 2, extra: 'rank: 0' });
    const session = new RunSession({ launch: REAL, configPath: config });
    const exit = await session.start().done;
    assert.equal(exit.state, 'failed');
    assert.equal(exit.error?.code, 'config');
    assert.equal(exit.code, 2);
    assert.match(exit.message, /rank/);
    assert.equal(session.history.started, undefined);
  });

  it('an output folder another run holds: refused with that run\'s pid and start; a crashed run\'s lock is taken over, saying so', async () => {
    const config = tinyConfig(dir, 'locked', { steps: 1, checkpointing: 100 });
    const out = path.join(dir, 'out-locked');
    const lock = acquireRunLock(out, { command: 'lora-studio train other.lora.yaml' });
    try {
      const session = new RunSession({ launch: REAL, configPath: config });
      const exit = await session.start().done;
      assert.equal(exit.state, 'failed');
      assert.equal(exit.error?.code, 'locked');
      assert.equal(exit.code, 1);
      // What the extension's error notification shows (run_ui.ts shows exit.message).
      assert.ok(exit.message.startsWith(`${out} is in use by another run: pid ${process.pid} on ${os.hostname()} (lora-studio train other.lora.yaml), since ${lock.holder.since.slice(0, 19).replace('T', ' ')} UTC`), exit.message);
      assert.match(exit.message, new RegExp(`kill ${process.pid}`));
      assert.equal(session.history.started, undefined);
      assert.deepEqual(fs.readdirSync(out), [RUN_LOCK_FILE], 'nothing else was written');
    } finally {
      lock.release();
    }
    // A lock left by a run that was killed (its pid is gone): the next run takes it and says whose it was.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    fs.writeFileSync(path.join(out, RUN_LOCK_FILE), JSON.stringify({ pid: Number(gone), host: os.hostname(), since: '2026-12-01T09:00:00.000Z', nonce: 'old' }));
    const session = new RunSession({ launch: REAL, configPath: config });
    const exit = await session.start().done;
    assert.equal(exit.state, 'completed', exit.message);
    assert.deepEqual(session.history.warnings, [`took over the lock of ${out} left by a run that is no longer running (pid ${gone} on ${os.hostname()}, since 2026-12-01 09:00:00 UTC)`]);
    assert.ok(!fs.existsSync(path.join(out, RUN_LOCK_FILE)), 'released at the end');
  });

  it('a trainer killed mid-run (a crash) is reported as failed with the signal', async () => {
    const config = tinyConfig(dir, 'killed', { steps: 200, checkpointing: 1000 });
    const session = new RunSession({ launch: REAL, configPath: config });
    session.start();
    await untilProgress(session, 1);
    process.kill(session.pid!, 'SIGKILL');
    const exit = await session.done;
    assert.equal(exit.state, 'failed');
    assert.equal(exit.signal, 'SIGKILL');
    assert.match(exit.message, /^The trainer was killed \(SIGKILL\)/);
  });
});
