// SDXL end to end through the CLI, as a user runs it: `lora-studio train` on the tiny-sdxl fixture (model
// folder, dataset of two images with their own sizes, 3 steps), then `lora-studio generate` with each LoRA
// file it wrote. The files are checked key by key against what diffusers itself writes for this model
// (the fixture's lora_diffusers/, made by StableDiffusionXLPipeline.save_lora_weights: the same module
// names and shapes) and against kohya's naming (lora_unet_ + the module's SGM or diffusers name, as the issue
// allows); both files must load with no key skipped and hold the same weights.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { REPO } from '../helpers/fixtures.js';
import { LORA_FILE, kohyaLoraFile } from '../../src/core/config/run_folder.js';
import { SafetensorsFile } from '../../src/core/io/safetensors.js';
import { loraTargetsFromUnetWeights, parseLoraKey, ldmUnetPaths } from '../../src/core/lora/formats.js';
import { readLoraFile } from '../../src/core/lora/lora_file.js';

const SDXL = path.join(REPO, 'test/fixtures/tiny-sdxl');
const MODEL = path.join(SDXL, 'model');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'train-sdxl-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const backend = process.env.LORA_STUDIO_BACKEND ?? 'wasm';
const cli = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), ...args], { cwd: REPO, encoding: 'utf8', input: '' });
const keysOf = (file: string) => {
  const f = SafetensorsFile.open(file);
  try {
    return new Map([...f.tensors].map(([k, t]) => [k, t.shape]));
  } finally {
    f.close();
  }
};

test('lora-studio train on tiny-sdxl, then generate with each LoRA file it wrote', async () => {
  const out = path.join(tmp, 'run');
  const config = path.join(tmp, 'sdxl.lora.yaml');
  fs.writeFileSync(
    config,
    [`pretrained_model_name_or_path: ${MODEL}`, `train_data_dir: ${path.join(SDXL, 'dataset')}`, 'resolution: 64', 'rank: 4', 'learning_rate: 1.0e-2', 'max_train_steps: 3', 'seed: 3', `output_dir: ${out}`, `backend: ${backend}`].join('\n'),
  );
  const trained = cli(['train', config, '--quiet']);
  assert.equal(trained.status, 0, trained.stderr.slice(-2000));
  const diffusersFile = path.join(out, LORA_FILE);
  const kohyaFile = kohyaLoraFile(out);

  // diffusers layout: the modules and shapes diffusers writes for this model. diffusers writes peft's
  // lora_A/lora_B; the trainer writes diffusers' older lora.down/lora.up names, which every diffusers
  // version loads (its lora_state_dict converts them): the same key up to that part name.
  const peftName = (k: string) => k.replace(/\.lora\.down\.weight$/, '.lora_A.weight').replace(/\.lora\.up\.weight$/, '.lora_B.weight');
  const ours = new Map([...keysOf(diffusersFile)].map(([k, v]) => [peftName(k), v]));
  const reference = keysOf(path.join(SDXL, 'lora_diffusers/pytorch_lora_weights.safetensors'));
  assert.deepEqual([...ours.keys()].sort(), [...reference.keys()].sort());
  for (const [k, shape] of reference) assert.deepEqual(ours.get(k), shape, k);

  // kohya layout: lora_unet_<SGM block name>, lora_down/lora_up/alpha per module, the same modules.
  const paths = [...keysOf(path.join(MODEL, 'unet/diffusion_pytorch_model.safetensors')).keys()].filter((k) => k.endsWith('.weight')).map((k) => k.slice(0, -'.weight'.length));
  const sgm = ldmUnetPaths(paths);
  const modules = new Set([...reference.keys()].map((k) => /^unet\.(.*)\.lora_[AB]\.weight$/.exec(k)![1]));
  const kohyaKeys = [...keysOf(kohyaFile).keys()].filter((k) => k !== '__metadata__');
  // kohya names a module lora_unet_ + its SGM name (sd-scripts' SDXL) or its diffusers name (what A1111/Forge
  // and ComfyUI also map): one naming for the whole file, each module once with lora_down, lora_up, alpha.
  const expectedWith = (name: (m: string) => string) => new Set([...modules].flatMap((m) => ['lora_down.weight', 'lora_up.weight', 'alpha'].map((x) => `lora_unet_${name(m).replace(/\./g, '_')}.${x}`)));
  const [bySgm, byDiffusers] = [expectedWith((m) => sgm.get(m)!), expectedWith((m) => m)];
  const sorted = kohyaKeys.sort();
  assert.ok([bySgm, byDiffusers].some((e) => JSON.stringify(sorted) === JSON.stringify([...e].sort())), `kohya keys (${sorted.slice(0, 3).join(', ')}, …) are neither the SGM nor the diffusers names of the model's ${modules.size} modules`);
  for (const k of kohyaKeys) {
    const p = parseLoraKey(k);
    assert.ok(p.kind === 'lora' && p.format === 'kohya' && p.component === 'unet', `${k}: ${JSON.stringify(p)}`);
  }

  // Both load against the model's targets with nothing skipped, and hold the same weights.
  const targets = loraTargetsFromUnetWeights([path.join(MODEL, 'unet/diffusion_pytorch_model.safetensors')]);
  const [a, b] = [readLoraFile(diffusersFile, targets), readLoraFile(kohyaFile, targets)];
  assert.deepEqual([a.skipped, b.skipped], [[], []]);
  assert.equal(a.modules.size, modules.size);
  for (const [m, mod] of a.modules) {
    const other = b.modules.get(m)!;
    assert.ok(other, m);
    // alpha/rank is the scale; the kohya file stores alpha = rank (scale 1), as the diffusers file implies.
    assert.equal(other.alpha / other.rank, mod.alpha / mod.rank, `${m} scale`);
    assert.deepEqual([...other.up], [...mod.up], `${m} up`);
    assert.deepEqual([...other.down], [...mod.down], `${m} down`);
  }
  assert.ok([...a.modules.values()].some((m) => m.up.some((v) => v !== 0)), 'training moved lora_B off its zero init');

  // generate: SDXL defaults (Euler, guidance 5), 2 steps, 64×64; each LoRA changes the image, both alike.
  const gen = (name: string, extra: string[]) => {
    const file = path.join(tmp, `${name}.png`);
    const r = cli(['generate', '--model', MODEL, '--prompt', 'a red circle', '--steps', '2', '--seed', '1', '--width', '64', '--height', '64', '--backend', backend, '--out', file, ...extra]);
    assert.equal(r.status, 0, r.stderr.slice(-2000));
    return file;
  };
  const pixels = async (file: string) => {
    const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [64, 64]);
    return data;
  };
  const diff = (x: Buffer, y: Buffer) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
  const [plain, withDiffusers, withKohya] = await Promise.all([pixels(gen('plain', [])), pixels(gen('diffusers', ['--lora', diffusersFile])), pixels(gen('kohya', ['--lora', kohyaFile]))]);
  assert.ok(diff(plain, withDiffusers) > 0, 'the trained LoRA changes the image');
  // Same weights, same scale: the same image up to f32 rounding (≤ 1 level).
  assert.ok(diff(withDiffusers, withKohya) <= 1, `diffusers vs kohya file: ${diff(withDiffusers, withKohya)} levels`);
});
