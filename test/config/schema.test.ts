// The one run-config definition: it covers the RunConfig type exactly, its defaults obey its own
// constraints, its values print as YAML that reads back the same, and the JSON Schema made from it is valid.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import type { RunConfig } from '../../src/core/config/run_config.js';
import {
  defaultRunConfig,
  describeExpected,
  describeRange,
  formatValue,
  GUIDE_ONLY_KEYS,
  KEY_SPECS,
  keyDocumentation,
  RUN_CONFIG_KEYS,
  runConfigJsonSchema,
} from '../../src/core/config/schema.js';

// Type-checked against RunConfig: a key added to the type and not here (or here and not there) fails tsc.
const EVERY_KEY: { [K in keyof RunConfig]: 0 } = {
  pretrained_model_name_or_path: 0, pretrained_model_config: 0, variant: 0, train_data_dir: 0, image_column: 0, caption_column: 0, resolution: 0, center_crop: 0, random_flip: 0,
  max_train_samples: 0, train_batch_size: 0, gradient_accumulation_steps: 0, gradient_checkpointing: 0, num_train_epochs: 0, max_train_steps: 0, learning_rate: 0, scale_lr: 0,
  lr_scheduler: 0, lr_warmup_steps: 0, adam_beta1: 0, adam_beta2: 0, adam_weight_decay: 0, adam_epsilon: 0, max_grad_norm: 0, rank: 0, snr_gamma: 0,
  noise_offset: 0, prediction_type: 0, seed: 0, output_dir: 0, checkpointing_steps: 0, checkpoints_total_limit: 0, resume_from_checkpoint: 0,
  validation_prompt: 0, num_validation_images: 0, validation_epochs: 0, save_formats: 0, backend: 0, cache_latents: 0,
  revision: 0, dataset_name: 0, dataset_config_name: 0, cache_dir: 0, push_to_hub: 0, hub_model_id: 0, hub_token: 0,
  enable_bucket: 0, min_bucket_reso: 0, max_bucket_reso: 0, bucket_reso_steps: 0, validation_split: 0, caption_dropout_rate: 0, shuffle_caption: 0,
  keep_tokens: 0, lora_alpha: 0, sample_prompts: 0, sample_every_n_steps: 0, sample_sampler: 0, network_type: 0, lora_dropout: 0, train_text_encoder: 0,
  text_encoder_lr: 0, network_weights: 0, output_name: 0, save_precision: 0, no_metadata: 0,
};

test('the schema defines every RunConfig key once, and nothing else', () => {
  assert.deepEqual(RUN_CONFIG_KEYS.map((s) => s.key).sort(), Object.keys(EVERY_KEY).sort());
  assert.equal(KEY_SPECS.size, RUN_CONFIG_KEYS.length);
  assert.deepEqual(Object.keys(defaultRunConfig()).sort(), Object.keys(EVERY_KEY).sort());
  for (const g of GUIDE_ONLY_KEYS) assert.ok(!KEY_SPECS.has(g.key), `${g.key} is both a key and ignored`);
  for (const s of RUN_CONFIG_KEYS) {
    assert.ok(s.summary.endsWith('.') && s.description.length > 20, `${s.key}: document it`);
    if (s.type === 'enum' || s.type === 'list') assert.ok(s.values?.length, `${s.key}: values`);
  }
});

test("defaults are diffusers' where diffusers has the flag, and obey the schema's own constraints", () => {
  const d = defaultRunConfig();
  // train_text_to_image_lora.py parse_args() defaults.
  assert.deepEqual(
    [d.resolution, d.train_batch_size, d.num_train_epochs, d.max_train_steps, d.learning_rate, d.lr_scheduler, d.lr_warmup_steps, d.rank, d.checkpointing_steps, d.output_dir],
    [512, 16, 100, null, 1e-4, 'constant', 500, 4, 500, 'sd-model-finetuned-lora'],
  );
  const validate = new Ajv({ allErrors: true, strict: true }).compile(runConfigJsonSchema());
  const filled = { ...d, pretrained_model_name_or_path: './m', train_data_dir: './d' };
  assert.ok(validate(filled), JSON.stringify(validate.errors));
  // And the schema does reject: a missing required key, an out-of-range value, an unknown key.
  assert.equal(validate({ ...filled, rank: 0 }), false);
  assert.equal(validate({ ...filled, learnig_rate: 1 }), false);
  assert.equal(validate(d), false);
});

test('the editor JSON Schema (for yaml.schemas) documents keys and marks ignored diffusers flags deprecated', () => {
  const s = runConfigJsonSchema({ forEditors: true }) as { properties: Record<string, Record<string, unknown>>; required: string[] };
  assert.deepEqual(s.required, ['pretrained_model_name_or_path']);
  assert.match(String(s.properties.rank.markdownDescription), /default: `4`/);
  assert.match(String(s.properties.mixed_precision.deprecationMessage), /^Ignored by LoRA Studio: training runs in float32/);
  // Still a valid draft-07 schema for a non-strict validator.
  const ajv = new Ajv({ strict: false });
  assert.ok(ajv.validateSchema(s));
});

test('values print as YAML that reads back as the same value', () => {
  const samples: unknown[] = ['./model', '1e-4', 'yes', 'a: b', '- x', '#x', 'x #y', '', ' pad', 'C:\\models\\sd', 'A naruto with blue eyes.', 'null', 1e-4, 1e-8, 0.9, 512, -0.5, null, true, ['diffusers', 'kohya']];
  for (const s of RUN_CONFIG_KEYS) samples.push(s.default);
  for (const v of samples) assert.deepEqual(parse(`k: ${formatValue(v)}`).k, v, `formatValue(${JSON.stringify(v)}) = ${formatValue(v)}`);
  assert.equal(formatValue(1e-4), '1e-4');
  assert.equal(formatValue('./model'), './model');
});

test('descriptions of what is expected, ranges and documentation', () => {
  const spec = (k: keyof RunConfig) => KEY_SPECS.get(k)!;
  assert.equal(describeExpected(spec('resolution')), 'an integer ≥ 8 and a multiple of 8');
  assert.equal(describeExpected(spec('adam_beta1')), 'a number ≥ 0 and < 1');
  assert.equal(describeExpected(spec('snr_gamma')), 'a number > 0, or null');
  assert.equal(describeExpected(spec('prediction_type')), 'one of `epsilon`, `v_prediction`, or null');
  assert.equal(describeRange(spec('resolution')), '8 ≤ resolution, multiple of 8');
  assert.equal(describeRange(spec('adam_beta2')), '0 ≤ adam_beta2 < 1');
  assert.equal(describeRange(spec('center_crop')), undefined);
  const doc = keyDocumentation(spec('lr_scheduler'));
  assert.match(doc, /^\*\*`lr_scheduler`\*\* — How the learning rate changes over the run\./);
  assert.match(doc, /default: `constant`/);
  assert.match(doc, /- `cosine`: warm up, then follow half a cosine down to 0/);
  assert.match(doc, /Command line: `--lr_scheduler=…`/);
  assert.match(keyDocumentation(spec('pretrained_model_name_or_path')), /\*\*required\*\*/);
});
