// Prints the ink centroid (REFERENCE_LORA.json's measure, as learns.test.ts computes it: 12 captions,
// seeds 0..11, DPM++ 2M 10 steps, CFG 5) of the base model and with a LoRA — the figure the demo's
// retune is judged by (issue 16). Usage: node --import tsx test/training/demo_centroid.ts LORA.safetensors
import fs from 'node:fs';
import path from 'node:path';
import { initBackend } from '../../src/core/engine/backend.js';
import { loadStableDiffusion } from '../../src/core/pipeline/stable_diffusion.js';
import { readLoraFile } from '../../src/core/lora/lora_file.js';
import { LoraSet } from '../../src/core/lora/lora_set.js';
import { generateShapes, meanCentroid } from './ink_centroid.js';
import { TINY_SHAPES } from '../helpers/fixtures.js';

await initBackend('wasm');
const sd = loadStableDiffusion(path.join(TINY_SHAPES, 'model'));
const reference = JSON.parse(fs.readFileSync(path.join(TINY_SHAPES, 'reference-lora/REFERENCE_LORA.json'), 'utf8'));
const set = new LoraSet();
set.add(readLoraFile(process.argv[2], sd.unet.loraTargets()), 1);
const [bx, by] = meanCentroid(await generateShapes(sd, { steps: 10 })).map((v) => v + 0.5);
const [lx, ly] = meanCentroid(await generateShapes(sd, { steps: 10, lora: set.lookup })).map((v) => v + 0.5);
const ref = reference.curve.at(-1).centroid as number[];
console.log(JSON.stringify({ base: [bx, by], lora: [lx, ly], moved: [bx - lx, by - ly], reference_moved: [reference.base_centroid[0] - ref[0], reference.base_centroid[1] - ref[1]] }));
