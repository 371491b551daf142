// LoRAs named on a command line or in a notebook cell, loaded against a model's UNet.
import path from 'node:path';
import { readLoraFile } from '../lora/lora_file.js';
import { LoraSet } from '../lora/lora_set.js';
import type { StableDiffusion } from './stable_diffusion.js';

export interface LoraSpec {
  readonly file: string;
  readonly scale: number;
}

/** "FILE[:SCALE]" — the scale is the part after the last colon when it is a number (so C:\… paths work). */
export function parseLoraSpec(spec: string): LoraSpec {
  const m = /^(.*):(-?\d+(?:\.\d+)?|-?\.\d+)$/.exec(spec);
  const file = m ? m[1] : spec;
  const scale = m ? Number(m[2]) : 1;
  if (!file) throw new Error(`--lora "${spec}": expected FILE[:SCALE]`);
  return { file, scale };
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
