// The training dashboard, running inside a VS Code webview. The extension sends ToDashboard messages
// (a full `reset` on load, then live events); the page folds them into model.ts's state and draws it.
// Everything typed in src/protocol/dashboard.ts; no node or vscode modules here.
import 'uplot/dist/uPlot.min.css';
import './dashboard.css';
import type { DashboardPersistedState, FromDashboard, ToDashboard } from '../../src/protocol/dashboard.js';
import { formatBytes, formatDevice, formatDuration, formatEpoch, formatLoss, formatPhase, formatThroughput } from '../../src/protocol/format.js';
import { LineChart } from './charts.js';
import { fill, h } from './dom.js';
import { applyMessage, emptyHistory, progressSummary, samplesByStep, smoothEma, type Change, type DashboardState } from './model.js';

interface VsCodeApi {
  postMessage(msg: FromDashboard): void;
  getState(): DashboardPersistedState | undefined;
  setState(s: DashboardPersistedState): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

const vscode = acquireVsCodeApi();
const state: DashboardState = { history: emptyHistory() };
let smoothing = vscode.getState()?.smoothing ?? 0.6;
const post = (m: FromDashboard) => vscode.postMessage(m);

// ---- layout -------------------------------------------------------------------------------------------

const titleEl = h('h1', {}, 'LoRA training');
const badgeEl = h('span', { className: 'badge', 'data-testid': 'state' });
const stopBtn = h('button', { onclick: () => post({ type: 'stop' }), title: 'Save a checkpoint, then stop' }, 'Stop');
const resumeBtn = h('button', { onclick: () => post({ type: 'resume' }), title: 'Continue from the latest checkpoint' }, 'Resume');
const logBtn = h('button', { className: 'secondary', onclick: () => post({ type: 'showLog' }) }, 'Show Log');
const configBtn = h('button', { className: 'secondary', onclick: () => post({ type: 'openConfig' }) }, 'Open Config');
const barFill = h('div', { className: 'bar-fill' });
const statsEl = h('dl', { className: 'stats', 'data-testid': 'stats' });
const messagesEl = h('div', { className: 'messages', 'data-testid': 'messages' });
const deviceEl = h('p', { className: 'device muted', 'data-testid': 'device' });
// Read out by screen readers when it changes: the run's state, each tenth of the run, the end.
const liveEl = h('div', { className: 'visually-hidden', role: 'status', 'aria-live': 'polite', 'data-testid': 'live' });
const lossChartEl = h('div', { className: 'chart', id: 'loss-chart', 'data-testid': 'loss-chart' });
const lrChartEl = h('div', { className: 'chart', id: 'lr-chart', 'data-testid': 'lr-chart' });
const smoothingInput = h('input', { type: 'range', min: '0', max: '0.99', step: '0.01', value: String(smoothing), 'aria-label': 'Smoothing' });
const smoothingValue = h('span', { className: 'muted' }, smoothing.toFixed(2));
const samplesEl = h('div', { className: 'sample-groups', 'data-testid': 'samples' });
const checkpointsEl = h('ul', { className: 'checkpoints', 'data-testid': 'checkpoints' });
const configEl = h('pre', { className: 'config', 'data-testid': 'config' });
const lightboxImg = h('img', { alt: '' });
const lightboxCaption = h('p', {});
const lightbox = h('div', { className: 'lightbox', hidden: true, role: 'dialog', onclick: () => closeLightbox() }, lightboxImg, lightboxCaption);

document.body.append(
  h('header', {}, h('div', { className: 'title' }, titleEl, badgeEl), h('div', { className: 'actions' }, stopBtn, resumeBtn, logBtn, configBtn)),
  h('section', { className: 'progress' }, h('div', { className: 'bar' }, barFill), statsEl, deviceEl),
  liveEl,
  messagesEl,
  h(
    'section',
    { className: 'charts' },
    h('div', { className: 'card' }, lossChartEl, h('label', { className: 'smoothing' }, 'Smoothing ', smoothingInput, ' ', smoothingValue)),
    h('div', { className: 'card' }, lrChartEl),
  ),
  h('section', {}, h('h2', {}, 'Sample images'), samplesEl),
  h('section', {}, h('h2', {}, 'Checkpoints'), checkpointsEl),
  h('details', { className: 'config-details' }, h('summary', {}, 'Run config'), configEl),
  lightbox,
);

const lossChart = new LineChart(lossChartEl, {
  title: 'Loss',
  series: [
    { label: 'loss', colorVar: '--vscode-charts-blue', fallback: '#3794ff', width: 1, alpha: 0.35 },
    { label: 'smoothed', colorVar: '--vscode-charts-blue', fallback: '#3794ff', width: 2 },
    { label: 'validation', colorVar: '--vscode-charts-purple', fallback: '#b180d7', width: 2, dash: [6, 3] },
  ],
  yFormat: formatLoss,
  describe: (x, [raw, smooth, val]) => {
    const lastOf = (ys: (number | null)[]) => [...ys].reverse().find((v) => v != null);
    const r = lastOf(raw);
    const s = lastOf(smooth);
    const vl = lastOf(val);
    if (!x.length) return 'Loss chart: no steps yet';
    return `Loss chart: ${x.length} steps up to step ${x.at(-1)}; last loss ${r == null ? '–' : formatLoss(r)}, smoothed ${s == null ? '–' : formatLoss(s)}${vl == null ? '' : `, validation ${formatLoss(vl)}`}`;
  },
});
const lrChart = new LineChart(lrChartEl, {
  title: 'Learning rate',
  series: [{ label: 'lr', colorVar: '--vscode-charts-orange', fallback: '#d18616', width: 2 }],
  yFormat: (v) => v.toExponential(1),
  height: 160,
  describe: (x, [lr]) => (x.length ? `Learning-rate chart: ${x.length} steps; now ${[...lr].reverse().find((v) => v != null)?.toExponential(2) ?? '–'}` : 'Learning-rate chart: no steps yet'),
});

smoothingInput.addEventListener('input', () => {
  smoothing = Number(smoothingInput.value);
  smoothingValue.textContent = smoothing.toFixed(2);
  persist();
  drawCharts();
});

// VS Code signals a theme change by swapping body classes (vscode-light, vscode-dark, vscode-high-contrast).
new MutationObserver(() => {
  lossChart.rebuild();
  lrChart.rebuild();
  drawCharts();
}).observe(document.body, { attributes: true, attributeFilter: ['class'] });

document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') closeLightbox();
});

// ---- drawing ------------------------------------------------------------------------------------------

function draw(change: Change): void {
  if (change === 'all' || change === 'run') drawRun();
  if (change === 'all' || change === 'points' || change === 'messages' || change === 'run') drawProgress();
  if (change === 'all' || change === 'points') drawCharts();
  if (change === 'all' || change === 'samples') drawSamples();
  if (change === 'all' || change === 'checkpoints' || change === 'run') drawCheckpoints();
  if (change === 'all' || change === 'messages') drawMessages();
}

function drawRun(): void {
  const run = state.run;
  titleEl.textContent = run?.title ?? 'LoRA training';
  document.title = titleEl.textContent;
  badgeEl.textContent = run?.state ?? '';
  badgeEl.className = `badge state-${run?.state ?? 'none'}`;
  stopBtn.hidden = !run?.live;
  stopBtn.disabled = run?.state === 'stopping';
  resumeBtn.hidden = !run?.canResume;
  configBtn.hidden = !run?.configPath;
  configEl.textContent = run?.configText ?? '(not available)';
}

let announcedTenth = -1;
let announcedState: string | undefined;

/** What the live region says: the state when it changes, then step and loss at each tenth of the run. */
function announce(p: ReturnType<typeof progressSummary>): void {
  const s = p.phase ? formatPhase(p.phase.phase, p.phase.detail) : state.run?.state;
  const tenth = p.total ? Math.floor((10 * p.step) / p.total) : -1;
  if (s !== announcedState || tenth !== announcedTenth) {
    announcedState = s;
    announcedTenth = tenth;
    liveEl.textContent = `${state.run?.title ?? 'LoRA training'}: ${s ?? ''}, step ${p.step}${p.total ? ` of ${p.total}` : ''}${p.loss === undefined ? '' : `, loss ${formatLoss(p.loss)}`}`;
  }
}

function drawProgress(): void {
  const p = progressSummary(state);
  announce(p);
  const started = state.history.started;
  const planned = started?.plannedPeakBytes === undefined ? '' : ` · planned step ${formatBytes(started.plannedPeakBytes)}`;
  deviceEl.textContent = started ? `Device: ${formatDevice(started)}${planned}${p.memoryBytes === undefined ? '' : ` · tensor memory ${formatBytes(p.memoryBytes)}`}` : '';
  deviceEl.classList.toggle('warning', !!started?.softwareAdapter);
  const t = p.samplesPerSecond === undefined ? undefined : formatThroughput(p.samplesPerSecond, p.samplesPerStep);
  barFill.style.width = `${(p.fraction * 100).toFixed(1)}%`;
  const stat = (label: string, value: string | undefined, testid?: string) =>
    value === undefined ? null : h('div', {}, h('dt', {}, label), h('dd', testid ? { 'data-testid': testid } : {}, value));
  fill(
    statsEl,
    stat('step', p.total ? `${p.step} / ${p.total}` : String(p.step), 'step'),
    stat('now', p.phase ? formatPhase(p.phase.phase, p.phase.detail) : undefined, 'phase'),
    stat('epoch', p.epoch === undefined ? undefined : formatEpoch(p.epoch, p.numEpochs), 'epoch'),
    stat('loss', p.loss === undefined ? undefined : formatLoss(p.loss), 'loss'),
    stat('lr', p.lr === undefined ? undefined : p.lr.toExponential(2)),
    stat('samples/s', t?.samplesPerSecond, 'samples-per-second'),
    stat('s/it', t?.secondsPerStep, 'seconds-per-step'),
    stat('elapsed', p.elapsedSeconds === undefined ? undefined : formatDuration(p.elapsedSeconds)),
    stat('ETA', p.etaSeconds === undefined ? undefined : formatDuration(p.etaSeconds), 'eta'),
  );
}

function drawCharts(): void {
  const pts = state.history.points;
  const steps = pts.map((p) => p.step);
  const losses = pts.map((p) => p.loss);
  const validation = new Map((state.history.validationLosses ?? []).map((v) => [v.step, v.loss]));
  lossChart.setData(steps, losses, smoothEma(losses, smoothing), steps.map((s) => validation.get(s) ?? null));
  lrChart.setData(steps, pts.map((p) => (p.lr > 0 ? p.lr : null)));
}

function drawSamples(): void {
  const groups = samplesByStep(state.history.samples);
  if (!groups.length) {
    fill(samplesEl, h('p', { className: 'muted' }, 'Sample images appear here as the trainer makes them (set sample_prompts or validation_prompt in the run config).'));
    return;
  }
  fill(
    samplesEl,
    ...groups.map((g) =>
      h(
        'div',
        { className: 'sample-group', 'data-step': String(g.step) },
        h('h3', {}, `Step ${g.step}`),
        h(
          'div',
          { className: 'sample-grid' },
          ...g.samples.map((s) => {
            const caption = `${s.promptIndex === undefined ? '' : `#${s.promptIndex + 1} `}${s.prompt}${s.negativePrompt ? ` (not: ${s.negativePrompt})` : ''} · seed ${s.seed}`;
            return h(
              'figure',
              { tabindex: '0', title: 'Click to enlarge', 'data-prompt-index': String(s.promptIndex ?? 0), onclick: () => openLightbox(s.src, `Step ${s.step} · ${caption}`), onkeydown: (e: Event) => (e as KeyboardEvent).key === 'Enter' && openLightbox(s.src, `Step ${s.step} · ${caption}`) },
              h('img', { src: s.src, alt: caption }),
              h('figcaption', {}, caption),
            );
          }),
        ),
      ),
    ),
  );
}

function drawCheckpoints(): void {
  const { checkpoints, finished } = state.history;
  const items: HTMLElement[] = checkpoints
    .slice()
    .reverse()
    .map((c) =>
      h(
        'li',
        { 'data-step': String(c.step) },
        h('span', { className: 'name', title: c.path }, basename(c.path)),
        h('span', { className: 'muted' }, ` step ${c.step}`),
        h('button', { className: 'secondary', onclick: () => post({ type: 'generate', weights: c.path }) }, 'Generate with this checkpoint'),
      ),
    );
  if (finished?.outputs.lora) {
    const lora = finished.outputs.lora;
    items.unshift(
      h(
        'li',
        { className: 'final' },
        h('span', { className: 'name', title: lora }, basename(lora)),
        h('span', { className: 'muted' }, ` final, step ${finished.step}`),
        h('button', { onclick: () => post({ type: 'generate', weights: lora }) }, 'Generate with this LoRA'),
      ),
    );
  }
  if (!items.length) fill(checkpointsEl, h('li', { className: 'muted' }, 'No checkpoint yet.'));
  else fill(checkpointsEl, ...items);
}

function drawMessages(): void {
  const { error, finished, warnings } = state.history;
  fill(
    messagesEl,
    error && h('div', { className: 'banner error', role: 'alert' }, h('strong', {}, `Error (${error.code}): `), error.message, error.hint ? h('div', {}, error.hint) : null),
    finished &&
      h(
        'div',
        { className: 'banner ok', 'data-testid': 'finished' },
        finished.reason === 'completed' ? `Finished ${finished.step} steps in ${formatDuration(finished.elapsedSeconds)}.` : `Stopped at step ${finished.step}; a checkpoint was saved.`,
        finished.outputs.lora ? h('div', { className: 'path' }, finished.outputs.lora) : null,
      ),
    ...warnings.slice(-5).map((w) => h('div', { className: 'banner warning' }, w)),
  );
}

function openLightbox(src: string, caption: string): void {
  lightboxImg.src = src;
  lightboxCaption.textContent = caption;
  lightbox.hidden = false;
}

function closeLightbox(): void {
  lightbox.hidden = true;
}

function basename(p: string): string {
  return p.split(/[\\/]/).filter(Boolean).pop() ?? p;
}

function persist(): void {
  const run = state.run;
  if (run) vscode.setState({ outputDir: run.outputDir, configPath: run.configPath, title: run.title, smoothing });
}

// ---- messages -----------------------------------------------------------------------------------------

window.addEventListener('message', (e: MessageEvent<ToDashboard>) => {
  const msg = e.data;
  if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
  const change = applyMessage(state, msg);
  if (change === 'all' || change === 'run') persist();
  draw(change);
});

draw('all');
post({ type: 'ready' });
