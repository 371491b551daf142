// Runs with the network choices beyond the guide's attention LoRA, end to end as a kohya user runs them: `lora-studio
// train` on tiny-sd with LoCon + a text-encoder LoRA (its own learning rate) + LoRA dropout, and with DoRA, then
// `lora-studio generate` with each file it wrote. What a user would notice:
//   - both files (diffusers and kohya) load in LoRA Studio's reader with every trained layer — convs as 3×3 LoCon,
//     the text encoder's q/k/v/out_proj, DoRA's magnitude — nothing skipped, and hold the same weights;
//   - the kohya file is used key for key by ComfyUI, A1111 and sd-scripts (their rules: test/helpers/tool_oracles.ts;
//     DoRA's dora_scale by ComfyUI and A1111, which read it, and not by sd-scripts' networks.lora, which has no DoRA);
//   - the header says what was trained (ss_network_args as sd-scripts records conv_dim / LyCORIS' dora_wd);
//   - an image made with the LoRA differs from one made without it (scale 0, same seed);
//   - a LoCon + text-encoder + dropout run stopped at a checkpoint and resumed ends bit for bit where the straight
//     one does (the dropout stream, the text encoder's weights and their AdamW state all come back).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { MODEL_DIR, FIXTURES, REPO } from '../helpers/fixtures.js';
import { configFromFlags } from '../../src/core/config/flags.js';
import { initBackend } from '../../src/core/engine/backend.js';
import type { BackendName } from '../../src/core/config/run_config.js';
import { train } from '../../src/training/loop.js';
import { MemoryEventSink } from '../../src/training/events.js';
import { readAllFloat32, SafetensorsFile } from '../../src/core/io/safetensors.js';
import { readLoraFile, type LoraWeights } from '../../src/core/lora/lora_file.js';
import { loadStableDiffusion, disposeStableDiffusion, type StableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { loraTargetsOf } from '../../src/core/pipeline/loras.js';
import { LORA_FILE, kohyaLoraFile, listCheckpoints } from '../../src/core/config/run_folder.js';
import { loadCheckpoint } from '../../src/training/checkpoints.js';
import { ORACLES, keysOf, namesOf } from '../helpers/tool_oracles.js';

const backend = process.env.LORA_STUDIO_BACKEND ?? 'wasm';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'network-runs-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const cli = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), ...args], { cwd: REPO, encoding: 'utf8', input: '' });

const BASE = [
  `--pretrained_model_name_or_path=${MODEL_DIR}`, `--train_data_dir=${path.join(FIXTURES, 'dataset')}`, '--resolution=32', '--train_batch_size=1',
  '--max_train_steps=3', '--checkpointing_steps=100', '--learning_rate=1e-2', '--lr_warmup_steps=0', '--seed=3', '--rank=2', '--lora_alpha=1',
  '--cache_latents=false', `--backend=${backend}`,
];
const LOCON_TE = ['--network_type=locon', '--train_text_encoder', '--text_encoder_lr=5e-3', '--lora_dropout=0.25'];

/** `lora-studio train` with flags; the two LoRA files it wrote. */
function trainCli(name: string, extra: string[]): { diffusers: string; kohya: string } {
  const out = path.join(tmp, name);
  const r = cli(['train', ...BASE, `--output_dir=${out}`, ...extra, '--quiet']);
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  return { diffusers: path.join(out, LORA_FILE), kohya: kohyaLoraFile(out) };
}

/** Mean absolute difference (0–255) between the images `generate` makes with the LoRA at scale 1 and at scale 0. */
async function generatedDifference(name: string, lora: string): Promise<number> {
  const out = path.join(tmp, `${name}-{scale}.png`);
  // The prompt is one of the dataset's captions: the text-encoder LoRA changes exactly the tokens trained on.
  const r = cli(['generate', '--model', MODEL_DIR, '--prompt', 'a red circle', '--seed', '5', '--steps', '2', '--width', '32', '--height', '32', '--lora', lora, '--lora-scale', '0', '--lora-scale', '1', '--backend', backend, '--out', out, '--quiet']);
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  const [off, on] = await Promise.all(['0', '1'].map((s) => sharp(out.replace('{scale}', s)).raw().toBuffer()));
  assert.equal(off.length, on.length);
  let sum = 0;
  for (let i = 0; i < on.length; i++) sum += Math.abs(on[i] - off[i]);
  console.log(`# ${name}: mean |with − without| = ${(sum / on.length).toFixed(2)} of 255`);
  return sum / on.length;
}

/** Reads both files against the model; asserts nothing skipped and the same modules and weights in each (kohya alpha/rank folded, as the reader does). */
function readBoth(sd: StableDiffusion, files: { diffusers: string; kohya: string }): LoraWeights {
  const [d, k] = [readLoraFile(files.diffusers, loraTargetsOf(sd)), readLoraFile(files.kohya, loraTargetsOf(sd))];
  assert.deepEqual([d.skipped, k.skipped], [[], []], 'nothing skipped');
  for (const c of ['unet', 'text_encoder'] as const) {
    const [a, b] = [d.components?.get(c), k.components?.get(c)];
    assert.deepEqual([...(b?.keys() ?? [])].sort(), [...(a?.keys() ?? [])].sort(), `${c}: the same modules in both files`);
    for (const [p, m] of a ?? []) {
      const o = b!.get(p)!;
      // The diffusers file folds alpha/rank into up; the kohya file stores alpha: the applied update is the same.
      const [sa, sb] = [m.alpha / m.rank, o.alpha / o.rank];
      for (let i = 0; i < m.up.length; i += 7) assert.ok(Math.abs(m.up[i] * sa - o.up[i] * sb) <= 1e-6 * Math.max(1, Math.abs(m.up[i] * sa)), `${c} ${p} up[${i}]`);
      assert.deepEqual(o.down, m.down, `${c} ${p} down`);
      assert.deepEqual(o.magnitude, m.magnitude, `${c} ${p} magnitude`);
    }
  }
  return d;
}

const metadataOf = (file: string): Record<string, string> => {
  const f = SafetensorsFile.open(file);
  try {
    return f.metadata;
  } finally {
    f.close();
  }
};

test('LoCon + text-encoder LoRA + dropout through the CLI: every trained layer in both files, used by each tool, and it changes the image', async () => {
  const files = trainCli('locon-te', LOCON_TE);
  const sd = loadStableDiffusion(MODEL_DIR);
  try {
    const w = readBoth(sd, files);
    const unet = w.components!.get('unet')!;
    const te = w.components!.get('text_encoder');
    assert.ok([...unet.values()].some((m) => m.kernelSize === 3 && m.conv), '3×3 LoCon conv layers');
    assert.ok(unet.has('down_blocks.0.resnets.0.conv1') && unet.has('down_blocks.0.resnets.0.time_emb_proj'), 'resnet layers');
    assert.ok([...unet.keys()].some((p) => p.endsWith('.attn1.to_q')) && [...unet.keys()].some((p) => p.endsWith('.ff.net.2')), 'attention and feed-forward layers');
    assert.equal(te?.size, 4 * (sd.textEncoder.config.num_hidden_layers as number), 'q/k/v/out_proj of every text encoder layer');

    // tiny-sd's up_blocks.0 has attentions, so A1111's diffusers→compvis formula (which assumes SD 1.x's UpBlock2D
    // there) misses exactly its upsampler; on a real SD 1.x it holds (see tool_acceptance.test.ts).
    const m = namesOf(sd);
    const kKeys = keysOf(files.kohya);
    for (const [tool, oracle] of Object.entries(ORACLES)) {
      const left = new Set(oracle(m)(kKeys).map((k) => k.split('.')[0]));
      assert.deepEqual(left, tool === 'A1111' ? new Set(['lora_unet_up_blocks_0_upsamplers_0_conv']) : new Set(), `${tool} leaves ${[...left].slice(0, 3).join(', ')}`);
    }
    assert.ok(kKeys.some((k) => k.startsWith('lora_te_text_model_encoder_layers_0_self_attn_q_proj.')), 'kohya names the text encoder lora_te_');
    const meta = metadataOf(files.kohya);
    assert.deepEqual(JSON.parse(meta.ss_network_args), { conv_dim: '2', conv_alpha: '1' });
    assert.match(meta['lora_studio.target_modules'], /conv1.*text_encoder\.q_proj/);
  } finally {
    disposeStableDiffusion(sd);
  }
  // 2 steps at 32 px: a LoRA trained 3 steps at lr 1e-2 moves pixels by whole levels (without one, by 0: same seed).
  for (const f of [files.diffusers, files.kohya]) assert.ok((await generatedDifference(path.basename(f, '.safetensors'), f)) > 0.5, `${path.basename(f)} changes the image`);
});

test('DoRA through the CLI: the files carry each layer’s trained magnitude and change the image', async () => {
  const files = trainCli('dora', ['--network_type=dora', '--checkpointing_steps=3']);
  const ckpt = loadCheckpoint(listCheckpoints(path.join(tmp, 'dora'))[0].path).lora;
  const sd = loadStableDiffusion(MODEL_DIR);
  try {
    const unet = readBoth(sd, files).components!.get('unet')!;
    assert.equal(unet.size, ckpt.size);
    for (const [p, mod] of unet) {
      // The trained magnitude (moved from ‖W‖ by three Adam steps) is what the file holds, in f32.
      assert.deepEqual(mod.magnitude, ckpt.get(p)!.magnitude, `${p}: magnitude`);
    }
    const m = namesOf(sd);
    const kKeys = keysOf(files.kohya);
    assert.ok(kKeys.some((k) => k.endsWith('.dora_scale')));
    // ComfyUI and A1111 read dora_scale; sd-scripts' networks.lora has no DoRA and leaves exactly those.
    for (const [tool, oracle] of Object.entries(ORACLES)) {
      const left = oracle(m)(kKeys);
      if (tool === 'sd-scripts') assert.ok(left.length > 0 && left.every((k) => k.endsWith('.dora_scale')), `sd-scripts leaves ${left.slice(0, 3).join(', ')}`);
      else assert.deepEqual(left, [], tool);
    }
    assert.deepEqual([metadataOf(files.kohya).ss_network_module, JSON.parse(metadataOf(files.kohya).ss_network_args)], ['lycoris.kohya', { algo: 'lora', dora_wd: 'True' }]);
  } finally {
    disposeStableDiffusion(sd);
  }
  assert.ok((await generatedDifference('dora', files.kohya)) > 0.5, 'the DoRA file changes the image');
});

test('LoCon + text-encoder LoRA + dropout stopped at a checkpoint and resumed ends bit for bit where the straight run does', async () => {
  await initBackend(backend as BackendName);
  const config = (dir: string, extra: string[] = []) => {
    const loaded = configFromFlags([...BASE, `--output_dir=${dir}`, ...LOCON_TE, ...extra], { cwd: REPO });
    assert.ok(loaded.config, loaded.problems.map((p) => p.message).join('\n'));
    return loaded.config!;
  };
  const straight = await train({ config: config(path.join(tmp, 'straight')), events: new MemoryEventSink() });
  assert.equal(straight.status, 'completed', JSON.stringify(straight.error));
  const splitDir = path.join(tmp, 'split');
  const stopped = await train({ config: config(splitDir), events: new MemoryEventSink(), hooks: { afterStep: (step, req) => step === 2 && req.apply({ type: 'stop' }) } });
  assert.equal(stopped.status, 'stopped');
  const resumed = await train({ config: config(splitDir, ['--resume_from_checkpoint=latest']), events: new MemoryEventSink() });
  assert.equal(resumed.status, 'completed', JSON.stringify(resumed.error));
  const a = readAllFloat32(straight.outputs!.lora!).tensors;
  const b = readAllFloat32(resumed.outputs!.lora!).tensors;
  assert.ok([...a.keys()].some((k) => k.startsWith('text_encoder.')), 'the file holds the text encoder LoRA');
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
  for (const [k, t] of a) assert.deepEqual(b.get(k)!.data, t.data, `${k}: resumed ≠ straight`);
});
