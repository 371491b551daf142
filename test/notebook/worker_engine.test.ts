// After a fatal engine error the inference worker starts its backend afresh (issue 18: one 4096×4096
// request left tfjs-wasm aborted, and every later request answered "Aborted()" while `status` still
// worked, so nothing restarted it). In-process, on the real wasm backend and the real restartBackend; the
// fault is the error an aborted tfjs-wasm module throws (WebAssembly.RuntimeError "Aborted()"), thrown by a
// stand-in model: really aborting the module needs a >4 GB heap, more than a test may take.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend, isFatalEngineError } from '../../src/core/engine/backend.js';
import { InferenceWorker, type LoadedModel } from '../../src/cli/worker.js';
import { WORKER_MESSAGES, type WorkerMessage } from '../../src/protocol/inference.js';

const backend = await initBackend('wasm');

test('fatal errors are told from ordinary ones', () => {
  assert.ok(isFatalEngineError(new WebAssembly.RuntimeError('memory access out of bounds')));
  assert.ok(isFatalEngineError(new Error('Aborted(). Build with -sASSERTIONS for more info.')));
  assert.ok(isFatalEngineError(new Error('GPU device was lost: destroyed')));
  assert.ok(!isFatalEngineError(new Error('width and height must be multiples of 8')));
});

test('a fatal engine error is reported as `engine`, the backend is replaced, and the next request works on the new one', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'worker-engine-'));
  fs.writeFileSync(path.join(dir, 'model_index.json'), '{}');
  const sent: WorkerMessage[] = [];
  let loads = 0;
  let abortNext = true;
  const model: LoadedModel = {
    width: 16,
    height: 16,
    sizeMultiple: 8,
    readLora: () => assert.fail('no LoRA in this test'),
    generate: async (o) => {
      // Real work on the current wasm module, so a dead one would show.
      const image = tf.tidy(() => tf.fill([1, o.height ?? 16, o.width ?? 16, 3], 0.25).add(tf.scalar(0.25))) as tf.Tensor4D;
      if (abortNext) {
        abortNext = false;
        image.dispose();
        throw new WebAssembly.RuntimeError('Aborted(). Build with -sASSERTIONS for more info.');
      }
      o.onStep(1, 1);
      return image;
    },
    dispose: () => undefined,
  };
  const worker = new InferenceWorker(
    (m) => sent.push(JSON.parse(WORKER_MESSAGES.encode(m))),
    backend,
    async () => {
      loads++;
      return model;
    },
    () => undefined,
  );
  const gen = (id: string) => JSON.stringify({ type: 'generate', id, model: dir, prompt: 'x', jobs: [{ seed: 1, loras: [] }] });
  const before = tf.backend();
  worker.handleLine(gen('dies'));
  worker.handleLine(gen('next'));
  worker.handleLine('{"type":"status","id":"s"}');
  await worker.idle();
  const final = (id: string) => sent.filter((m) => 'id' in m && m.id === id).at(-1);
  assert.deepEqual(final('dies'), {
    type: 'error',
    v: 1,
    id: 'dies',
    code: 'engine',
    message: 'the wasm engine failed while serving this request (Aborted(). Build with -sASSERTIONS for more info.); it was restarted and the model loads again on the next request',
    hint: 'a smaller width and height, fewer images per request or another backend needs less memory',
  });
  assert.notEqual(tf.backend(), before, 'a new backend instance');
  assert.equal(tf.getBackend(), 'wasm');
  assert.equal(final('next')?.type, 'done', 'the next request is served');
  const image = sent.find((m) => m.type === 'image' && m.id === 'next');
  assert.ok(image?.type === 'image' && image.png);
  const status = final('s');
  assert.ok(status?.type === 'status');
  assert.equal(status.modelLoads, 2, 'the model was loaded again on the new backend');
  assert.equal(loads, 2);
  worker.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});
