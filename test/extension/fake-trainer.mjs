#!/usr/bin/env node
// A stand-in for `lora-studio train CONFIG` that speaks the same JSON-lines protocol in milliseconds, so the
// session logic can be tested for every path (progress, stop → checkpoint, resume, error, crash) without
// the cost of real training. The real trainer is tested the same way in run_session.test.ts.
//   node fake-trainer.mjs train CONFIG [--resume_from_checkpoint=latest] [--backend=NAME]
// CONFIG is read for `output_dir:`, `max_train_steps:` and `checkpointing_steps:` lines (relative paths
// against the config's folder). Behaviour switches, from the environment:
//   FAKE_TRAINER_STEP_MS      time per step (default 15)
//   FAKE_TRAINER_CRASH_AT     at this step, print a stack trace on stderr and exit 3 without an event
//   FAKE_TRAINER_ERROR_AT     at this step, send an `error` event (code nan_loss) and exit 1
//   FAKE_TRAINER_BAD_LINES    after `started`, send a progress line of protocol version 2 and one with a bad field
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const [, , command, configArg, ...flags] = process.argv;
const emit = (e) => process.stdout.write(JSON.stringify({ ...e, v: 1 }) + '\n');
if (command !== 'train' || !configArg) {
  process.stderr.write('usage: fake-trainer.mjs train CONFIG\n');
  process.exit(2);
}
const configPath = path.resolve(configArg);
const text = fs.readFileSync(configPath, 'utf8');
const key = (k, d) => text.match(new RegExp(`^${k}:\\s*(.+?)\\s*$`, 'm'))?.[1] ?? d;
const outputDir = path.resolve(path.dirname(configPath), key('output_dir', 'output'));
const totalSteps = Number(key('max_train_steps', 20));
const checkpointingSteps = Number(key('checkpointing_steps', 10));
const stepMs = Number(process.env.FAKE_TRAINER_STEP_MS ?? 15);
const crashAt = Number(process.env.FAKE_TRAINER_CRASH_AT ?? -1);
const errorAt = Number(process.env.FAKE_TRAINER_ERROR_AT ?? -1);
const resume = flags.includes('--resume_from_checkpoint=latest');
const backend = flags.find((f) => f.startsWith('--backend='))?.slice('--backend='.length) ?? 'cpu';

fs.mkdirSync(path.join(outputDir, 'samples'), { recursive: true });
let startStep = 0;
if (resume) {
  const steps = fs.readdirSync(outputDir).map((f) => /^checkpoint-(\d+)$/.exec(f)?.[1]).filter(Boolean).map(Number);
  if (!steps.length) {
    emit({ type: 'error', code: 'config', message: `No checkpoint in ${outputDir} to resume from.`, hint: 'Start a new run.' });
    process.exit(1);
  }
  startStep = Math.max(...steps);
}

let stopRequested = false;
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  try {
    if (JSON.parse(line).type === 'stop') stopRequested = true;
  } catch {
    process.stderr.write(`ignoring bad command line: ${line}\n`);
  }
});

const t0 = Date.now();
const elapsed = () => (Date.now() - t0) / 1000;
function saveCheckpoint(step) {
  const dir = path.join(outputDir, `checkpoint-${step}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'pytorch_lora_weights.safetensors'), 'fake');
  emit({ type: 'checkpoint', step, path: dir, removed: [] });
  return dir;
}

emit({
  type: 'started', runId: `fake-${process.pid}`, configPath, outputDir, backend, totalSteps, startStep,
  numExamples: 4, batchSize: 1, gradientAccumulationSteps: 1, loraParameters: 1234, time: new Date().toISOString(),
});
process.stderr.write(`fake trainer: ${totalSteps} steps from ${startStep}\n`);
if (process.env.FAKE_TRAINER_BAD_LINES) {
  const p = { type: 'progress', step: 99, totalSteps, epoch: 0, loss: 1, lr: 1e-4, samplesPerSecond: 1, etaSeconds: 1, elapsedSeconds: 0 };
  process.stdout.write(JSON.stringify({ ...p, v: 2 }) + '\n');
  process.stdout.write(JSON.stringify({ ...p, v: 1, loss: 'low' }) + '\n');
}

for (let step = startStep + 1; step <= totalSteps; step++) {
  await new Promise((r) => setTimeout(r, stepMs));
  if (step === crashAt) {
    process.stderr.write('TypeError: Cannot read properties of undefined (reading \'shape\')\n    at fakeStep (fake-trainer.mjs:1:1)\n');
    process.exit(3);
  }
  if (step === errorAt) {
    emit({ type: 'error', code: 'nan_loss', message: `The loss became NaN at step ${step}.`, hint: 'Lower the learning rate.' });
    process.exit(1);
  }
  const loss = 0.5 / Math.sqrt(step);
  const p = { type: 'progress', step, totalSteps, epoch: 0, loss, lr: 1e-4, samplesPerSecond: 1000 / stepMs, etaSeconds: ((totalSteps - step) * stepMs) / 1000, elapsedSeconds: elapsed() };
  emit(p);
  fs.appendFileSync(path.join(outputDir, 'metrics.jsonl'), JSON.stringify(p) + '\n');
  if (step % checkpointingSteps === 0 && step < totalSteps) saveCheckpoint(step);
  if (stopRequested) {
    const checkpoint = saveCheckpoint(step);
    emit({ type: 'finished', reason: 'stopped', step, outputs: { checkpoint, metrics: path.join(outputDir, 'metrics.jsonl'), samples: [] }, elapsedSeconds: elapsed() });
    process.exit(0);
  }
}
const lora = path.join(outputDir, 'pytorch_lora_weights.safetensors');
fs.writeFileSync(lora, 'fake');
emit({ type: 'finished', reason: 'completed', step: totalSteps, outputs: { lora, metrics: path.join(outputDir, 'metrics.jsonl'), samples: [] }, elapsedSeconds: elapsed() });
process.exit(0);
