// The loss and learning-rate charts, drawn by uPlot (small, fast, canvas). Colours come from the VS Code
// theme's CSS variables, re-read when the theme changes (VS Code swaps the body's class).
import uPlot from 'uplot';

export interface ChartSeries {
  label: string;
  /** A --vscode-* colour variable, and the colour to use where it is not defined (outside VS Code). */
  colorVar: string;
  fallback: string;
  width: number;
  /** 0..1: raw loss is drawn faint under its smoothed curve. */
  alpha?: number;
}

export interface LineChartOptions {
  title: string;
  series: ChartSeries[];
  /** y axis in powers of ten (learning rates span decades with warmup and decay). */
  logY?: boolean;
  yFormat?: (v: number) => string;
  height?: number;
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
    this.plot?.setData(this.data);
  }

  /** Rebuilds with the theme's current colours. */
  rebuild(): void {
    this.build();
  }

  private build(): void {
    this.plot?.destroy();
    const css = getComputedStyle(document.body);
    const color = (name: string, fallback: string) => css.getPropertyValue(name).trim() || fallback;
    const fg = color('--vscode-descriptionForeground', color('--vscode-foreground', '#888'));
    const grid = color('--vscode-editorWidget-border', 'rgba(128,128,128,0.25)');
    const font = `${css.getPropertyValue('--vscode-font-size').trim() || '12px'} ${css.getPropertyValue('--vscode-font-family').trim() || 'sans-serif'}`;
    const { series, logY, yFormat, title } = this.options;
    const axis = (): uPlot.Axis => ({ stroke: fg, font, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } });
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
        ...series.map((s) => ({
          label: s.label,
          stroke: withAlpha(color(s.colorVar, s.fallback), s.alpha ?? 1),
          width: s.width,
          spanGaps: true,
          points: { show: false },
          value: (_u: uPlot, v: number | null) => (v == null ? '–' : yFormat ? yFormat(v) : String(v)),
        })),
      ],
      legend: { show: true, live: true },
      cursor: { drag: { x: true, y: false } },
    };
    this.plot = new uPlot(opts, this.data, this.container);
  }

  private width(): number {
    return Math.max(200, Math.floor(this.container.clientWidth || 600));
  }

  private resize(): void {
    if (this.plot && Math.abs(this.plot.width - this.width()) > 1) this.plot.setSize({ width: this.width(), height: this.options.height ?? 220 });
  }
}

/** A CSS colour at the given opacity: hex colours (what themes use) get an alpha byte. */
function withAlpha(color: string, alpha: number): string {
  if (alpha >= 1) return color;
  const hex = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(color)?.[1];
  if (!hex) return color;
  const full = hex.length === 3 ? [...hex].map((c) => c + c).join('') : hex;
  return `#${full}${Math.round(alpha * 255).toString(16).padStart(2, '0')}`;
}
