// Disk checks of a run config: the model folder, the dataset (counted), the output folder and the
// checkpoint to resume from — on the project's fixtures and on small broken folders made here.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { checkRunConfigOnDisk, resolveCheckpoint, type DiskReport } from '../../src/core/config/disk_checks.js';
import { configFromFlags } from '../../src/core/config/flags.js';
import { loadRunConfig, requireRunConfig, RunConfigError } from '../../src/core/config/load.js';
import type { RunConfig } from '../../src/core/config/run_config.js';
import { defaultRunConfig } from '../../src/core/config/schema.js';
import { writeSafetensors } from '../../src/core/io/safetensors.js';
import { MODEL_DIR, TINY_SHAPES } from '../helpers/fixtures.js';

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-disk-'));
after(() => fs.rmSync(TMP, { recursive: true, force: true }));
const DATASET_CORNER = path.join(TINY_SHAPES, 'dataset-corner');
const PNG_1PX = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex');

function config(over: Partial<RunConfig>): RunConfig {
  return { ...defaultRunConfig(), pretrained_model_name_or_path: MODEL_DIR, train_data_dir: DATASET_CORNER, output_dir: path.join(TMP, 'unused-out'), ...over };
}

function findings(r: DiskReport, severity?: string): [string, string, string][] {
  return r.findings.filter((f) => !severity || f.severity === severity).map((f) => [f.key, f.severity, f.message]);
}

let n = 0;
function dir(files: Record<string, string | Buffer> = {}): string {
  const d = path.join(TMP, `d${n++}`);
  fs.mkdirSync(d, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(d, name)), { recursive: true });
    fs.writeFileSync(path.join(d, name), content);
  }
  return d;
}

/** A Stable-Diffusion-shaped model folder with one-tensor weights: VAE 4 blocks (factor 8), UNet 4 down blocks, sample 64. */
function fakeModel(change: (d: string) => void = () => {}): string {
  const d = dir({
    'model_index.json': JSON.stringify({ _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'] }),
    'unet/config.json': JSON.stringify({ sample_size: 64, down_block_types: ['a', 'b', 'c', 'd'] }),
    'vae/config.json': JSON.stringify({ block_out_channels: [1, 2, 3, 4] }),
    'text_encoder/config.json': '{}',
    'tokenizer/vocab.json': '{}',
    'tokenizer/merges.txt': '',
    'scheduler/scheduler_config.json': '{}',
  });
  for (const c of ['unet/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.safetensors', 'text_encoder/model.safetensors']) {
    writeSafetensors(path.join(d, c), { w: { shape: [1], data: new Float32Array([1]) } });
  }
  change(d);
  return d;
}

test("the project's fixtures pass: tiny-sd model, tiny-shapes dataset counted", () => {
  const r = checkRunConfigOnDisk(config({ resolution: 64 }), TMP);
  // The counts are a hint (shown faintly in the editor, not listed in the Problems panel).
  assert.deepEqual(findings(r), [['train_data_dir', 'hint', '16 images, 16 captions (metadata.jsonl)']]);
  assert.deepEqual(r.dataset, { dir: DATASET_CORNER, images: 16, captions: 16, captionSource: 'metadata.jsonl', examples: 16 });
  assert.equal(r.facts.numExamples, 16);
  assert.deepEqual(r.model, { dir: MODEL_DIR, pipeline: 'StableDiffusionPipeline', vaeScaleFactor: 2, nativeResolution: 64 });
  assert.ok(r.watched.includes(MODEL_DIR) && r.watched.includes(DATASET_CORNER));
  // tiny-shapes: VAE factor 4, UNet 3 blocks → latents halve twice: sizes must be multiples of 16.
  const shapes = checkRunConfigOnDisk(config({ pretrained_model_name_or_path: path.join(TINY_SHAPES, 'model'), resolution: 72 }), TMP);
  assert.equal(shapes.model?.nativeResolution, 64);
  const [f] = shapes.findings.filter((x) => x.key === 'resolution');
  assert.equal(f.severity, 'warning');
  assert.match(f.message, /^72 is not a multiple of 16 \(this model's VAE factor 4 × the UNet's 2 downsamplings\).* use 80$/);
  assert.deepEqual(f.suggest, { key: 'resolution', value: '80' });
});

test('model folder: missing, a hub id, single files (truncated, LoRA, whole), not diffusers, SDXL, pickle weights, Git LFS pointers', () => {
  const missing = checkRunConfigOnDisk(config({ pretrained_model_name_or_path: './nope' }), TMP);
  assert.deepEqual(findings(missing, 'error'), [['pretrained_model_name_or_path', 'error', `folder not found: ${path.join(TMP, 'nope')}`]]);

  // A Hub id not in the cache: downloaded when the run starts (checked in the cache once it is there: test/hub/).
  const saved = { ...process.env };
  Object.assign(process.env, { HF_HUB_CACHE: path.join(TMP, 'empty-hub-cache'), HF_ENDPOINT: 'https://huggingface.co' });
  const hubReport = checkRunConfigOnDisk(config({ pretrained_model_name_or_path: 'stable-diffusion-v1-5/stable-diffusion-v1-5' }), TMP);
  assert.deepEqual(findings(hubReport, 'error'), []);
  assert.match(hubReport.findings[0].message, /^Hub model: downloaded from https:\/\/huggingface\.co\/stable-diffusion-v1-5\/stable-diffusion-v1-5 into .*empty-hub-cache when the run starts$/);
  process.env.HF_HUB_OFFLINE = '1';
  assert.match(findings(checkRunConfigOnDisk(config({ pretrained_model_name_or_path: 'stable-diffusion-v1-5/stable-diffusion-v1-5' }), TMP), 'error')[0][2], /is not in the Hugging Face cache .*HF_HUB_OFFLINE is set/);
  process.env = saved;

  // A single file that is not there is a missing file, not a missing folder.
  assert.deepEqual(findings(checkRunConfigOnDisk(config({ pretrained_model_name_or_path: './nope.safetensors' }), TMP), 'error'), [['pretrained_model_name_or_path', 'error', `file not found: ${path.join(TMP, 'nope.safetensors')}`]]);
  // A truncated single file is refused by the safetensors reader; a LoRA file says it is one; a whole checkpoint
  // is used with its family's standard architecture and the bundled tokenizer unless a config folder is named.
  const single = dir({ 'sd15.safetensors': 'x' });
  assert.match(findings(checkRunConfigOnDisk(config({ pretrained_model_name_or_path: path.join(single, 'sd15.safetensors') }), TMP), 'error')[0][2], /too short for a safetensors header/);
  const lora = path.join(single, 'lora.safetensors');
  writeSafetensors(lora, { 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight': { shape: [1], data: [0] } });
  assert.match(findings(checkRunConfigOnDisk(config({ pretrained_model_name_or_path: lora }), TMP), 'error')[0][2], /this is a LoRA file/);
  const whole = path.join(single, 'whole.safetensors');
  const t = { shape: [1], data: [0] };
  writeSafetensors(whole, { 'model.diffusion_model.out.2.bias': t, 'first_stage_model.encoder.conv_in.bias': t, 'cond_stage_model.transformer.text_model.embeddings.position_embedding.weight': t });
  const bundled = checkRunConfigOnDisk(config({ pretrained_model_name_or_path: whole }), TMP);
  assert.equal(bundled.model?.pipeline, 'single-file v1 checkpoint');
  assert.deepEqual(findings(bundled, 'error'), []);
  assert.match(bundled.findings.find((f) => f.key === 'pretrained_model_config')!.message, /^Stable Diffusion 1\.x single file: the standard Stable Diffusion 1\.x architecture and CLIP's bundled tokenizer are used; .* set pretrained_model_config/);
  const badConfig = checkRunConfigOnDisk(config({ pretrained_model_name_or_path: whole, pretrained_model_config: './no-such-config' }), TMP);
  assert.deepEqual(findings(badConfig, 'error').map((f) => f[0]), ['pretrained_model_config']);

  const notDiffusers = dir({ 'readme.md': 'hi' });
  assert.match(findings(checkRunConfigOnDisk(config({ pretrained_model_name_or_path: notDiffusers }), TMP), 'error')[0][2], /no model_index\.json — this is not a diffusers pipeline folder/);

  const sdxl = fakeModel((d) => fs.writeFileSync(path.join(d, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionXLPipeline', text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'] })));
  // SDXL is supported: its folder is checked for text_encoder_2/ and tokenizer_2/ too.
  assert.ok(findings(checkRunConfigOnDisk(config({ pretrained_model_name_or_path: sdxl }), TMP), 'error').some((f) => /text_encoder_2\/ is missing/.test(f[2])));

  const pickle = fakeModel((d) => {
    fs.rmSync(path.join(d, 'unet/diffusion_pytorch_model.safetensors'));
    fs.writeFileSync(path.join(d, 'unet/diffusion_pytorch_model.bin'), 'pickle');
  });
  const pk = findings(checkRunConfigOnDisk(config({ pretrained_model_name_or_path: pickle, resolution: 512 }), TMP), 'error');
  assert.equal(pk.length, 1);
  assert.match(pk[0][2], /diffusion_pytorch_model\.bin: this is a pickle checkpoint/);

  const lfs = fakeModel((d) => fs.writeFileSync(path.join(d, 'vae/diffusion_pytorch_model.safetensors'), 'version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 334643268\n'));
  assert.match(findings(checkRunConfigOnDisk(config({ pretrained_model_name_or_path: lfs, resolution: 512 }), TMP), 'error')[0][2], /is a Git LFS pointer, not the weights: run `git lfs pull`/);

  const noTokenizer = fakeModel((d) => fs.rmSync(path.join(d, 'tokenizer/merges.txt')));
  assert.match(findings(checkRunConfigOnDisk(config({ pretrained_model_name_or_path: noTokenizer, resolution: 512 }), TMP), 'error')[0][2], /needs vocab\.json and merges\.txt, or tokenizer\.json/);

  // A sound SD-shaped folder at its native size: nothing to say about the model.
  const good = fakeModel();
  const ok = checkRunConfigOnDisk(config({ pretrained_model_name_or_path: good, resolution: 512 }), TMP);
  assert.deepEqual(findings(ok).filter(([k]) => k !== 'train_data_dir'), []);
  assert.equal(ok.model?.nativeResolution, 512);
  const off = checkRunConfigOnDisk(config({ pretrained_model_name_or_path: good, resolution: 520 }), TMP);
  assert.match(off.findings.find((f) => f.key === 'resolution')!.message, /^520 is not a multiple of 64 .* use 512$/);
});

test('dataset: missing, empty, other image types, .txt captions, metadata.jsonl mistakes', () => {
  const check = (d: string, over: Partial<RunConfig> = {}) => checkRunConfigOnDisk(config({ train_data_dir: d, resolution: 64, ...over }), TMP);
  assert.deepEqual(findings(check(path.join(TMP, 'no-data'))), [['train_data_dir', 'error', `folder not found: ${path.join(TMP, 'no-data')}`]]);
  assert.match(findings(check(dir({ 'notes.md': '' })))[0][2], /^holds no images \(PNG, JPEG or WebP\)/);
  assert.match(findings(check(dir({ 'a.bmp': '', 'b.bmp': '' })))[0][2], /^holds no PNG, JPEG or WebP images, only 2 \.bmp file\(s\): convert them to PNG$/);

  const txt = check(dir({ 'a.png': PNG_1PX, 'a.txt': 'a cat', 'b.jpg': PNG_1PX, 'b.txt': 'a dog', 'sub/c.webp': PNG_1PX }));
  assert.deepEqual(findings(txt), [
    ['train_data_dir', 'warning', `1 image has no .txt caption beside it: ${path.join('sub', 'c.webp')}`],
    ['train_data_dir', 'hint', '3 images, 2 captions (.txt files)'],
  ]);
  assert.equal(txt.facts.numExamples, 3);
  assert.match(findings(check(dir({ 'a.png': PNG_1PX })))[0][2], /^no captions: found 1 image but neither metadata\.jsonl nor \.txt caption files/);

  const column = check(dir({ 'a.png': PNG_1PX, 'metadata.jsonl': '{"file_name": "a.png", "caption": "a cat"}\n' }));
  assert.deepEqual(column.findings.filter((f) => f.severity === 'error'), [
    {
      key: 'caption_column',
      severity: 'error',
      message: 'metadata.jsonl has no `text` field (its fields: file_name, caption) — set caption_column: caption',
      suggest: { key: 'caption_column', value: 'caption' },
    },
  ]);
  assert.deepEqual(findings(check(dir({ 'a.png': PNG_1PX, 'metadata.jsonl': '{"file_name": "a.png", "caption": "a cat"}\n' }), { caption_column: 'caption' })), [
    ['train_data_dir', 'hint', '1 image, 1 caption (metadata.jsonl)'],
  ]);

  const messy = check(
    dir({
      'a.png': PNG_1PX,
      'b.png': PNG_1PX,
      'extra.png': PNG_1PX,
      'metadata.jsonl': '{"file_name": "a.png", "text": "a cat"}\n{"file_name": "b.png", "text": ""}\n{"file_name": "gone.png", "text": "x"}\nnot json\n',
    }),
  );
  assert.deepEqual(findings(messy), [
    ['train_data_dir', 'error', 'metadata.jsonl: line 4 is not a JSON object ({"file_name": "…", "text": "…"} per line)'],
    ['train_data_dir', 'error', 'metadata.jsonl names 1 image that is not in the folder: gone.png (line 3)'],
    ['train_data_dir', 'warning', 'metadata.jsonl: line 2 has no caption in `text` (an empty caption is trained)'],
    ['train_data_dir', 'warning', '1 image is not listed in metadata.jsonl and will not be used: extra.png'],
    ['train_data_dir', 'hint', '3 images, 1 caption (metadata.jsonl)'],
  ]);
  assert.equal(messy.facts.numExamples, 2);
});

test('output_dir: a finished LoRA is a warning, earlier checkpoints a note, a file an error', () => {
  const out = dir({ 'pytorch_lora_weights.safetensors': 'x' });
  const r = checkRunConfigOnDisk(config({ output_dir: out, resolution: 64 }), TMP);
  assert.match(findings(r, 'warning')[0][2], /^already holds a trained LoRA \(pytorch_lora_weights\.safetensors, \d{4}-\d\d-\d\d \d\d:\d\d\) that this run will overwrite/);
  const ck = dir({ 'checkpoint-10/x': '', 'checkpoint-9/x': '' });
  assert.deepEqual(findings(checkRunConfigOnDisk(config({ output_dir: ck, resolution: 64 }), TMP), 'info').filter(([k]) => k === 'output_dir'), [
    ['output_dir', 'info', 'holds checkpoint-9, checkpoint-10 from an earlier run: `resume_from_checkpoint: latest` continues it'],
  ]);
  const file = path.join(dir({ f: 'x' }), 'f');
  assert.deepEqual(findings(checkRunConfigOnDisk(config({ output_dir: file, resolution: 64 }), TMP), 'error'), [
    ['output_dir', 'error', `${file} is a file — output_dir must be a folder (it is created when missing)`],
  ]);
});

test('resume_from_checkpoint: latest (with and without checkpoints), a path, a bare name in output_dir, mistakes', () => {
  const out = dir({ 'checkpoint-10/state.json': '{}', 'checkpoint-9/state.json': '{}', 'checkpoint-20/.keep': '' });
  fs.rmSync(path.join(out, 'checkpoint-20/.keep'));
  const resume = (value: string, outputDir = out) => checkRunConfigOnDisk(config({ output_dir: outputDir, resume_from_checkpoint: value, resolution: 64 }), TMP);

  const latest = resume('latest');
  assert.equal(latest.resumeFrom, path.join(out, 'checkpoint-20'));
  assert.equal(latest.facts.resumeStep, 20);
  assert.deepEqual(findings(resume('latest', dir())).filter(([k]) => k === 'resume_from_checkpoint')[0].slice(1), ['info', `no checkpoint in ${path.join(TMP, `d${n - 1}`)} yet: the run starts from step 0`]);

  const byPath = resume(path.join(out, 'checkpoint-9'));
  assert.equal(byPath.resumeFrom, path.join(out, 'checkpoint-9'));
  assert.deepEqual(findings(byPath).filter(([k]) => k === 'resume_from_checkpoint'), []);
  // diffusers joins a bare name to output_dir.
  assert.equal(resume('checkpoint-10').resumeFrom, path.join(out, 'checkpoint-10'));
  assert.equal(resolveCheckpoint('checkpoint-10', TMP, out), path.join(out, 'checkpoint-10'));

  const missing = findings(resume('checkpoint-5'), 'error');
  assert.equal(missing.length, 1);
  assert.match(missing[0][2], /^checkpoint not found: .*checkpoint-5 — use `latest` or a checkpoint-<step> folder \(.* has: checkpoint-9, checkpoint-10, checkpoint-20\)$/);
  assert.match(findings(resume(out), 'error')[0][2], /is a run's output folder, not a checkpoint — use `latest` or one of checkpoint-9, checkpoint-10, checkpoint-20$/);
  assert.match(findings(resume(path.join(out, 'checkpoint-20')), 'error')[0][2], /checkpoint-20 is empty: the checkpoint was not written completely/);
});

test('loadRunConfig: paths relative to the config, disk problems at their lines, run length from the dataset size', () => {
  const d = dir();
  fs.mkdirSync(path.join(d, 'data'));
  for (const f of fs.readdirSync(DATASET_CORNER)) fs.copyFileSync(path.join(DATASET_CORNER, f), path.join(d, 'data', f));
  const file = path.join(d, 'run.lora.yaml');
  fs.writeFileSync(
    file,
    [
      `pretrained_model_name_or_path: ${path.relative(d, path.join(TINY_SHAPES, 'model'))}`,
      'train_data_dir: ./data',
      'resolution: 64',
      'train_batch_size: 4',
      'num_train_epochs: 2', // 16 images / 4 = 4 steps per epoch → 8 steps
      'checkpointing_steps: 10',
      'output_dir: out',
      '',
    ].join('\n'),
  );
  const r = loadRunConfig(file);
  assert.deepEqual(
    r.problems.map((p) => [p.key, p.severity, p.line, p.message]),
    [
      ['train_data_dir', 'hint', 2, '`train_data_dir`: 16 images, 16 captions (metadata.jsonl)'],
      ['checkpointing_steps', 'warning', 6, '`checkpointing_steps` is 10 but the run has 8 steps (2 epochs × 4 steps (16 examples / batch 4)): no checkpoint will be saved — use at most 8'],
    ],
  );
  const c = requireRunConfig(r);
  assert.equal(c.pretrained_model_name_or_path, path.join(TINY_SHAPES, 'model'));
  assert.equal(c.train_data_dir, path.join(d, 'data'));
  assert.equal(c.output_dir, path.join(d, 'out'));

  // A resume past the end of the run.
  fs.mkdirSync(path.join(d, 'out/checkpoint-8'), { recursive: true });
  fs.writeFileSync(path.join(d, 'out/checkpoint-8/state.json'), '{}');
  fs.appendFileSync(file, 'resume_from_checkpoint: latest\n');
  const resumed = loadRunConfig(file);
  assert.deepEqual(
    resumed.problems.filter((p) => p.key === 'resume_from_checkpoint').map((p) => [p.severity, p.line, p.message]),
    [
      ['warning', 8, 'the checkpoint is at step 8 but the run has 8 steps (2 epochs × 4 steps (16 examples / batch 4)): there is nothing left to train — raise `num_train_epochs` to continue'],
      ['info', 8, '`resume_from_checkpoint`: resumes from checkpoint-8'],
    ],
  );
  assert.equal(resumed.config?.resume_from_checkpoint, 'latest');

  // Errors: no config, and a RunConfigError listing them for a terminal.
  fs.writeFileSync(file, 'pretrained_model_name_or_path: ./missing\ntrain_data_dir: ./data\nrank: 0\nmax_train_steps: 5\n');
  const bad = loadRunConfig(file);
  assert.equal(bad.config, undefined);
  assert.throws(
    () => requireRunConfig(bad),
    (e: unknown) =>
      e instanceof RunConfigError &&
      e.message === [`${file}:1:32: error: \`pretrained_model_name_or_path\`: folder not found: ${path.join(d, 'missing')}`, `${file}:3:7: error: \`rank\` must be an integer ≥ 1, got 0`].join('\n'),
  );
  assert.deepEqual(
    loadRunConfig(path.join(d, 'nope.lora.yaml')).problems.map((p) => p.message),
    ['cannot read the run config: file not found'],
  );
});

test('the disk checks run for flags too, relative to the working directory', () => {
  const r = configFromFlags(['--pretrained_model_name_or_path=model', '--train_data_dir=dataset-corner', '--resolution=64', '--max_train_steps=3', `--output_dir=${path.join(TMP, 'flags-out')}`], { cwd: TINY_SHAPES });
  assert.deepEqual(r.problems.map((p) => [p.line, p.message]), [[0, '`--train_data_dir`: 16 images, 16 captions (metadata.jsonl)']]);
  assert.equal(r.config?.train_data_dir, DATASET_CORNER);
});

test('backend: tensorflow without @tensorflow/tfjs-node-gpu is an error at validation, not at run time', () => {
  // This project does not install it (its install downloads libtensorflow); the check resolves it as the trainer does.
  const r = checkRunConfigOnDisk(config({ resolution: 64, backend: 'tensorflow' }), TMP);
  const [f] = r.findings.filter((x) => x.key === 'backend');
  assert.equal(f?.severity, 'error');
  assert.match(f.message, /needs @tensorflow\/tfjs-node-gpu, which is not installed: install it .* or choose webgpu, wasm or cpu/);
  assert.deepEqual(f.suggest, { key: 'backend', value: 'auto' });
  assert.deepEqual(checkRunConfigOnDisk(config({ resolution: 64, backend: 'wasm' }), TMP).findings.filter((x) => x.key === 'backend'), []);
});
