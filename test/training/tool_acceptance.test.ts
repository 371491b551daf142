// Key acceptance by the other tools, with their own rules: the files the trainer writes (SD 1.x-shaped tiny-sd and
// tiny-sdxl, one step each) and a file with every kind of layer LoRA Studio's writer takes (LoCon on resnets,
// down/upsamplers, proj_in/out, feed-forward, both text encoders — what issue 15's trainer writes through the
// same writer) are matched against each tool's loading rule, restated here from its source and applied with
// the model's real module list. Each kohya file: every key matched, none left over, in ComfyUI, A1111 and
// sd-scripts. The diffusers file: loaded by diffusers (readLoraFile, checked elsewhere against diffusers'
// images); the others' verdicts are stated exactly. inspect's per-tool verdict (lora/tool_support.ts, a
// model-free reading) must agree with these full rules on every file.
//
// Rules restated: test/helpers/tool_oracles.ts (the sources read, and what each does with a file's keys).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, FIXTURES, MODEL_DIR } from '../helpers/fixtures.js';
import { configFromFlags } from '../../src/core/config/flags.js';
import { initBackend } from '../../src/core/engine/backend.js';
import type { BackendName } from '../../src/core/config/run_config.js';
import { train } from '../../src/training/loop.js';
import { MemoryEventSink } from '../../src/training/events.js';
import { loadStableDiffusion, disposeStableDiffusion, type StableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { loraTargetsOf } from '../../src/core/pipeline/loras.js';
import { readLoraFile } from '../../src/core/lora/lora_file.js';
import { writeLoraFile, type LoraModuleToWrite } from '../../src/core/lora/lora_writer.js';
import type { LoraComponent, LoraTarget } from '../../src/core/lora/formats.js';
import { ORACLES, a1111Oracle, clipLayers, judge, keysOf, namesOf } from '../helpers/tool_oracles.js';

const SDXL_DIR = path.join(REPO, 'test/fixtures/tiny-sdxl');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tool-acceptance-'));

async function trainOne(modelDir: string, data: string, out: string) {
  const loaded = configFromFlags(
    [`--pretrained_model_name_or_path=${modelDir}`, `--train_data_dir=${data}`, `--output_dir=${out}`, '--resolution=32', '--train_batch_size=1', '--rank=2', '--lora_alpha=1', '--seed=1', '--max_train_steps=1', '--learning_rate=1e-3', `--backend=${process.env.LORA_STUDIO_BACKEND ?? 'wasm'}`],
    { cwd: REPO },
  );
  assert.ok(loaded.config, loaded.problems.map((p) => p.message).join('\n'));
  const r = await train({ config: loaded.config!, events: new MemoryEventSink() });
  assert.equal(r.status, 'completed', JSON.stringify(r.error));
  return { diffusers: r.outputs!.lora!, kohya: r.outputs!.kohya! };
}

/** A LoRA on every layer kind the writer takes (what sd-scripts' networks.lora and LoCon train), rank 2, alpha 1. */
function everyLayerKind(sd: StableDiffusion): Map<LoraComponent, Map<string, LoraModuleToWrite>> {
  const t = loraTargetsOf(sd);
  const mod = (x: LoraTarget): LoraModuleToWrite => {
    const k = x.kernelSize ?? 1;
    return { down: new Float32Array(2 * x.inFeatures * k * k).fill(0.01), up: new Float32Array(x.outFeatures * 2).fill(0.01), rank: 2, inFeatures: x.inFeatures, outFeatures: x.outFeatures, kernelSize: k, conv: x.conv, alpha: 1 };
  };
  const unet = t.unet.filter((x) => /(^|\.)(attentions|resnets)\.\d+\.|\.(downsamplers|upsamplers)\.0\./.test(x.path));
  const te = (xs: readonly LoraTarget[] | undefined) => new Map((xs ?? []).filter((x) => clipLayers([x.path]).length).map((x) => [x.path, mod(x)]));
  const out = new Map<LoraComponent, Map<string, LoraModuleToWrite>>([['unet', new Map(unet.map((x) => [x.path, mod(x)]))], ['text_encoder', te(t.text_encoder)]]);
  if (t.text_encoder_2) out.set('text_encoder_2', te(t.text_encoder_2));
  return out;
}

test('every file the trainer writes, SD 1.x-shaped and SDXL, is used key for key by ComfyUI, A1111 and sd-scripts (kohya file)', async () => {
  await initBackend((process.env.LORA_STUDIO_BACKEND ?? 'wasm') as BackendName);
  for (const [label, modelDir, data] of [['tiny-sd', MODEL_DIR, path.join(FIXTURES, 'dataset')], ['tiny-sdxl', path.join(SDXL_DIR, 'model'), path.join(SDXL_DIR, 'dataset')]] as const) {
    const files = await trainOne(modelDir, data, path.join(tmp, label));
    const sd = loadStableDiffusion(modelDir);
    try {
      const m = namesOf(sd);
      const left = judge(m, files.kohya, files.diffusers, `${label} trained`);
      // The diffusers file is for diffusers: ComfyUI matches diffusers attention keys only in the old
      // "processor.to_q" form, so none of the trained attention projections; A1111 and sd-scripts take no dotted key.
      const n = keysOf(files.diffusers).length;
      for (const tool of Object.keys(ORACLES)) assert.equal(left[tool].length, n, `${label}: ${tool} on the diffusers file`);
      // The SDXL kohya file is named the SGM way, as sd-scripts writes SDXL LoRAs.
      const names = keysOf(files.kohya);
      if (label === 'tiny-sdxl') assert.ok(names.every((k) => /^lora_unet_(input_blocks|middle_block|output_blocks)_/.test(k)), names[0]);
      else assert.ok(names.every((k) => /^lora_unet_(down_blocks|mid_block|up_blocks)_/.test(k)), names[0]);
      // And both files are the same LoRA to LoRA Studio's reader.
      const targets = loraTargetsOf(sd);
      const a = readLoraFile(files.kohya, targets).modules;
      const b = readLoraFile(files.diffusers, targets).modules;
      assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
    } finally {
      disposeStableDiffusion(sd);
    }
  }
});

test('a LoRA on every layer kind (LoCon resnets, samplers, proj, ff, both text encoders) written as kohya is used key for key by each tool', () => {
  for (const [label, modelDir] of [['tiny-sd', MODEL_DIR], ['tiny-sdxl', path.join(SDXL_DIR, 'model')]] as const) {
    const sd = loadStableDiffusion(modelDir);
    try {
      const m = namesOf(sd);
      const components = everyLayerKind(sd);
      const sgm = m.sdxl ? m.unet : undefined;
      const kohya = path.join(tmp, `${label}-all.safetensors`);
      const diffusers = path.join(tmp, `${label}-all-diffusers.safetensors`);
      writeLoraFile(kohya, 'kohya', { components, ...(sgm ? { unetSgmNames: sgm } : {}) });
      writeLoraFile(diffusers, 'diffusers', { components });
      const kKeys = keysOf(kohya);
      assert.ok(kKeys.some((k) => k.startsWith('lora_te')) && kKeys.some((k) => /resnets|in_layers/.test(k)), 'text-encoder and resnet keys are present');
      if (!m.sdxl) {
        // A1111's formula assumes SD 1.x's up_blocks.0 (an UpBlock2D: its upsampler at output_blocks.2.1); tiny-sd's
        // up_blocks.0 has attentions, so its upsampler sits at output_blocks.2.2 and A1111 would miss exactly that one
        // module under diffusers names — on a real SD 1.x the formula holds. Every other key must match.
        const left = a1111Oracle(m)(kKeys);
        assert.deepEqual(new Set(left.map((k) => k.split('.')[0])), new Set(['lora_unet_up_blocks_0_upsamplers_0_conv']), `${label}: A1111 leftovers ${left.join(', ')}`);
        for (const tool of ['ComfyUI', 'sd-scripts'] as const) assert.deepEqual(ORACLES[tool](m)(kKeys), [], `${label}: ${tool}`);
      } else {
        judge(m, kohya, diffusers, `${label} every layer`);
      }
      // diffusers: every module read back by the reader that matches diffusers' keys.
      const back = readLoraFile(diffusers, loraTargetsOf(sd));
      for (const [c, mods] of components) assert.equal(back.components!.get(c)!.size, mods.size, `${label} ${c} round trip`);
    } finally {
      disposeStableDiffusion(sd);
    }
  }
});
