// Other tools' LoRA files, against what diffusers 0.38 computed with them (test/fixtures/lora-formats,
// copied from ../shared/fixtures/lora-formats; MANIFEST.json says how each was made):
//   kohya_unet_te     kohya keys on 48 UNet attention projections and 30 CLIP text-encoder Linears, alpha = r/2
//   kohya_locon       kohya LoCon: Linear, 1×1 and 3×3 conv modules on resnets, proj_in/out, ff, up/downsamplers
//   comfyui_lorasave  ComfyUI's LoraSave layout (diffusion_model.<LDM path>, text_encoders.clip_l.…), fp16,
//                     the same LoRA as kohya_unet_te with alpha/rank folded in; diffusers itself cannot load it
//                     (it applies nothing), so kohya_unet_te's golden is its expected output (MANIFEST: same_lora_as).
// Images: `lora-studio generate` (the CLI, as a user runs it) with the golden latents, 4 DDIM steps, CFG 7.5,
// within one 8-bit level (as pipeline_ddim4: f32 rounding in ~4 UNet passes crosses a rounding boundary at
// most once). Model outputs: UNet and text encoder in-process, tolerances as the unet/text_encoder parity
// files (f32 accumulation over ≤ 2·1280-term sums).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { FIXTURES, MODEL_ARGS, REPO, fixturePipeline, golden, goldenTensor, manifest, nchwToNhwc, nhwcToNchw, assertClose, useTestBackend } from '../helpers/fixtures.js';
import { readAllFloat32, writeSafetensors } from '../../src/core/io/safetensors.js';
import { disposeStableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { loadLoras, loraTargetsOf } from '../../src/core/pipeline/loras.js';
import { readLoraFile } from '../../src/core/lora/lora_file.js';

const FORMATS = path.join(REPO, 'test/fixtures/lora-formats');
const M = JSON.parse(fs.readFileSync(path.join(FORMATS, 'MANIFEST.json'), 'utf8'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-formats-'));
const goldenOf = (name: string) => readAllFloat32(path.join(FORMATS, 'golden', `${name}.safetensors`)).tensors;
// These goldens were computed on one model (MANIFEST base_model: test/fixtures/<name>/model): they apply to
// a fixture of those weights (its folder or its single file), not to another model.
const BASE = /^test\/fixtures\/([^/]+)\/model/.exec(M.base_model as string)?.[1];
const SAME_MODEL = BASE === path.basename(FIXTURES) ? {} : { skip: `test/fixtures/lora-formats was made on ${BASE}, not on ${FIXTURES}'s model` };

async function cliImage(lora: string, latents: string, out: string): Promise<Buffer> {
  const meta = manifest().files.pipeline_ddim4.meta;
  const args = ['generate', ...MODEL_ARGS, '--prompt', meta.prompt, '--negative-prompt', meta.negative_prompt, '--scheduler', 'ddim', '--steps', String(meta.steps), '--guidance', String(meta.guidance_scale), '--latents', latents, '--lora', lora, '--out', out];
  execFileSync(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), ...args, '--backend', process.env.LORA_STUDIO_BACKEND ?? 'wasm'], { stdio: ['ignore', 'ignore', 'pipe'] });
  return sharp(out).removeAlpha().raw().toBuffer();
}

function maxLevelDiff(png: Buffer, expected: Float32Array): number {
  assert.equal(png.length, expected.length);
  let m = 0;
  for (let i = 0; i < png.length; i++) m = Math.max(m, Math.abs(png[i] - Math.round(expected[i] * 255)));
  return m;
}

for (const [name, goldenName] of [
  ['kohya_unet_te', 'kohya_unet_te'],
  ['kohya_locon', 'kohya_locon'],
  ['comfyui_lorasave', 'kohya_unet_te'],
] as const) {
  test(`${name}: lora-studio generate reproduces diffusers' pipeline_ddim4 image within one 8-bit level`, SAME_MODEL, async () => {
    const g = goldenOf(goldenName);
    const lat = g.get('latents')!;
    const latents = path.join(tmp, `${name}-latents.safetensors`);
    writeSafetensors(latents, { latents: { shape: lat.shape, data: lat.data } });
    const png = await cliImage(path.join(FORMATS, M.files[name].file), latents, path.join(tmp, `${name}.png`));
    const d = maxLevelDiff(png, g.get('image')!.data);
    const base = maxLevelDiff(png, golden('pipeline_ddim4').get('image')!.data);
    console.log(`${name}: max level difference ${d} (vs the image without LoRA: ${base})`);
    assert.ok(d <= 1, `${name}: ${d} levels from diffusers' image`);
    // The LoRA must visibly change the image, or the check above proves nothing.
    assert.ok(base > 2, `${name}: the LoRA barely changes the image (${base} levels)`);
  });
}

test('every module of each file is applied: UNet output and text-encoder hidden states match diffusers', SAME_MODEL, async () => {
  await useTestBackend();
  const sd = fixturePipeline();
  try {
    const targets = loraTargetsOf(sd);
    const ug = golden('unet');
    const sample = nchwToNhwc(goldenTensor(ug, 'sample')) as tf.Tensor4D;
    const timesteps = goldenTensor(ug, 'timesteps').toFloat() as tf.Tensor1D;
    const context = goldenTensor(ug, 'encoder_hidden_states') as tf.Tensor3D;
    const ids = tf.tidy(() => goldenTensor(golden('text_encoder'), 'input_ids').round().cast('int32')) as tf.Tensor2D;
    for (const [name, goldenName] of [
      ['kohya_unet_te', 'kohya_unet_te'],
      ['kohya_locon', 'kohya_locon'],
      ['comfyui_lorasave', 'kohya_unet_te'],
    ] as const) {
      const file = path.join(FORMATS, M.files[name].file);
      const w = readLoraFile(file, targets);
      // MANIFEST's own module counts: every module in the file is matched, none skipped.
      assert.deepEqual(w.skipped, [], `${name}: skipped keys`);
      const te = M.files[name].modules?.text_encoder ?? 0;
      assert.equal(w.components?.get('text_encoder')?.size ?? 0, te, `${name}: text-encoder modules`);
      const unetModules = M.files[name].modules?.unet ?? Object.values(M.files[name].modules_per_kind as Record<string, number>).reduce((a, b) => a + b, 0);
      assert.equal(w.modules.size, unetModules, `${name}: UNet modules`);
      const g = goldenOf(goldenName);
      const set = loadLoras(sd, [{ file, scale: 1 }]);
      await assertClose(nhwcToNchw(sd.unet.forward(sample, timesteps, context, set.lookup)), tf.tensor(g.get('unet_out')!.data, g.get('unet_out')!.shape), 1e-5, `${name} unet_out`, 1e-5);
      if (te) {
        const out = sd.textEncoder.forward(ids, set.textEncoderLookup);
        await assertClose(out.lastHiddenState, tf.tensor(g.get('te_last_hidden_state')!.data, g.get('te_last_hidden_state')!.shape), 1e-5, `${name} te_last_hidden_state`, 1e-5);
        await assertClose(out.penultimateHiddenState, tf.tensor(g.get('te_penultimate_hidden_state')!.data, g.get('te_penultimate_hidden_state')!.shape), 1e-5, `${name} te_penultimate`, 1e-5);
        await assertClose(out.poolerOutput, tf.tensor(g.get('te_pooler_output')!.data, g.get('te_pooler_output')!.shape), 1e-5, `${name} te_pooler_output`, 1e-5);
      }
      set.dispose();
    }
  } finally {
    disposeStableDiffusion(sd);
  }
});
