// The extension's plain-node parts: the dashboard page's CSP, the trainer launch, reading a run's history
// back from its output folder, and the New Run Config template (validated by the trainer's own loader).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { dashboardHtml } from '../../src/extension/dashboard_html.js';
import { readMetricsPoints, readPngParameters, readRunHistory, stepFromName } from '../../src/extension/run_history.js';
import { datasetFacts, modelResolution, renderRunConfig } from '../../src/extension/run_config_template.js';
import { backendOverride, trainerLaunch } from '../../src/extension/trainer_launch.js';
import { acceptedAnswer } from '../../src/extension/model_choice.js';
import { isInside } from '../../src/core/config/paths.js';
import { loadRunConfig } from '../../src/core/config/load.js';
import { validateRunConfigText } from '../../src/core/config/validate.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TINY = path.join(ROOT, 'examples/tiny-shapes');

describe('dashboard page', () => {
  it('has a strict CSP: nothing by default, the one script only by nonce, resources only from the webview origin', () => {
    const html = dashboardHtml({ cspSource: 'https://cdn.example', scriptUri: 'https://cdn.example/d.js', styleUri: 'https://cdn.example/d.css', title: '<run>', nonce: 'N0nce' });
    const csp = /http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(html)?.[1] ?? '';
    const directives = new Map(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k, v]));
    assert.deepEqual(directives.get('default-src'), ["'none'"]);
    assert.deepEqual(directives.get('script-src'), ["'nonce-N0nce'"]);
    assert.deepEqual(directives.get('img-src'), ['https://cdn.example', 'data:']);
    assert.ok(!csp.includes('unsafe'), csp);
    assert.match(html, /<script nonce="N0nce" src="https:\/\/cdn.example\/d.js"><\/script>/);
    assert.equal((html.match(/<script/g) ?? []).length, 1, 'no inline script');
    assert.match(html, /<title>&lt;run&gt;<\/title>/);
    // A fresh nonce each time when none is given.
    const n = (h: string) => /'nonce-([^']+)'/.exec(h)?.[1];
    const o = { cspSource: 'x', scriptUri: 'x', styleUri: 'x', title: 't' };
    assert.notEqual(n(dashboardHtml(o)), n(dashboardHtml(o)));
  });
});

describe('trainer launch', () => {
  const base = { extensionPath: '/ext', nodePathSetting: '', execPath: '/opt/code/code' };
  it("desktop VS Code runs the trainer with its own Electron as node; code-server with its node; a setting overrides", () => {
    assert.deepEqual(trainerLaunch({ ...base, versions: { ...process.versions, electron: '32.0.0' } }), {
      nodePath: '/opt/code/code',
      trainerPath: path.join('/ext', 'dist', 'cli.mjs'),
      env: { ELECTRON_RUN_AS_NODE: '1' },
    });
    const plain = { ...process.versions } as NodeJS.ProcessVersions & { electron?: string };
    delete plain.electron;
    assert.deepEqual(trainerLaunch({ ...base, versions: plain }), { nodePath: '/opt/code/code', trainerPath: path.join('/ext', 'dist', 'cli.mjs') });
    assert.equal(trainerLaunch({ ...base, nodePathSetting: ' /usr/bin/node ', versions: { ...process.versions, electron: '1' } }).nodePath, '/usr/bin/node');
    assert.equal(trainerLaunch({ ...base, nodePathSetting: '/usr/bin/node', versions: process.versions }).env, undefined);
  });
  it('the backend setting overrides only when it names a backend', () => {
    assert.equal(backendOverride('config'), undefined);
    assert.equal(backendOverride(undefined), undefined);
    assert.equal(backendOverride('wasm'), 'wasm');
  });
  it('isInside refuses paths outside the run folder', () => {
    assert.ok(isInside('/runs/a', '/runs/a/checkpoint-4'));
    assert.ok(isInside('/runs/a', '/runs/a'));
    assert.ok(!isInside('/runs/a', '/runs/a/../b/x'));
    assert.ok(!isInside('/runs/a', '/runs/ab'));
    assert.ok(!isInside('/runs/a', '/etc/passwd'));
  });
});

describe('run history from the output folder', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-history-'));
    const rows = [1, 2, 3].map((step) => ({ step, epoch: 0, loss: 1 / step, lr: 1e-3, grad_norm: 0.1, step_seconds: 1, elapsed_seconds: step, time: 'now' }));
    // The last line torn by a kill mid-write; step 2 rewritten by a resume (the newer row wins).
    fs.writeFileSync(path.join(dir, 'metrics.jsonl'), [...rows, { ...rows[1], loss: 7 }].map((r) => JSON.stringify(r)).join('\n') + '\n{"step": 4, "lo');
    for (const s of [2, 3]) fs.mkdirSync(path.join(dir, `checkpoint-${s}`));
    fs.mkdirSync(path.join(dir, '.checkpoint-4.tmp')); // being written: not a checkpoint yet
    fs.mkdirSync(path.join(dir, 'samples'));
    // A real PNG with the trainer's "parameters" tEXt chunk, named as the trainer names them.
    const png = pngWithText('parameters', JSON.stringify({ prompt: 'a red circle', seed: 5 }));
    fs.writeFileSync(path.join(dir, 'samples', 'step-000002-0.png'), png);
    fs.writeFileSync(path.join(dir, 'samples', 'final-0.png'), png);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads points, checkpoints and samples (with prompt and seed from the PNG), and no finished LoRA', () => {
    const h = readRunHistory(dir);
    assert.deepEqual(h.points.map((p) => [p.step, p.loss, p.elapsedSeconds]), [[1, 1, 1], [2, 7, 2], [3, 1 / 3, 3]]);
    assert.deepEqual(h.checkpoints.map((c) => c.step), [2, 3]);
    assert.deepEqual(h.samples.map((s) => [s.step, s.prompt, s.seed, path.basename(s.path)]), [[2, 'a red circle', 5, 'step-000002-0.png'], [3, 'a red circle', 5, 'final-0.png']]);
    assert.equal(h.finished, undefined);
  });

  it('a final LoRA newer than every checkpoint makes the run finished', () => {
    const lora = path.join(dir, 'pytorch_lora_weights.safetensors');
    fs.writeFileSync(lora, 'x');
    const future = new Date(Date.now() + 5000);
    fs.utimesSync(lora, future, future);
    assert.equal(readRunHistory(dir).finished?.outputs.lora, lora);
    assert.equal(readRunHistory(dir).finished?.step, 3);
    fs.rmSync(lora);
  });

  it('helpers: step from names; a missing file is an empty history; a non-PNG has no parameters', () => {
    assert.equal(stepFromName('step-000120-3.png'), 120);
    assert.equal(stepFromName('step_7/0.png'), 7);
    assert.equal(stepFromName('000042_a.png'), 42);
    assert.equal(stepFromName('cat.png'), undefined);
    assert.deepEqual(readMetricsPoints(path.join(dir, 'nope.jsonl')), []);
    assert.equal(readPngParameters(path.join(dir, 'metrics.jsonl')), undefined);
  });
});

describe('pick-or-type quick picks (base model, dataset folder)', () => {
  const BROWSE = ['Browse…', 'Browse for a file…'];
  const model = { label: 'models/tiny' };
  it('Enter takes the highlighted row; typed text when the only row left is Browse… or none; nothing on an empty box', () => {
    assert.deepEqual(acceptedAnswer(model, '', BROWSE), { pick: model });
    assert.deepEqual(acceptedAnswer(model, 'tiny', BROWSE), { pick: model }, 'typed text that filters to a real row picks it');
    assert.deepEqual(acceptedAnswer({ label: 'Browse…' }, '', BROWSE), { pick: { label: 'Browse…' } }, 'Browse… picked with nothing typed opens the dialog');
    assert.deepEqual(acceptedAnswer({ label: 'Browse for a file…' }, ' org/name ', BROWSE), { typed: 'org/name' }, 'a typed Hub id is the answer, not a dialog');
    assert.deepEqual(acceptedAnswer(undefined, '/data/cats', BROWSE), { typed: '/data/cats' });
    assert.equal(acceptedAnswer(undefined, '  ', BROWSE), undefined);
  });
});

describe('New Run Config template', () => {
  let dir: string;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-template-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads the model size and the dataset from disk', () => {
    // tiny-shapes: UNet sample_size 16 latents × VAE downscale 2^(3 blocks − 1) = 64 px.
    assert.equal(modelResolution(path.join(TINY, 'model')), 64);
    assert.equal(modelResolution(dir), undefined);
    const facts = datasetFacts(path.join(TINY, 'dataset-corner'));
    assert.equal(facts.numImages, 16);
    assert.equal(facts.firstCaption, 'a red circle');
  });

  it("refuses what is not a regular file, naming it, without reading it (a cloned repository's /dev/zero)", () => {
    const model = path.join(dir, 'hostile-model');
    for (const c of ['unet', 'vae']) fs.mkdirSync(path.join(model, c), { recursive: true });
    fs.writeFileSync(path.join(model, 'model_index.json'), '{}');
    fs.symlinkSync('/dev/zero', path.join(model, 'unet', 'config.json'));
    assert.throws(() => modelResolution(model), { message: `${path.join(model, 'unet', 'config.json')}: unet/config.json must be a regular file, but this is a character device` });
    // The dataset: the trainer's reader refuses the index, so no image counts and the wizard shows this refusal.
    const data = path.join(dir, 'hostile-data');
    fs.mkdirSync(data);
    fs.copyFileSync(path.join(TINY, 'dataset-corner', fs.readdirSync(path.join(TINY, 'dataset-corner')).find((f) => f.endsWith('.png'))!), path.join(data, 'a.png'));
    fs.symlinkSync('/dev/zero', path.join(data, 'metadata.jsonl'));
    const facts = datasetFacts(data);
    assert.equal(facts.numImages, 0);
    assert.equal(facts.firstCaption, undefined);
    assert.equal(facts.problems[0], `${path.join(data, 'metadata.jsonl')}: metadata.jsonl must be a regular file, but this is a character device`);
    assert.deepEqual(datasetFacts(path.join(dir, 'no-such-folder')), { numImages: 0, problems: [] });
  });

  it('writes a commented config that the trainer loads without a problem, with the answers in it', () => {
    const text = renderRunConfig({
      modelPath: path.relative(dir, path.join(TINY, 'model')),
      dataPath: path.relative(dir, path.join(TINY, 'dataset-corner')),
      outputPath: 'lora-output/corner',
      rank: 8,
      steps: 120,
      resolution: 64,
      validationPrompt: 'a red circle',
      numImages: 16,
    });
    const file = path.join(dir, 'corner.lora.yaml');
    fs.writeFileSync(file, text);
    const loaded = loadRunConfig(file);
    assert.deepEqual(loaded.problems.filter((p) => p.severity !== 'info' && p.severity !== 'hint').map((p) => p.message), []);
    const c = loaded.config!;
    assert.equal(c.rank, 8);
    assert.equal(c.max_train_steps, 120);
    assert.equal(c.output_dir, path.join(dir, 'lora-output/corner'));
    assert.equal(c.pretrained_model_name_or_path, path.join(TINY, 'model'));
    assert.equal(c.checkpointing_steps, 30);
    // 120 steps × 4 images / 16 = 30 epochs → validation every ~7.5 epochs, about four times a run.
    assert.equal(c.validation_epochs, 8);
    // Every key is preceded by its schema summary.
    assert.match(text, /# The LoRA rank r\.\nrank: 8\n/);
  });

  it('without a validation prompt the key is left as a commented hint', () => {
    const text = renderRunConfig({ modelPath: 'm', dataPath: 'd', outputPath: 'o', rank: 4, steps: 10, resolution: 512 });
    assert.equal(validateRunConfigText(text).config?.validation_prompt, null);
    assert.match(text, /\n# validation_prompt: /);
  });
});

/** A 1×1 PNG with one tEXt chunk (CRCs are not checked by the reader, but written correctly anyway). */
function pngWithText(key: string, value: string): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('tEXt', Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0]), Buffer.from(value, 'latin1')])),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
