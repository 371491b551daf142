// modelSource: the one test of "is this a base model" that the disk checks, the notebook worker, the
// language server and the extension's pickers share — folders, single files (told from the header alone),
// and each kind of wrong path with its message.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { modelSource } from '../../src/core/config/model_source.js';
import { writeSafetensors } from '../../src/core/io/safetensors.js';
import { SINGLE_FILE_FAMILY_RESOLUTION } from '../../src/core/io/single_file.js';
import { STANDARD_CONFIGS } from '../../src/core/models/from_single_file.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'model-source-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const t = { shape: [1], data: [0] };

test('a diffusers folder and single-file checkpoints of each family are models; the family gives the native size', () => {
  const folder = path.join(tmp, 'sd');
  fs.mkdirSync(folder);
  fs.writeFileSync(path.join(folder, 'model_index.json'), '{}');
  assert.deepEqual(modelSource(folder), { kind: 'folder', path: folder });
  const unet = { 'model.diffusion_model.input_blocks.0.0.weight': { shape: [2, 4, 1, 1], data: new Float32Array(8) }, 'first_stage_model.encoder.conv_in.weight': t };
  const xl = path.join(tmp, 'sdxl.safetensors');
  writeSafetensors(xl, { ...unet, 'conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias': t });
  const s = modelSource(xl);
  assert.equal(s.kind, 'single-file');
  assert.equal(s.kind === 'single-file' && s.label, 'single-file SDXL base checkpoint');
  assert.equal(s.kind === 'single-file' && s.resolution, 1024);
  // The extension reads no model configs: the sizes it gets must be the bundled configs' sample_size × 8.
  for (const [family, size] of Object.entries(SINGLE_FILE_FAMILY_RESOLUTION)) assert.equal(size, Number(STANDARD_CONFIGS[family as keyof typeof STANDARD_CONFIGS].unet.sample_size) * 8, family);
});

test('what is not a model says what it is and the fix', () => {
  const problem = (p: string) => {
    const s = modelSource(p);
    assert.equal(s.kind, 'problem', p);
    return s.kind === 'problem' ? s.message : '';
  };
  assert.equal(problem(path.join(tmp, 'gone.safetensors')), `file not found: ${path.join(tmp, 'gone.safetensors')}`);
  assert.equal(problem(path.join(tmp, 'gone')), `folder not found: ${path.join(tmp, 'gone')}`);
  fs.mkdirSync(path.join(tmp, 'empty'));
  assert.match(problem(path.join(tmp, 'empty')), /has no model_index\.json: it is not a diffusers pipeline folder\. .*or a single-file \.safetensors checkpoint/);
  fs.writeFileSync(path.join(tmp, 'model.ckpt'), 'PK');
  assert.match(problem(path.join(tmp, 'model.ckpt')), /is a pickle file, which is never loaded: convert it to \.safetensors/);
  const lora = path.join(tmp, 'lora.safetensors');
  writeSafetensors(lora, { 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight': t });
  assert.match(problem(lora), /this is a LoRA file \(key "lora_unet_down_blocks_0_attentions_0_proj_in\.lora_down\.weight"\), not a base model/);
  fs.writeFileSync(path.join(tmp, 'cut.safetensors'), 'x');
  assert.match(problem(path.join(tmp, 'cut.safetensors')), /cut\.safetensors.*too short for a safetensors header/);
});
