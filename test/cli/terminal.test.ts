// What a person sees in a terminal. The CLI runs under a pseudo-terminal (util-linux `script`), as the
// demo's children do: the trainer and the generator draw their progress bars (step, loss, samples/s,
// ETA; image count), and print no protocol JSON and none of Dawn's or tfjs' noise. The bar itself is
// checked on a fake stream (TTY and pipe), and colours follow NO_COLOR.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, TINY_SHAPES } from '../helpers/fixtures.js';
import { ProgressBar, colours, clock } from '../../src/cli/terminal.js';

const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;
const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs `lora-studio ARGS` under a pseudo-terminal; returns what the terminal received, colour codes removed. */
function underPty(args: string[]): { code: number; screen: string } {
  const cmd = [process.execPath, '--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), ...args].map(shellQuote).join(' ');
  const r = spawnSync('script', ['-q', '-e', '-c', cmd, '/dev/null'], { cwd: REPO, encoding: 'utf8', env: { ...process.env, COLUMNS: '120', NO_COLOR: '' }, input: '' });
  return { code: r.status ?? -1, screen: r.stdout.replace(/\x1b\[[0-9;]*m/g, '') };
}

const JSON_LINE = /^\s*\{"/m;
const NOISE = /artificially reduced|Couldn't load Vulkan|Platform \w+ has already been set/;

test('train on a terminal: a progress bar with step, loss, samples/s and ETA; no JSON, no native noise', { skip: hasScript ? false : 'util-linux script is not installed' }, () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'pty-train-'));
  const { code, screen } = underPty([
    'train', `--pretrained_model_name_or_path=${path.join(TINY_SHAPES, 'model')}`, `--train_data_dir=${path.join(TINY_SHAPES, 'dataset-corner')}`,
    `--output_dir=${out}`, '--resolution=64', '--train_batch_size=1', '--max_train_steps=2', '--checkpointing_steps=1000', '--seed=0', '--backend=auto',
  ]);
  assert.equal(code, 0, screen);
  // The last redraw of the bar: "train ████… 2/2 loss 0.1234 · 1.23 samples/s · ETA 0:00".
  assert.match(screen, /train [█░]+ 2\/2 loss \d+\.\d{4} · \d+\.\d+ samples\/s · ETA \d+:\d\d/);
  assert.doesNotMatch(screen, JSON_LINE, 'protocol JSON on a terminal');
  assert.doesNotMatch(screen, NOISE);
  assert.ok(fs.existsSync(path.join(out, 'pytorch_lora_weights.safetensors')));
});

test('generate on a terminal: several prompts and LoRA scales in one call, one bar, the files named', { skip: hasScript ? false : 'util-linux script is not installed' }, () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'pty-gen-'));
  const lora = path.join(TINY_SHAPES, 'reference-lora/pytorch_lora_weights.safetensors');
  const { code, screen } = underPty([
    'generate', '--model', path.join(TINY_SHAPES, 'model'), '--prompt', 'a red circle', '--prompt', 'a blue square', '--seed', '0', '--seed', '1',
    '--lora', lora, '--lora-scale', '0', '--lora-scale', '1', '--steps', '2', '--out', path.join(out, '{scale}-{i}.png'), '--grid', path.join(out, 'grid.png'),
  ]);
  assert.equal(code, 0, screen);
  // One bar over both batches (a batch per LoRA scale, 2 images each): its last redraw names the last batch.
  assert.match(screen, /generate [█░]+ 8\/8 images 3–4\/4/);
  assert.doesNotMatch(screen, JSON_LINE);
  assert.doesNotMatch(screen, NOISE);
  for (const f of ['0-0.png', '0-1.png', '1-0.png', '1-1.png', 'grid.png']) assert.ok(fs.existsSync(path.join(out, f)), f);
});

function fakeStream(isTTY: boolean) {
  const chunks: string[] = [];
  return { chunks, stream: { isTTY, columns: 100, write: (c: string) => (chunks.push(c), true) } };
}

test('ProgressBar: redrawn in place on a terminal, a plain line now and then on a pipe', () => {
  const tty = fakeStream(true);
  const bar = new ProgressBar(tty.stream, { label: 'x' });
  bar.update(1, 4, 'a');
  bar.log('hello');
  bar.update(4, 4, 'b');
  bar.finish();
  const screen = tty.chunks.join('');
  assert.match(screen, /\r\x1b\[2K.*x.* 1\/4 a/);
  assert.match(screen, /\r\x1b\[2Khello\n/);
  assert.ok(screen.endsWith('4/4 b\n'), JSON.stringify(screen.slice(-40)));

  const pipe = fakeStream(false);
  const plain = new ProgressBar(pipe.stream, { label: 'x', plainEveryMs: 60_000 });
  for (let i = 1; i <= 50; i++) plain.update(i, 50, `step ${i}`);
  // The first and the last only (the interval is a minute): no carriage returns, no escape codes.
  assert.deepEqual(pipe.chunks, ['x 1/50 step 1\n', 'x 50/50 step 50\n']);
});

test('colours only on a terminal, never with NO_COLOR', () => {
  assert.equal(colours({ isTTY: true, write: () => true }, { TERM: 'xterm' }).red('r'), '\x1b[31mr\x1b[39m');
  assert.equal(colours({ isTTY: true, write: () => true }, { TERM: 'xterm', NO_COLOR: '1' }).red('r'), 'r');
  assert.equal(colours({ isTTY: false, write: () => true }, {}).red('r'), 'r');
  assert.equal(clock(3725), '1:02:05');
  assert.equal(clock(Number.NaN), '?');
});
