// The protocols' framing and checks (src/protocol/jsonl.ts, messages.ts): a line of another version is
// refused naming both versions; a bad message is refused naming the field; and one definition gives both
// the TypeScript type and the runtime check, so a field the type requires is a field the check requires.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TRAINER_COMMANDS, TRAINER_EVENTS, type FinishedEvent, type ProgressEvent } from '../../src/protocol/training.js';
import { WORKER_MESSAGES, WORKER_REQUESTS, type GenerateRequest } from '../../src/protocol/inference.js';
import { DASHBOARD_MESSAGES } from '../../src/protocol/dashboard.js';
import { RENDERER_MESSAGES } from '../../src/protocol/generation_output.js';

const progress: ProgressEvent = { type: 'progress', v: 1, step: 3, totalSteps: 10, epoch: 0, loss: 0.12, lr: 1e-4, samplesPerSecond: 2, etaSeconds: 3.5, elapsedSeconds: 1.5 };

test('encode stamps v; read gives back the same message', () => {
  const { v: _v, ...body } = progress;
  const line = TRAINER_EVENTS.encode(body);
  assert.ok(line.endsWith('}\n') && !line.slice(0, -1).includes('\n'), 'one line');
  assert.equal(JSON.parse(line).v, 1);
  assert.deepEqual(TRAINER_EVENTS.read(line), { ok: true, message: progress });
  assert.deepEqual(TRAINER_COMMANDS.read(TRAINER_COMMANDS.encode({ type: 'stop' })), { ok: true, message: { type: 'stop', v: 1 } });
  // Written by hand without v: read as the current version.
  assert.deepEqual(WORKER_REQUESTS.read('{"type":"status","id":"s1"}'), { ok: true, message: { type: 'status', id: 's1', v: 1 } });
  // Not a JSON object: not meant as a message (a log line on stdout, a bare word).
  assert.equal(TRAINER_EVENTS.read('Hi, looks like you are running TensorFlow.js in Node.js'), undefined);
  assert.equal(TRAINER_EVENTS.read('   '), undefined);
});

test('a line of another protocol version is refused, naming both versions', () => {
  assert.deepEqual(TRAINER_EVENTS.read(JSON.stringify({ ...progress, v: 2 })), {
    ok: false,
    id: undefined,
    problem: 'trainer event speaks version 2 of the training protocol, this side speaks version 1; use the extension and the lora-studio CLI of the same release',
  });
  const r = WORKER_REQUESTS.read('{"type":"status","id":"s1","v":0}');
  assert.ok(r && !r.ok);
  assert.equal(r.id, 's1', 'the error can still answer the request');
  assert.match(r.problem, /^request speaks version 0 of the inference protocol, this side speaks version 1/);
  // Even when the shape would pass: a version is never half-understood.
  assert.match((WORKER_MESSAGES.read('{"type":"done","v":"1","id":"a","images":1,"seconds":2}') as { problem: string }).problem, /version "1" of the inference protocol/);
});

test('a bad message is refused with one sentence naming the field', () => {
  type Reader = { read(line: string): { ok: true } | { ok: false; problem: string } | undefined };
  const problem = (line: unknown, lines: Reader = TRAINER_EVENTS) => {
    const r = lines.read(typeof line === 'string' ? line : JSON.stringify(line));
    assert.ok(r && !r.ok, `${JSON.stringify(line)} should be refused`);
    return r.problem;
  };
  assert.equal(problem({ ...progress, step: 'x' }), '"step" must be an integer, got "x"');
  assert.equal(problem({ ...progress, lossy: 1 }), '"lossy" is not a field of the progress trainer event');
  assert.equal(problem({ type: 'error', code: 'oops', message: 'm' }), '"code" must be one of config, model, dataset, hub, nan_loss, out_of_memory, backend, io, locked, internal, got "oops"');
  assert.equal(
    problem({ type: 'finished', reason: 'completed', step: 1, elapsedSeconds: 1, outputs: { samples: [] } }),
    'outputs.metrics is missing (it must be a string)',
  );
  assert.equal(problem({ type: 'launch' }), 'unknown trainer event type "launch" (expected download, started, progress, sample, validation_loss, phase, checkpoint, warning, error, finished or pushed)');
  assert.match(problem('{"type":"progress",'), /^trainer event is not JSON \(/);
  const gen = { type: 'generate', id: 'g', model: '/m', prompt: 'p', jobs: [{ seed: 1, loras: [{ file: '/l.safetensors', scale: 'high' }] }] };
  assert.equal(problem(gen, WORKER_REQUESTS), 'jobs[0].loras[0].scale must be a number, got "high"');
  assert.equal(problem({ ...gen, jobs: [{ seed: 1, loras: [] }], sheet: { columns: 0 } }, WORKER_REQUESTS), 'sheet.columns must be an integer ≥ 1, got 0');
  assert.equal(problem({ ...gen, jobs: [{ seed: 1, loras: [] }], scheduler: 'lms' }, WORKER_REQUESTS), '"scheduler" must be one of ddim, euler, dpmpp-2m, pndm, got "lms"');
});

test('one definition drives the type and the check: each field the type requires, the check requires', () => {
  const finished: FinishedEvent = {
    type: 'finished',
    v: 1,
    reason: 'completed',
    step: 10,
    outputs: { lora: '/o/pytorch_lora_weights.safetensors', metrics: '/o/metrics.jsonl', samples: [] },
    elapsedSeconds: 9,
  };
  const request: GenerateRequest = { type: 'generate', id: 'g', model: '/m', prompt: 'p', jobs: [{ seed: 1, loras: [] }] };
  for (const [lines, valid] of [
    [TRAINER_EVENTS, progress],
    [TRAINER_EVENTS, finished],
    [WORKER_REQUESTS, request],
  ] as const) {
    assert.equal(lines.check(valid).ok, true, JSON.stringify(valid));
    // Complete values of their TypeScript types with no optional top-level field set, so each field removed
    // is one the type requires; the check must name it.
    for (const key of Object.keys(valid).filter((k) => k !== 'type' && k !== 'v')) {
      const { [key]: _removed, ...without } = valid as Record<string, unknown>;
      const r = lines.check(without);
      assert.ok(!r.ok && r.problem.startsWith(`"${key}" `), `without ${key}: ${JSON.stringify(r)}`);
    }
  }
  // @ts-expect-error: the type requires totalSteps, as the check does (tsc fails here if they drift apart).
  const noTotal: ProgressEvent = { type: 'progress', v: 1, step: 3, epoch: 0, loss: 0.12, lr: 1e-4, samplesPerSecond: 2, etaSeconds: 3.5, elapsedSeconds: 1.5 };
  assert.equal((TRAINER_EVENTS.check(noTotal) as { problem: string }).problem, '"totalSteps" is missing (it must be an integer)');
});

test('webview messages are checked before the extension acts on them', () => {
  assert.deepEqual(DASHBOARD_MESSAGES.check({ type: 'generate', weights: '/o/checkpoint-5' }), { ok: true, message: { type: 'generate', weights: '/o/checkpoint-5' } });
  assert.deepEqual(DASHBOARD_MESSAGES.check({ type: 'generate' }), { ok: false, id: undefined, problem: '"weights" is missing (it must be a string)' });
  assert.deepEqual(DASHBOARD_MESSAGES.check({ type: 'openFile', path: 7 }), { ok: false, id: undefined, problem: '"path" must be a string, got 7' });
  assert.match((DASHBOARD_MESSAGES.check('stop') as { problem: string }).problem, /^dashboard message must be a JSON object/);
  assert.equal(RENDERER_MESSAGES.check({ type: 'saveImage', runId: 'r', image: 0 }).ok, true);
  assert.equal((RENDERER_MESSAGES.check({ type: 'saveImage', runId: 'r', image: -1 }) as { problem: string }).problem, '"image" must be an integer ≥ 0, got -1');
});
