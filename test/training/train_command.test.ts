// `lora-studio train` rejects a bad run config before loading anything, listing every problem by key and
// line, with exit status 2 and one `error` event (code config) on stdout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, TINY_SHAPES } from '../helpers/fixtures.js';
import { TRAINER_EVENTS } from '../../src/protocol/training.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'train-cmd-'));
const cli = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), 'train', ...args], { cwd: REPO, encoding: 'utf8', input: '' });

test('a config with five mistakes yields five errors, by line, and nothing is loaded', () => {
  const file = path.join(tmp, 'bad.lora.yaml');
  fs.writeFileSync(
    file,
    [
      `pretrained_model_name_or_path: ${path.join(TINY_SHAPES, 'model')}`,
      `train_data_dir: ${path.join(TINY_SHAPES, 'no-such-folder')}`,
      'rank: 0',
      'learning_rate: -1',
      'lr_scheduler: cosine_foo',
      'train_batch_size: many',
      'resolution: 64',
      'max_train_steps: 10',
      `output_dir: ${path.join(tmp, 'out')}`,
    ].join('\n'),
  );
  const r = cli([file]);
  assert.equal(r.status, 2, r.stderr);
  const errors = r.stderr.split('\n').filter((l) => / error: /.test(l));
  assert.equal(errors.length, 5, r.stderr);
  for (const [i, line] of [2, 3, 4, 5, 6].entries()) assert.ok(errors[i].startsWith(`${file}:${line}:`), errors[i]);
  assert.match(r.stderr, /nothing was loaded/);
  const { messages: events, problems } = TRAINER_EVENTS.readAll(r.stdout);
  assert.equal(events.length, 1);
  assert.deepEqual(problems, [], 'every event is valid protocol');
  assert.ok(events[0].type === 'error' && events[0].code === 'config' && events[0].message.split('\n').length === 5);
  assert.ok(!fs.existsSync(path.join(tmp, 'out')), 'no output folder created');
});

test("the guide's flags are accepted as they are, and their mistakes named by flag", () => {
  const r = cli([`--pretrained_model_name_or_path=${path.join(TINY_SHAPES, 'model')}`, `--train_data_dir=${path.join(TINY_SHAPES, 'dataset-corner')}`, '--rank', 'four', '--resolution=64', '--max_train_steps=1', `--output_dir=${path.join(tmp, 'flags')}`]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /error: `--rank` must be an integer/);
  assert.equal(cli(['--help']).status, 0);
});
