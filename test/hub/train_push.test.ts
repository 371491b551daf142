// End to end against the local Hub-compatible server: `lora-studio train` with the guide's flags
// (--pretrained_model_name_or_path=runwayml/stable-diffusion-v1-5 --dataset_name=… --push_to_hub
// --hub_model_id=pokemon-lora, and the guide's ignored flags) downloads the model and the dataset into
// HF_HUB_CACHE, trains a few steps, and pushes: the server records the commit — the LoRA, the model card
// with diffusers' front matter and the validation images. Then `lora-studio push` retries a push, and a
// push without a token fails keeping everything on disk and naming the retry command.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { REPO } from '../helpers/fixtures.js';
import { FakeHub, folderFiles } from './fake_hub.js';
import { POKEMON_ROWS, pokemonParquet } from './parquet_fixture.js';
import { TRAINER_EVENTS } from '../../src/protocol/training.js';
import { MODEL_CARD_TAGS } from '../../src/core/hub/model_card.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hub-e2e-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const TOKEN = 'hf_writer';

function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), ...args], { cwd: REPO, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.end();
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

function frontMatter(card: string): Record<string, unknown> {
  const m = /^---\n([\s\S]*?)\n---\n/.exec(card);
  assert.ok(m, 'README.md starts with YAML front matter');
  return YAML.parse(m[1]);
}

test("the guide's command trains on a Hub model and dataset and pushes the LoRA with diffusers' model card", async () => {
  const hub = new FakeHub(
    [
      { type: 'model', id: 'runwayml/stable-diffusion-v1-5', revisions: { main: folderFiles(path.join(REPO, 'test/fixtures/tiny-sd/model')) } },
      { type: 'dataset', id: 'lambdalabs/pokemon-blip-captions', revisions: { main: new Map([['data/train-00000-of-00001.parquet', await pokemonParquet(POKEMON_ROWS)]]) } },
    ],
    { writeTokens: { [TOKEN]: 'tester' } },
  );
  await hub.start();
  const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: path.join(tmp, 'cache'), HF_HOME: path.join(tmp, 'hf-home'), HF_TOKEN: TOKEN, LORA_STUDIO_BACKEND: 'wasm' };
  const out = path.join(tmp, 'pokemon-lora');
  try {
    // The guide's flags (resolution, steps and validation sized for the tiny model).
    const r = await cli(
      [
        'train',
        '--mixed_precision=fp16',
        '--pretrained_model_name_or_path=runwayml/stable-diffusion-v1-5',
        '--dataset_name=lambdalabs/pokemon-blip-captions',
        '--dataloader_num_workers=8',
        '--resolution=32',
        '--center_crop',
        '--random_flip',
        '--train_batch_size=1',
        '--gradient_accumulation_steps=1',
        '--max_train_steps=2',
        '--learning_rate=1e-04',
        '--max_grad_norm=1',
        '--lr_scheduler=cosine',
        '--lr_warmup_steps=0',
        `--output_dir=${out}`,
        '--push_to_hub',
        '--hub_model_id=pokemon-lora',
        '--report_to=wandb',
        '--checkpointing_steps=500',
        '--validation_prompt=A pokemon with blue eyes.',
        '--num_validation_images=1',
        '--seed=1337',
        '--backend=wasm',
      ],
      env,
    );
    assert.equal(r.status, 0, r.stderr);
    const { messages: events, problems } = TRAINER_EVENTS.readAll(r.stdout);
    assert.deepEqual(problems, [], 'every event is valid protocol');
    const downloads = events.filter((e) => e.type === 'download');
    assert.ok(downloads.some((e) => e.repoType === 'model') && downloads.some((e) => e.repoType === 'dataset'), 'download events for the model and the dataset');
    const lastModel = downloads.filter((e) => e.repoType === 'model').at(-1)!;
    assert.ok(lastModel.type === 'download' && lastModel.bytes === lastModel.totalBytes && lastModel.filesDone === lastModel.totalFiles);
    assert.ok(fs.existsSync(path.join(tmp, 'cache', 'models--runwayml--stable-diffusion-v1-5', 'refs', 'main')));
    const started = events.find((e) => e.type === 'started');
    assert.ok(started?.type === 'started' && started.numExamples === POKEMON_ROWS.length);
    const pushed = events.find((e) => e.type === 'pushed');
    assert.ok(pushed?.type === 'pushed' && pushed.repoId === 'tester/pokemon-lora', 'pushed into the token owner\'s namespace');

    // What the server received: one commit, "End of training", with the files and the card.
    assert.deepEqual(hub.created, ['tester/pokemon-lora']);
    assert.equal(hub.pushed.length, 1);
    const commit = hub.pushed[0];
    assert.equal(commit.title, 'End of training');
    const names = [...commit.files.keys()];
    for (const f of ['pytorch_lora_weights.safetensors', 'README.md', 'image_0.png', 'metrics.jsonl', 'samples/final-0.png']) assert.ok(names.includes(f), `${f} uploaded (got ${names.join(', ')})`);
    assert.ok(!names.some((n) => n.startsWith('checkpoint-')), 'checkpoints stay local');
    assert.ok(commit.files.get('pytorch_lora_weights.safetensors')!.equals(fs.readFileSync(path.join(out, 'pytorch_lora_weights.safetensors'))));
    const card = commit.files.get('README.md')!.toString();
    assert.deepEqual(frontMatter(card), { base_model: 'runwayml/stable-diffusion-v1-5', library_name: 'diffusers', license: 'creativeml-openrail-m', inference: true, tags: [...MODEL_CARD_TAGS] });
    assert.match(card, /# LoRA text2image fine-tuning - tester\/pokemon-lora\nThese are LoRA adaption weights for runwayml\/stable-diffusion-v1-5\. The weights were fine-tuned on the lambdalabs\/pokemon-blip-captions dataset\./);
    assert.match(card, /!\[img_0\]\(\.\/image_0\.png\)/);
    // The token is never recorded in the LoRA file.
    assert.ok(!fs.readFileSync(path.join(out, 'pytorch_lora_weights.safetensors')).includes(TOKEN));

    // `lora-studio push` retries; without a token it fails, keeping the files, and says how to retry.
    const again = await cli(['push', out, '--hub_model_id=tester/pokemon-lora'], env);
    assert.equal(again.status, 0, again.stderr);
    assert.equal(hub.pushed.length, 2);
    const noToken = await cli(['push', out], { ...env, HF_TOKEN: '' });
    assert.equal(noToken.status, 1);
    assert.match(noToken.stderr, /needs a Hugging Face token with write access.*retry with `lora-studio push/s);
    assert.ok(fs.existsSync(path.join(out, 'pytorch_lora_weights.safetensors')));
  } finally {
    await hub.stop();
  }
});
