// LoRAs named on a command line or in a notebook cell, loaded against a model's UNet and text encoder.
import path from 'node:path';
import { readLoraFile, type LoraModelTargets } from '../lora/lora_file.js';
import type { LoraTarget } from '../lora/formats.js';
import { LoraSet } from '../lora/lora_set.js';
import { Conv2d, type LoraLayer } from '../models/layers.js';
import type { StableDiffusion } from './stable_diffusion.js';

/** A LoRA file and its scale, as `parseLoraArg` reads `FILE[:SCALE]`. */
export interface LoraSpec {
  readonly file: string;
  readonly scale: number;
}

const targetOf = (l: LoraLayer): LoraTarget => ({ path: l.path, inFeatures: l.inFeatures, outFeatures: l.outFeatures, kernelSize: l.kernelSize, ...(l instanceof Conv2d ? { conv: true } : {}) });

/** Every layer of the pipeline a LoRA file may change: all of the UNet's Linear/Conv2d layers and the text encoder's Linears. */
export function loraTargetsOf(sd: StableDiffusion): LoraModelTargets {
  return {
    unet: sd.unet.loraLayers().map(targetOf),
    text_encoder: sd.textEncoder.loraLayers().map(targetOf),
    ...(sd.textEncoder2 ? { text_encoder_2: [...sd.textEncoder2.text_model.scope.layers.values()].map(targetOf) } : {}),
  };
}

export function loadLoras(sd: StableDiffusion, specs: readonly LoraSpec[]): LoraSet {
  const set = new LoraSet();
  const targets = loraTargetsOf(sd);
  for (const s of specs) {
    const weights = readLoraFile(path.resolve(s.file), targets);
    for (const w of weights.warnings) console.error(`warning: ${w}`);
    set.add(weights, s.scale, s.file);
  }
  return set;
}
