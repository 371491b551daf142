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

  it('had no CSP violation, console error or page error', () => {
    assert.deepEqual(problems, []);
  });
});
