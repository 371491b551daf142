// The trainable LoRA weights: for every target layer, `down` [r, in·k·k] (PEFT's lora_A; a k×k conv's
// kernel [r, in, k, k] flattened, LoCon) and `up` [out, r] (lora_B), applied as y += (alpha/r) · up(down(x)).
// Initialisation is PEFT's init_lora_weights="gaussian" (peft/tuners/lora/layer.py, reset_lora_parameters):
// lora_A ~ N(0, std = 1/r), lora_B = 0, so training starts from the base model. DoRA (use_dora) adds a
// trainable magnitude [out] per layer, initialised to ‖W‖ per output channel (peft's DoraLinearLayer /
// DoraConv2dLayer.update_layer): with lora_B = 0 the layer again starts as the base one.
//
// LoRA dropout (peft's lora_dropout p): lora_B(lora_A(dropout(x))) · scale, nn.Dropout's arithmetic (keep with
// probability 1 − p, kept values times 1 / (1 − p)) on the adapter's input only; with DoRA the rescaled base
// term also sees the dropped input, as peft's forward passes it (base_result recomputed from dropout(x)).
//
// Parameters are plain tensors held by name — `<module>.lora.down.weight`, `.lora.up.weight`,
// `.lora.magnitude`, where <module> is the UNet module path, or `text_encoder.<path>` for the text encoder's
// layers (paths relative to its text model) — not tf.Variables: the training step differentiates a function
// of them with tf.valueAndGrads and the optimizer swaps in the updated tensors.
import * as tf from '@tensorflow/tfjs';
import type { LoraAdapter, LoraLookup } from '../core/engine/ops.js';
import type { Random } from './random.js';

/** The model a trained layer belongs to (LoRA files' components); the UNet's unless said. */
export type TrainedComponent = 'unet' | 'text_encoder';

export interface LoraTarget {
  readonly path: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** 1 for Linear (and 1×1 convs), k for a k×k Conv2d (LoCon). */
  readonly kernelSize?: number;
  /** The layer is a torch Conv2d (files store its weights 4-D, also at k = 1). */
  readonly conv?: boolean;
  readonly component?: TrainedComponent;
}

/** One module's weights as plain arrays, the shape the LoRA file writers take. */
export interface LoraModuleWeights {
  /** [rank, in·k·k] */
  readonly down: Float32Array;
  readonly up: Float32Array;
  readonly rank: number;
  /** The update is scaled by alpha / rank (the writers fold it in or store it, as each format does). */
  readonly alpha?: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly kernelSize?: number;
  readonly conv?: boolean;
  /** DoRA's magnitude [out]. */
  readonly magnitude?: Float32Array;
}

/** A module's key in params and checkpoints: its path, prefixed by its component unless it is the UNet's. */
export const moduleKey = (t: Pick<LoraTarget, 'path' | 'component'>): string => (t.component && t.component !== 'unet' ? `${t.component}.${t.path}` : t.path);
export const downName = (key: string) => `${key}.lora.down.weight`;
export const upName = (key: string) => `${key}.lora.up.weight`;
export const magnitudeName = (key: string) => `${key}.lora.magnitude`;

export interface TrainableLoraOptions {
  /** DoRA: each layer's frozen weight as PyTorch's rows [out, in·k·k], to initialise the magnitude ‖W‖. */
  readonly doraWeights?: (t: LoraTarget) => tf.Tensor2D;
  /** peft's lora_dropout p (0: none). */
  readonly dropout?: number;
}

/** Draws one dropout mask: the keep pattern (1 kept, 0 dropped) for an input of `size` values at a layer. */
export type DropoutMasks = (t: LoraTarget, targetIndex: number, size: number) => Float32Array;

export class TrainableLora {
  /** Every parameter by name, in a fixed order (targets in model order, down before up before magnitude). */
  readonly params = new Map<string, tf.Tensor>();
  /** While set (training steps), each adapter's input goes through dropout with masks from here. */
  dropoutMasks?: DropoutMasks;

  private constructor(
    readonly targets: readonly LoraTarget[],
    readonly rank: number,
    readonly alpha: number,
    readonly options: TrainableLoraOptions,
  ) {}

  get scale(): number {
    return this.alpha / this.rank;
  }

  get dora(): boolean {
    return this.options.doraWeights !== undefined;
  }

  get dropout(): number {
    return this.options.dropout ?? 0;
  }

  /** PEFT's gaussian init, drawing each lora_A from `rng` in target order. */
  static gaussian(targets: readonly LoraTarget[], rank: number, alpha: number, rng: Random, options: TrainableLoraOptions = {}): TrainableLora {
    const lora = new TrainableLora(targets, rank, alpha, options);
    const std = 1 / rank;
    for (const t of targets) {
      const fanIn = t.inFeatures * (t.kernelSize ?? 1) ** 2;
      const z = rng.normal([rank, fanIn]);
      for (let i = 0; i < z.length; i++) z[i] = Math.fround(z[i] * std);
      const key = moduleKey(t);
      lora.params.set(downName(key), tf.tensor2d(z, [rank, fanIn]));
      lora.params.set(upName(key), tf.zeros([t.outFeatures, rank]));
      if (options.doraWeights) lora.params.set(magnitudeName(key), tf.tidy(() => options.doraWeights!(t).square().sum(1).sqrt()));
    }
    return lora;
  }

  /** Given weights (a checkpoint, an init file), one entry per target. */
  static fromWeights(
    targets: readonly LoraTarget[],
    rank: number,
    alpha: number,
    weights: ReadonlyMap<string, { down: Float32Array; up: Float32Array; magnitude?: Float32Array }>,
    options: TrainableLoraOptions = {},
  ): TrainableLora {
    const lora = new TrainableLora(targets, rank, alpha, options);
    const missing = targets.filter((t) => !weights.has(moduleKey(t))).map(moduleKey);
    if (missing.length) throw new Error(`LoRA weights are missing ${missing.length} module(s) the model has, e.g. ${missing.slice(0, 3).join(', ')}`);
    for (const t of targets) {
      const key = moduleKey(t);
      const w = weights.get(key)!;
      const fanIn = t.inFeatures * (t.kernelSize ?? 1) ** 2;
      if (w.down.length !== rank * fanIn || w.up.length !== t.outFeatures * rank) {
        throw new Error(`LoRA weights for ${key}: expected down [${rank}, ${fanIn}] and up [${t.outFeatures}, ${rank}], got ${w.down.length} and ${w.up.length} values`);
      }
      lora.params.set(downName(key), tf.tensor2d(w.down, [rank, fanIn]));
      lora.params.set(upName(key), tf.tensor2d(w.up, [t.outFeatures, rank]));
      if (options.doraWeights) {
        if (w.magnitude?.length !== t.outFeatures) throw new Error(`LoRA weights for ${key}: DoRA needs a magnitude of ${t.outFeatures} values, got ${w.magnitude?.length ?? 'none'}`);
        lora.params.set(magnitudeName(key), tf.tensor1d(w.magnitude));
      }
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

  /**
   * The adapters of one component for a set of parameter tensors (the live ones, or the differentiated
   * copies inside a gradient). With `dropoutMasks` set, each adapter drops its input.
   */
  lookup(tensors: ReadonlyMap<string, tf.Tensor> = this.params, component: TrainedComponent = 'unet'): LoraLookup {
    const scale = this.scale;
    const byPath = new Map<string, LoraAdapter[]>();
    const p = this.dropout;
    const masks = p > 0 ? this.dropoutMasks : undefined;
    this.targets.forEach((t, index) => {
      if ((t.component ?? 'unet') !== component) return;
      const key = moduleKey(t);
      const down = tensors.get(downName(key)) as tf.Tensor2D | undefined;
      const up = tensors.get(upName(key)) as tf.Tensor2D | undefined;
      const magnitude = tensors.get(magnitudeName(key)) as tf.Tensor1D | undefined;
      const dropInput = masks && ((x: tf.Tensor) => x.mul(tf.tensor(masks(t, index, x.size), x.shape)).mul(1 / (1 - p)));
      if (down && up) byPath.set(t.path, [{ down, up, scale, ...(magnitude ? { magnitude } : {}), ...(dropInput ? { dropInput } : {}) }]);
    });
    return (modulePath) => byPath.get(modulePath) ?? [];
  }

  /** Whether any target belongs to `component`. */
  trains(component: TrainedComponent): boolean {
    return this.targets.some((t) => (t.component ?? 'unet') === component);
  }

  /** The weights as plain arrays per module key (for files and checkpoints). */
  async toModules(): Promise<Map<string, LoraModuleWeights>> {
    const out = new Map<string, LoraModuleWeights>();
    for (const t of this.targets) {
      const key = moduleKey(t);
      const magnitude = this.params.get(magnitudeName(key));
      out.set(key, {
        down: (await this.params.get(downName(key))!.data()) as Float32Array,
        up: (await this.params.get(upName(key))!.data()) as Float32Array,
        rank: this.rank,
        alpha: this.alpha,
        inFeatures: t.inFeatures,
        outFeatures: t.outFeatures,
        ...(t.kernelSize && t.kernelSize !== 1 ? { kernelSize: t.kernelSize } : {}),
        ...(t.conv ? { conv: true } : {}),
        ...(magnitude ? { magnitude: (await magnitude.data()) as Float32Array } : {}),
      });
    }
    return out;
  }

  /** The weights by component and module path, as the LoRA file writers take them (components with no modules left out). */
  async toComponents(): Promise<Map<TrainedComponent, Map<string, LoraModuleWeights>>> {
    const modules = await this.toModules();
    const out = new Map<TrainedComponent, Map<string, LoraModuleWeights>>();
    for (const t of this.targets) {
      const c = t.component ?? 'unet';
      if (!out.has(c)) out.set(c, new Map());
      out.get(c)!.set(t.path, modules.get(moduleKey(t))!);
    }
    return out;
  }

  dispose(): void {
    for (const p of this.params.values()) p.dispose();
    this.params.clear();
  }
}

/** Dropout masks drawn in call order from `rng` (torch.rand ≥ p keeps, as nn.Dropout's Bernoulli(1 − p)); none for p = 0. */
export function dropoutMasksFrom(rng: Random, p: number): DropoutMasks | undefined {
  if (p <= 0) return undefined;
  return (_t, _i, size) => Float32Array.from(rng.uniform([size]), (u) => (u >= p ? 1 : 0));
}
