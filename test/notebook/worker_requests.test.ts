// The inference worker's request handling, in-process with a stand-in model (the real pipeline is
// exercised by cell_runner.test.ts): malformed requests, queueing and cancel by id, LoRA set changes and
// the weights cache (path + modification time), inline PNGs, shutdown.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { InferenceWorker, type LoadedModel } from '../../src/cli/worker.js';
import type { LoraWeights } from '../../src/core/lora/lora_file.js';
import { WORKER_MESSAGES, WORKER_REQUESTS, type WorkerMessage, type GenerateRequest } from '../../src/protocol/inference.js';

await tf.setBackend('cpu');

interface Harness {
  worker: InferenceWorker;
  sent: WorkerMessage[];
  reads: string[];
  loads: number;
  /** Resolves the current generation's pending step. */
  steps: { scales: number[] }[];
}

/** A model whose image is a flat grey of 0.5 + 0.1 · (sum of adapter scales), so LoRA changes are visible in pixels. */
function harness(opts: { stepDelay?: number } = {}): Harness {
  const h: Harness = { worker: undefined as never, sent: [], reads: [], loads: 0, steps: [] };
  const model: LoadedModel = {
    width: 16,
    height: 16,
    sizeMultiple: 8,
    readLora: (file) => {
      h.reads.push(file);
      if (!fs.readFileSync(file, 'utf8').startsWith('lora')) throw new Error(`${file}: not a LoRA`);
      const weights: LoraWeights = {
        file,
        format: 'diffusers',
        modules: new Map([['mid_block.attentions.0.transformer_blocks.0.attn1.to_q', { down: new Float32Array(2), up: new Float32Array(2), rank: 1, inFeatures: 2, outFeatures: 2, alpha: 1 }]]),
        metadata: {},
        skipped: [],
        warnings: [],
      };
      return weights;
    },
    generate: async (o) => {
      const scale = o.lora('mid_block.attentions.0.transformer_blocks.0.attn1.to_q').reduce((a, ad) => a + ad.scale, 0);
      for (let i = 1; i <= 3; i++) {
        await new Promise((r) => setTimeout(r, opts.stepDelay ?? 0));
        if (!o.onStep(i, 3)) throw new Error('cancelled');
      }
      return tf.fill([1, o.height ?? 16, o.width ?? 16, 3], 0.5 + 0.1 * scale) as tf.Tensor4D;
    },
    dispose: () => undefined,
  };
  h.worker = new InferenceWorker(
    (m) => h.sent.push(JSON.parse(WORKER_MESSAGES.encode(m))),
    { name: 'cpu' },
    async () => {
      h.loads++;
      return model;
    },
    () => undefined,
  );
  return h;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'worker-req-'));
const modelDir = path.join(dir, 'model');
fs.mkdirSync(modelDir);
fs.writeFileSync(path.join(modelDir, 'model_index.json'), '{}');
const loraA = path.join(dir, 'a.safetensors');
const loraB = path.join(dir, 'b.safetensors');
fs.writeFileSync(loraA, 'lora a');
fs.writeFileSync(loraB, 'lora b');

after(() => fs.rmSync(dir, { recursive: true, force: true }));

const idOf = (m: WorkerMessage) => ('id' in m ? m.id : undefined);

const gen = (id: string, jobs: GenerateRequest['jobs'], extra: Partial<GenerateRequest> = {}) => JSON.stringify({ type: 'generate', id, model: modelDir, prompt: 'x', jobs, ...extra });

test('protocol: requests are checked before they reach the worker; stray stdout lines are not messages', () => {
  const p = (o: unknown) => {
    const r = WORKER_REQUESTS.read(typeof o === 'string' ? o : JSON.stringify(o))!;
    return (r.ok ? r.message : { problem: r.problem, id: r.id }) as { problem?: string; type?: string; id?: string };
  };
  assert.match((p('{oops') as { problem: string }).problem, /^request is not JSON/);
  assert.deepEqual(p({ type: 'dance', id: 'a' }), { problem: 'unknown request type "dance" (expected generate, cancel, status, unload or shutdown)', id: 'a' });
  assert.deepEqual(p({ type: 'generate', id: 'a', model: 'm', prompt: 'x', jobs: [] }), { problem: '"jobs" must be a non-empty list of {seed, loras}', id: 'a' });
  assert.deepEqual(p({ type: 'generate', id: 'a', model: 'm', prompt: 'x', jobs: [{ seed: 1.5, loras: [] }] }).problem, 'jobs[0].seed must be an integer ≥ 0, got 1.5');
  assert.deepEqual(p({ type: 'generate', id: 'a', model: 'm', prompt: 'x', steps: 0, jobs: [{ seed: 1, loras: [] }] }).problem, '"steps" must be an integer ≥ 1, got 0');
  assert.deepEqual(p({ type: 'generate', id: 'a', model: 'm', prompt: 'x', jobs: [{ seed: 1, loras: [], fileName: '../x.png' }] }).problem, 'jobs[0].fileName must be a file name without folders');
  assert.equal(p({ type: 'generate', id: 'a', model: 'm', prompt: 'x', scheduler: 'euler', jobs: [{ seed: 1, loras: [{ file: 'l', scale: 0.5 }] }] }).type, 'generate');
  assert.equal(WORKER_MESSAGES.read('Hi, looks like you are running TensorFlow.js in Node.js'), undefined);
  assert.deepEqual(WORKER_MESSAGES.read('{"type":"nope"}'), {
    ok: false,
    id: undefined,
    problem: 'unknown worker message type "nope" (expected ready, model_downloading, model_loading, model_loaded, lora_loaded, lora_unloaded, progress, image, sheet, done, cancelled, error or status)',
  });
  const done = WORKER_MESSAGES.read('{"type":"done","v":1,"id":"a","images":1,"seconds":2}');
  assert.ok(done?.ok && done.message.type === 'done');
});

test('a malformed line gets an error naming the request; the worker goes on', async () => {
  const h = harness();
  h.worker.handleLine('{"type":"generate","id":"bad","prompt":"x"}');
  h.worker.handleLine(gen('ok', [{ seed: 1, loras: [] }]));
  await h.worker.idle();
  assert.deepEqual(h.sent[0], { type: 'error', v: 1, id: 'bad', code: 'bad_request', message: '"model" must be the path of a diffusers pipeline folder or a Hub id' });
  assert.deepEqual(h.sent.filter((m) => idOf(m) === 'ok').map((m) => m.type), ['model_loading', 'model_loaded', 'progress', 'progress', 'progress', 'image', 'done']);
  const image = h.sent.find((m) => m.type === 'image');
  assert.ok(image?.type === 'image' && image.png, 'no outDir: the PNG comes inline');
  const { data, info } = await sharp(Buffer.from(image.png!, 'base64')).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([info.width, info.height, data[0]], [16, 16, 128], 'grey 0.5 → 128');
});

test('a line of another protocol version, with a bad field or not JSON gets an error naming what is wrong; the worker keeps serving', async () => {
  const h = harness();
  h.worker.handleLine('{"type":"status","id":"old","v":2}');
  h.worker.handleLine(gen('bad', [{ seed: 1, loras: [{ file: loraA, scale: 'high' as unknown as number }] }]));
  h.worker.handleLine('status please');
  h.worker.handleLine('{"type":"status","id":"s"}');
  await h.worker.idle();
  assert.deepEqual(
    h.sent.slice(0, 3).map((m) => m.type === 'error' && [m.id, m.code, m.message]),
    [
      ['old', 'bad_request', 'request speaks version 2 of the inference protocol, this side speaks version 1; use the extension and the lora-studio CLI of the same release'],
      ['bad', 'bad_request', 'jobs[0].loras[0].scale must be a number, got "high"'],
      [undefined, 'bad_request', 'request is not a JSON object: status please'],
    ],
  );
  assert.deepEqual(h.sent.slice(3).map((m) => [m.type, idOf(m)]), [['status', 's']], 'the next request is served');
});

test('cancel: a queued request never runs; the running one stops at the next step', async () => {
  const h = harness({ stepDelay: 5 });
  h.worker.handleLine(gen('first', [{ seed: 1, loras: [] }, { seed: 2, loras: [] }]));
  h.worker.handleLine(gen('second', [{ seed: 1, loras: [] }]));
  h.worker.handleLine('{"type":"cancel","id":"second"}');
  assert.deepEqual(h.sent.at(-1), { type: 'cancelled', v: 1, id: 'second', images: 0 });
  // Cancel "first" once its second image has started.
  while (!h.sent.some((m) => m.type === 'progress' && m.job === 1)) await new Promise((r) => setTimeout(r, 2));
  h.worker.handleLine('{"type":"cancel","id":"first"}');
  await h.worker.idle();
  const first = h.sent.filter((m) => idOf(m) === 'first');
  assert.deepEqual(first.at(-1), { type: 'cancelled', v: 1, id: 'first', images: 1 });
  assert.equal(first.filter((m) => m.type === 'image').length, 1);
  assert.equal(h.sent.filter((m) => idOf(m) === 'second').length, 1, 'the cancelled queued request sent nothing else');
});

test('LoRAs: added, rescaled and removed per image; weights cached by path and mtime; a changed file is re-read', async () => {
  const h = harness();
  h.worker.handleLine(
    gen('r1', [
      { seed: 1, loras: [{ file: loraA, scale: 1 }] },
      { seed: 1, loras: [{ file: loraA, scale: 0 }] },
      { seed: 1, loras: [{ file: loraA, scale: 2 }, { file: loraB, scale: 1 }] },
      { seed: 1, loras: [] },
      { seed: 1, loras: [{ file: loraB, scale: 0.5 }] },
    ]),
  );
  await h.worker.idle();
  const events = h.sent.filter((m) => m.type === 'lora_loaded' || m.type === 'lora_unloaded').map((m) => `${m.type} ${path.basename((m as { file: string }).file)}${m.type === 'lora_loaded' ? (m.cached ? ' cached' : ' read') : ''}`);
  assert.deepEqual(events, ['lora_loaded a.safetensors read', 'lora_loaded b.safetensors read', 'lora_unloaded a.safetensors', 'lora_unloaded b.safetensors', 'lora_loaded b.safetensors cached']);
  assert.deepEqual(h.reads.map((f) => path.basename(f)), ['a.safetensors', 'b.safetensors'], 'each file read once');
  // The image grey tracks the sum of active scales: 1, 0, 3 (2 + 1), none, 0.5.
  const greys = await Promise.all(h.sent.filter((m) => m.type === 'image').map(async (m) => (await sharp(Buffer.from((m as { png: string }).png, 'base64')).raw().toBuffer())[0]));
  assert.deepEqual(greys, [0.6, 0.5, 0.8, 0.5, 0.55].map((g) => Math.round(g * 255)));

  // Rewriting a file (a training run saved again) makes the next use read it again.
  const later = new Date(Date.now() + 5000);
  fs.writeFileSync(loraB, 'lora b v2');
  fs.utimesSync(loraB, later, later);
  h.sent.length = 0;
  h.worker.handleLine(gen('r2', [{ seed: 1, loras: [{ file: loraB, scale: 1 }] }]));
  h.worker.handleLine('{"type":"status","id":"s"}');
  await h.worker.idle();
  assert.deepEqual(h.reads.map((f) => path.basename(f)), ['a.safetensors', 'b.safetensors', 'b.safetensors']);
  const status = h.sent.find((m) => m.type === 'status');
  assert.deepEqual(status && { ...status, cached: status.type === 'status' && status.cached.map((f) => path.basename(f)) }, {
    type: 'status',
    v: 1,
    id: 's',
    model: modelDir,
    loras: [{ file: loraB, scale: 1 }],
    cached: ['a.safetensors', 'b.safetensors'],
    modelLoads: 1,
    backend: 'cpu',
  });
});

test('LoRA errors name the file; PNGs go to outDir with the names asked for; shutdown resolves', async () => {
  const h = harness();
  const bad = path.join(dir, 'bad.safetensors');
  fs.writeFileSync(bad, 'not one');
  h.worker.handleLine(gen('missing', [{ seed: 1, loras: [{ file: path.join(dir, 'nope.safetensors'), scale: 1 }] }]));
  h.worker.handleLine(gen('bad', [{ seed: 1, loras: [{ file: bad, scale: 1 }] }]));
  h.worker.handleLine(gen('twice', [{ seed: 1, loras: [{ file: loraA, scale: 1 }, { file: loraA, scale: 2 }] }]));
  const out = path.join(dir, 'out');
  h.worker.handleLine(gen('files', [{ seed: 3, loras: [], fileName: 'x-seed3.png' }, { seed: 4, loras: [] }], { outDir: out, sheet: { columns: 2, fileName: 'sheet.png' } }));
  h.worker.handleLine('{"type":"shutdown"}');
  await h.worker.shutdown;
  await h.worker.idle();
  const errors = Object.fromEntries(h.sent.filter((m) => m.type === 'error').map((m) => [m.id, m.type === 'error' && `${m.code}: ${m.message}`]));
  assert.deepEqual(errors, {
    missing: `lora: LoRA file "${path.join(dir, 'nope.safetensors')}" does not exist`,
    bad: `lora: ${bad}: not a LoRA`,
    twice: `lora: LoRA "${loraA}" is listed twice`,
  });
  const images = h.sent.filter((m) => m.type === 'image');
  assert.deepEqual(images.map((m) => m.type === 'image' && m.file), [path.join(out, 'x-seed3.png'), path.join(out, 'files-1.png')]);
  const sheet = h.sent.find((m) => m.type === 'sheet');
  assert.deepEqual(sheet, { type: 'sheet', v: 1, id: 'files', columns: 2, rows: 1, file: path.join(out, 'sheet.png') });
  const meta = await sharp(path.join(out, 'sheet.png')).metadata();
  assert.deepEqual([meta.width, meta.height], [34, 16]);
  // The PNG records how it was made.
  const png = fs.readFileSync(path.join(out, 'x-seed3.png')).toString('latin1');
  assert.match(png, /parameters\0\{"prompt":"x",.*"seed":3,/);
});
