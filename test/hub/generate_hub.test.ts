// `lora-studio generate --model <Hub id>` against the local Hub-compatible server (fake_hub.ts), as a user
// runs it: the first run is killed with SIGKILL while the UNet's weights are arriving (the server stalls the
// file after a third of it, so the kill lands mid-file); the next run resumes that file from its
// `.incomplete` with a Range request for the rest, and the image it makes is the one the local folder makes
// (same bytes: the same weights, seed and settings). Then the server is stopped and HF_HUB_OFFLINE is set:
// the cache alone serves the model, and an uncached id says what is missing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MODEL_DIR, REPO } from '../helpers/fixtures.js';
import { FakeHub, folderFiles } from './fake_hub.js';

const ID = 'runwayml/stable-diffusion-v1-5';
const UNET = 'unet/diffusion_pytorch_model.safetensors';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hub-gen-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Run {
  child: ReturnType<typeof spawn>;
  done: Promise<{ status: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

function generate(model: string, out: string, env: NodeJS.ProcessEnv): Run {
  const args = ['generate', '--model', model, '--prompt', 'a red pokemon', '--steps', '2', '--width', '32', '--height', '32', '--seed', '3', '--backend', 'wasm', '--quiet', '--out', out];
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), ...args], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  return { child, done: new Promise((resolve) => child.on('close', (status, signal) => resolve({ status, signal, stderr }))) };
}

/** Resolves when `check` holds, polling the file system (the child writes; no event reaches this process). Fails after `limitMs`, naming what it waited for. */
async function until(what: string, check: () => boolean, limitMs = 300_000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > limitMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sha256 = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

test('generate --model <Hub id>: a download killed with SIGKILL mid-file resumes with a Range request, and the image is the local folder\'s', async () => {
  const size = fs.statSync(path.join(MODEL_DIR, UNET)).size;
  const cut = Math.floor(size / 3);
  const hub = new FakeHub([{ type: 'model', id: ID, revisions: { main: folderFiles(MODEL_DIR) } }], { stallDownload: { pathEndsWith: UNET, afterBytes: cut } });
  await hub.start();
  const cache = path.join(tmp, 'cache');
  const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_HOME: path.join(tmp, 'hf-home'), HF_TOKEN: '' };
  const blobs = path.join(cache, 'models--runwayml--stable-diffusion-v1-5', 'blobs');
  const partial = path.join(blobs, `${crypto.createHash('sha256').update(fs.readFileSync(path.join(MODEL_DIR, UNET))).digest('hex')}.incomplete`);
  try {
    // Run 1: killed once the stalled UNet file holds the bytes the server sent.
    const first = generate(ID, path.join(tmp, 'killed.png'), env);
    let exited: string | undefined;
    void first.done.then((r) => (exited = r.stderr));
    await until(`${cut} bytes in ${partial}`, () => {
      if (exited !== undefined) throw new Error(`the first run ended before the kill: ${exited}`);
      return (fs.statSync(partial, { throwIfNoEntry: false })?.size ?? 0) >= cut;
    });
    first.child.kill('SIGKILL');
    const killed = await first.done;
    assert.equal(killed.signal, 'SIGKILL');
    assert.equal(fs.statSync(partial).size, cut, 'what arrived before the kill stays in the .incomplete file');
    assert.ok(!fs.existsSync(path.join(tmp, 'killed.png')));

    // Run 2: resumes the file, asks only for the rest, and generates.
    const resumed = await generate(ID, path.join(tmp, 'hub.png'), env).done;
    assert.equal(resumed.status, 0, resumed.stderr);
    const unetGets = hub.requests.filter((r) => r.method === 'GET' && r.url.endsWith(UNET) && r.range !== 'bytes=0-0');
    assert.equal(unetGets.at(-1)!.range, `bytes=${cut}-${size - 1}`, 'the resumed request asks for the bytes after the partial file');
    const commit = fs.readFileSync(path.join(cache, 'models--runwayml--stable-diffusion-v1-5', 'refs', 'main'), 'utf8');
    const cached = path.join(cache, 'models--runwayml--stable-diffusion-v1-5', 'snapshots', commit, UNET);
    assert.equal(sha256(cached), sha256(path.join(MODEL_DIR, UNET)), 'the resumed file hashes as the original');
    assert.ok(!fs.readdirSync(blobs).some((f) => f.endsWith('.incomplete')));

    // The same image as from the local folder: byte-identical PNG (same weights, seed, steps, backend).
    const local = await generate(MODEL_DIR, path.join(tmp, 'local.png'), env).done;
    assert.equal(local.status, 0, local.stderr);
    assert.equal(sha256(path.join(tmp, 'hub.png')), sha256(path.join(tmp, 'local.png')));
  } finally {
    await hub.stop();
  }

  // The server gone and HF_HUB_OFFLINE set: the cache serves the model; an id it lacks is named with the fix.
  const offline = { ...env, HF_HUB_OFFLINE: '1' };
  const fromCache = await generate(ID, path.join(tmp, 'offline.png'), offline).done;
  assert.equal(fromCache.status, 0, fromCache.stderr);
  assert.match(fromCache.stderr, /HF_HUB_OFFLINE is set: using the cached runwayml\/stable-diffusion-v1-5/);
  const missing = await generate('org/not-cached', path.join(tmp, 'missing.png'), offline).done;
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /HF_HUB_OFFLINE is set, and org\/not-cached is not in the cache .* download it once with the network on/);
});
