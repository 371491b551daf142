// A Hub id wherever a model is named outside a run config, against the local Hub-compatible server: the
// notebook worker downloads it (model_downloading messages; Cancel stops the download and keeps the partial
// file), loads the cache's snapshot, keeps it loaded for the next cell without asking the Hub again, and
// says what to do for a gated one; notebook cells and sweeps hand the id to the worker as it is; the
// extension's model pickers offer the models in the Hugging Face cache and accept a typed id.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { MODEL_DIR } from '../helpers/fixtures.js';
import { FakeHub, folderFiles } from './fake_hub.js';
import { InferenceWorker, type LoadedModel } from '../../src/cli/worker.js';
import { WORKER_MESSAGES, WORKER_REQUESTS, type WorkerMessage } from '../../src/protocol/inference.js';
import { modelForWorker, modelAllowed } from '../../src/extension/notebook/notebook_paths.js';
import { configModel, modelChoices, typedModel } from '../../src/extension/model_choice.js';

await tf.setBackend('cpu');
const ID = 'runwayml/stable-diffusion-v1-5';
const UNET = 'unet/diffusion_pytorch_model.safetensors';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hub-names-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function until(what: string, check: () => boolean, seen?: () => string, limitMs = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > limitMs) throw new Error(`timed out waiting for ${what}${seen ? `; last messages: ${seen()}` : ''}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('the notebook worker takes a Hub id: download (cancellable, resumed), the snapshot loaded once, a gated repo explained', async () => {
  const size = fs.statSync(path.join(MODEL_DIR, UNET)).size;
  const hub = new FakeHub(
    [
      { type: 'model', id: ID, revisions: { main: folderFiles(MODEL_DIR) } },
      { type: 'model', id: 'org/gated', revisions: { main: folderFiles(MODEL_DIR) }, gated: true },
    ],
    { stallDownload: { pathEndsWith: UNET, afterBytes: 100_000 } },
  );
  await hub.start();
  const saved = { ...process.env };
  const cache = path.join(tmp, 'cache');
  Object.assign(process.env, { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_HOME: path.join(tmp, 'home'), HF_TOKEN: '' });
  const sent: WorkerMessage[] = [];
  const loadedDirs: string[] = [];
  const model: LoadedModel = {
    width: 16,
    height: 16,
    readLora: () => {
      throw new Error('no LoRAs here');
    },
    generate: async (o) => tf.fill([1, o.height ?? 16, o.width ?? 16, 3], 0.5) as tf.Tensor4D,
    dispose: () => undefined,
  };
  const worker = new InferenceWorker(
    (m) => sent.push(JSON.parse(WORKER_MESSAGES.encode(m))),
    { name: 'cpu' },
    async (dir) => {
      loadedDirs.push(dir);
      return model;
    },
    () => undefined,
  );
  const request = (id: string, m = ID) => worker.handleLine(WORKER_REQUESTS.encode({ type: 'generate', id, model: m, prompt: 'x', jobs: [{ seed: 1, loras: [] }] }));
  const final = (id: string) => sent.find((m) => 'id' in m && m.id === id && ['done', 'cancelled', 'error'].includes(m.type))!;
  try {
    // Cancelled while the stalled UNet file arrives: the request ends, the partial file stays.
    request('a');
    await until('the UNet download to start', () => sent.some((m) => m.type === 'model_downloading' && m.file === UNET && m.bytes > 0), () => JSON.stringify(sent.slice(-3)));
    worker.handleLine(WORKER_REQUESTS.encode({ type: 'cancel', id: 'a' }));
    await worker.idle();
    assert.equal(final('a').type, 'cancelled');
    assert.equal(loadedDirs.length, 0);
    const blobs = path.join(cache, 'models--runwayml--stable-diffusion-v1-5', 'blobs');
    assert.ok(fs.readdirSync(blobs).some((f) => f.endsWith('.incomplete')), 'the partial file is kept for the next try');

    // Again: resumed, the cache's snapshot is what the model loader gets, named by the id in the messages.
    request('b');
    await worker.idle();
    assert.equal(final('b').type, 'done', JSON.stringify(final('b')));
    const commit = fs.readFileSync(path.join(cache, 'models--runwayml--stable-diffusion-v1-5', 'refs', 'main'), 'utf8');
    assert.deepEqual(loadedDirs, [path.join(cache, 'models--runwayml--stable-diffusion-v1-5', 'snapshots', commit)]);
    const progress = sent.filter((m) => 'id' in m && m.id === 'b' && m.type === 'model_downloading');
    const last = progress.at(-1) as { model: string; bytes: number; totalBytes: number; filesDone: number; totalFiles: number };
    const files = folderFiles(MODEL_DIR);
    const total = [...files.values()].reduce((n, b) => n + b.length, 0);
    assert.deepEqual([last.model, last.bytes, last.totalBytes, last.filesDone, last.totalFiles], [ID, total, total, files.size, files.size], 'progress ends with every byte and file');
    assert.ok(sent.some((m) => m.type === 'model_loaded' && m.id === 'b' && m.model === ID));
    const ranged = hub.requests.filter((r) => r.url.endsWith(UNET) && r.range && r.range !== 'bytes=0-0');
    assert.equal(ranged.at(-1)!.range, `bytes=100000-${size - 1}`, 'resumed after the bytes that arrived before the cancel');

    // The next cell with the same id: the loaded model is used; the Hub is not asked again.
    const before = hub.requests.length;
    request('c');
    await worker.idle();
    assert.equal(final('c').type, 'done');
    assert.equal(hub.requests.length, before);
    assert.equal(loadedDirs.length, 1);

    // A gated repository: the worker's error says where and what to do.
    request('d', 'org/gated');
    await worker.idle();
    const err = final('d');
    assert.equal(err.type, 'error');
    assert.ok(err.type === 'error' && err.code === 'model' && err.message.includes(`${hub.url}/org/gated needs a login`) && /HF_TOKEN/.test(err.hint ?? ''), JSON.stringify(err));
  } finally {
    process.env = saved;
    worker.dispose();
    await hub.stop();
  }

  // The model pickers: the cache's Hub models are offered; a typed id is taken as it is, a wrong folder explained.
  const root = path.join(tmp, 'workspace');
  fs.mkdirSync(root, { recursive: true });
  const choices = modelChoices([MODEL_DIR], root, { HF_HUB_CACHE: cache });
  assert.deepEqual(choices.map((c) => c.model), [MODEL_DIR, ID], 'the workspace folder, then the cached Hub model (the gated one was never downloaded)');
  assert.deepEqual(typedModel('runwayml/stable-diffusion-v1-5', root), { model: ID });
  assert.deepEqual(typedModel(MODEL_DIR, root), { model: MODEL_DIR });
  fs.mkdirSync(path.join(root, 'org', 'local'), { recursive: true });
  assert.match((typedModel('org/local', root) as { problem: string }).problem, /has no model_index\.json.*or type a Hugging Face Hub id/, 'a folder of that name wins over the Hub id, as in diffusers');
  assert.equal(configModel(ID, root), ID);
  assert.equal(configModel('org/local', root), path.join(root, 'org/local'));
  // Notebook cells and sweeps: the id goes to the worker as it is; paths outside the notebook's roots are still refused.
  assert.equal(modelForWorker(ID, root), ID);
  assert.equal(modelForWorker('org/local', root), path.join(root, 'org/local'));
  assert.ok(modelAllowed(ID, root, [root]));
  assert.ok(!modelAllowed('../../elsewhere/model', root, [root]));
});
