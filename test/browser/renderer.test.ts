// The notebook renderer (webview/renderer) in headless Chromium with VS Code's renderer API faked: grid,
// compare and sweep render from REAL worker outputs (the tiny model, 32×32, 2 steps); the sweep slider
// sends the message the extension answers, and the answer — a real image made by the worker at the
// slider's scale — appears; copy/save send their messages; a reopened notebook's images are asked for.
// Screenshot: test-output/renderer.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as esbuild from 'esbuild';
import { chromium, type Browser, type Page } from 'playwright-core';
import { FIXTURES, MODEL_DIR, REPO } from '../helpers/fixtures.js';
import { runCell } from '../../src/extension/notebook/cell_runner.js';
import { GENERATION_MIME, withoutImageData, type GenerationOutput, type RendererToExtension } from '../../src/protocol/generation_output.js';
import type { WorkerClient } from '../../src/extension/notebook/worker_client.js';
import { startTestWorker } from '../notebook/worker_launch.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ORIGIN = 'http://renderer.test';
let client: WorkerClient;
let dir: string;
let browser: Browser;
let page: Page;
const outputs: Record<'grid' | 'compare' | 'sweep', GenerationOutput> = {} as never;

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loranb-render-'));
  fs.symlinkSync(MODEL_DIR, path.join(dir, 'model'));
  fs.copyFileSync(path.join(FIXTURES, 'lora_diffusers/pytorch_lora_weights.safetensors'), path.join(dir, 'lora.safetensors'));
  client = startTestWorker();
  const common = 'model: model\nwidth: 32\nheight: 32\nsteps: 2\nguidance: 3';
  const cells = {
    grid: `prompt: a red circle\n${common}\nseed: [1, 2]`,
    compare: `prompt: a red circle\n${common}\nloras: [lora.safetensors]\nseed: 3\ncompare: true`,
    sweep: `prompt: a red circle\n${common}\nloras: [lora.safetensors]\nseed: 4\nsweep: [0, 0.5, 1]`,
  };
  for (const [name, text] of Object.entries(cells) as [keyof typeof cells, string][]) {
    const r = await runCell({ client, text, notebookDir: dir, outDir: path.join(dir, 'nb.outputs'), fileBase: name });
    assert.ok(r.kind === 'output' && r.status === 'done', `${name}: ${JSON.stringify(r).slice(0, 300)}`);
    outputs[name] = r.output;
  }

  const bundle = await esbuild.build({ entryPoints: [path.join(REPO, 'webview/renderer/main.ts')], bundle: true, format: 'esm', target: 'es2022', write: false });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--headless'],
  });
  page = await browser.newPage({ viewport: { width: 900, height: 1200 } });
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  // The page and the bundle are served from memory: module scripts do not load from file://.
  await page.route(`${ORIGIN}/**`, (route) => {
    const url = new URL(route.request().url());
    if (url.pathname === '/renderer.js') return route.fulfill({ contentType: 'text/javascript', body: bundle.outputFiles[0].text });
    return route.fulfill({ contentType: 'text/html', body: HARNESS });
  });
  await page.goto(`${ORIGIN}/`);
  await page.waitForFunction('window.harnessReady === true');
  assert.deepEqual(pageErrors, []);
});

after(async () => {
  await browser?.close();
  await client?.dispose();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

// The fake VS Code side: activate(ctx) with postMessage / onDidReceiveMessage; a second renderer without messaging.
const HARNESS = `<!doctype html><html><head><meta charset="utf-8"><title>renderer</title>
<style>body { font-family: sans-serif; background: #fff; margin: 12px; } .out { border-bottom: 1px solid #ddd; padding: 8px 0; }</style></head>
<body><script type="module">
import { activate } from './renderer.js';
window.posted = [];
let listener;
const withMessaging = await activate({
  postMessage: (m) => window.posted.push(m),
  onDidReceiveMessage: (l) => { listener = l; return { dispose() {} }; },
  getState() {}, setState() {}, workspace: { isTrusted: true },
});
const withoutMessaging = await activate({ getState() {}, setState() {}, workspace: { isTrusted: true } });
const item = (id, json) => ({ id, mime: '${GENERATION_MIME}', metadata: {}, json: () => JSON.parse(json), text: () => json, data: () => new TextEncoder().encode(json) });
window.renderOutput = (id, json, messaging = true) => {
  const el = document.createElement('div');
  el.id = id; el.className = 'out';
  document.body.append(el);
  (messaging ? withMessaging : withoutMessaging).renderOutputItem(item(id, json), el);
};
window.deliver = (m) => listener(m);
window.harnessReady = true;
</script></body></html>`;

async function render(id: string, o: GenerationOutput, messaging = true): Promise<void> {
  await page.evaluate(([id, json, messaging]) => (window as unknown as { renderOutput: (i: string, j: string, m: boolean) => void }).renderOutput(id, json, messaging), [id, JSON.stringify(o), messaging] as const);
}

const posted = () => page.evaluate(() => (window as unknown as { posted: RendererToExtension[] }).posted.splice(0));
const deliver = (m: unknown) => page.evaluate((m) => (window as unknown as { deliver: (m: unknown) => void }).deliver(m), m);

/** Natural sizes of the loaded images under a selector (0 for an image that failed to decode). */
async function loadedImages(selector: string): Promise<number[][]> {
  await page.waitForFunction((s) => [...document.querySelectorAll<HTMLImageElement>(s)].every((i) => i.complete), selector);
  return page.$$eval(selector, (imgs) => (imgs as HTMLImageElement[]).map((i) => [i.naturalWidth, i.naturalHeight]));
}

async function boxes(selector: string) {
  return page.$$eval(selector, (els) => els.map((e) => e.getBoundingClientRect()).map((r) => ({ x: r.x, y: r.y, w: r.width })));
}

test('grid: every image with its seed and parameters under it', async () => {
  await render('grid', outputs.grid);
  assert.deepEqual(await loadedImages('#grid img.lsg-img'), [[32, 32], [32, 32]]);
  const captions = await page.$$eval('#grid figcaption', (els) => els.map((e) => e.textContent));
  assert.deepEqual(captions, ['seed 1', 'seed 2']);
  const head = await page.textContent('#grid .lsg-params');
  assert.match(head!, /^model · dpmpp-2m · 2 steps · guidance 3 · 32×32 · no LoRA · 2 images in [\d.]+ s$/);
  assert.equal(await page.textContent('#grid .lsg-prompt'), 'a red circle');
  const [a, b] = await boxes('#grid figure');
  assert.ok(b.x > a.x && Math.abs(a.y - b.y) < 1, 'two seeds side by side in the grid');
  assert.ok(a.w >= 128, `small images are shown at least 128 px wide (got ${a.w})`);
});

test('compare: the same seed without and with the LoRA, side by side; copy and save send their messages', async () => {
  await render('compare', outputs.compare);
  assert.deepEqual(await loadedImages('#compare img.lsg-img'), [[32, 32], [32, 32]]);
  assert.deepEqual(await page.$$eval('#compare .lsg-colhead', (els) => els.map((e) => e.textContent)), ['without LoRA', 'with lora ×1']);
  assert.deepEqual(await page.$$eval('#compare figcaption', (els) => els.map((e) => e.textContent)), ['seed 3 · without LoRA', 'seed 3 · with LoRA · lora ×1']);
  const [without, withLora] = await boxes('#compare figure');
  assert.ok(withLora.x > without.x && Math.abs(without.y - withLora.y) < 1, 'side by side');
  // The images are the worker's PNGs, byte for byte.
  const srcs = await page.$$eval('#compare img.lsg-img', (imgs) => (imgs as HTMLImageElement[]).map((i) => i.src));
  for (const [i, src] of srcs.entries()) assert.equal(src, `data:image/png;base64,${fs.readFileSync(path.join(dir, outputs.compare.images[i].file)).toString('base64')}`);

  await posted();
  await page.click('#compare figure[data-index="1"] button.lsg-copy');
  await page.click('#compare figure[data-index="0"] button.lsg-save');
  assert.deepEqual(await posted(), [
    { type: 'copySettings', runId: 'compare', image: 1 },
    { type: 'saveImage', runId: 'compare', image: 0 },
  ]);
});

test('sweep: a row per scale; the slider asks for a new scale and shows the image the worker made', async () => {
  await render('sweep', outputs.sweep);
  assert.deepEqual(await loadedImages('#sweep img.lsg-img'), [[32, 32], [32, 32], [32, 32]]);
  assert.deepEqual(await page.$$eval('#sweep .lsg-rowhead', (els) => els.map((e) => e.textContent)), ['scale 0', 'scale 0.5', 'scale 1']);
  const rows = await boxes('#sweep figure');
  assert.ok(rows[0].y < rows[1].y && rows[1].y < rows[2].y, 'one row per scale, top to bottom');

  await posted();
  await page.$eval('#sweep input.lsg-slider', (el) => {
    const s = el as HTMLInputElement;
    s.value = '0.75';
    s.dispatchEvent(new Event('input'));
    s.dispatchEvent(new Event('change'));
  });
  assert.equal(await page.textContent('#sweep .lsg-slider-value'), '0.75');
  const [msg] = await posted();
  assert.equal(msg.type, 'sweepScale');
  assert.deepEqual({ ...msg, requestId: undefined }, { type: 'sweepScale', requestId: undefined, runId: 'sweep', scale: 0.75, seed: 4 });

  // Answer as the extension's renderer host does: the worker makes the image at that scale, as bytes.
  const s = outputs.sweep.settings;
  const m = msg as Extract<RendererToExtension, { type: 'sweepScale' }>;
  const final = await client.request(
    {
      type: 'generate',
      id: client.newId('sweep'),
      model: path.resolve(dir, s.model),
      prompt: s.prompt,
      scheduler: s.scheduler,
      steps: s.steps,
      guidance: s.guidance,
      width: s.width,
      height: s.height,
      jobs: [{ seed: m.seed, loras: [{ file: path.resolve(dir, 'lora.safetensors'), scale: m.scale }] }],
    },
    (w) => {
      if (w.type === 'progress') void deliver({ type: 'sweepProgress', requestId: m.requestId, step: w.step, steps: w.steps });
      if (w.type === 'image') void deliver({ type: 'sweepImage', requestId: m.requestId, scale: m.scale, seed: m.seed, png: w.png });
    },
  );
  assert.equal(final.type, 'done');
  await page.waitForSelector('#sweep .lsg-live[data-state="done"] img');
  assert.deepEqual(await loadedImages('#sweep .lsg-live img'), [[32, 32]]);
  assert.equal(await page.textContent('#sweep .lsg-live figcaption'), 'seed 4 · lora ×0.75 (preview)');
  await page.screenshot({ path: path.join(REPO, 'test-output/renderer.png'), fullPage: true });
});

test('a reopened notebook: images are asked for by file and appear; without messaging nothing is asked', async () => {
  const reopened = withoutImageData(outputs.grid);
  await render('reopened', reopened);
  assert.equal(await page.$$eval('#reopened .lsg-missing', (els) => els.length), 2);
  const [ask] = await posted();
  assert.equal(ask.type, 'loadImages');
  const files = (ask as Extract<RendererToExtension, { type: 'loadImages' }>).files;
  assert.deepEqual(files, outputs.grid.images.map((i) => i.file));
  const images = Object.fromEntries(files.map((f, i) => [f, i === 0 ? fs.readFileSync(path.join(dir, f)).toString('base64') : null]));
  await deliver({ type: 'images', requestId: (ask as { requestId: string }).requestId, images });
  assert.deepEqual(await loadedImages('#reopened img.lsg-img'), [[32, 32]]);
  assert.match((await page.textContent('#reopened .lsg-missing'))!, /\(file missing\)$/);

  await render('plain', outputs.sweep, false);
  assert.equal(await page.$$eval('#plain button, #plain input', (els) => els.length), 0, 'no buttons or slider without messaging');
  assert.deepEqual(await loadedImages('#plain img.lsg-img'), [[32, 32], [32, 32], [32, 32]]);
  assert.deepEqual(await posted(), []);
});

test('hostile outputs (a .loranb from someone else): prompts render as text, `columns` cannot inject CSS', async () => {
  const evil = '<img src=x onerror="window.pwned=1"></script><script>window.pwned=2</script>';
  const hostile = { ...outputs.grid, runId: 'hostile', settings: { ...outputs.grid.settings, prompt: evil, negativePrompt: evil }, columns: '1); background: url(http://127.0.0.1:9/x' as unknown as number };
  await render('hostile', hostile);
  assert.equal(await page.textContent('#hostile .lsg-prompt'), evil, 'the prompt is shown as the text it is');
  assert.equal(await page.$$eval('#hostile .lsg-prompt *, #hostile .lsg-neg *', (els) => els.length), 0, 'no element was made from it');
  assert.equal(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned), undefined, 'no script ran');
  const style = await page.$eval('#hostile .lsg-grid', (el) => (el as HTMLElement).style.cssText);
  assert.ok(!/url|background/.test(style), `no CSS from the output: ${style}`);
});
