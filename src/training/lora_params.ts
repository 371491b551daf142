// The trainable LoRA weights: for every target linear layer of the UNet, `down` [r, in] (PEFT's lora_A)
// and `up` [out, r] (lora_B), applied as y += (alpha/r) · up(down(x)). The guide sets alpha = r, so the
// scale is 1. Initialisation is PEFT's init_lora_weights="gaussian" (peft/tuners/lora/layer.py,
// reset_lora_parameters): lora_A ~ N(0, std = 1/r), lora_B = 0, so training starts from the base model.
//
// Parameters are plain tensors held by name (`<module path>.lora.down.weight` / `.lora.up.weight`, the
// diffusers key without its `unet.` prefix), not tf.Variables: the training step differentiates a
// function of them with tf.valueAndGrads and the optimizer swaps in the updated tensors.
import * as tf from '@tensorflow/tfjs';
import type { LoraAdapter, LoraLookup } from '../core/engine/ops.js';
import type { Random } from './random.js';

export interface LoraTarget {
  readonly path: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
}

/** One module's weights as plain arrays, the shape the LoRA file writers take. */
export interface LoraModuleWeights {
  readonly down: Float32Array;
  readonly up: Float32Array;
  readonly rank: number;
  /** The update is scaled by alpha / rank (the writers fold it in or store it, as each format does). */
  readonly alpha?: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
}

export const downName = (modulePath: string) => `${modulePath}.lora.down.weight`;
export const upName = (modulePath: string) => `${modulePath}.lora.up.weight`;

export class TrainableLora {
  /** Every parameter by name, in a fixed order (targets in model order, down before up). */
  readonly params = new Map<string, tf.Tensor>();

  private constructor(
    readonly targets: readonly LoraTarget[],
    readonly rank: number,
    readonly alpha: number,
  ) {}

  get scale(): number {
    return this.alpha / this.rank;
  }

  /** PEFT's gaussian init, drawing each lora_A from `rng` in target order. */
  static gaussian(targets: readonly LoraTarget[], rank: number, alpha: number, rng: Random): TrainableLora {
    const lora = new TrainableLora(targets, rank, alpha);
    const std = 1 / rank;
    for (const t of targets) {
      const z = rng.normal([rank, t.inFeatures]);
      for (let i = 0; i < z.length; i++) z[i] = Math.fround(z[i] * std);
      lora.params.set(downName(t.path), tf.tensor2d(z, [rank, t.inFeatures]));
      lora.params.set(upName(t.path), tf.zeros([t.outFeatures, rank]));
    }
    return lora;
  }

  /** Given weights (a checkpoint, an init file), one entry per target. */
  static fromWeights(targets: readonly LoraTarget[], rank: number, alpha: number, weights: ReadonlyMap<string, { down: Float32Array; up: Float32Array }>): TrainableLora {
    const lora = new TrainableLora(targets, rank, alpha);
    const missing = targets.filter((t) => !weights.has(t.path)).map((t) => t.path);
    if (missing.length) throw new Error(`LoRA weights are missing ${missing.length} module(s) the model has, e.g. ${missing.slice(0, 3).join(', ')}`);
    for (const t of targets) {
      const w = weights.get(t.path)!;
      if (w.down.length !== rank * t.inFeatures || w.up.length !== t.outFeatures * rank) {
        throw new Error(`LoRA weights for ${t.path}: expected down [${rank}, ${t.inFeatures}] and up [${t.outFeatures}, ${rank}], got ${w.down.length} and ${w.up.length} values`);
      }
      lora.params.set(downName(t.path), tf.tensor2d(w.down, [rank, t.inFeatures]));
      lora.params.set(upName(t.path), tf.tensor2d(w.up, [t.outFeatures, rank]));
    }
    return lora;
  }

  /** Number of trainable values. */
  get parameterCount(): number {
    let n = 0;
    for (const p of this.params.values()) n += p.size;
    return n;
  }

  shapes(): Map<string, number[]> {
    return new Map([...this.params].map(([k, v]) => [k, v.shape]));
  }

  /** The adapters for a set of parameter tensors (the live ones, or the differentiated copies inside a gradient). */
  lookup(tensors: ReadonlyMap<string, tf.Tensor> = this.params): LoraLookup {
    const scale = this.scale;
    const byPath = new Map<string, LoraAdapter[]>();
    for (const t of this.targets) {
      const down = tensors.get(downName(t.path)) as tf.Tensor2D | undefined;
      const up = tensors.get(upName(t.path)) as tf.Tensor2D | undefined;
      if (down && up) byPath.set(t.path, [{ down, up, scale }]);
    }
    return (modulePath) => byPath.get(modulePath) ?? [];
  }

  /** The weights as plain arrays per module (for files and checkpoints). */
  async toModules(): Promise<Map<string, LoraModuleWeights>> {
    const out = new Map<string, LoraModuleWeights>();
    for (const t of this.targets) {
      out.set(t.path, {
        down: (await this.params.get(downName(t.path))!.data()) as Float32Array,
        up: (await this.params.get(upName(t.path))!.data()) as Float32Array,
        rank: this.rank,
        alpha: this.alpha,
        inFeatures: t.inFeatures,
        outFeatures: t.outFeatures,
      });
    }
    return out;
  }

  dispose(): void {
    for (const p of this.params.values()) p.dispose();
    this.params.clear();
  }
}
