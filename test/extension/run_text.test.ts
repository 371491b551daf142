// What the status bar, the notification and the end-of-run message say: the phase while validating, the
// epoch with its total, s/it beside samples/s, the device, and Resume only where a checkpoint exists.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytes, formatDevice, formatEpoch, formatThroughput } from '../../src/protocol/format.js';
import type { ProgressEvent } from '../../src/protocol/training.js';
import { endButtons, progressLine, progressRows } from '../../src/extension/run_text.js';

const progress: ProgressEvent = { v: 1, type: 'progress', step: 12, totalSteps: 40, epoch: 2, loss: 0.123456, lr: 1e-4, samplesPerSecond: 0.5, etaSeconds: 30, elapsedSeconds: 60 };
const started = { backend: 'webgpu', adapter: 'mesa llvmpipe', softwareAdapter: true, numEpochs: 10, batchSize: 1, gradientAccumulationSteps: 4 };

test('during validation the status line says "validating", not the frozen last step', () => {
  assert.equal(progressLine(progress), 'step 12/40 · loss 0.1235 · ETA 0:30');
  assert.equal(progressLine(progress, { phase: 'validating', step: 12 }), 'step 12/40 · validating…');
  assert.equal(progressLine(progress, { phase: 'sampling', step: 12, detail: 'sample 2 of 3' }), 'step 12/40 · sampling (sample 2 of 3)…');
  assert.equal(progressLine(progress, { phase: 'saving', step: 12 }), 'step 12/40 · saving a checkpoint…');
  // A phase from before this step is over; training resumed.
  assert.equal(progressLine(progress, { phase: 'validating', step: 8 }), 'step 12/40 · loss 0.1235 · ETA 0:30');
});

test('the tooltip: epoch with its total, s/it beside samples/s, the device', () => {
  const rows = new Map(progressRows(progress, started));
  assert.equal(rows.get('epoch'), '2 / 10');
  assert.equal(rows.get('samples/s'), '0.50');
  // 4 samples per optimizer step at 0.5 samples/s: 8 s per step (kohya's tqdm s/it).
  assert.equal(rows.get('s/it'), '8.00');
  assert.equal(rows.get('device'), 'webgpu · mesa llvmpipe (software renderer)');
  assert.equal(new Map(progressRows(progress)).get('epoch'), '2');
});

test('format helpers', () => {
  assert.equal(formatEpoch(3, 10), '3 / 10');
  assert.deepEqual(formatThroughput(3.5, 1), { samplesPerSecond: '3.50', secondsPerStep: '0.29' });
  assert.deepEqual(formatThroughput(0, 4), { samplesPerSecond: '0.00' });
  assert.equal(formatDevice({ backend: 'wasm' }), 'wasm (CPU)');
  assert.equal(formatDevice({ backend: 'webgpu', adapter: 'nvidia hopper' }), 'webgpu · nvidia hopper');
  assert.equal(formatBytes(1536 * 1024 * 1024), '1.5 GiB');
  assert.equal(formatBytes(640 * 1024 * 1024), '640 MiB');
});

test('Resume is offered only for a run that has a checkpoint', () => {
  assert.deepEqual(endButtons({ state: 'failed' }, false), ['Show Log', 'Open Config']);
  assert.deepEqual(endButtons({ state: 'failed' }, true), ['Show Log', 'Resume']);
  assert.deepEqual(endButtons({ state: 'stopped' }, true), ['Resume', 'Open Dashboard']);
  assert.deepEqual(endButtons({ state: 'stopped' }, false), ['Open Dashboard']);
});
