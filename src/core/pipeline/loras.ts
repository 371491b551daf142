// LoRAs named on a command line or in a notebook cell, loaded against a model's UNet.
import path from 'node:path';
import { readLoraFile } from '../lora/lora_file.js';
import { LoraSet } from '../lora/lora_set.js';
import type { StableDiffusion } from './stable_diffusion.js';

/** A LoRA file and its scale, as `parseLoraArg` reads `FILE[:SCALE]`. */
export interface LoraSpec {
  readonly file: string;
  readonly scale: number;
}

export function loadLoras(sd: StableDiffusion, specs: readonly LoraSpec[]): LoraSet {
  const set = new LoraSet();
  const targets = sd.unet.loraTargets();
  for (const s of specs) {
    const weights = readLoraFile(path.resolve(s.file), targets);
    for (const key of weights.skipped) console.error(`warning: ${s.file}: skipped ${key} (only UNet LoRA weights are applied)`);
    set.add(weights, s.scale, s.file);
  }
  return set;
}
