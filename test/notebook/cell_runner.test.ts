// The notebook's cell runner against the REAL inference worker (a child process) on the tiny model:
// several cells share one model load; LoRAs load, rescale, unload and come back from the cache without
// touching the model; a cell can be cancelled mid-run; bad cells become readable errors and the worker
// lives on. Images are 32×32 with 2 steps to keep the suite fast; what is checked does not depend on size.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { MODEL_DIR, FIXTURES } from '../helpers/fixtures.js';
import { runCell, type CellRunResult } from '../../src/extension/notebook/cell_runner.js';
import type { WorkerMessage } from '../../src/protocol/inference.js';
import type { WorkerClient } from '../../src/extension/notebook/worker_client.js';
import { startTestWorker } from './worker_launch.js';

const LORA = path.join(FIXTURES, 'lora_diffusers/pytorch_lora_weights.safetensors');
let client: WorkerClient;
let dir: string;
const messages: WorkerMessage[] = [];
let run = 0;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loranb-'));
  // The notebook's folder: paths in cells are relative to it, as a user writes them.
  fs.symlinkSync(MODEL_DIR, path.join(dir, 'model'));
  fs.copyFileSync(LORA, path.join(dir, 'lora.safetensors'));
  client = startTestWorker();
  client.onMessage.on((m) => messages.push(m));
  const ready = await client.start();
  assert.ok(ready.pid > 0);
});

after(async () => {
  await client.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

function cell(text: string, extra: Partial<Parameters<typeof runCell>[0]> = {}): Promise<CellRunResult> {
  run++;
  return runCell({ client, text, notebookDir: dir, outDir: path.join(dir, 'nb.outputs'), fileBase: `run${run}`, ...extra });
}

const SMALL = 'width: 32\nheight: 32\nsteps: 2\nguidance: 3';

async function pixels(file: string): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(path.resolve(dir, file)).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

function meanAbsDiff(a: Buffer, b: Buffer): number {
  assert.equal(a.length, b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

const count = (type: WorkerMessage['type'], from = 0) => messages.slice(from).filter((m) => m.type === type);

test('two generation cells, one model load; compare and sweep layouts; LoRAs from the cache', async () => {
  const compare = await cell(`prompt: a red circle\nmodel: model\nloras:\n  - file: lora.safetensors\n    scale: 1\nseed: 7\ncompare: true\n${SMALL}`);
  assert.equal(compare.kind, 'output');
  assert.equal(compare.status, 'done', compare.kind === 'output' ? compare.error : '');
  const c = compare.output;
  assert.equal(c.layout, 'compare');
  assert.deepEqual(c.images.map((im) => [im.label, im.row, im.column, im.seed]), [['without LoRA', 0, 0, 7], ['with LoRA', 0, 1, 7]]);
  assert.deepEqual(c.images.map((im) => im.loras), [[{ file: 'lora.safetensors', scale: 0 }], [{ file: 'lora.safetensors', scale: 1 }]]);
  for (const im of c.images) {
    assert.match(im.file, /^nb\.outputs\/run1-\d-seed7\.png$/, 'image files are named relative to the notebook');
    assert.ok(im.data && Buffer.from(im.data, 'base64').subarray(1, 4).toString() === 'PNG', 'bytes inline for the renderer');
    const p = await pixels(im.file);
    assert.deepEqual([p.width, p.height], [32, 32]);
  }
  assert.deepEqual([c.settings.width, c.settings.height], [32, 32]);
  assert.ok(c.sheet && fs.existsSync(path.join(dir, c.sheet)), 'contact sheet written');
  const sheet = await sharp(path.join(dir, c.sheet!)).metadata();
  assert.deepEqual([sheet.width, sheet.height], [32 * 2 + 2, 32], 'sheet: two images side by side with a 2-pixel gap');
  const [without, withLora] = await Promise.all(c.images.map((im) => pixels(im.file)));
  const loraEffect = meanAbsDiff(without.data, withLora.data);
  console.log(`compare: mean |with − without LoRA| = ${loraEffect.toFixed(2)} (0–255)`);
  assert.ok(loraEffect > 0, 'the LoRA changes the image');

  // Cell 2 turns the LoRA off (unloaded from the active set), cell 3 sweeps it: weights come from the cache.
  const mark = messages.length;
  const plain = await cell(`prompt: a red circle\nseed: 7\n${SMALL}`, { inheritedModel: 'model' });
  assert.equal(plain.kind === 'output' && plain.status, 'done');
  assert.equal(count('lora_unloaded', mark).length, 1);
  const plainPixels = await pixels((plain as Extract<CellRunResult, { kind: 'output' }>).output.images[0].file);
  assert.equal(meanAbsDiff(plainPixels.data, without.data), 0, 'scale 0 is exactly no LoRA (same seed, same settings)');

  const sweep = await cell(`prompt: a red circle\nmodel: model\nloras: [lora.safetensors]\nseed: 7\nsweep: [0, 0.5, 1]\n${SMALL}`);
  assert.equal(sweep.kind === 'output' && sweep.status, 'done');
  const s = (sweep as Extract<CellRunResult, { kind: 'output' }>).output;
  assert.equal(s.layout, 'sweep');
  assert.deepEqual(s.sweep, { lora: 'lora.safetensors', scales: [0, 0.5, 1] });
  assert.deepEqual(s.images.map((im) => [im.row, im.label, im.loras[0].scale]), [[0, 'scale 0', 0], [1, 'scale 0.5', 0.5], [2, 'scale 1', 1]]);
  const loaded = count('lora_loaded', mark);
  assert.equal(loaded.length, 1);
  assert.equal(loaded[0].type === 'lora_loaded' && loaded[0].cached, true, 'the LoRA came back from the cache, not from disk');
  const sweepPixels = await Promise.all(s.images.map((im) => pixels(im.file)));
  assert.equal(meanAbsDiff(sweepPixels[0].data, without.data), 0, 'sweep scale 0 = compare without');
  assert.equal(meanAbsDiff(sweepPixels[2].data, withLora.data), 0, 'sweep scale 1 = compare with');

  assert.equal(count('model_loaded').length, 1, 'three cells, one model load');
  assert.equal(count('model_loading').length, 1);
  const status = await client.request({ type: 'status', id: client.newId() });
  assert.equal(status.type, 'status');
  assert.equal(status.type === 'status' && status.modelLoads, 1);
});

test('a cell is cancelled mid-run; the images made so far stay; the worker keeps its model', async () => {
  const abort = new AbortController();
  let progress = 0;
  const result = await cell(`prompt: a blue square\nmodel: model\nseed: [1, 2, 3, 4]\nwidth: 32\nheight: 32\nsteps: 30`, {
    signal: abort.signal,
    onMessage: (m) => {
      // Cancel during the second image.
      if (m.type === 'progress' && m.job === 1 && ++progress === 2) abort.abort();
    },
  });
  assert.equal(result.kind, 'output');
  assert.equal(result.kind === 'output' && result.status, 'cancelled');
  const o = (result as Extract<CellRunResult, { kind: 'output' }>).output;
  assert.equal(o.status, 'cancelled');
  assert.equal(o.images.length, 1, 'the first image was finished before the cancel');
  assert.equal(o.planned, 4);
  const after = await cell(`prompt: a blue square\nseed: 1\n${SMALL}`, { inheritedModel: 'model' });
  assert.equal(after.kind === 'output' && after.status, 'done', 'the worker serves the next cell');
  assert.equal(count('model_loaded').length, 1, 'still the one model load');
});

test('errors are readable: bad cell text, a missing LoRA file, a folder that is no model', async () => {
  const bad = await cell('prompt: x\nsteps: many\nshceduler: ddim');
  assert.equal(bad.kind, 'problems');
  const problems = (bad as Extract<CellRunResult, { kind: 'problems' }>).problems;
  assert.deepEqual(
    problems.map((p) => p.line),
    [2, 1],
  );
  assert.match(problems[0].message, /unknown key "shceduler" — did you mean "scheduler"\?/);
  assert.match(problems[1].message, /steps must be an integer ≥ 1, got "many"/);

  const missing = await cell(`prompt: x\nmodel: model\nloras: [nope.safetensors]\n${SMALL}`);
  assert.equal(missing.kind === 'output' && missing.status, 'failed');
  assert.match((missing as { error: string }).error, /LoRA file ".*nope\.safetensors" does not exist\n.*relative to the notebook/);

  const noModel = await cell(`prompt: x\nmodel: nb.outputs\n${SMALL}`);
  assert.equal(noModel.kind === 'output' && noModel.status, 'failed');
  assert.match((noModel as { error: string }).error, /nb\.outputs": .*nb\.outputs has no model_index\.json: it is not a diffusers pipeline folder/);

  const noModelAtAll = await cell('prompt: x');
  assert.equal(noModelAtAll.kind, 'problems');
  assert.match((noModelAtAll as { problems: { message: string }[] }).problems[0].message, /which model\?/);

  // A folder that is no model is refused before the loaded model is let go.
  const ok = await cell(`prompt: x\nmodel: model\nseed: 0\n${SMALL}`);
  assert.equal(ok.kind === 'output' && ok.status, 'done');
  assert.equal(count('model_loaded').length, 1);
});
