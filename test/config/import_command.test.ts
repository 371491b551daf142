// Importing a pasted `accelerate launch train_text_to_image_lora.py …` command into a commented *.lora.yaml.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import { importAccelerateCommand } from '../../src/core/config/import_command.js';
import { parseShell } from '../../src/core/config/shell_words.js';
import { validateRunConfigText } from '../../src/core/config/validate.js';

// Verbatim from diffusers' LoRA training guide (docs/source/en/training/lora.md).
const GUIDE = `export MODEL_NAME="stable-diffusion-v1-5/stable-diffusion-v1-5"
export OUTPUT_DIR="/sddata/finetune/lora/naruto"
export HUB_MODEL_ID="naruto-lora"
export DATASET_NAME="lambdalabs/naruto-blip-captions"

accelerate launch --mixed_precision="fp16"  train_text_to_image_lora.py \\
  --pretrained_model_name_or_path=$MODEL_NAME \\
  --dataset_name=$DATASET_NAME \\
  --dataloader_num_workers=8 \\
  --resolution=512 \\
  --center_crop \\
  --random_flip \\
  --train_batch_size=1 \\
  --gradient_accumulation_steps=4 \\
  --max_train_steps=15000 \\
  --learning_rate=1e-04 \\
  --max_grad_norm=1 \\
  --lr_scheduler="cosine" \\
  --lr_warmup_steps=0 \\
  --output_dir=\${OUTPUT_DIR} \\
  --push_to_hub \\
  --hub_model_id=\${HUB_MODEL_ID} \\
  --report_to=wandb \\
  --checkpointing_steps=500 \\
  --validation_prompt="A naruto with blue eyes." \\
  --seed=1337
`;

test("the LoRA guide's command becomes a valid, commented config with the same settings", () => {
  const text = importAccelerateCommand(GUIDE);
  const values = parse(text);
  assert.deepEqual(values, {
    pretrained_model_name_or_path: 'stable-diffusion-v1-5/stable-diffusion-v1-5',
    dataset_name: 'lambdalabs/naruto-blip-captions',
    resolution: 512,
    center_crop: true,
    random_flip: true,
    train_batch_size: 1,
    gradient_accumulation_steps: 4,
    max_train_steps: 15000,
    learning_rate: 1e-4,
    lr_scheduler: 'cosine',
    lr_warmup_steps: 0,
    max_grad_norm: 1,
    seed: 1337,
    output_dir: '/sddata/finetune/lora/naruto',
    checkpointing_steps: 500,
    validation_prompt: 'A naruto with blue eyes.',
    push_to_hub: true,
    hub_model_id: 'naruto-lora',
  });
  // Valid as it stands (the disk is checked when it is opened or run).
  assert.deepEqual(validateRunConfigText(text).problems, []);
  // Commented: why things were dropped; the Hub model, dataset and push are used as they are.
  const lines = text.split('\n');
  assert.ok(lines.includes('# accelerate --mixed_precision=fp16 — ignored: training runs in float32 (TensorFlow.js has no float16/bfloat16 tensors); fp16 model files are converted at load.'));
  assert.ok(!lines.some((l) => /TODO|huggingface-cli download/.test(l)), 'nothing left to do by hand');
  assert.ok(lines.includes('# report_to: wandb — ignored: metrics go to output_dir/metrics.jsonl and the LoRA Studio dashboard'));
  assert.ok(lines.includes('# dataloader_num_workers: 8 — ignored: images are decoded in the trainer process'));
});

// From diffusers' examples/text_to_image/README.md, with a local model and dataset.
test('single-line commands, local paths, unknown flags and unset variables', () => {
  const text = importAccelerateCommand(
    'CUDA_VISIBLE_DEVICES=0 accelerate launch --num_processes 1 train_text_to_image_lora.py --pretrained_model_name_or_path=./sd15 ' +
      "--dataset_name='./my pics' --caption_column=\"text\" --resolution=512 --random_flip --rank=16 --foo=bar --output_dir=$OUT",
  );
  const values = parse(text);
  assert.equal(values.train_data_dir, './my pics');
  assert.equal(values.pretrained_model_name_or_path, './sd15');
  assert.equal(values.rank, 16);
  assert.equal(values.output_dir, '$OUT');
  const lines = text.split('\n');
  assert.ok(lines.includes('# Environment CUDA_VISIBLE_DEVICES=0 is not used.'));
  assert.ok(lines.includes('# accelerate --num_processes=1 — ignored: training runs on one device.'));
  assert.ok(lines.includes('# TODO: $OUT is not set in the pasted text; replace it below.'));
  assert.ok(lines.includes('# --foo=bar — unknown flag, not imported'));
  assert.ok(lines.includes("train_data_dir: ./my pics  # was --dataset_name"));
});

test('bare flags (no launcher) and missing required settings become TODOs', () => {
  const text = importAccelerateCommand('--rank=8 --learning_rate=1e-3');
  const values = parse(text);
  assert.deepEqual(values, { pretrained_model_name_or_path: './model', train_data_dir: './dataset', learning_rate: 1e-3, rank: 8 });
  assert.ok(text.includes('# TODO: The base model: a Hub id, a diffusers pipeline folder or a single-file .safetensors checkpoint (SD 1.x, 2.x, SDXL).'));
  assert.match(importAccelerateCommand('ls -la\n'), /No training command was found/);
});

test('shell words: quotes, escapes, continuations, variables, several commands', () => {
  const [cmd] = parseShell(`export A=1 B="two words"\nC='$A' run "x $A" 'y $A' \${B} \${D:-dflt} a\\ b \\\n  --z=$A; other`);
  assert.deepEqual(cmd.words, ['run', 'x 1', 'y $A', 'two words', 'dflt', 'a b', '--z=1']);
  assert.deepEqual(cmd.env, { C: '$A' });
  const cmds = parseShell('python train.py ^\n  --rank=4 && echo done # comment\n');
  assert.deepEqual(
    cmds.map((c) => c.words),
    [['python', 'train.py', '--rank=4'], ['echo', 'done']],
  );
  assert.deepEqual(parseShell('run $NOPE').map((c) => c.unresolved), [['NOPE']]);
});

// kohya sd-scripts' train_network.py names the rank --network_dim; a kohya user pastes that command.
const KOHYA = `accelerate launch train_network.py --pretrained_model_name_or_path=examples/tiny-shapes/model \\
  --train_data_dir=./data --output_dir=./out --network_module=networks.lora \\
  --network_dim=16 --network_alpha=8 --optimizer_type=AdamW8bit --max_train_steps=200 --learning_rate=1e-4`;

test("kohya's --network_dim, --network_alpha and --optimizer_type are imported or explained, never 'unknown'", () => {
  const text = importAccelerateCommand(KOHYA);
  const values = parse(text);
  assert.equal(values.rank, 16);
  assert.doesNotMatch(text, /network_dim.*unknown|network_alpha.*unknown|optimizer_type.*unknown|network_module.*unknown/);
  // lora_alpha: a key when the schema has it, else a comment saying what happens instead.
  if ('lora_alpha' in values) assert.equal(values.lora_alpha, 8);
  else assert.match(text, /--network_alpha=8 — kohya flag, not imported: alpha equals the rank/);
  assert.match(text, /--optimizer_type=AdamW8bit — kohya flag, not imported: AdamW is used/);
});

test('a relative dataset path that exists beside the config is a local folder, not a Hub dataset', () => {
  // `examples/tiny-shapes` is shaped like a Hub id (owner/name) and exists in this repository.
  const root = new URL('../..', import.meta.url).pathname;
  const cmd = 'python train_text_to_image_lora.py --pretrained_model_name_or_path=examples/tiny-shapes --dataset_name=examples/tiny-shapes';
  assert.equal(parse(importAccelerateCommand(cmd)).dataset_name, 'examples/tiny-shapes', 'without a base folder it is a Hub id');
  const text = parse(importAccelerateCommand(cmd, { baseDir: root }));
  assert.equal(text.train_data_dir, 'examples/tiny-shapes');
  assert.equal(text.dataset_name, undefined);
  assert.equal(text.pretrained_model_name_or_path, 'examples/tiny-shapes', 'a model path is written as given: a local folder wins over a Hub id when the run loads it');
});
