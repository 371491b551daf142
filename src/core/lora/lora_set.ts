// Several LoRAs at once, each with its own scale, turned into the lookup the models call for every
// LoRA target (`lookup(modulePath)` → adapters). The scale an adapter carries is
// userScale · alpha / rank: what diffusers' `set_adapters(weights)` and A1111's `<lora:name:weight>` apply.
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { LoraAdapter, LoraLookup } from '../engine/ops.js';
import type { LoraWeights } from './lora_file.js';

interface Entry {
  readonly weights: LoraWeights;
  scale: number;
  readonly tensors: Map<string, { down: tf.Tensor2D; up: tf.Tensor2D }>;
}

export class LoraSet {
  private readonly entries = new Map<string, Entry>();
  private index = new Map<string, LoraAdapter[]>();

  /** Stable across add/remove/setScale, so a model can keep it. Adapters at scale 0 are left out. */
  readonly lookup: LoraLookup = (modulePath) => this.index.get(modulePath) ?? [];

  /** Adds a LoRA (already checked against the model by readLoraFile); returns its name (default: file name). */
  add(weights: LoraWeights, scale = 1, name = path.basename(weights.file, '.safetensors')): string {
    if (this.entries.has(name)) throw new Error(`a LoRA named "${name}" is already loaded; give the second one another name`);
    if (!Number.isFinite(scale)) throw new Error(`LoRA "${name}": scale ${scale} is not a finite number`);
    const tensors = new Map<string, { down: tf.Tensor2D; up: tf.Tensor2D }>();
    for (const [modulePath, m] of weights.modules) {
      tensors.set(modulePath, {
        down: tf.tensor2d(m.down, [m.rank, m.inFeatures]),
        up: tf.tensor2d(m.up, [m.outFeatures, m.rank]),
      });
    }
    this.entries.set(name, { weights, scale, tensors });
    this.rebuild();
    return name;
  }

  remove(name: string): void {
    const e = this.get(name);
    for (const t of e.tensors.values()) tf.dispose([t.down, t.up]);
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
    const index = new Map<string, LoraAdapter[]>();
    for (const e of this.entries.values()) {
      if (e.scale === 0) continue;
      for (const [modulePath, t] of e.tensors) {
        const m = e.weights.modules.get(modulePath)!;
        const adapter: LoraAdapter = { down: t.down, up: t.up, scale: (e.scale * m.alpha) / m.rank };
        const list = index.get(modulePath);
        if (list) list.push(adapter);
        else index.set(modulePath, [adapter]);
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
