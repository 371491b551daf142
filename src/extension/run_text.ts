// What the status bar, the progress notification and the end-of-run message say about a run, as plain
// functions (no `vscode`), so tests read the same words a person does.
import type { PhaseEvent, ProgressEvent, StartedEvent } from '../protocol/training.js';
import { formatDevice, formatDuration, formatEpoch, formatLoss, formatPhase, formatThroughput } from '../protocol/format.js';
import type { RunExit } from './run_session.js';

type Started = Pick<StartedEvent, 'backend' | 'adapter' | 'softwareAdapter' | 'numEpochs' | 'batchSize' | 'gradientAccumulationSteps'>;

/** The notification's line (and the status bar's after the name): "step 12/40 · loss 0.1234 · ETA 0:30", or the phase. */
export function progressLine(e: ProgressEvent, phase?: Pick<PhaseEvent, 'phase' | 'detail' | 'step'>): string {
  const at = `step ${e.step}/${e.totalSteps}`;
  // A phase other than training that started at (or after) the last step is what the trainer does now.
  if (phase && phase.phase !== 'training' && phase.step >= e.step) return `${at} · ${formatPhase(phase.phase, phase.detail)}…`;
  return `${at} · loss ${formatLoss(e.loss)} · ETA ${formatDuration(e.etaSeconds)}`;
}

/** The status-bar tooltip's rows. */
export function progressRows(e: ProgressEvent, started?: Started): [string, string][] {
  const samplesPerStep = started ? started.batchSize * started.gradientAccumulationSteps : undefined;
  const t = formatThroughput(e.samplesPerSecond, samplesPerStep);
  const rows: [string, string][] = [
    ['step', `${e.step} / ${e.totalSteps}`],
    ['epoch', formatEpoch(e.epoch, started?.numEpochs)],
    ['loss', formatLoss(e.loss)],
    ['learning rate', e.lr.toExponential(2)],
    ['samples/s', t.samplesPerSecond],
  ];
  if (t.secondsPerStep) rows.push(['s/it', t.secondsPerStep]);
  rows.push(['elapsed', formatDuration(e.elapsedSeconds)], ['ETA', formatDuration(e.etaSeconds)]);
  if (started) rows.push(['device', formatDevice(started)]);
  return rows;
}

/** The buttons of the message at a run's end. Resume only where there is a checkpoint to resume from. */
export function endButtons(exit: Pick<RunExit, 'state' | 'finished'>, hasCheckpoint: boolean): string[] {
  if (exit.state === 'completed') return exit.finished?.outputs.lora ? ['Generate Image…', 'Open Dashboard', 'Reveal File'] : ['Open Dashboard'];
  if (exit.state === 'stopped') return hasCheckpoint ? ['Resume', 'Open Dashboard'] : ['Open Dashboard'];
  return hasCheckpoint ? ['Show Log', 'Resume'] : ['Show Log', 'Open Config'];
}
