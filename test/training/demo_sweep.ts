// Retuning the demo (issue 16): trains the tiny-shapes LoRA in-process with the example's recipe plus the
// flags given (diffusers' names), saving a checkpoint every EVERY steps, then prints the ink centroid of
// each checkpoint and of the final LoRA — the measure of demo_centroid.ts / learns.test.ts (12 captions,
// seeds 0..11, DPM++ 2M 10 steps, CFG 5) — next to the base model's and the distance diffusers' reference
// LoRA moved in 600 steps. `--base=X,Y` skips regenerating the base model's 12 images.
//   node --import tsx test/training/demo_sweep.ts OUT_DIR EVERY [--base=28.25,34.45] [--train_batch_size=2 --max_train_steps=120 --snr_gamma=5 …]
import fs from 'node:fs';
import path from 'node:path';
import { REPO, TINY_SHAPES } from '../helpers/fixtures.js';
import { configFromFlags } from '../../src/core/config/flags.js';
import { initBackend } from '../../src/core/engine/backend.js';
import { train } from '../../src/training/loop.js';
import { MemoryEventSink } from '../../src/training/events.js';
import { loadStableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { readLoraFile } from '../../src/core/lora/lora_file.js';
import { LoraSet } from '../../src/core/lora/lora_set.js';
import { generateShapes, meanCentroid } from './ink_centroid.js';

await initBackend('wasm');
const [out, every, ...rest] = process.argv.slice(2);
if (!out || !(Number(every) > 0)) throw new Error('usage: demo_sweep.ts OUT_DIR EVERY [--base=X,Y] [diffusers flags…]');
const baseFlag = rest.find((f) => f.startsWith('--base='));
const flags = rest.filter((f) => f !== baseFlag);
// The example's recipe before issue 16's retune (examples/tiny-shapes.lora.yaml has the current one); later flags win.
const loaded = configFromFlags(
  [
    `--pretrained_model_name_or_path=${path.join(TINY_SHAPES, 'model')}`, `--train_data_dir=${path.join(TINY_SHAPES, 'dataset-corner')}`, `--output_dir=${out}`,
    '--resolution=64', '--center_crop', '--train_batch_size=4', '--rank=4', '--learning_rate=1e-2', '--adam_weight_decay=1e-2', '--lr_scheduler=constant',
    '--max_grad_norm=1', '--max_train_steps=60', `--checkpointing_steps=${every}`, '--checkpoints_total_limit=100', '--seed=0', '--backend=wasm', '--cache_latents',
    ...flags,
  ],
  { cwd: REPO },
);
if (!loaded.config) throw new Error(loaded.problems.map((p) => p.message).join('\n'));
const t0 = performance.now();
const r = await train({ config: loaded.config, events: new MemoryEventSink() });
console.log(`train ${r.status} in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${flags.join(' ')}`);

const sd = loadStableDiffusion(path.join(TINY_SHAPES, 'model'));
const reference = JSON.parse(fs.readFileSync(path.join(TINY_SHAPES, 'reference-lora/REFERENCE_LORA.json'), 'utf8'));
const refMoved = [reference.base_centroid[0] - reference.curve.at(-1).centroid[0], reference.base_centroid[1] - reference.curve.at(-1).centroid[1]];
// +0.5: REFERENCE_LORA.json measures at pixel centres.
const base = baseFlag ? baseFlag.slice('--base='.length).split(',').map(Number) : meanCentroid(await generateShapes(sd, { steps: 10 })).map((v) => v + 0.5);
console.log(`base (${base.map((v) => v.toFixed(2)).join(', ')}); the reference moved (${refMoved.map((v) => v.toFixed(1)).join(', ')}) in 600 steps`);
const checkpoints = fs.readdirSync(out).filter((d) => d.startsWith('checkpoint-')).sort((a, b) => Number(a.split('-')[1]) - Number(b.split('-')[1]));
for (const file of [...checkpoints.map((d) => path.join(out, d, 'pytorch_lora_weights.safetensors')), path.join(out, 'pytorch_lora_weights.safetensors')]) {
  const set = new LoraSet();
  set.add(readLoraFile(file, sd.unet.loraTargets()), 1);
  const [x, y] = meanCentroid(await generateShapes(sd, { steps: 10, lora: set.lookup })).map((v) => v + 0.5);
  set.dispose();
  console.log(`${path.basename(path.dirname(file)) === path.basename(out) ? 'final' : path.basename(path.dirname(file))}: (${x.toFixed(2)}, ${y.toFixed(2)}), moved (${(base[0] - x).toFixed(2)}, ${(base[1] - y).toFixed(2)})`);
}
