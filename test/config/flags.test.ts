// The guide's command-line form: `--key=value`, `--key value` and switches, through the same validation
// as YAML, with problems that name the flag.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configFromFlags, parseFlags } from '../../src/core/config/flags.js';
import { formatProblems } from '../../src/core/config/problems.js';
import { defaultRunConfig } from '../../src/core/config/schema.js';

const NO_DISK = { disk: false, cwd: '/work/runs' };

test("the guide's flags, in both forms, become the config", () => {
  const r = configFromFlags(
    [
      '--pretrained_model_name_or_path=./sd15',
      '--train_data_dir',
      'pics',
      '--resolution=512',
      '--center_crop',
      '--random_flip',
      '--train_batch_size=1',
      '--gradient_accumulation_steps',
      '4',
      '--max_train_steps=15000',
      '--learning_rate=1e-04',
      '--lr_scheduler=cosine',
      '--lr_warmup_steps=0',
      '--noise_offset',
      '-0',
      '--seed=1337',
      '--validation_prompt=A naruto with blue eyes.',
      '--save_formats=diffusers,kohya',
      '--cache_latents=false',
      '--snr_gamma=None',
    ],
    NO_DISK,
  );
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.config, {
    ...defaultRunConfig(),
    pretrained_model_name_or_path: '/work/runs/sd15',
    train_data_dir: '/work/runs/pics',
    output_dir: '/work/runs/sd-model-finetuned-lora',
    resolution: 512,
    center_crop: true,
    random_flip: true,
    train_batch_size: 1,
    gradient_accumulation_steps: 4,
    max_train_steps: 15000,
    learning_rate: 1e-4,
    lr_scheduler: 'cosine',
    lr_warmup_steps: 0,
    noise_offset: -0,
    seed: 1337,
    validation_prompt: 'A naruto with blue eyes.',
    save_formats: ['diffusers', 'kohya'],
    cache_latents: false,
    snr_gamma: null,
  });
});

test('problems name the flag and have no line', () => {
  const r = configFromFlags(
    ['--pretrained_model_name_or_path=m', '--rank=0', '--learnig_rate=1e-4', '--resolution', 'big', '--lr_scheduler=cosin', '--max_train_steps=10', 'extra', '--center_crop=yes'],
    NO_DISK,
  );
  assert.equal(r.config, undefined);
  assert.deepEqual(
    r.problems.map((p) => p.message),
    [
      'unexpected argument `extra`: settings are flags such as --rank=4 (or give a *.lora.yaml file)',
      'no training data: set `--train_data_dir` (a folder of images with captions) or `--dataset_name` (a Hub dataset)',
      '`--rank` must be an integer ≥ 1, got 0',
      'unknown flag `--learnig_rate` — did you mean `--learning_rate`?',
      '`--resolution` must be an integer ≥ 8 and a multiple of 8, got "big"',
      '`--lr_scheduler` must be one of `linear`, `cosine`, `cosine_with_restarts`, `polynomial`, `constant`, `constant_with_warmup`, got "cosin" — did you mean `cosine`?',
      '`--center_crop` must be true or false, got "yes" — YAML 1.2 reads `yes` as text; write `true`',
    ],
  );
  assert.ok(r.problems.every((p) => p.line === 0 && p.fix === undefined));
  assert.equal(formatProblems(r.problems, 'command line').split('\n')[2], 'command line: error: `--rank` must be an integer ≥ 1, got 0');
});

test("diffusers flags LoRA Studio ignores warn; Hub datasets are data; a flag given twice keeps the last", () => {
  const r = configFromFlags(
    ['--pretrained_model_name_or_path=m', '--train_data_dir=d', '--max_train_steps=10', '--mixed_precision=fp16', '--report_to', 'wandb', '--push_to_hub', '--use_8bit_adam', '--gradient_checkpointing', '--rank=4', '--rank=8'],
    NO_DISK,
  );
  assert.deepEqual(
    r.problems.map((p) => [p.key, p.severity]),
    [
      ['mixed_precision', 'warning'],
      ['report_to', 'warning'],
      ['use_8bit_adam', 'warning'],
      ['rank', 'warning'],
    ],
  );
  assert.equal(r.problems[3].message, '`--rank` is given more than once; the last value wins');
  assert.equal(r.config?.rank, 8);
  // gradient_checkpointing is a key of ours (a switch: it took no value).
  assert.equal(r.config?.gradient_checkpointing, true);
  // `--push_to_hub` is a switch: it did not eat the next flag.
  assert.equal(parseFlags(['--push_to_hub', '--rank=2']).entries.length, 2);

  const hub = configFromFlags(['--pretrained_model_name_or_path=m', '--dataset_name=lambdalabs/naruto-blip-captions', '--max_train_steps=10'], NO_DISK);
  assert.deepEqual(hub.problems, [], 'a Hub dataset replaces train_data_dir');
  assert.equal(hub.config?.dataset_name, 'lambdalabs/naruto-blip-captions');
});

test('--flag value: switches take no value unless it is true/false; negative numbers are values', () => {
  const p = parseFlags(['--center_crop', 'false', '--random_flip', '--noise_offset', '-0.5', '--seed', '7']);
  assert.deepEqual(
    p.entries.map((e) => [e.key, e.value]),
    [
      ['center_crop', false],
      ['random_flip', true],
      ['noise_offset', -0.5],
      ['seed', 7],
    ],
  );
  assert.deepEqual(p.positionals, []);
  assert.equal(
    configFromFlags(['--pretrained_model_name_or_path=m', '--train_data_dir=d', '--max_train_steps=10', '--noise_offset', '-0.5'], NO_DISK).problems[0].message,
    '`--noise_offset` must be a number ≥ 0, got -0.5',
  );
  assert.equal(configFromFlags(['--pretrained_model_name_or_path=m', '--train_data_dir=d', '--rank'], NO_DISK).problems.find((x) => x.key === 'rank')?.message, '`--rank` has no value: it must be an integer ≥ 1 (default 4); give a value or remove the flag');
});
