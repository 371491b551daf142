// The packaged extension (`npm run package` → lora-studio.vsix): unpacked, it must hold the manifest's
// entry points and nothing of the sources, and its own trainer must train (sharp, the wasm backend) and
// generate on WebGPU (Dawn) with only the node_modules the .vsix carries. Skipped, saying so, when no
// .vsix has been built.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VSIX = path.resolve(process.env.LORA_STUDIO_VSIX ?? path.join(ROOT, 'lora-studio.vsix'));
const TINY = path.join(ROOT, 'examples/tiny-shapes');
const skip = fs.existsSync(VSIX) ? false : `no ${path.basename(VSIX)}: run \`npm run package\` first (or set LORA_STUDIO_VSIX)`;
if (skip) console.log(`# vsix test skipped: ${skip}`);

describe('the packaged .vsix', { skip }, () => {
  let dir: string;
  let ext: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-vsix-'));
    const r = spawnSync('unzip', ['-q', VSIX, '-d', dir], { encoding: 'utf8' });
    assert.equal(r.status, 0, `unzip: ${r.stderr}`);
    ext = path.join(dir, 'extension');
  });
  after(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

  it('holds the entry points the manifest names, and no sources or tests', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ext, 'package.json'), 'utf8')) as {
      main: string;
      activationEvents: string[];
      contributes: { grammars: { path: string }[]; languages: { configuration?: string }[]; notebookRenderer?: { entrypoint: string }[] };
    };
    const files = [pkg.main, 'dist/cli.mjs', 'dist/server.cjs', 'dist/webview/dashboard.js', 'dist/webview/dashboard.css'];
    files.push(...pkg.contributes.grammars.map((g) => g.path), ...pkg.contributes.languages.flatMap((l) => (l.configuration ? [l.configuration] : [])));
    files.push(...(pkg.contributes.notebookRenderer ?? []).map((r) => r.entrypoint));
    for (const f of files) assert.ok(fs.existsSync(path.join(ext, f)), `${f} is in the .vsix`);
    assert.ok(!pkg.activationEvents.includes('*'), 'no `*` activation');
    for (const d of ['src', 'test', 'webview', 'scripts', 'examples', '.cache']) assert.ok(!fs.existsSync(path.join(ext, d)), `${d}/ is not in the .vsix`);
    assert.deepEqual(walk(ext).filter((f) => f.endsWith('.map') || f.endsWith('.ts')), []);
  });

  it('shows users their README (not the developers\' one), the icon, the screenshots and the walkthrough pages', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ext, 'package.json'), 'utf8')) as { icon: string; contributes: { walkthroughs: { steps: { media: { markdown?: string } }[] }[]; viewsContainers: { activitybar: { icon: string }[] } } };
    const readme = fs.readFileSync(path.join(ext, 'readme.md'), 'utf8');
    assert.match(readme, /^# LoRA Studio\n/);
    assert.doesNotMatch(readme, /npm (ci|test)/, 'the developers\' commands stay in the repository README');
    const linked = [...readme.matchAll(/\]\(([^)]+\.png)\)/g)].map((m) => m[1]);
    assert.ok(linked.length >= 1, 'screenshots');
    const media = [pkg.icon, ...linked, pkg.contributes.viewsContainers.activitybar[0].icon, ...pkg.contributes.walkthroughs.flatMap((w) => w.steps.map((s) => s.media.markdown!))];
    for (const f of media) assert.ok(fs.existsSync(path.join(ext, f)), `${f} is in the .vsix`);
  });

  it("its trainer trains from the .vsix's own node_modules (sharp, tfjs wasm)", () => {
    const config = path.join(dir, 'run.lora.yaml');
    fs.writeFileSync(
      config,
      [
        `pretrained_model_name_or_path: ${path.join(TINY, 'model')}`,
        `train_data_dir: ${path.join(TINY, 'dataset-corner')}`,
        'output_dir: out',
        'resolution: 64',
        'train_batch_size: 1',
        'max_train_steps: 2',
        'checkpointing_steps: 2',
        'lr_warmup_steps: 0',
        'backend: wasm',
      ].join('\n'),
    );
    // Run from the unpacked folder with NODE_PATH cleared, so nothing resolves from the repository.
    const r = spawnSync(process.execPath, [path.join(ext, 'dist/cli.mjs'), 'train', config], { cwd: dir, encoding: 'utf8', env: { ...process.env, NODE_PATH: '' }, timeout: 300_000 });
    assert.equal(r.status, 0, r.stderr);
    const events = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; backend?: string });
    assert.equal(events.find((e) => e.type === 'started')?.backend, 'wasm');
    assert.equal(events.at(-1)?.type, 'finished');
    assert.ok(fs.existsSync(path.join(dir, 'out/pytorch_lora_weights.safetensors')));
  });

  it("its trainer generates on WebGPU through the .vsix's Dawn", () => {
    const out = path.join(dir, 'gen.png');
    const r = spawnSync(
      process.execPath,
      [path.join(ext, 'dist/cli.mjs'), 'generate', '--model', path.join(TINY, 'model'), '--prompt', 'a red circle', '--steps', '2', '--backend', 'webgpu', '--lora', `${path.join(dir, 'out/pytorch_lora_weights.safetensors')}:1`, '--out', out],
      { cwd: dir, encoding: 'utf8', env: { ...process.env, NODE_PATH: '' }, timeout: 300_000 },
    );
    if (r.status !== 0 && /no WebGPU adapter|adapter/i.test(r.stderr)) {
      // A machine without any Vulkan driver (not even lavapipe): nothing of the package to blame.
      console.log(`# WebGPU unavailable here: ${r.stderr.trim().split('\n').at(-1)}`);
      return;
    }
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual([...fs.readFileSync(out).subarray(1, 4)].map((b) => String.fromCharCode(b)).join(''), 'PNG');
  });
});

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}
