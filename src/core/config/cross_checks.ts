// Checks between keys: settings that are each valid but contradict each other or silently do nothing.
// The run's length in optimizer steps follows diffusers' train_text_to_image_lora.py exactly:
// max_train_steps when set, else num_train_epochs × ceil(ceil(examples / batch) / accumulation).
import type { Entry, Naming } from './entries.js';
import { problem, type Fix, type Problem, type Range, type TextEdit } from './problems.js';
import type { RunConfig } from './run_config.js';
import { formatValue } from './schema.js';
import { looksLikeLocalPath } from './check_entries.js';
import { bucketRangeProblem } from './buckets.js';

/** What the disk checks learnt that the run's length depends on. */
export interface RunFacts {
  /** Training examples (images with captions), before max_train_samples. */
  numExamples?: number;
  /** Step of the checkpoint resume_from_checkpoint resolves to. */
  resumeStep?: number;
}

export interface RunLength {
  /** Optimizer steps in the whole run. */
  steps: number;
  /** Epochs, when the dataset size is known. */
  epochs?: number;
  updatesPerEpoch?: number;
  /** How the length was found, for messages. */
  explain: string;
  /** The key that sets the length. */
  setBy: 'max_train_steps' | 'num_train_epochs';
}

type LengthKeys = 'max_train_steps' | 'num_train_epochs' | 'train_batch_size' | 'gradient_accumulation_steps' | 'max_train_samples';

export function runLength(c: Pick<RunConfig, LengthKeys>, numExamples?: number): RunLength | undefined {
  let updatesPerEpoch: number | undefined;
  let n: number | undefined;
  if (numExamples !== undefined && numExamples > 0) {
    n = c.max_train_samples !== null ? Math.min(numExamples, c.max_train_samples) : numExamples;
    updatesPerEpoch = Math.ceil(Math.ceil(n / c.train_batch_size) / c.gradient_accumulation_steps);
  }
  if (c.max_train_steps !== null) {
    return {
      steps: c.max_train_steps,
      epochs: updatesPerEpoch ? Math.ceil(c.max_train_steps / updatesPerEpoch) : undefined,
      updatesPerEpoch,
      explain: `max_train_steps = ${c.max_train_steps}`,
      setBy: 'max_train_steps',
    };
  }
  if (!updatesPerEpoch) return undefined;
  const accum = c.gradient_accumulation_steps > 1 ? ` / accumulation ${c.gradient_accumulation_steps}` : '';
  return {
    steps: c.num_train_epochs * updatesPerEpoch,
    epochs: c.num_train_epochs,
    updatesPerEpoch,
    explain: `${c.num_train_epochs} epochs × ${updatesPerEpoch} steps (${n} examples / batch ${c.train_batch_size}${accum})`,
    setBy: 'num_train_epochs',
  };
}

export interface CrossCheckInput {
  /** Defaults merged with the values that passed their own checks. */
  config: RunConfig;
  /** Keys written in the config. */
  present: ReadonlySet<string>;
  /** Keys whose written value failed its own check: no contradiction is reported about them. */
  invalid: ReadonlySet<string>;
  entry(key: string): Entry | undefined;
  naming: Naming;
  /** Where problems about absent keys go. */
  fallback: Range;
  /** Where a missing key is inserted by a quick fix (the end of the file), and the text before it. */
  insertAt?: Range;
  insertPrefix?: string;
}

function at(input: CrossCheckInput, key: string, valueSide = true): Range {
  const e = input.entry(key);
  return e ? (valueSide ? e.valueRange : e.keyRange) : input.fallback;
}

function lineOf(input: CrossCheckInput, r: Range): number | undefined {
  return input.naming.kind === 'flags' ? 0 : r.start.line + 1;
}

/** Set a key's value, or add the key after another one's line when it is absent. */
function setKey(input: CrossCheckInput, key: string, value: string, after: string): TextEdit | undefined {
  const e = input.entry(key);
  if (e) return { range: e.valueRange, newText: value };
  const anchor = input.entry(after);
  if (!anchor) return undefined;
  return { range: { start: anchor.removeRange.end, end: anchor.removeRange.end }, newText: `${key}: ${value}\n` };
}

function fixIf(input: CrossCheckInput, title: string, edit: TextEdit | undefined): Fix | undefined {
  return input.naming.kind === 'yaml' && edit ? { title, edit } : undefined;
}

/** Contradictions visible from the config alone. */
export function crossChecks(input: CrossCheckInput): Problem[] {
  const { config: c, present, naming } = input;
  const out: Problem[] = [];
  const n = naming.name;
  const usable = (k: string) => present.has(k) && !input.invalid.has(k);

  // The data: train_data_dir or dataset_name (diffusers: "Need either a dataset name or a training folder").
  if (c.train_data_dir === null && c.dataset_name === null && !input.invalid.has('train_data_dir') && !input.invalid.has('dataset_name')) {
    const edit = naming.kind === 'yaml' ? { range: input.insertAt ?? input.fallback, newText: `${input.insertPrefix ?? ''}train_data_dir: ./dataset\n` } : undefined;
    out.push(
      problem({
        key: 'train_data_dir',
        code: 'missing-key',
        severity: 'error',
        range: input.fallback,
        line: lineOf(input, input.fallback),
        message: `no training data: set ${n('train_data_dir')} (a folder of images with captions) or ${n('dataset_name')} (a Hub dataset)`,
        fix: edit && { title: 'Add `train_data_dir`', edit },
      }),
    );
  }
  if (usable('dataset_name') && c.dataset_name !== null && looksLikeLocalPath(c.dataset_name)) {
    const e = input.entry('dataset_name')!;
    out.push(
      problem({
        key: 'dataset_name',
        code: 'contradiction',
        severity: 'error',
        range: e.keyRange,
        line: lineOf(input, e.keyRange),
        message: `${n('dataset_name')} is for hub datasets; for the local folder ${JSON.stringify(c.dataset_name)} use ${n('train_data_dir')}`,
        fix: naming.kind === 'yaml' && !present.has('train_data_dir') ? { title: 'Change to `train_data_dir`', edit: { range: e.keyRange, newText: 'train_data_dir' } } : undefined,
      }),
    );
  } else if (usable('dataset_name') && usable('train_data_dir')) {
    const r = at(input, 'train_data_dir', false);
    out.push(
      problem({ key: 'train_data_dir', code: 'contradiction', severity: 'warning', range: r, line: lineOf(input, r), message: `${n('train_data_dir')} is ignored: ${n('dataset_name')} is set and is used instead (as in diffusers) — remove one of them` }),
    );
  }
  if (usable('hub_token')) {
    const r = at(input, 'hub_token', false);
    out.push(
      problem({ key: 'hub_token', code: 'advice', severity: 'warning', range: r, line: lineOf(input, r), message: `${n('hub_token')}: a token in a config file is easily shared by mistake — prefer HF_TOKEN or \`huggingface-cli login\`` }),
    );
  }

  if (usable('max_train_steps') && c.max_train_steps !== null && usable('num_train_epochs')) {
    const e = input.entry('num_train_epochs');
    const r = at(input, 'num_train_epochs', false);
    out.push(
      problem({
        key: 'num_train_epochs',
        code: 'contradiction',
        severity: 'warning',
        range: r,
        line: lineOf(input, r),
        message: `${n('num_train_epochs')} is ignored: ${n('max_train_steps')} is set and decides the length of the run (as in diffusers) — remove one of them`,
        fix: fixIf(input, `Remove \`num_train_epochs\``, e && { range: e.removeRange, newText: '' }),
      }),
    );
  }
  if (!present.has('max_train_steps') && !present.has('num_train_epochs')) {
    out.push(
      problem({
        key: 'max_train_steps',
        code: 'contradiction',
        severity: 'info',
        range: input.fallback,
        line: lineOf(input, input.fallback),
        message: `the run's length is not set: without ${n('max_train_steps')} or ${n('num_train_epochs')} it lasts ${formatValue(c.num_train_epochs)} epochs (diffusers' default)`,
      }),
    );
  }
  if (usable('lr_warmup_steps') && c.lr_warmup_steps > 0 && c.lr_scheduler === 'constant' && !input.invalid.has('lr_scheduler')) {
    const r = at(input, 'lr_warmup_steps');
    out.push(
      problem({
        key: 'lr_warmup_steps',
        code: 'contradiction',
        severity: 'warning',
        range: r,
        line: lineOf(input, r),
        message: `${n('lr_warmup_steps')} has no effect with ${n('lr_scheduler')} \`constant\`${present.has('lr_scheduler') ? '' : ' (the default)'} — use \`constant_with_warmup\` to warm up, or set the warmup to 0`,
        fix: fixIf(input, 'Change lr_scheduler to `constant_with_warmup`', setKey(input, 'lr_scheduler', 'constant_with_warmup', 'lr_warmup_steps')),
      }),
    );
  }
  if (c.validation_prompt === null) {
    for (const k of ['num_validation_images', 'validation_epochs'] as const) {
      if (!usable(k)) continue;
      const r = at(input, k, false);
      out.push(
        problem({
          key: k,
          code: 'contradiction',
          severity: 'info',
          range: r,
          line: lineOf(input, r),
          message: `${n(k)} does nothing without ${n('validation_prompt')}`,
        }),
      );
    }
  }
  if (usable('output_name') && c.output_name !== null && (/[\\/]/.test(c.output_name) || c.output_name === '.' || c.output_name === '..' || /\.safetensors$/i.test(c.output_name))) {
    const r = at(input, 'output_name');
    out.push(
      problem({
        key: 'output_name',
        code: 'type',
        severity: 'error',
        range: r,
        line: lineOf(input, r),
        message: `${n('output_name')} is the LoRA file's name, without folders or .safetensors (it is written into ${n('output_dir')}), got ${JSON.stringify(c.output_name)}`,
      }),
    );
  }
  if (c.gradient_checkpointing && usable('gradient_checkpointing') && c.lora_dropout > 0 && usable('lora_dropout')) {
    const r = at(input, 'gradient_checkpointing');
    out.push(
      problem({
        key: 'gradient_checkpointing',
        code: 'contradiction',
        severity: 'error',
        range: r,
        line: lineOf(input, r),
        message: `${n('gradient_checkpointing')} cannot be used with ${n('lora_dropout')} > 0 (the recomputed forward pass would draw other dropout masks) — turn one of them off`,
      }),
    );
  }
  // The trainer refuses this at start (loop.ts planLayout), in the same words: here on resolution when it is
  // written, else on the bound at fault, else on enable_bucket; the fix moves the bound to the resolution.
  const bucketKeys = ['enable_bucket', 'resolution', 'min_bucket_reso', 'max_bucket_reso'];
  const outside = c.enable_bucket && !bucketKeys.some((k) => input.invalid.has(k)) ? bucketRangeProblem(c, n) : undefined;
  if (outside) {
    const onKey = present.has('resolution') ? 'resolution' : present.has(outside.key) ? outside.key : 'enable_bucket';
    const r = at(input, onKey);
    out.push(
      problem({
        key: onKey,
        code: 'contradiction',
        severity: 'error',
        range: r,
        line: lineOf(input, r),
        message: outside.message,
        fix: fixIf(input, `Set ${outside.key} to ${outside.fixedValue}`, setKey(input, outside.key, String(outside.fixedValue), 'enable_bucket')),
      }),
    );
  }
  if (c.scale_lr && usable('scale_lr') && !input.invalid.has('learning_rate')) {
    const lr = c.learning_rate * c.train_batch_size * c.gradient_accumulation_steps;
    const r = at(input, 'scale_lr');
    out.push(
      problem({
        key: 'scale_lr',
        code: 'contradiction',
        severity: lr > 0.01 ? 'warning' : 'info',
        range: r,
        line: lineOf(input, r),
        message: `the learning rate used is ${formatValue(lr)} (${formatValue(c.learning_rate)} × batch ${c.train_batch_size} × accumulation ${c.gradient_accumulation_steps})${lr > 0.01 ? ': that high the loss is likely to diverge — lower learning_rate or turn scale_lr off' : ''}`,
      }),
    );
  }
  return out;
}

/** Contradictions with the run's length, which needs the dataset size unless max_train_steps is set. */
export function runLengthChecks(input: CrossCheckInput, facts: RunFacts): Problem[] {
  const { config: c, present, naming } = input;
  const n = naming.name;
  const lengthKeys = ['max_train_steps', 'num_train_epochs', 'train_batch_size', 'gradient_accumulation_steps', 'max_train_samples'];
  if (lengthKeys.some((k) => input.invalid.has(k))) return [];
  const len = runLength(c, facts.numExamples);
  if (!len) return [];
  const out: Problem[] = [];
  const runIs = `the run has ${len.steps} steps (${len.explain})`;

  if (present.has('checkpointing_steps') && !input.invalid.has('checkpointing_steps') && c.checkpointing_steps > len.steps) {
    const r = at(input, 'checkpointing_steps');
    out.push(
      problem({
        key: 'checkpointing_steps',
        code: 'contradiction',
        severity: 'warning',
        range: r,
        line: lineOf(input, r),
        message: `${n('checkpointing_steps')} is ${c.checkpointing_steps} but ${runIs}: no checkpoint will be saved — use at most ${len.steps}`,
        fix: fixIf(input, `Change to ${len.steps}`, setKey(input, 'checkpointing_steps', String(len.steps), 'checkpointing_steps')),
      }),
    );
  }
  const warmupMatters = c.lr_scheduler !== 'constant' && !input.invalid.has('lr_scheduler') && !input.invalid.has('lr_warmup_steps');
  if (warmupMatters && c.lr_warmup_steps >= len.steps && (present.has('lr_warmup_steps') || present.has('lr_scheduler'))) {
    const onWarmup = present.has('lr_warmup_steps');
    const r = at(input, onWarmup ? 'lr_warmup_steps' : 'lr_scheduler');
    const suggested = Math.floor(len.steps / 10);
    out.push(
      problem({
        key: onWarmup ? 'lr_warmup_steps' : 'lr_scheduler',
        code: 'contradiction',
        severity: 'warning',
        range: r,
        line: lineOf(input, r),
        message: `the warmup (${n('lr_warmup_steps')} = ${c.lr_warmup_steps}${onWarmup ? '' : ', the default'}) is not shorter than the run: ${runIs}, so the learning rate never reaches ${formatValue(c.learning_rate)} — use about ${suggested} (10 %)`,
        fix: fixIf(input, `Set lr_warmup_steps to ${suggested}`, setKey(input, 'lr_warmup_steps', String(suggested), 'lr_scheduler')),
      }),
    );
  }
  if (facts.resumeStep !== undefined && facts.resumeStep >= len.steps && present.has('resume_from_checkpoint')) {
    const r = at(input, 'resume_from_checkpoint');
    out.push(
      problem({
        key: 'resume_from_checkpoint',
        code: 'contradiction',
        severity: 'warning',
        range: r,
        line: lineOf(input, r),
        message: `the checkpoint is at step ${facts.resumeStep} but ${runIs}: there is nothing left to train — raise ${n(len.setBy)} to continue`,
      }),
    );
  }
  return out;
}
