// Several LoRAs at once, each with its own scale, turned into the lookups the models call for every
// LoRA target (`lookup(modulePath)` → adapters for the UNet, `textEncoderLookup` for the text encoder). The scale an adapter carries is
// userScale · alpha / rank: what diffusers' `set_adapters(weights)` and A1111's `<lora:name:weight>` apply.
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { LoraAdapter, LoraLookup } from '../engine/ops.js';
import type { LoraComponent } from './formats.js';
import type { LoraModule, LoraWeights } from './lora_file.js';

interface Tensors {
  readonly down: tf.Tensor2D;
  readonly up: tf.Tensor2D;
  readonly magnitude?: tf.Tensor1D;
}

interface Entry {
  readonly weights: LoraWeights;
  scale: number;
  /** By component, then module path. */
  readonly tensors: Map<LoraComponent, Map<string, { module: LoraModule; t: Tensors }>>;
}

export class LoraSet {
  private readonly entries = new Map<string, Entry>();
  private index = new Map<LoraComponent, Map<string, LoraAdapter[]>>();

  /** The UNet's adapters. Stable across add/remove/setScale, so a model can keep it. Adapters at scale 0 are left out (DoRA ones kept: at scale 0 they still rescale). */
  readonly lookup: LoraLookup = (modulePath) => this.index.get('unet')?.get(modulePath) ?? [];
  /** The text encoder's adapters, by path relative to the text model. */
  readonly textEncoderLookup: LoraLookup = (modulePath) => this.index.get('text_encoder')?.get(modulePath) ?? [];
  readonly textEncoder2Lookup: LoraLookup = (modulePath) => this.index.get('text_encoder_2')?.get(modulePath) ?? [];

  /** Adds a LoRA (already checked against the model by readLoraFile); returns its name (default: file name). */
  add(weights: LoraWeights, scale = 1, name = path.basename(weights.file, '.safetensors')): string {
    if (this.entries.has(name)) throw new Error(`a LoRA named "${name}" is already loaded; give the second one another name`);
    if (!Number.isFinite(scale)) throw new Error(`LoRA "${name}": scale ${scale} is not a finite number`);
    const tensors: Entry['tensors'] = new Map();
    for (const [component, modules] of weights.components ?? new Map([['unet' as const, weights.modules]])) {
      const mine = new Map<string, { module: LoraModule; t: Tensors }>();
      for (const [modulePath, m] of modules) {
        const k = m.kernelSize ?? 1;
        mine.set(modulePath, {
          module: m,
          t: {
            down: tf.tensor2d(m.down, [m.rank, m.inFeatures * k * k]),
            up: tf.tensor2d(m.up, [m.outFeatures, m.rank]),
            ...(m.magnitude ? { magnitude: tf.tensor1d(m.magnitude) } : {}),
          },
        });
      }
      tensors.set(component, mine);
    }
    this.entries.set(name, { weights, scale, tensors });
    this.rebuild();
    return name;
  }

  remove(name: string): void {
    const e = this.get(name);
    for (const mods of e.tensors.values()) for (const { t } of mods.values()) tf.dispose([t.down, t.up, ...(t.magnitude ? [t.magnitude] : [])]);
    this.entries.delete(name);
    this.rebuild();
  }

  setScale(name: string, scale: number): void {
    if (!Number.isFinite(scale)) throw new Error(`LoRA "${name}": scale ${scale} is not a finite number`);
    this.get(name).scale = scale;
    this.rebuild();
  }

  scaleOf(name: string): number {
    return this.get(name).scale;
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  get size(): number {
    return this.entries.size;
  }

  dispose(): void {
    for (const name of this.names()) this.remove(name);
  }

  private get(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw new Error(`no LoRA named "${name}" is loaded (loaded: ${this.names().join(', ') || 'none'})`);
    return e;
  }

  /** Adapters are immutable, so a scale change builds a new index rather than mutating what a model holds. */
  private rebuild(): void {
    const index = new Map<LoraComponent, Map<string, LoraAdapter[]>>();
    for (const e of this.entries.values()) {
      for (const [component, mods] of e.tensors) {
        const byPath = index.get(component) ?? new Map<string, LoraAdapter[]>();
        index.set(component, byPath);
        for (const [modulePath, { module: m, t }] of mods) {
          if (e.scale === 0 && !t.magnitude) continue;
          const adapter: LoraAdapter = { down: t.down, up: t.up, scale: (e.scale * m.alpha) / m.rank, ...(t.magnitude ? { magnitude: t.magnitude } : {}) };
          const list = byPath.get(modulePath);
          if (list) list.push(adapter);
          else byPath.set(modulePath, [adapter]);
        }
      }
    }
    this.index = index;
  }
}

/**
 * Parses a `--lora FILE[:SCALE]` argument. The scale is taken only when what follows the last colon is a
 * number, so Windows paths (`C:\loras\x.safetensors`) stay whole.
 */
export function parseLoraArg(arg: string): { file: string; scale: number } {
  const m = /^(.*):([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)$/i.exec(arg);
  if (m && m[1] !== '' && !/^[a-z]$/i.test(m[1])) return { file: m[1], scale: Number(m[2]) };
  return { file: arg, scale: 1 };
}
