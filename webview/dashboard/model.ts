// The dashboard's state: what the extension has told it, folded into what the page shows. Pure (no DOM),
// so the folding and the smoothing are easy to reason about; view.ts draws it.
import type {
  DashboardHistory,
  DashboardPoint,
  DashboardRun,
  DashboardSample,
  ToDashboard,
} from '../../src/protocol/dashboard.js';

export interface DashboardState {
  run?: DashboardRun;
  history: DashboardHistory;
}

export function emptyHistory(): DashboardHistory {
  return { points: [], samples: [], checkpoints: [], warnings: [], validationLosses: [] };
}

/** What changed, so the view redraws only that. */
export type Change = 'all' | 'run' | 'points' | 'samples' | 'checkpoints' | 'messages';

/** Applies one message to the state (mutating it) and says what changed. */
export function applyMessage(state: DashboardState, msg: ToDashboard): Change {
  const h = state.history;
  switch (msg.type) {
    case 'reset':
      state.run = msg.run;
      state.history = { ...emptyHistory(), ...msg.history };
      state.history.points = sortedUniqueByStep(state.history.points);
      return 'all';
    case 'run':
      state.run = msg.run;
      return 'run';
    case 'progress':
      addPoint(h.points, msg.point);
      // A training step after a phase ends it.
      if (h.phase && msg.point.step > h.phase.step) h.phase = undefined;
      if (msg.point.totalSteps) h.totalSteps = msg.point.totalSteps;
      return 'points';
    case 'sample':
      if (!h.samples.some((s) => s.path === msg.sample.path)) h.samples.push(msg.sample);
      return 'samples';
    case 'checkpoint':
      h.checkpoints = h.checkpoints.filter((c) => !msg.removed.includes(c.path) && c.path !== msg.path);
      h.checkpoints.push({ step: msg.step, path: msg.path });
      h.checkpoints.sort((a, b) => a.step - b.step);
      return 'checkpoints';
    case 'warning':
      h.warnings.push(msg.message);
      return 'messages';
    case 'error':
      h.error = msg.error;
      return 'messages';
    case 'finished':
      h.finished = msg.finished;
      h.phase = undefined;
      return 'messages';
    case 'phase':
      h.phase = msg.phase;
      return 'points';
    case 'validationLoss':
      (h.validationLosses ??= []).push(msg.point);
      return 'points';
  }
}

/** Points arrive in step order; a resumed run repeats the steps after its checkpoint: the newest wins. */
function addPoint(points: DashboardPoint[], p: DashboardPoint): void {
  const last = points.at(-1);
  if (!last || p.step > last.step) {
    points.push(p);
    return;
  }
  // A step at or before the last one: the old run's points from there on are replaced by the new run's.
  const i = points.findIndex((q) => q.step >= p.step);
  points.splice(i, points.length - i, p);
}

function sortedUniqueByStep(points: DashboardPoint[]): DashboardPoint[] {
  const byStep = new Map<number, DashboardPoint>();
  for (const p of points) byStep.set(p.step, p);
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

/**
 * Exponential moving average with bias correction (TensorBoard's "smoothing"): the first values are not
 * dragged toward 0. weight 0 returns the values; 0.99 is very smooth. Non-finite values are skipped so one
 * NaN does not poison the rest of the curve.
 */
export function smoothEma(values: readonly number[], weight: number): (number | null)[] {
  const out: (number | null)[] = [];
  let acc = 0;
  let n = 0;
  for (const v of values) {
    if (!Number.isFinite(v)) {
      out.push(null);
      continue;
    }
    acc = acc * weight + (1 - weight) * v;
    n++;
    out.push(weight === 0 ? v : acc / (1 - Math.pow(weight, n)));
  }
  return out;
}

/** Samples grouped by training step, newest step first; within a step in arrival order. */
export function samplesByStep(samples: readonly DashboardSample[]): { step: number; samples: DashboardSample[] }[] {
  const groups = new Map<number, DashboardSample[]>();
  for (const s of samples) {
    const g = groups.get(s.step) ?? [];
    g.push(s);
    groups.set(s.step, g);
  }
  // Within a step: by sample prompt, then image, so each prompt keeps its column from step to step.
  const order = (s: DashboardSample) => (s.promptIndex ?? 0) * 1e6 + (s.imageIndex ?? 0);
  return [...groups.entries()].sort((a, b) => b[0] - a[0]).map(([step, samples]) => ({ step, samples: [...samples].sort((x, y) => order(x) - order(y)) }));
}

/** The numbers of the progress strip. */
export function progressSummary(state: DashboardState) {
  const h = state.history;
  const last = h.points.at(-1);
  const total = last?.totalSteps ?? h.totalSteps ?? h.started?.totalSteps;
  const step = h.finished?.step ?? last?.step ?? h.started?.startStep ?? 0;
  return {
    step,
    total,
    fraction: total ? Math.min(1, step / total) : 0,
    loss: last?.loss,
    lr: last?.lr,
    epoch: last?.epoch,
    numEpochs: h.started?.numEpochs,
    samplesPerSecond: last?.samplesPerSecond,
    samplesPerStep: h.started ? h.started.batchSize * h.started.gradientAccumulationSteps : undefined,
    memoryBytes: last?.memoryBytes,
    phase: state.run?.live ? h.phase : undefined,
    etaSeconds: state.run?.live ? last?.etaSeconds : undefined,
    elapsedSeconds: h.finished?.elapsedSeconds ?? last?.elapsedSeconds,
  };
}
