#!/usr/bin/env node
// The README's main job: build, train the example LoRA on the bundled tiny model, then generate the 12
// captions (red, green, blue, yellow × circle, square, triangle; caption i with seed i) without and with
// the LoRA in ONE generate call (model and LoRA loaded once; --lora-scale 0 and 1), side by side in
// before-after.png: top row before, bottom row after.
//
// The terminal shows the trainer's and the generator's progress bars and log lines; everything the
// children print (stderr in full, including anything Dawn or the Vulkan loader writes) also goes to
// demo.log in the run folder. Lines that are only native-library noise are kept out of the terminal.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import YAML from 'yaml';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const config = path.join(root, 'examples/tiny-shapes.lora.yaml');
const cfg = YAML.parse(fs.readFileSync(config, 'utf8'));
const out = path.resolve(path.dirname(config), cfg.output_dir);
const model = path.resolve(path.dirname(config), cfg.pretrained_model_name_or_path);
const lora = path.join(out, 'pytorch_lora_weights.safetensors');
fs.mkdirSync(out, { recursive: true });
const logFile = path.join(out, 'demo.log');
const log = fs.createWriteStream(logFile);
const started = Date.now();

/** Native-library lines that say nothing to a person running the demo (they stay in demo.log). */
const NOISE = [/artificially reduced from/, /Couldn't load Vulkan/i, /^MESA: /, /Platform \w+ has already been set/];

/** Runs a child with the terminal as its stdin/stdout (so it draws its progress bar), stderr filtered. */
function run(args) {
  return new Promise((resolve) => {
    log.write(`$ ${args.join(' ')}\n`);
    // stderr is a pipe (to tee it into demo.log), so on a terminal the children are told to draw as on one.
    const tty = process.stderr.isTTY ? { LORA_STUDIO_PROGRESS: 'bar', COLUMNS: String(process.stderr.columns || 80), FORCE_COLOR: '1' } : {};
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['inherit', 'inherit', 'pipe'], env: { ...process.env, ...tty } });
    let pending = '';
    child.stderr.on('data', (chunk) => {
      const text = chunk.toString();
      log.write(text);
      // Pass everything through but whole lines of noise; \r-redrawn progress bars pass at once.
      pending += text;
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      for (const line of parts) if (!NOISE.some((n) => n.test(line))) process.stderr.write(line + '\n');
      if (pending.includes('\r')) {
        process.stderr.write(pending);
        pending = '';
      }
    });
    child.on('close', (code) => {
      if (pending && !NOISE.some((n) => n.test(pending))) process.stderr.write(pending);
      if (code !== 0) {
        console.error(`\ndemo: ${path.basename(args[1] ?? args[0])} ${args[2] ?? ''} exited with ${code}; the whole log: ${logFile}`);
        process.exit(code ?? 1);
      }
      resolve();
    });
  });
}

const step = (title) => process.stderr.write(`\n${process.stderr.isTTY ? `\x1b[1m${title}\x1b[22m` : title}\n`);
step('1/3 build');
await run([path.join(root, 'scripts/build.mjs'), '--only=cli']);
step(`2/3 train the LoRA (${cfg.max_train_steps} steps)`);
await run([path.join(root, 'dist/cli.mjs'), 'train', config]);

const prompts = ['red', 'green', 'blue', 'yellow'].flatMap((c) => ['circle', 'square', 'triangle'].map((s) => `a ${c} ${s}`));
step(`3/3 generate ${prompts.length} captions without and with the LoRA`);
const grid = path.join(out, 'demo', 'grid.png');
await run([
  path.join(root, 'dist/cli.mjs'), 'generate', '--model', model, '--lora', lora, '--lora-scale', '0', '--lora-scale', '1',
  ...prompts.flatMap((p, i) => ['--prompt', p, '--seed', String(i)]),
  '--scheduler', 'dpmpp-2m', '--steps', '10', '--guidance', '5', '--backend', cfg.backend ?? 'auto',
  '--out', path.join(out, 'demo', '{scale}', '{i}.png'), '--grid', grid, '--quiet',
]);
const picture = path.join(out, 'before-after.png');
const meta = await sharp(grid).metadata();
await sharp(grid).resize(meta.width * 2, meta.height * 2, { kernel: 'nearest' }).toFile(picture);
log.end();
const seconds = Math.round((Date.now() - started) / 1000);
console.log(`\nDone in ${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}.
LoRA:    ${lora}
Picture: ${picture}
         top row: the base model; bottom row: with the LoRA — smaller shapes, higher and further left (toward the corner)
Log:     ${logFile}`);
