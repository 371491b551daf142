// The run-config validator on YAML text: every kind of mistake gives one problem naming the key, at the
// right line and column, with a message that says what is wrong and how to fix it; fixes repair it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import { formatProblems, type Problem } from '../../src/core/config/problems.js';
import { defaultRunConfig } from '../../src/core/config/schema.js';
import { validateRunConfigText } from '../../src/core/config/validate.js';

const BASE = 'pretrained_model_name_or_path: ./model\ntrain_data_dir: ./data\nmax_train_steps: 1000\n';

function problemsOf(text: string): Problem[] {
  return validateRunConfigText(text, 'run.lora.yaml').problems;
}

/** The only problem (besides those of BASE, which has none) for a config with one extra line. */
function onlyProblem(extra: string): Problem {
  const ps = problemsOf(BASE + extra);
  assert.equal(ps.length, 1, `expected one problem for ${JSON.stringify(extra)}, got:\n${formatProblems(ps, 'run.lora.yaml')}`);
  return ps[0];
}

/** Applies a problem's fix to the text. */
function applyFix(text: string, p: Problem): string {
  assert.ok(p.fix, `no fix for: ${p.message}`);
  const lines = text.split('\n');
  const offset = (pos: { line: number; character: number }) => lines.slice(0, pos.line).reduce((n, l) => n + l.length + 1, 0) + pos.character;
  const { range, newText } = p.fix.edit;
  return text.slice(0, offset(range.start)) + newText + text.slice(offset(range.end));
}

test('a valid config gives the defaults with its values, and no problems', () => {
  const r = validateRunConfigText(BASE + 'rank: 8\nlearning_rate: 1e-3\nsave_formats: [diffusers, kohya]\nvalidation_prompt: a red circle\n');
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.config, {
    ...defaultRunConfig(),
    pretrained_model_name_or_path: './model',
    train_data_dir: './data',
    max_train_steps: 1000,
    rank: 8,
    learning_rate: 1e-3,
    save_formats: ['diffusers', 'kohya'],
    validation_prompt: 'a red circle',
  });
});

test('a config with five mistakes yields five problems with the right keys and lines', () => {
  const text = [
    'pretrained_model_name_or_path: ./model', // 1
    'train_data_dir: ./data', // 2
    'rank: 0', // 3: out of range
    'learnig_rate: 1e-4', // 4: unknown key
    'resolution: 500', // 5: not a multiple of 8
    'max_train_steps: 1000', // 6
    'lr_scheduler: cosin', // 7: unknown enum value
    'center_crop: yes', // 8: not a boolean in YAML 1.2
  ].join('\n');
  const ps = problemsOf(text);
  assert.deepEqual(
    ps.map((p) => [p.key, p.line, p.severity]),
    [
      ['rank', 3, 'error'],
      ['learnig_rate', 4, 'error'],
      ['resolution', 5, 'error'],
      ['lr_scheduler', 7, 'error'],
      ['center_crop', 8, 'error'],
    ],
  );
  assert.equal(ps[0].message, '`rank` must be an integer ≥ 1, got 0');
  assert.equal(ps[1].message, 'unknown key `learnig_rate` — did you mean `learning_rate`?');
  assert.equal(ps[2].message, '`resolution` must be an integer ≥ 8 and a multiple of 8, got 500');
  assert.match(ps[3].message, /^`lr_scheduler` must be one of `linear`, .* got `cosin` — did you mean `cosine`\?$/);
  assert.equal(ps[4].message, '`center_crop` must be true or false, got `yes` — YAML 1.2 reads `yes` as text; write `true`');
  // The CLI form: file:line:col.
  assert.equal(formatProblems(ps, 'run.lora.yaml').split('\n')[0], 'run.lora.yaml:3:7: error: `rank` must be an integer ≥ 1, got 0');
  // Every one of them has a fix, and applying them all leaves a valid config.
  let fixed = text;
  for (const p of [...ps].reverse()) fixed = applyFix(fixed, p);
  assert.deepEqual(problemsOf(fixed), [], fixed);
  assert.equal(parse(fixed).learning_rate, 1e-4);
  assert.equal(parse(fixed).resolution, 504);
});

test('ranges are exact, 0-based, on the value or the key', () => {
  const p = onlyProblem('rank: -3   # too small\n');
  assert.deepEqual(p.range, { start: { line: 3, character: 6 }, end: { line: 3, character: 8 } });
  const u = onlyProblem('lerning_rate: 1\n');
  assert.deepEqual(u.range, { start: { line: 3, character: 0 }, end: { line: 3, character: 12 } });
});

test('syntax errors: a line without a colon is reported and the next key is still checked', () => {
  const ps = problemsOf(BASE + 'rank 4\nadam_beta1: 2\n');
  assert.deepEqual(
    ps.map((p) => [p.code, p.line]),
    [
      ['syntax', 4],
      ['range', 5],
    ],
  );
  assert.equal(ps[0].message, 'missing `:` after `rank` — write `rank: 4`');
  assert.equal(applyFix(BASE + 'rank 4\n', ps[0]), BASE + 'rank: 4\n');
  assert.equal(ps[1].message, '`adam_beta1` must be a number ≥ 0 and < 1, got 2');
});

test('syntax errors: unclosed quote, tab indentation, a list instead of a mapping', () => {
  const quote = problemsOf(BASE + 'validation_prompt: "a red circle\nrank: 4\n');
  assert.equal(quote[0].code, 'syntax');
  assert.match(quote[0].message, /^YAML: missing closing "quote/);
  const tab = problemsOf(BASE + '\trank: 4\n');
  assert.equal(tab[0].message, 'YAML: tabs are not allowed as indentation in YAML — indent with spaces');
  assert.equal(tab[0].line, 4);
  const list = problemsOf('- rank: 4\n');
  assert.equal(list.length, 1);
  assert.equal(list[0].code, 'not-a-mapping');
  assert.match(list[0].message, /holds a list$/);
});

test('missing required keys are errors with a fix that adds the key', () => {
  const text = 'rank: 4\nmax_train_steps: 10';
  const ps = problemsOf(text);
  assert.deepEqual(
    ps.map((p) => [p.code, p.key]),
    [
      ['missing-key', 'pretrained_model_name_or_path'],
      ['missing-key', 'train_data_dir'],
    ],
  );
  assert.equal(ps[1].message, 'no training data: set `train_data_dir` (a folder of images with captions) or `dataset_name` (a Hub dataset)');
  // The file has no final newline: the fix adds one before the key.
  assert.equal(applyFix(text, ps[1]), 'rank: 4\nmax_train_steps: 10\ntrain_data_dir: ./dataset\n');
  // An empty file: both missing, at the start.
  assert.deepEqual(
    problemsOf('').map((p) => [p.key, p.line]),
    [
      ['pretrained_model_name_or_path', 1],
      ['train_data_dir', 1],
      ['max_train_steps', 1],
    ],
  );
});

test('unknown keys: did-you-mean for typos, dashes and case; a plain message otherwise', () => {
  assert.equal(onlyProblem('Learning-Rate: 1e-4\n').message, 'unknown key `Learning-Rate` — did you mean `learning_rate`?');
  assert.equal(onlyProblem('lr_warmup: 10\n').message, 'unknown key `lr_warmup` — did you mean `lr_warmup_steps`?');
  const far = onlyProblem('colour: red\n');
  assert.equal(far.message, 'unknown key `colour` — not a LoRA Studio setting; check the spelling or remove it');
  assert.equal(far.fix, undefined);
});

test("diffusers flags that LoRA Studio ignores are warnings with a fix that removes them; Hub datasets are data", () => {
  const mp = onlyProblem('mixed_precision: fp16\n');
  assert.equal(mp.severity, 'warning');
  assert.equal(mp.code, 'ignored-key');
  assert.match(mp.message, /^`mixed_precision` is ignored: training runs in float32/);
  assert.equal(applyFix(BASE + 'mixed_precision: fp16\n', mp), BASE);
  const hub = problemsOf('pretrained_model_name_or_path: ./m\nmax_train_steps: 5\ndataset_name: lambdalabs/naruto-blip-captions\n');
  assert.deepEqual(hub, [], 'a Hub dataset is the training data');
  // A local folder under dataset_name: the fix renames the key.
  const local = problemsOf('pretrained_model_name_or_path: ./m\nmax_train_steps: 5\ndataset_name: ./pics\n');
  const ds = local.find((p) => p.key === 'dataset_name')!;
  assert.equal(ds.message, '`dataset_name` is for hub datasets; for the local folder "./pics" use `train_data_dir`');
  assert.equal(ds.fix?.edit.newText, 'train_data_dir');
});

test('duplicate keys: an error on the second, naming the first line', () => {
  const p = onlyProblem('max_train_steps: 10\n');
  assert.equal(p.code, 'duplicate-key');
  assert.equal(p.message, '`max_train_steps` is set twice (first on line 3); remove one of them');
  assert.equal(p.line, 4);
});

test('types: quoted numbers, text for numbers, numbers for text, empty values, lists', () => {
  const quoted = onlyProblem('learning_rate: "1e-4"\n');
  assert.equal(quoted.message, '`learning_rate` must be a number > 0, got "1e-4" — a number in quotes is text; remove the quotes');
  assert.equal(quoted.fix?.edit.newText, '1e-4');
  assert.equal(onlyProblem('rank: four\n').message, '`rank` must be an integer ≥ 1, got `four`');
  assert.equal(onlyProblem('rank: 4.5\n').message, '`rank` must be an integer ≥ 1, got 4.5');
  const prompt = onlyProblem('output_dir: 2024\n');
  assert.equal(prompt.message, '`output_dir` must be a path, got 2024 — put it in quotes to use it as text');
  assert.equal(prompt.fix?.edit.newText, '"2024"');
  const empty = onlyProblem('rank:\n');
  assert.equal(empty.message, '`rank` has no value: it must be an integer ≥ 1 (default 4); give a value or remove the line');
  assert.equal(applyFix(BASE + 'rank:\n', empty), BASE + 'rank: 4\n');
  // null where null is allowed is fine.
  assert.deepEqual(problemsOf(BASE + 'seed: null\nsnr_gamma:\n'), []);
  const notList = onlyProblem('save_formats: diffusers, kohya\n');
  assert.equal(notList.message, '`save_formats` must be a list of `diffusers` and/or `kohya`, e.g. [diffusers], got `diffusers, kohya` — write [diffusers, kohya]');
  const badItem = onlyProblem('save_formats:\n  - diffusers\n  - koya\n');
  assert.equal(badItem.message, '`save_formats` entries must be `diffusers` or `kohya`, got `koya` — did you mean `kohya`?');
  assert.deepEqual(badItem.range, { start: { line: 5, character: 4 }, end: { line: 5, character: 8 } });
  assert.equal(onlyProblem('save_formats: []\n').message, '`save_formats` is empty: list at least one of diffusers, kohya');
  assert.equal(onlyProblem('rank: {a: 1}\n').message, '`rank` must be an integer ≥ 1, got a mapping (nested keys)');
});

test('ranges: inclusive and exclusive bounds, multiples; fixes clamp into range', () => {
  const lr = onlyProblem('learning_rate: 0\n');
  assert.equal(lr.message, '`learning_rate` must be a number > 0, got 0');
  assert.equal(lr.fix?.title, 'Change to 1e-4 (the default)');
  const beta = onlyProblem('adam_beta2: 1\n');
  assert.equal(beta.message, '`adam_beta2` must be a number ≥ 0 and < 1, got 1');
  assert.equal(beta.fix?.edit.newText, '0.999');
  assert.equal(onlyProblem('resolution: 4\n').fix?.edit.newText, '8');
  assert.equal(onlyProblem('noise_offset: -0.1\n').fix?.edit.newText, '0');
  assert.equal(onlyProblem('seed: 1e20\n').message, '`seed` must be an integer from 0 to 9007199254740991, or null, got 1e20');
});

test('unusual but valid values are warnings', () => {
  const p = onlyProblem('learning_rate: 0.5\n');
  assert.equal(p.severity, 'warning');
  assert.equal(p.code, 'advice');
  assert.match(p.message, /^`learning_rate` = 0.5: LoRA learning rates are typically 1e-4 to 1e-3/);
});

test('contradictions between keys', () => {
  const REQ = 'pretrained_model_name_or_path: ./model\ntrain_data_dir: ./data\n';
  const both = problemsOf(REQ + 'max_train_steps: 100\nnum_train_epochs: 3\n');
  assert.deepEqual(both.map((p) => [p.key, p.severity, p.line]), [['num_train_epochs', 'warning', 4]]);
  assert.match(both[0].message, /^`num_train_epochs` is ignored: `max_train_steps` is set/);
  assert.equal(applyFix(REQ + 'max_train_steps: 100\nnum_train_epochs: 3\n', both[0]), REQ + 'max_train_steps: 100\n');

  const neither = problemsOf(REQ);
  assert.deepEqual(neither.map((p) => [p.key, p.severity, p.line]), [['max_train_steps', 'info', 1]]);
  assert.match(neither[0].message, /lasts 100 epochs/);

  const ckpt = problemsOf(REQ + 'max_train_steps: 100\ncheckpointing_steps: 500\n');
  assert.deepEqual(ckpt.map((p) => [p.key, p.severity, p.line]), [['checkpointing_steps', 'warning', 4]]);
  assert.equal(ckpt[0].message, '`checkpointing_steps` is 500 but the run has 100 steps (max_train_steps = 100): no checkpoint will be saved — use at most 100');
  assert.equal(ckpt[0].fix?.edit.newText, '100');

  const warm = problemsOf(REQ + 'max_train_steps: 200\nlr_scheduler: cosine\nlr_warmup_steps: 300\n');
  assert.deepEqual(warm.map((p) => [p.key, p.severity, p.line]), [['lr_warmup_steps', 'warning', 5]]);
  assert.match(warm[0].message, /^the warmup \(`lr_warmup_steps` = 300\) is not shorter than the run: the run has 200 steps/);
  assert.equal(warm[0].fix?.edit.newText, '20');
  // The default warmup (500) against a short run, when a scheduler that warms up is chosen: on lr_scheduler, fix adds the key.
  const warmDefault = problemsOf(REQ + 'max_train_steps: 200\nlr_scheduler: linear\n');
  assert.deepEqual(warmDefault.map((p) => [p.key, p.line]), [['lr_scheduler', 4]]);
  assert.equal(applyFix(REQ + 'max_train_steps: 200\nlr_scheduler: linear\n', warmDefault[0]), REQ + 'max_train_steps: 200\nlr_scheduler: linear\nlr_warmup_steps: 20\n');

  const constant = problemsOf(REQ + 'max_train_steps: 1000\nlr_warmup_steps: 50\n');
  assert.deepEqual(constant.map((p) => [p.key, p.severity]), [['lr_warmup_steps', 'warning']]);
  assert.match(constant[0].message, /has no effect with `lr_scheduler` `constant` \(the default\)/);
  assert.equal(constant[0].fix?.edit.newText, 'lr_scheduler: constant_with_warmup\n');

  const validation = problemsOf(REQ + 'max_train_steps: 10\nnum_validation_images: 2\n');
  assert.deepEqual(validation.map((p) => [p.key, p.severity, p.message]), [['num_validation_images', 'info', '`num_validation_images` does nothing without `validation_prompt`']]);

  const scaled = problemsOf(REQ + 'max_train_steps: 10\nscale_lr: true\ntrain_batch_size: 8\nlearning_rate: 1e-3\ngradient_accumulation_steps: 4\n');
  assert.deepEqual(scaled.map((p) => [p.key, p.severity]), [['scale_lr', 'warning']]);
  assert.match(scaled[0].message, /^the learning rate used is 0.032 \(0.001 × batch 8 × accumulation 4\)/);
});

test('no contradiction is reported about a value that is itself wrong', () => {
  const ps = problemsOf(BASE + 'checkpointing_steps: 0\nlr_warmup_steps: 5000\nlr_scheduler: cosin\n');
  assert.deepEqual(
    ps.map((p) => p.key),
    ['checkpointing_steps', 'lr_scheduler'],
  );
});
