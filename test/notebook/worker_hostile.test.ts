// The REAL inference worker (a child process, tiny model, wasm) fed what a hostile notebook or script can
// send it (issue 18): a 4096×4096 request, sizes that are not multiples of 8, output names that lead out of
// outDir, a FIFO as a LoRA, a 50 MB line, a LoRA with NaN weights, a guidance that turns the image into NaN.
// Each is answered with an error naming what is wrong, nothing is written outside outDir, and the same
// process serves the next request. Images are 32×32 with 1 step: what is checked does not depend on size.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MODEL_DIR, FIXTURES, REPO } from '../helpers/fixtures.js';
import { readAllFloat32, writeSafetensors, type TensorToWrite } from '../../src/core/io/safetensors.js';
import { WORKER_MESSAGES, type WorkerMessage } from '../../src/protocol/inference.js';
import { WORKER_BACKEND } from './worker_launch.js';

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'worker-hostile-'));
const OUT = path.join(TMP, 'nest', 'out');
let proc: ChildProcessWithoutNullStreams;
const messages: WorkerMessage[] = [];
const waiters: (() => void)[] = [];
let stderr = '';

before(async () => {
  proc = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'test/notebook/worker_entry.ts'), '--backend', WORKER_BACKEND], { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
  let buf = '';
  proc.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const r = WORKER_MESSAGES.read(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      if (r?.ok) messages.push(r.message);
      for (const w of waiters.splice(0)) w();
    }
  });
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.on('exit', () => waiters.splice(0).forEach((w) => w()));
  await until((m) => m.type === 'ready', 'ready');
});

after(() => {
  proc.stdin.end();
  fs.rmSync(TMP, { recursive: true, force: true });
});

/** Waits for a message (any since the start) that satisfies `pred`; fails naming what it waited for if the worker exits first. */
async function until(pred: (m: WorkerMessage) => boolean, what: string): Promise<WorkerMessage> {
  for (;;) {
    const m = messages.find(pred);
    if (m) return m;
    if (proc.exitCode !== null) assert.fail(`the worker exited (${proc.exitCode}) before ${what}; stderr:\n${stderr.slice(-2000)}`);
    await new Promise<void>((resolve) => waiters.push(resolve));
  }
}

const send = (o: unknown) => proc.stdin.write((typeof o === 'string' ? o : JSON.stringify(o)) + '\n');
const finalOf = (id: string) => until((m) => 'id' in m && m.id === id && ['done', 'error', 'cancelled', 'status'].includes(m.type), `the answer to "${id}"`);
const generate = (id: string, extra: Record<string, unknown> = {}, job: Record<string, unknown> = {}) =>
  send({ type: 'generate', id, model: MODEL_DIR, prompt: 'a red circle', steps: 1, guidance: 3, width: 32, height: 32, outDir: OUT, jobs: [{ seed: 1, loras: [], ...job }], ...extra });

async function errorOf(id: string): Promise<string> {
  const m = await finalOf(id);
  assert.equal(m.type, 'error', `"${id}" should fail, got ${JSON.stringify(m)}`);
  return m.type === 'error' ? `${m.code}: ${m.message}` : '';
}

/** Every file under TMP: nothing may appear outside OUT. */
const written = () => (fs.readdirSync(TMP, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(TMP, f)).isFile()).sort();

test('a first request works (the model loads)', async () => {
  generate('first');
  assert.equal((await finalOf('first')).type, 'done');
});

test('sizes: 4096×4096 and a width that is not a multiple of the VAE factor are refused by name; the worker goes on', async () => {
  generate('huge', { width: 4096, height: 4096 });
  // tiny-sd draws 64×64 (sample_size 32 × VAE factor 2): at most 2× that.
  assert.equal(await errorOf('huge'), 'bad_request: 4096×4096 is larger than this model can draw: at most 128×128, 2× its own 64×64 (memory grows with the fourth power of the side) — ask for a smaller width and height');
  generate('odd', { width: 33 });
  assert.equal(await errorOf('odd'), 'bad_request: width must be a multiple of 2 (at least 2), got 33');
  generate('after-sizes');
  assert.equal((await finalOf('after-sizes')).type, 'done');
});

test('output names: sheet.fileName "../../x.png", a job fileName "..", an id with slashes — nothing lands outside outDir', async () => {
  generate('sheet-escape', { sheet: { columns: 1, fileName: '../../x.png' } });
  assert.equal(await errorOf('sheet-escape'), 'bad_request: sheet.fileName must be a file name without folders');
  generate('dots', {}, { fileName: '..' });
  assert.equal(await errorOf('dots'), 'bad_request: jobs[0].fileName must be a file name without folders');
  generate('../../escape', { sheet: { columns: 1 } });
  assert.equal((await finalOf('../../escape')).type, 'done');
  const image = messages.find((m) => m.type === 'image' && m.id === '../../escape');
  assert.ok(image?.type === 'image' && image.file && path.dirname(image.file) === OUT, `image written at ${image?.type === 'image' && image.file}`);
  assert.deepEqual(written().filter((f) => !path.join(TMP, f).startsWith(OUT + path.sep)), [], 'no file outside outDir');
});

test('a FIFO as a LoRA and a 50 MB line never stall the worker', async (t) => {
  const fifo = path.join(TMP, 'lora.safetensors');
  if (spawnSync('mkfifo', [fifo]).status !== 0) return t.skip('mkfifo is not available');
  generate('fifo', {}, { loras: [{ file: fifo, scale: 1 }] });
  assert.match(await errorOf('fifo'), /^lora: .*lora\.safetensors: a safetensors file must be a regular file, but this is a named pipe \(FIFO\)$/);
  const before = messages.length;
  send(`{"type":"generate","id":"long","prompt":"${'x'.repeat(50 * 1024 * 1024)}"}`);
  send({ type: 'status', id: 'after-long' });
  assert.equal((await finalOf('after-long')).type, 'status');
  const tooLong = messages.slice(before).find((m) => m.type === 'error' && m.id === undefined);
  assert.ok(tooLong?.type === 'error');
  assert.equal(tooLong.message, 'a request line is longer than 1 MB, the limit; it was skipped up to its end');
  assert.equal(messages.slice(before).filter((m) => 'id' in m && m.id === 'long').length, 0, 'the long line was never parsed');
});

test('non-finite numbers: a LoRA with NaN weights names the file and tensor; a NaN image is an error, not a black PNG', async () => {
  const good = readAllFloat32(path.join(FIXTURES, 'lora_diffusers/pytorch_lora_weights.safetensors'));
  const tensors = new Map<string, TensorToWrite>();
  const [firstKey] = [...good.tensors.keys()].sort();
  for (const [key, t] of good.tensors) {
    const data = Float32Array.from(t.data);
    // 5% of the first tensor's values NaN, as in the probe.
    if (key === firstKey) for (let i = 0; i < data.length; i += 20) data[i] = NaN;
    tensors.set(key, { shape: t.shape, data });
  }
  const nanLora = path.join(TMP, 'nan.safetensors');
  writeSafetensors(nanLora, tensors, { format: 'pt' });
  generate('nan-lora', {}, { loras: [{ file: nanLora, scale: 1 }] });
  const n = Math.ceil(good.tensors.get(firstKey)!.data.length / 20);
  assert.equal(
    await errorOf('nan-lora'),
    `lora: ${nanLora}: key "${firstKey}" holds ${n} NaN or infinite values of ${good.tensors.get(firstKey)!.data.length} (the first at index 0: NaN) — the file is damaged or was saved from a run whose loss diverged; use an earlier checkpoint`,
  );
  // Guidance 1e300 is Infinity in float32: every latent is NaN or infinite.
  const files = written().length;
  generate('nan-image', { guidance: 1e300 });
  assert.match(await errorOf('nan-image'), /^generate: generation failed: the image is not finite: the denoised latents hold \d+ NaN or infinite values of \d+ — the model, a LoRA or the guidance scale \(1e\+300\) overflowed; no image was made/);
  assert.equal(written().length, files, 'no PNG was written');
  generate('after-nan');
  assert.equal((await finalOf('after-nan')).type, 'done', 'the same process serves the next request');
  assert.equal(proc.exitCode, null);
});
