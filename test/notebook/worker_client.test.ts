// The extension's worker client when the worker fails: a worker that cannot start, and one that dies in
// the middle of a request, turn into error answers carrying the worker's last words; the next request
// starts a fresh worker. (The client against the real worker: cell_runner.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { REPO } from '../helpers/fixtures.js';
import { WorkerClient } from '../../src/extension/notebook/worker_client.js';
import type { GenerateRequest } from '../../src/protocol/inference.js';

const fake = (mode: string) =>
  new WorkerClient({ launch: { nodePath: process.execPath, trainerPath: path.join(REPO, 'test/notebook/fake-worker.mjs'), env: { FAKE_WORKER: mode } } });
const generate = (id: string): GenerateRequest => ({ type: 'generate', id, model: '/m', prompt: 'x', jobs: [{ seed: 1, loras: [] }] });

test('a worker that cannot start: the request fails with its stderr', async () => {
  const client = fake('die-at-start');
  const answer = await client.request(generate('a'));
  assert.equal(answer.type, 'error');
  assert.equal(answer.type === 'error' && answer.message, 'the inference worker exited with code 3:\nworker: the webgpu backend failed to initialise: no adapter');
  await client.dispose();
});

test('a worker that dies mid-request: the request fails with its last log lines; the next request gets a new worker', async () => {
  const client = fake('die-on-generate');
  const seen: string[] = [];
  const first = await client.request(generate('a'), (m) => seen.push(m.type));
  assert.deepEqual(seen, ['model_loading']);
  assert.equal(first.type === 'error' && first.message, 'the inference worker exited with code 134:\nworker: out of memory while loading the UNet');
  const status = await client.request({ type: 'status', id: 'b' });
  assert.equal(status.type, 'status', 'a fresh worker answers');
  assert.ok(client.pid);
  await client.dispose();
  assert.equal(client.pid, undefined);
});
