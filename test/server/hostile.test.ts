// A cloned repository is not trusted: the language server must answer every run config, whatever the text
// and whatever the files it names are (symlinks to /dev/zero, a FIFO, a folder named metadata.jsonl), with
// diagnostics, and stay alive. Inputs are those the 2026-12-01 probe (issue 18) found crashing or bloating it.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { DidOpenTextDocumentNotification, type Diagnostic } from 'vscode-languageserver-protocol';
import { ConfigChecker } from '../../src/server/checker.js';
import { LspTestClient, REPO } from './lsp_client.js';

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lsp-hostile-'));
const uriOf = (file: string) => pathToFileURL(file).href;
const text = (ds: Diagnostic[]) => ds.map((d) => (typeof d.message === 'string' ? d.message : d.message.value)).join('\n');
let client: LspTestClient;

before(async () => {
  client = await LspTestClient.start({ debounceMs: 0 });
});
after(async () => {
  await client.stop();
  fs.rmSync(TMP, { recursive: true, force: true });
});

/** The server still answers: a fresh document gets its diagnostics. */
async function stillServing(): Promise<void> {
  const ds = await client.open(`untitled:alive-${Math.random()}`, 'rank: 0\n');
  assert.match(text(ds), /rank/);
}

test('YAML aliases: `rank: *a` and a billion-laughs text are diagnostics at the alias, not a crash', async () => {
  const unresolved = await client.open('untitled:alias', 'pretrained_model_name_or_path: ./m\ntrain_data_dir: ./d\nrank: *a\n');
  const at = unresolved.find((d) => /alias/.test(String(d.message)));
  assert.ok(at, text(unresolved));
  assert.deepEqual([at.range.start.line, at.range.start.character], [2, 6], 'the diagnostic is on `*a`');

  const laughs = ['a: &a [x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 9; i++) {
    const [me, prev] = [String.fromCharCode(97 + i), String.fromCharCode(96 + i)];
    laughs.push(`${me}: &${me} [${Array(9).fill(`*${prev}`).join(', ')}]`);
  }
  laughs.push('rank: *i');
  const t0 = Date.now();
  const ds = await client.open('untitled:laughs', laughs.join('\n') + '\n');
  assert.match(text(ds), /expands its aliases more than \d+ times/);
  assert.ok(Date.now() - t0 < 5000, `answered in ${Date.now() - t0} ms`);
  await stillServing();
});

test('`text: 5` in didOpen: a diagnostic, and the server keeps serving', async () => {
  const uri = 'untitled:number-text';
  const next = client.nextDiagnostics(uri);
  await client.conn.sendNotification(DidOpenTextDocumentNotification.type, { textDocument: { uri, languageId: 'lora-yaml', version: 1, text: 5 as unknown as string } });
  assert.match(text((await next).diagnostics), /could not check this file/);
  await stillServing();
});

test('a 10 MB config answers within 1 s, saying it is too large', async () => {
  const big = 'rank: 4\n'.repeat((10 * 1024 * 1024) / 8);
  const ds = await client.open('untitled:big', big);
  assert.match(text(ds), /this file holds 10\.0 MB, over the 64 kB limit for a run config/);
  // The bound is on the server's own work (CPU time of one check, measured ~1 ms here after warm-up); the
  // round trip above also moves 10 MB through two JSON codecs and a pipe, which a loaded machine slows.
  const checker = new ConfigChecker();
  checker.check('untitled:warm', 1, 'rank: 4\n');
  const cpu = process.cpuUsage();
  checker.check('untitled:big', 1, big);
  const { user, system } = process.cpuUsage(cpu);
  assert.ok((user + system) / 1000 <= 1000, `one check of 10 MB took ${((user + system) / 1000).toFixed(0)} ms of CPU`);
});

test('files that are not regular files are refused by name, never read: /dev/zero, a FIFO, a folder named metadata.jsonl', async () => {
  // A model folder whose unet/config.json is /dev/zero and whose vae weights are a FIFO.
  const model = path.join(TMP, 'model');
  for (const c of ['unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler']) fs.mkdirSync(path.join(model, c), { recursive: true });
  fs.writeFileSync(path.join(model, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'], text_encoder: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'CLIPTokenizer'], scheduler: ['diffusers', 'DDPMScheduler'] }));
  fs.symlinkSync('/dev/zero', path.join(model, 'unet/config.json'));
  fs.writeFileSync(path.join(model, 'vae/config.json'), '{}');
  const fifo = path.join(model, 'vae/diffusion_pytorch_model.safetensors');
  const mk = spawnSync('mkfifo', [fifo]);
  const haveFifo = mk.status === 0;
  if (!haveFifo) fs.symlinkSync('/dev/zero', fifo);
  fs.symlinkSync('/dev/zero', path.join(model, 'text_encoder/model.safetensors'));
  fs.writeFileSync(path.join(model, 'text_encoder/config.json'), '{}');
  // A dataset whose metadata.jsonl is /dev/zero, another where it is a folder.
  const zeroData = path.join(TMP, 'zero-data');
  const dirData = path.join(TMP, 'dir-data');
  for (const d of [zeroData, dirData]) {
    fs.mkdirSync(d);
    fs.copyFileSync(path.join(REPO, 'test/fixtures/tiny-sd/dataset/img0.png'), path.join(d, '0.png'));
  }
  fs.symlinkSync('/dev/zero', path.join(zeroData, 'metadata.jsonl'));
  fs.mkdirSync(path.join(dirData, 'metadata.jsonl'));

  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${client.proc.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  const t0 = Date.now();
  const cfg = (data: string) => `pretrained_model_name_or_path: ./model\ntrain_data_dir: ./${data}\noutput_dir: ./out\n`;
  const a = await client.open(uriOf(path.join(TMP, 'zero.lora.yaml')), cfg('zero-data'));
  const b = await client.open(uriOf(path.join(TMP, 'dir.lora.yaml')), cfg('dir-data'));
  const ms = Date.now() - t0;
  const all = text(a) + '\n' + text(b);
  assert.match(all, /unet\/config\.json: a JSON file must be a regular file, but this is a character device/);
  assert.match(all, haveFifo ? /diffusion_pytorch_model\.safetensors: a weights file must be a regular file, but this is a named pipe \(FIFO\)/ : /diffusion_pytorch_model\.safetensors/);
  assert.match(all, /text_encoder\/model\.safetensors: a weights file must be a regular file, but this is a character device/);
  assert.match(text(a), /zero-data\/metadata\.jsonl: metadata\.jsonl must be a regular file, but this is a character device/);
  assert.match(text(b), /dir-data\/metadata\.jsonl: metadata\.jsonl must be a regular file, but this is a folder/);
  assert.ok(ms < 10_000, `both answered in ${ms} ms`);
  assert.ok(rss() < 1024, `the server holds ${rss().toFixed(0)} MB`);
  await stillServing();
});

test('a malformed frame closes the connection with a message, never a silent desync', async () => {
  // Each kind of bad frame is in frames.test.ts (in-process); here, that the server process does close.
  for (const frame of ['Content-Length: 7\r\n\r\n{"a": }', 'Content-Type: text/plain\r\n\r\n{}', 'Content-Length: 999999999999\r\n\r\n{}']) {
    const proc = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/server/server.ts'), '--stdio'], { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.stdin.write(frame);
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => {
        proc.kill();
        resolve(null);
      }, 60_000);
      proc.once('exit', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    assert.equal(code, 1, `exit code for ${JSON.stringify(frame)} (stderr: ${stderr})`);
    assert.match(stderr, /malformed message from the client/);
  }
});
