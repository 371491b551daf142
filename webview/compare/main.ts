// "Compare Runs": the loss curves of several runs overlaid on one chart (smoothed as the dashboard does,
// weight 0.6), each run in a theme chart colour kept at 3:1 contrast, with a table of each run's last and
// best loss. Data comes as one ToCompare message (src/protocol/dashboard.ts).
import 'uplot/dist/uPlot.min.css';
import '../dashboard/dashboard.css';
import type { ToCompare } from '../../src/protocol/dashboard.js';
import { formatLoss } from '../../src/protocol/format.js';
import { LineChart, type ChartSeries } from '../dashboard/charts.js';
import { fill, h } from '../dashboard/dom.js';
import { smoothEma } from '../dashboard/model.js';

declare function acquireVsCodeApi(): { postMessage(msg: { type: 'ready' }): void };
const vscode = acquireVsCodeApi();

const COLORS: [string, string][] = [
  ['--vscode-charts-blue', '#3794ff'],
  ['--vscode-charts-orange', '#d18616'],
  ['--vscode-charts-green', '#89d185'],
  ['--vscode-charts-purple', '#b180d7'],
  ['--vscode-charts-red', '#f14c4c'],
  ['--vscode-charts-yellow', '#cca700'],
];
const SMOOTHING = 0.6;

const chartEl = h('div', { className: 'chart', id: 'compare-chart', 'data-testid': 'compare-chart' });
const tableEl = h('table', { className: 'compare-table', 'data-testid': 'compare-table' });
document.body.append(h('h1', {}, 'Compare runs'), h('p', { className: 'muted' }, `Training loss, smoothed (${SMOOTHING}).`), h('div', { className: 'card' }, chartEl), tableEl);
let chart: LineChart | undefined;
let last: ToCompare | undefined;

function draw(msg: ToCompare): void {
  const steps = [...new Set(msg.runs.flatMap((r) => r.points.map((p) => p.step)))].sort((a, b) => a - b);
  const series: ChartSeries[] = msg.runs.map((r, i) => ({ label: r.title, colorVar: COLORS[i % COLORS.length][0], fallback: COLORS[i % COLORS.length][1], width: 2, dash: i >= COLORS.length ? [6, 3] : undefined }));
  const ys = msg.runs.map((r) => {
    const smoothed = smoothEma(r.points.map((p) => p.loss), SMOOTHING);
    const byStep = new Map(r.points.map((p, i) => [p.step, smoothed[i]]));
    return steps.map((s) => byStep.get(s) ?? null);
  });
  chartEl.replaceChildren();
  chart = new LineChart(chartEl, {
    title: 'Loss',
    series,
    yFormat: formatLoss,
    describe: (x) => `Loss of ${msg.runs.length} runs over ${x.length} steps: ${msg.runs.map((r) => `${r.title} last ${r.points.length ? formatLoss(r.points.at(-1)!.loss) : '–'}`).join('; ')}`,
  });
  chart.setData(steps, ...ys);
  chartEl.dataset.runs = String(msg.runs.length);
  fill(
    tableEl,
    h('tr', {}, h('th', {}, 'run'), h('th', {}, 'steps'), h('th', {}, 'last loss'), h('th', {}, 'best loss'), h('th', {}, 'folder')),
    ...msg.runs.map((r) => {
      const losses = r.points.map((p) => p.loss).filter(Number.isFinite);
      return h(
        'tr',
        {},
        h('td', {}, r.title),
        h('td', {}, String(r.points.at(-1)?.step ?? 0)),
        h('td', {}, losses.length ? formatLoss(losses.at(-1)!) : '–'),
        h('td', {}, losses.length ? formatLoss(Math.min(...losses)) : '–'),
        h('td', { className: 'muted' }, r.outputDir),
      );
    }),
  );
}

window.addEventListener('message', (e: MessageEvent<ToCompare>) => {
  if (e.data?.type !== 'runs') return;
  last = e.data;
  draw(last);
});
// A theme change: redraw with the new colours.
new MutationObserver(() => last && draw(last)).observe(document.body, { attributes: true, attributeFilter: ['class'] });
vscode.postMessage({ type: 'ready' });
