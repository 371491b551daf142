// The training dashboard page (webview/dashboard/) in headless Chromium, served exactly as the extension
// serves it (dashboardHtml: strict CSP, nonce'd script) with a fake acquireVsCodeApi. Protocol events are
// fed as the extension would post them; the test reads back the charts' points, the images, the buttons'
// messages and any CSP violation. A screenshot is kept in test-output/dashboard.png.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { chromium, type Browser, type Page } from 'playwright-core';
import { dashboardHtml } from '../../src/extension/dashboard_html.js';
import type { DashboardPoint, FromDashboard, ToDashboard } from '../../src/protocol/dashboard.js';
import { formatLoss } from '../../src/protocol/format.js';

/** WCAG 2 contrast of two opaque #rrggbb colours, written out here rather than taken from the page. */
function wcagContrast(a: string, b: string): number {
  const lum = (hex: string) => {
    const [r, g, bl] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255).map((c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = path.join(ROOT, 'test-output');
const BUNDLE_DIR = path.join(OUT, 'browser-dashboard');
const IMAGES = path.join(ROOT, 'examples/tiny-shapes/dataset-corner');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--headless'];
const skip = fs.existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`;

const OUTPUT_DIR = '/runs/tiny-shapes-corner';
const TOTAL = 40;

/** A loss curve that falls with noise, as training does; lr with a warmup. */
function point(step: number): DashboardPoint {
  return {
    step,
    totalSteps: TOTAL,
    epoch: Math.floor(step / 4),
    loss: 0.3 / Math.sqrt(step) + 0.05 * Math.sin(step * 1.7),
    lr: 1e-4 * Math.min(1, step / 10),
    samplesPerSecond: 3.5,
    etaSeconds: (TOTAL - step) * 1.1,
    elapsedSeconds: step * 1.1,
  };
}

describe('training dashboard page', { skip }, () => {
  let server: http.Server;
  let origin: string;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  before(async () => {
    // The same bundle options as scripts/build.mjs's dashboard entry, built fresh for the test.
    await esbuild.build({
      entryPoints: [path.join(ROOT, 'webview/dashboard/main.ts')],
      outfile: path.join(BUNDLE_DIR, 'dashboard.js'),
      bundle: true,
      platform: 'browser',
      format: 'iife',
      target: 'es2022',
      logLevel: 'silent',
    });
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const send = (type: string, body: Buffer | string) => res.writeHead(200, { 'content-type': type }).end(body);
      if (url.pathname === '/favicon.ico') return res.writeHead(204).end();
      if (url.pathname === '/') {
        return send('text/html', dashboardHtml({ cspSource: origin, scriptUri: `${origin}/dist/dashboard.js`, styleUri: `${origin}/dist/dashboard.css`, title: 'test' }));
      }
      const m = /^\/(dist|img)\/([\w.-]+)$/.exec(url.pathname);
      const file = m && path.join(m[1] === 'dist' ? BUNDLE_DIR : IMAGES, m[2]);
      if (!file || !fs.existsSync(file)) return res.writeHead(404).end();
      send(file.endsWith('.js') ? 'text/javascript' : file.endsWith('.css') ? 'text/css' : 'image/png', fs.readFileSync(file));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    // What VS Code injects into a webview: the messaging API and per-webview state. A string, because the
    // test runs through tsx, whose compiled functions reference a `__name` helper the page does not have
    // (defined here too, for the page.evaluate callbacks below).
    await page.addInitScript(`
      globalThis.__name = (f) => f;
      window.__posted = [];
      window.__state = undefined;
      window.acquireVsCodeApi = () => ({
        postMessage: (m) => window.__posted.push(m),
        getState: () => window.__state,
        setState: (s) => { window.__state = s; },
      });
    `);
    await page.goto(origin + '/');
    await page.waitForFunction(() => (window as unknown as { __posted: { type: string }[] }).__posted.some((m) => m.type === 'ready'));
  });

  after(async () => {
    await browser?.close();
    server?.close();
  });

  const send = (msg: ToDashboard) => page.evaluate((m) => window.postMessage(m, '*'), msg);
  const posted = () => page.evaluate(() => (window as unknown as { __posted: FromDashboard[] }).__posted);

  it('draws live loss and learning-rate points as progress events arrive', async () => {
    await send({
      type: 'reset',
      run: { title: 'tiny-shapes-corner', outputDir: OUTPUT_DIR, configPath: '/runs/tiny.lora.yaml', configText: 'rank: 4\nmax_train_steps: 40\n', state: 'running', live: true, canResume: false },
      history: { points: [], samples: [], checkpoints: [], warnings: [], totalSteps: TOTAL },
    });
    for (let step = 1; step <= 25; step++) await send({ type: 'progress', point: point(step) });
    await page.waitForFunction(() => document.querySelector('[data-testid=loss-chart]')?.getAttribute('data-points') === '25');
    assert.equal(await page.getAttribute('[data-testid=lr-chart]', 'data-points'), '25');
    assert.equal(await page.textContent('[data-testid=step]'), `25 / ${TOTAL}`);
    assert.equal(await page.textContent('[data-testid=eta]'), '0:17'); // (40 − 25) × 1.1 s = 16.5 s
    assert.equal(await page.textContent('[data-testid=state]'), 'running');
    // The curves are drawn: the plot canvas holds coloured pixels (the theme's chart blue, #3794ff here).
    const blue = await page.evaluate(() => {
      const c = document.querySelector('#loss-chart canvas') as HTMLCanvasElement;
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 200 && d[i] < 120 && d[i + 3] > 200) n++;
      return n;
    });
    assert.ok(blue > 100, `loss curve pixels: ${blue}`);
    // The page remembers its run for the panel serializer (reload → restore from the output folder).
    const state = await page.evaluate(() => (window as unknown as { __state: { outputDir: string } }).__state);
    assert.equal(state.outputDir, OUTPUT_DIR);
  });

  it('a resumed run replaces the points after its checkpoint', async () => {
    // The run restarts at step 20: points 21..25 of the interrupted run are superseded.
    await send({ type: 'progress', point: { ...point(21), loss: 0.01 } });
    await page.waitForFunction(() => document.querySelector('[data-testid=loss-chart]')?.getAttribute('data-points') === '21');
    for (let step = 22; step <= 30; step++) await send({ type: 'progress', point: point(step) });
    await page.waitForFunction(() => document.querySelector('[data-testid=loss-chart]')?.getAttribute('data-points') === '30');
  });

  it('shows validation images grouped by step, newest first, and enlarges one on click', async () => {
    const files = fs.readdirSync(IMAGES).filter((f) => f.endsWith('.png')).slice(0, 4);
    for (const [i, f] of files.entries()) {
      const step = i < 2 ? 10 : 20;
      await send({ type: 'sample', sample: { step, prompt: `prompt ${i}`, seed: i, path: `${OUTPUT_DIR}/samples/${f}`, src: `${origin}/img/${f}` } });
    }
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=samples] img').length === 4);
    const groups = await page.$$eval('.sample-group', (els) => els.map((e) => [e.getAttribute('data-step'), e.querySelectorAll('img').length]));
    assert.deepEqual(groups, [['20', 2], ['10', 2]]);
    // Every image loaded under the page's CSP (naturalWidth 0 would mean blocked or broken).
    await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('[data-testid=samples] img')].every((i) => i.complete && i.naturalWidth > 0));
    await page.click('.sample-group[data-step="10"] figure >> nth=1');
    assert.equal(await page.isVisible('.lightbox'), true);
    assert.equal(await page.getAttribute('.lightbox img', 'src'), `${origin}/img/${files[1]}`);
    assert.match((await page.textContent('.lightbox p')) ?? '', /Step 10 · prompt 1 · seed 1/);
    await page.keyboard.press('Escape');
    assert.equal(await page.isVisible('.lightbox'), false);
  });

  it('lists checkpoints with "Generate with this checkpoint", and the buttons post their messages', async () => {
    await send({ type: 'checkpoint', step: 10, path: `${OUTPUT_DIR}/checkpoint-10`, removed: [] });
    await send({ type: 'checkpoint', step: 20, path: `${OUTPUT_DIR}/checkpoint-20`, removed: [] });
    await send({ type: 'checkpoint', step: 30, path: `${OUTPUT_DIR}/checkpoint-30`, removed: [`${OUTPUT_DIR}/checkpoint-10`] });
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=checkpoints] li[data-step]').length === 2);
    assert.deepEqual(await page.$$eval('[data-testid=checkpoints] li[data-step]', (els) => els.map((e) => e.getAttribute('data-step'))), ['30', '20']);
    await page.click('[data-testid=checkpoints] li[data-step="20"] button');
    await page.click('button:has-text("Stop")');
    const msgs = await posted();
    assert.deepEqual(msgs.slice(-2), [{ type: 'generate', weights: `${OUTPUT_DIR}/checkpoint-20` }, { type: 'stop' }]);
  });

  it('shows the finished run: banner, final LoRA, Resume hidden, Stop hidden; screenshot', async () => {
    for (let step = 31; step <= TOTAL; step++) await send({ type: 'progress', point: point(step) });
    const lora = `${OUTPUT_DIR}/pytorch_lora_weights.safetensors`;
    await send({ type: 'finished', finished: { type: 'finished', reason: 'completed', step: TOTAL, outputs: { lora, metrics: `${OUTPUT_DIR}/metrics.jsonl`, samples: [] }, elapsedSeconds: 44 } });
    await send({ type: 'run', run: { title: 'tiny-shapes-corner', outputDir: OUTPUT_DIR, configPath: '/runs/tiny.lora.yaml', configText: 'rank: 4\nmax_train_steps: 40\n', state: 'completed', live: false, canResume: false } });
    await page.waitForSelector('[data-testid=finished]');
    assert.match((await page.textContent('[data-testid=finished]')) ?? '', /Finished 40 steps in 0:44\./);
    assert.equal(await page.isVisible('button:has-text("Stop")'), false);
    assert.equal(await page.isVisible('button:has-text("Resume")'), false);
    assert.equal(await page.textContent('[data-testid=state]'), 'completed');
    assert.equal(await page.getAttribute('[data-testid=loss-chart]', 'data-points'), String(TOTAL));
    await page.click('button:has-text("Generate with this LoRA")');
    assert.deepEqual((await posted()).at(-1), { type: 'generate', weights: lora });
    await page.click('summary:has-text("Run config")');
    assert.equal(await page.textContent('[data-testid=config]'), 'rank: 4\nmax_train_steps: 40\n');
    fs.mkdirSync(OUT, { recursive: true });
    await page.screenshot({ path: path.join(OUT, 'dashboard.png'), fullPage: true });
  });

  it('follows a dark theme (VS Code sets variables and the body class)', async () => {
    await page.evaluate(() => {
      const s = document.documentElement.style;
      s.setProperty('--vscode-editor-background', '#1e1e1e');
      s.setProperty('--vscode-foreground', '#cccccc');
      s.setProperty('--vscode-charts-blue', '#00ff00'); // unmistakable: the curve must change colour
      document.body.className = 'vscode-dark';
    });
    await page.waitForFunction(() => {
      const c = document.querySelector('#loss-chart canvas') as HTMLCanvasElement | null;
      if (!c) return false;
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let green = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 1] > 200 && d[i] < 80 && d[i + 2] < 80 && d[i + 3] > 200) green++;
      return green > 100;
    });
    assert.equal(await page.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(30, 30, 30)');
    await page.screenshot({ path: path.join(OUT, 'dashboard-dark.png'), fullPage: true });
  });

  it('the device line, epoch with its total, s/it and "validating" while the trainer validates', async () => {
    const started = { type: 'started' as const, runId: 'r', outputDir: OUTPUT_DIR, backend: 'webgpu', adapter: 'mesa llvmpipe', softwareAdapter: true, totalSteps: TOTAL, numEpochs: 10, startStep: 0, numExamples: 16, batchSize: 1, gradientAccumulationSteps: 4, loraParameters: 1000, time: 'now' };
    await send({
      type: 'reset',
      run: { title: 'tiny-shapes-corner', outputDir: OUTPUT_DIR, state: 'running', live: true, canResume: false },
      history: { started, points: [1, 2, 3, 4].map((st) => ({ ...point(st), memoryBytes: 300 * 1024 * 1024 })), samples: [], checkpoints: [], warnings: [], totalSteps: TOTAL },
    });
    await page.waitForFunction(() => document.querySelector('[data-testid=loss-chart]')?.getAttribute('data-points') === '4');
    assert.equal(await page.textContent('[data-testid=device]'), 'Device: webgpu · mesa llvmpipe (software renderer) · tensor memory 300 MiB');
    assert.equal(await page.textContent('[data-testid=epoch]'), '1 / 10');
    assert.equal(await page.textContent('[data-testid=samples-per-second]'), '3.50');
    assert.equal(await page.textContent('[data-testid=seconds-per-step]'), '1.14'); // 4 samples a step at 3.5 samples/s
    await send({ type: 'phase', phase: { phase: 'validating', step: 4 } });
    await page.waitForSelector('[data-testid=phase]');
    assert.equal(await page.textContent('[data-testid=phase]'), 'validating');
    assert.match((await page.textContent('[data-testid=live]')) ?? '', /validating, step 4 of 40/);
    await send({ type: 'progress', point: point(5) });
    await page.waitForFunction(() => !document.querySelector('[data-testid=phase]'));
  });

  it('charts are labelled images for screen readers and show the latest values without hovering', async () => {
    const label = (await page.getAttribute('[data-testid=loss-chart]', 'aria-label')) ?? '';
    assert.equal(await page.getAttribute('[data-testid=loss-chart]', 'role'), 'img');
    assert.match(label, /^Loss chart: 5 steps up to step 5; last loss \d\.\d{4}, smoothed \d\.\d{4}$/);
    assert.match((await page.getAttribute('[data-testid=lr-chart]', 'aria-label')) ?? '', /^Learning-rate chart: 5 steps; now 5\.00e-5$/);
    // The pointer is not over the plot: the legend holds the last point's loss, not a dash.
    const legend = await page.$$eval('#loss-chart .u-legend .u-series', (rows) => rows.map((r) => r.textContent ?? ''));
    assert.ok(legend.some((t) => t.includes('loss') && t.includes(formatLoss(point(5).loss))), legend.join(' | '));
  });

  // VS Code's own colours for the three default theme kinds (colorRegistry defaults: editor background,
  // foreground, descriptionForeground, widget border, charts.blue/orange/purple).
  const THEMES: Record<string, Record<string, string>> = {
    'vscode-light': { '--vscode-editor-background': '#ffffff', '--vscode-foreground': '#616161', '--vscode-descriptionForeground': '#717171', '--vscode-editorWidget-border': '#c8c8c8', '--vscode-charts-blue': '#1a85ff', '--vscode-charts-orange': '#d18616', '--vscode-charts-purple': '#652d90' },
    'vscode-dark': { '--vscode-editor-background': '#1e1e1e', '--vscode-foreground': '#cccccc', '--vscode-descriptionForeground': '#ccccccb3', '--vscode-editorWidget-border': '#454545', '--vscode-charts-blue': '#3794ff', '--vscode-charts-orange': '#d18616', '--vscode-charts-purple': '#b180d7' },
    'vscode-high-contrast': { '--vscode-editor-background': '#000000', '--vscode-foreground': '#ffffff', '--vscode-descriptionForeground': '#ffffffb3', '--vscode-editorWidget-border': '#6fc3df', '--vscode-charts-blue': '#3794ff', '--vscode-charts-orange': '#d18616', '--vscode-charts-purple': '#b180d7' },
  };
  for (const [theme, vars] of Object.entries(THEMES)) {
    it(`${theme}: every chart line has at least 3:1 contrast (WCAG 1.4.11) and the grid is not a line's colour`, async () => {
      await page.evaluate(
        ([t, v]) => {
          for (const [k, val] of Object.entries(v)) document.documentElement.style.setProperty(k, val);
          document.body.className = t;
        },
        [theme, vars] as const,
      );
      await page.waitForFunction((bg) => JSON.parse(document.querySelector('#loss-chart')?.getAttribute('data-colors') ?? '{}').background === bg, vars['--vscode-editor-background']);
      for (const id of ['loss-chart', 'lr-chart']) {
        const c = JSON.parse((await page.getAttribute(`#${id}`, 'data-colors'))!) as { background: string; grid: string; axis: string; series: Record<string, string> };
        for (const [name, stroke] of Object.entries(c.series)) {
          const ratio = wcagContrast(stroke, c.background);
          assert.ok(ratio >= 3, `${theme} ${id} ${name}: ${stroke} on ${c.background} has contrast ${ratio.toFixed(2)} < 3`);
          assert.notEqual(c.grid.slice(0, 7), stroke.slice(0, 7), `${theme} ${id}: grid shares ${name}'s colour`);
        }
        assert.ok(wcagContrast(c.axis, c.background) >= 4.5, `${theme} axis labels ${c.axis}: text needs 4.5:1`);
      }
      await page.screenshot({ path: path.join(OUT, `dashboard-${theme.replace('vscode-', '')}.png`), fullPage: true });
    });
  }

  it('had no CSP violation, console error or page error', () => {
    assert.deepEqual(problems, []);
  });
});
