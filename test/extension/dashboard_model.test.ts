// The dashboard's state folding and smoothing (webview/dashboard/model.ts), without a browser.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyMessage, emptyHistory, progressSummary, samplesByStep, smoothEma, type DashboardState } from '../../webview/dashboard/model.js';
import type { DashboardPoint, DashboardRun } from '../../src/protocol/dashboard.js';
import { formatDuration, formatLoss } from '../../src/protocol/format.js';

const run: DashboardRun = { title: 't', outputDir: '/o', state: 'running', live: true, canResume: false };
const pt = (step: number, loss = 1 / step): DashboardPoint => ({ step, loss, lr: 1e-4, totalSteps: 10, etaSeconds: 10 - step });

describe('dashboard model', () => {
  it('smoothEma: TensorBoard-style debiased EMA; weight 0 is the identity; NaN leaves a gap', () => {
    assert.deepEqual(smoothEma([1, 2, 3], 0), [1, 2, 3]);
    // Debiased: the first value is itself, not (1 − w)·x.
    const s = smoothEma([4, 0], 0.5);
    assert.equal(s[0], 4);
    // acc = 0.5·(0.5·4) + 0.5·0 = 1; bias 1 − 0.25 = 0.75 → 4/3
    assert.ok(Math.abs((s[1] as number) - 4 / 3) < 1e-12);
    assert.deepEqual(smoothEma([1, NaN, 1], 0.9), [1, null, 1]);
  });

  it('progress appends; a repeated step (a resume) replaces the points from there on', () => {
    const st: DashboardState = { history: emptyHistory() };
    applyMessage(st, { type: 'reset', run, history: { ...emptyHistory(), points: [pt(3), pt(1), pt(2), pt(2, 9)] } });
    assert.deepEqual(st.history.points.map((p) => [p.step, p.loss]), [[1, 1], [2, 9], [3, 1 / 3]]);
    for (const s of [4, 5, 6]) applyMessage(st, { type: 'progress', point: pt(s) });
    applyMessage(st, { type: 'progress', point: pt(5, 0.01) });
    assert.deepEqual(st.history.points.map((p) => p.step), [1, 2, 3, 4, 5]);
    assert.equal(st.history.points.at(-1)?.loss, 0.01);
    const p = progressSummary(st);
    assert.equal(p.step, 5);
    assert.equal(p.total, 10);
    assert.equal(p.fraction, 0.5);
    assert.equal(p.etaSeconds, 5);
  });

  it('checkpoints: removed ones vanish, a re-saved step is not duplicated, sorted by step', () => {
    const st: DashboardState = { history: emptyHistory() };
    applyMessage(st, { type: 'checkpoint', step: 4, path: '/o/checkpoint-4', removed: [] });
    applyMessage(st, { type: 'checkpoint', step: 2, path: '/o/checkpoint-2', removed: [] });
    applyMessage(st, { type: 'checkpoint', step: 6, path: '/o/checkpoint-6', removed: ['/o/checkpoint-2'] });
    applyMessage(st, { type: 'checkpoint', step: 6, path: '/o/checkpoint-6', removed: [] });
    assert.deepEqual(st.history.checkpoints.map((c) => c.step), [4, 6]);
  });

  it('samples are grouped by step, newest step first, duplicates ignored', () => {
    const st: DashboardState = { history: emptyHistory() };
    const sample = (step: number, i: number) => ({ step, prompt: 'p', seed: i, path: `/o/samples/step-${step}-${i}.png`, src: `x${step}-${i}` });
    for (const s of [sample(4, 0), sample(4, 1), sample(8, 0), sample(4, 1)]) applyMessage(st, { type: 'sample', sample: s });
    assert.deepEqual(samplesByStep(st.history.samples).map((g) => [g.step, g.samples.map((s) => s.seed)]), [[8, [0]], [4, [0, 1]]]);
  });

  it('no ETA once the run is not live', () => {
    const st: DashboardState = { history: emptyHistory() };
    applyMessage(st, { type: 'reset', run: { ...run, live: false, state: 'stopped' }, history: { ...emptyHistory(), points: [pt(3)] } });
    assert.equal(progressSummary(st).etaSeconds, undefined);
  });

  it('formatting helpers shared with the status bar', () => {
    assert.equal(formatDuration(7), '0:07');
    assert.equal(formatDuration(249), '4:09');
    assert.equal(formatDuration(3903), '1:05:03');
    assert.equal(formatDuration(Infinity), '–');
    assert.equal(formatLoss(0.123456), '0.1235');
    assert.equal(formatLoss(0.0000123), '1.23e-5');
  });
});
