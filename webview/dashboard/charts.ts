// The loss and learning-rate charts, drawn by uPlot (small, fast, canvas). Colours come from the VS Code
// theme's CSS variables, re-read when the theme changes (VS Code swaps the body's class), and are made
// legible: every line keeps 3:1 contrast against the background (a faint raw-loss line gets only as
// faint as that allows), grid lines are dashed in a colour no line uses. The canvas is an image to a
// screen reader, so the container is `role="img"` with a label saying what the chart shows now, and the
// legend shows the latest values without hovering.
import uPlot from 'uplot';
import { legibleStroke, parseColor, toHex, type Rgb } from './colors.js';

export interface ChartSeries {
  label: string;
  /** A --vscode-* colour variable, and the colour to use where it is not defined (outside VS Code). */
  colorVar: string;
  fallback: string;
  width: number;
  /** 0..1: raw loss is drawn faint under its smoothed curve (never below 3:1 contrast). */
  alpha?: number;
  dash?: number[];
}

export interface LineChartOptions {
  title: string;
  series: ChartSeries[];
  /** y axis in powers of ten (learning rates span decades with warmup and decay). */
  logY?: boolean;
  yFormat?: (v: number) => string;
  height?: number;
  /** The accessible label for the data now shown: "Loss: 40 steps, last 0.0612". */
  describe?: (x: number[], ys: (number | null)[][]) => string;
}

export class LineChart {
  private plot: uPlot | undefined;
  private data: uPlot.AlignedData;
  private readonly resizeObserver: ResizeObserver;

  constructor(
    readonly container: HTMLElement,
    private readonly options: LineChartOptions,
  ) {
    this.data = [[], ...options.series.map(() => [])];
    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(container);
    this.build();
  }

  /** Replaces the data: x values, then one array per series (null for gaps). */
  setData(x: number[], ...ys: (number | null)[][]): void {
    this.data = [x, ...ys] as uPlot.AlignedData;
    // Tests and people inspecting the page read how many points are drawn from here.
    this.container.dataset.points = String(x.length);
    this.container.setAttribute('aria-label', this.options.describe?.(x, ys) ?? `${this.options.title}: ${x.length} points`);
    this.plot?.setData(this.data);
    this.showLatestInLegend();
  }

  /** The legend shows the last point's values unless the pointer is over the plot. */
  private showLatestInLegend(): void {
    const p = this.plot;
    if (p && p.cursor.idx == null && this.data[0].length) p.setLegend({ idx: this.data[0].length - 1 });
  }

  /** Rebuilds with the theme's current colours. */
  rebuild(): void {
    this.build();
  }

  private build(): void {
    this.plot?.destroy();
    const css = getComputedStyle(document.body);
    const rgb = (value: string, fallback: Rgb): Rgb => {
      const c = resolveColor(value);
      return c ? c : fallback;
    };
    const v = (name: string) => css.getPropertyValue(name).trim();
    const bg = rgb(v('--vscode-editor-background') || css.backgroundColor, [255, 255, 255]);
    const fgColor = rgb(v('--vscode-foreground') || css.color, [51, 51, 51]);
    const axisColor = toHex(legibleStroke(rgb(v('--vscode-descriptionForeground'), fgColor), 1, bg, fgColor, 4.5));
    const font = `${v('--vscode-font-size') || '12px'} ${v('--vscode-font-family') || 'sans-serif'}`;
    const { series, logY, yFormat, title } = this.options;
    const strokes = series.map((s) => toHex(legibleStroke(rgb(v(s.colorVar) || s.fallback, rgb(s.fallback, fgColor)), s.alpha ?? 1, bg, fgColor)));
    // Grid lines: faint and dashed, in the axis colour unless a line is drawn in it.
    const gridBase = strokes.includes(axisColor) ? fgColor : rgb(axisColor, fgColor);
    const grid = toHex(gridBase, 0.25);
    this.container.dataset.colors = JSON.stringify({ background: toHex(bg), grid, axis: axisColor, series: Object.fromEntries(series.map((s, i) => [s.label, strokes[i]])) });
    const axis = (): uPlot.Axis => ({ stroke: axisColor, font, grid: { stroke: grid, width: 1, dash: [3, 3] }, ticks: { stroke: grid, width: 1 } });
    const opts: uPlot.Options = {
      title,
      width: this.width(),
      height: this.options.height ?? 220,
      scales: { x: { time: false }, y: logY ? { distr: 3 } : {} },
      axes: [
        { ...axis(), label: 'step' },
        { ...axis(), size: 64, values: yFormat ? (_u, vals) => vals.map((v) => (v == null ? '' : yFormat(v))) : undefined },
      ],
      series: [
        { label: 'step' },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: strokes[i],
          width: s.width,
          dash: s.dash,
          spanGaps: true,
          points: { show: false },
          value: (_u: uPlot, v: number | null) => (v == null ? '–' : yFormat ? yFormat(v) : String(v)),
        })),
      ],
      legend: { show: true, live: true },
      cursor: { drag: { x: true, y: false } },
      hooks: { setCursor: [() => this.showLatestInLegend()] },
    };
    this.container.setAttribute('role', 'img');
    this.plot = new uPlot(opts, this.data, this.container);
    this.showLatestInLegend();
  }

  private width(): number {
    return Math.max(200, Math.floor(this.container.clientWidth || 600));
  }

  private resize(): void {
    if (this.plot && Math.abs(this.plot.width - this.width()) > 1) this.plot.setSize({ width: this.width(), height: this.options.height ?? 220 });
  }
}

/** Any CSS colour (a theme variable's value) → opaque sRGB, through the browser's own parser. */
function resolveColor(value: string): Rgb | undefined {
  if (!value) return undefined;
  const direct = parseColor(value);
  if (direct) return direct.rgb;
  const probe = document.createElement('span');
  probe.style.color = value;
  document.body.append(probe);
  const computed = getComputedStyle(probe).color;
  probe.remove();
  return parseColor(computed)?.rgb;
}
