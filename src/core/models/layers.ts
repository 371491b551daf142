// The torch.nn building blocks the diffusers models are made of (Linear, Conv2d, GroupNorm, LayerNorm),
// each holding its parameters and running through ops() so a backend can swap the kernels.
//
// A model is built once against a ParamSource, which every layer asks for its parameters by full
// state-dict name and PyTorch shape. The same construction code therefore
//   - loads a file and checks it (CheckedParams: a missing or wrong-shaped key is reported by name),
//   - lists the parameters a config needs (ShapeRecorder, for expectedParamShapes), and
//   - builds random weights of the right shapes (randomParams),
// so the parameter names and shapes are written down in exactly one place: the modules themselves.
import * as tf from '@tensorflow/tfjs';
import { ops, type LoraAdapter, type LoraLookup } from '../engine/ops.js';
import { Params } from './params.js';

export interface ParamSource {
  /** The tensor stored as `name`; `torchShape` is its PyTorch shape (OIHW for conv weights). */
  take(name: string, torchShape: readonly number[]): tf.Tensor;
}

/** Params keeps conv weights HWIO (transposed once at load); every other tensor as PyTorch has it. */
export const storedShape = (torchShape: readonly number[]): number[] =>
  torchShape.length === 4 ? [torchShape[2], torchShape[3], torchShape[1], torchShape[0]] : [...torchShape];
const torchShapeOfStored = (s: readonly number[]): number[] => (s.length === 4 ? [s[3], s[2], s[0], s[1]] : [...s]);

/**
 * Hands out the tensors of loaded Params, collecting every missing, wrong-shaped or unexpected key for one
 * error (PyTorch's load_state_dict(strict=True)).
 */
export class CheckedParams implements ParamSource {
  private readonly missing: string[] = [];
  private readonly misshapen: string[] = [];
  private readonly taken = new Set<string>();

  constructor(
    readonly params: Params,
    /** What is being built, for the message ("UNet2DConditionModel"). */
    readonly what: string,
    /** Keys a file may hold that are no parameters (buffers older writers saved, as transformers' CLIP position_ids). */
    readonly ignoredKeys: RegExp | null = null,
  ) {}

  take(name: string, torchShape: readonly number[]): tf.Tensor {
    this.taken.add(name);
    if (!this.params.has(name)) {
      this.missing.push(`missing "${name}" (expected shape ${JSON.stringify(torchShape)})`);
      return undefined as unknown as tf.Tensor; // never run: throwIfProblems() stops the build
    }
    const t = this.params.get(name);
    const want = storedShape(torchShape);
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      this.misshapen.push(`"${name}" has shape ${JSON.stringify(torchShapeOfStored(t.shape))} but config.json needs ${JSON.stringify(torchShape)}`);
    }
    return t;
  }

  throwIfProblems(): void {
    const unexpected = [...this.params.tensors.keys()].filter((name) => !this.taken.has(name) && !this.ignoredKeys?.test(name)).map((name) => `unexpected "${name}" (config.json has no such parameter)`);
    const groups = [this.missing, this.misshapen, unexpected];
    const total = groups.reduce((n, g) => n + g.length, 0);
    if (total === 0) return;
    // A few of each kind, so that one kind cannot hide another.
    const shown = groups.flatMap((g) => [...g.slice(0, 6), ...(g.length > 6 ? [`… and ${g.length - 6} more like it`] : [])]).map((p) => `  - ${p}`);
    throw new Error(
      `${this.params.source}: the weights do not fit the ${this.what} described by its config.json (${total} problem${total > 1 ? 's' : ''}):\n${shown.join('\n')}\n` +
        'Check that config.json and the weights come from the same model (and the same variant).',
    );
  }
}

/** Records the parameters a model asks for, without any weights: the model is built only to be listed, never run. */
export class ShapeRecorder implements ParamSource {
  readonly shapes = new Map<string, number[]>();

  take(name: string, torchShape: readonly number[]): tf.Tensor {
    if (this.shapes.has(name)) throw new Error(`internal: parameter ${name} declared twice`);
    this.shapes.set(name, [...torchShape]);
    return undefined as unknown as tf.Tensor;
  }
}

/**
 * Random weights for the given PyTorch shapes, reproducible from `seed` (each tensor from its own
 * stream keyed by its name, so the values do not depend on declaration order). Weights are uniform with
 * variance 1/fan_in, which keeps activations O(1) through the residual stacks; norm scales are 1, biases
 * small. Meant for benchmarks and shape tests, not for generating anything meaningful.
 */
export function randomParams(shapes: ReadonlyMap<string, readonly number[]>, seed = 0, source = `random weights (seed ${seed})`): Params {
  const tensors = new Map<string, tf.Tensor>();
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const isNorm = /(^|[._])(norm\d*|group_norm|conv_norm_out|norm_out)\.(weight|bias)$/.test(name);
    if (isNorm) {
      if (name.endsWith('.weight')) data.fill(1);
    } else {
      const rand = mulberry32(seed ^ hashString(name));
      const fanIn = shape.length > 1 ? n / shape[0] : 1;
      const bound = shape.length > 1 ? Math.sqrt(3 / fanIn) : 0.02;
      for (let i = 0; i < n; i++) data[i] = (2 * rand() - 1) * bound;
    }
    tensors.set(name, tf.tensor(data, storedShape(shape), 'float32'));
  }
  return new Params(tensors, source);
}

function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

function mulberry32(a: number): () => number {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A layer a LoRA can attach to: every Linear and Conv2d of a model. */
export type LoraLayer = Linear | Conv2d;

/** Where a module sits in the state dict: its parameters are `<path>.<name>`. */
export class ModuleScope {
  constructor(
    readonly source: ParamSource,
    /** Full module path, '' for the root (e.g. `down_blocks.1.attentions.0`). */
    readonly path: string,
    /** Every Linear and Conv2d built under the root scope, by module path (shared by all child scopes). */
    readonly layers: Map<string, LoraLayer> = new Map(),
  ) {}

  child(name: string | number): ModuleScope {
    return new ModuleScope(this.source, this.key(String(name)), this.layers);
  }

  /** Records a layer LoRA can attach to (Linear and Conv2d call this). */
  register(layer: LoraLayer): void {
    this.layers.set(this.path, layer);
  }

  param<R extends tf.Rank>(name: string, torchShape: readonly number[]): tf.Tensor<R> {
    return this.source.take(this.key(name), torchShape) as tf.Tensor<R>;
  }

  key(name: string): string {
    return this.path ? `${this.path}.${name}` : name;
  }
}

/**
 * torch.nn.Linear: y = x·Wᵀ + b, W stored [out, in]. The adapters `lora` finds for this layer's path add
 * to it (PEFT's lora.Linear); a DoRA adapter rescales, as PEFT's DoraLinearLayer.
 */
export class Linear {
  readonly weight: tf.Tensor2D;
  readonly bias?: tf.Tensor1D;
  readonly kernelSize = 1;

  constructor(
    readonly scope: ModuleScope,
    readonly inFeatures: number,
    readonly outFeatures: number,
    bias = true,
  ) {
    this.weight = scope.param('weight', [outFeatures, inFeatures]);
    if (bias) this.bias = scope.param('bias', [outFeatures]);
    scope.register(this);
  }

  get path(): string {
    return this.scope.path;
  }

  forward(x: tf.Tensor, lora?: LoraLookup): tf.Tensor {
    const adapters = lora?.(this.path) ?? [];
    if (!adapters.some((a) => a.magnitude || a.dropInput)) return ops().linear(x, this.weight, this.bias, adapters);
    return tf.tidy(() => {
      const x2 = x.reshape([-1, this.inFeatures]);
      // W·x without bias; DoRA rescales it (and the bias is added after, as PEFT does).
      const base = ops().linear(x2, this.weight) as tf.Tensor2D;
      const inputs = adapters.map((a) => (a.dropInput ? a.dropInput(x2) : x2));
      const y = withDora(
        base,
        this.weight,
        adapters,
        (a, i) => tf.matMul(tf.matMul(inputs[i], a.down, false, true), a.up, false, true),
        (t) => t.reshape([1, -1]),
        (a, i) => (a.dropInput ? ops().linear(inputs[i], this.weight) : base),
      );
      return (this.bias ? y.add(this.bias) : y).reshape([...x.shape.slice(0, -1), this.outFeatures]);
    });
  }
}

/**
 * base + Σ adapters: plain ones add scale·lora(x); each DoRA one adds (g − 1)·base + g·scale·lora(x) with
 * g = m / ‖W + scale·up·down‖ per output channel — peft/tuners/lora/dora.py (DoraLinearLayer.forward,
 * DoraConv2dLayer.forward), whose weight norm is detached from the gradient. `weightRows` is W as
 * [out, in·k·k] in PyTorch order; `perChannel` shapes a [out] vector to broadcast over `base`. `baseOf` is W
 * applied to the adapter's own input (the dropped-out one under LoRA dropout, as peft's DoRA forward).
 */
function withDora(
  base: tf.Tensor,
  weightRows: tf.Tensor2D,
  adapters: readonly LoraAdapter[],
  loraOf: (a: LoraAdapter, index: number) => tf.Tensor,
  perChannel: (t: tf.Tensor1D) => tf.Tensor,
  baseOf: (a: LoraAdapter, index: number) => tf.Tensor = () => base,
): tf.Tensor {
  let y = base;
  for (const [i, a] of adapters.entries()) {
    if (a.scale === 0 && !a.magnitude) continue;
    const delta = loraOf(a, i).mul(a.scale);
    if (!a.magnitude) {
      y = y.add(delta);
      continue;
    }
    const merged = weightRows.add(tf.matMul(a.up, a.down).mul(a.scale));
    const norm = detach(merged.square().sum(1).sqrt() as tf.Tensor1D);
    const g = perChannel(a.magnitude.div(norm) as tf.Tensor1D);
    y = y.add(g.sub(1).mul(baseOf(a, i))).add(g.mul(delta));
  }
  return y;
}

/** torch's `.detach()`: the value, with no gradient flowing back through it. */
const detach = tf.customGrad(((x: tf.Tensor) => ({ value: x.clone(), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) })) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (
  x: tf.Tensor1D,
) => tf.Tensor1D;

/** torch.nn.Embedding: rows of `weight` [num_embeddings, embedding_dim] looked up by index. */
export class Embedding {
  readonly weight: tf.Tensor2D;

  constructor(
    scope: ModuleScope,
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
  ) {
    this.weight = scope.param('weight', [numEmbeddings, embeddingDim]);
  }

  /** ids int32 of any shape → [...ids.shape, embedding_dim]. */
  forward(ids: tf.Tensor): tf.Tensor {
    return tf.gather(this.weight, ids.reshape([-1])).reshape([...ids.shape, this.embeddingDim]);
  }
}

/**
 * torch.nn.Conv2d on NHWC activations with symmetric zero padding (weights HWIO in memory). The adapters
 * `lora` finds for its path add to it as LoCon does (kohya's networks/lora.py LoRAModule on a Conv2d,
 * PEFT's lora.Conv2d): down is a k×k conv with this layer's stride and padding, up a 1×1 conv.
 */
export class Conv2d {
  readonly weight: tf.Tensor4D;
  readonly bias?: tf.Tensor1D;

  constructor(
    readonly scope: ModuleScope,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    readonly stride = 1,
    readonly padding = 0,
    bias = true,
  ) {
    this.weight = scope.param('weight', [outChannels, inChannels, kernelSize, kernelSize]);
    if (bias) this.bias = scope.param('bias', [outChannels]);
    scope.register(this);
  }

  get path(): string {
    return this.scope.path;
  }

  /** Same names as Linear, so a LoRA target reads the same for both: in = in_channels, out = out_channels. */
  get inFeatures(): number {
    return this.inChannels;
  }

  get outFeatures(): number {
    return this.outChannels;
  }

  /** `padding` overrides the layer's own for an input the caller has already padded (Downsample2D's asymmetric pad). */
  forward(x: tf.Tensor4D, lora?: LoraLookup, padding = this.padding): tf.Tensor4D {
    const adapters = (lora?.(this.path) ?? []).filter((a) => a.scale !== 0 || a.magnitude);
    if (adapters.length === 0) return ops().conv2d(x, this.weight, this.bias, this.stride, padding);
    return tf.tidy(() => {
      const k = this.kernelSize;
      const base = ops().conv2d(x, this.weight, undefined, this.stride, padding);
      const [b, h, w] = base.shape;
      const inputs = adapters.map((a) => (a.dropInput ? (a.dropInput(x) as tf.Tensor4D) : x));
      const loraOf = (a: LoraAdapter, i: number): tf.Tensor => {
        const rank = a.down.shape[0];
        // down [rank, in·k·k] (PyTorch's in, kh, kw order) → HWIO [k, k, in, rank]
        const kernel = a.down.reshape([rank, this.inChannels, k, k]).transpose([2, 3, 1, 0]) as tf.Tensor4D;
        const hidden = loraDownConv(inputs[i], kernel, this.stride, padding);
        return tf.matMul(hidden.reshape([b * h * w, rank]), a.up, false, true).reshape([b, h, w, this.outChannels]);
      };
      // Only DoRA needs W as PyTorch's [out, in·k·k] rows.
      const rows = () => this.weight.transpose([3, 2, 0, 1]).reshape([this.outChannels, -1]) as tf.Tensor2D;
      const baseOf = (a: LoraAdapter, i: number) => (a.dropInput ? ops().conv2d(inputs[i], this.weight, undefined, this.stride, padding) : base);
      const y = adapters.some((a) => a.magnitude)
        ? withDora(base, rows(), adapters, loraOf, (t) => t.reshape([1, 1, 1, -1]), baseOf)
        : adapters.reduce<tf.Tensor>((acc, a, i) => acc.add(loraOf(a, i).mul(a.scale)), base);
      return (this.bias ? y.add(this.bias) : y) as tf.Tensor4D;
    });
  }
}

/**
 * LoCon's down convolution, differentiable in its kernel on every backend: tfjs-wasm has no
 * Conv2DBackpropFilter, so the kernel's gradient is written out as Σ over the k×k taps of (the input
 * shifted to that tap)ᵀ · dy — one 2-D product per tap; the input's gradient is the transposed convolution.
 */
function loraDownConv(x: tf.Tensor4D, kernel: tf.Tensor4D, stride: number, padding: number): tf.Tensor4D {
  const f = tf.customGrad(((input: tf.Tensor4D, k: tf.Tensor4D, save: tf.GradSaveFunc) => {
    save([input, k]);
    return {
      value: ops().conv2d(input, k, undefined, stride, padding),
      gradFunc: (dy: tf.Tensor4D, [xs, ks]: tf.Tensor[]) => {
        const [kh, kw, cin, rank] = ks.shape;
        const [b, oh, ow] = dy.shape;
        const dx = tf.conv2dTranspose(dy, ks as tf.Tensor4D, xs.shape as [number, number, number, number], stride, padding);
        const padded = padding ? tf.pad(xs, [[0, 0], [padding, padding], [padding, padding], [0, 0]]) : xs;
        const dyRows = dy.reshape([b * oh * ow, rank]);
        const taps: tf.Tensor[] = [];
        for (let i = 0; i < kh; i++) {
          for (let j = 0; j < kw; j++) {
            const span = [b, (oh - 1) * stride + 1, (ow - 1) * stride + 1, cin];
            let tap = tf.slice(padded, [0, i, j, 0], span);
            if (stride > 1) tap = tf.stridedSlice(tap, [0, 0, 0, 0], span, [1, stride, stride, 1]);
            taps.push(tf.matMul(tap.reshape([b * oh * ow, cin]).transpose(), dyRows));
          }
        }
        return [dx, tf.stack(taps).reshape([kh, kw, cin, rank])];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (input: tf.Tensor4D, k: tf.Tensor4D) => tf.Tensor4D;
  return f(x, kernel);
}

/** torch.nn.GroupNorm (affine) over NHWC channels; `silu` fuses the SiLU that diffusers applies next. */
export class GroupNorm {
  readonly weight: tf.Tensor1D;
  readonly bias: tf.Tensor1D;

  constructor(
    scope: ModuleScope,
    readonly groups: number,
    readonly channels: number,
    readonly eps: number,
  ) {
    if (channels % groups !== 0) throw new Error(`${scope.path}: GroupNorm of ${channels} channels cannot be split into ${groups} groups (norm_num_groups must divide every block's channels)`);
    this.weight = scope.param('weight', [channels]);
    this.bias = scope.param('bias', [channels]);
  }

  forward(x: tf.Tensor4D, silu = false): tf.Tensor4D {
    return ops().groupNorm(x, this.groups, this.weight, this.bias, this.eps, silu);
  }
}

/** torch.nn.LayerNorm (elementwise affine) over the last axis. */
export class LayerNorm {
  readonly weight: tf.Tensor1D;
  readonly bias: tf.Tensor1D;

  constructor(
    scope: ModuleScope,
    readonly dim: number,
    readonly eps: number,
  ) {
    this.weight = scope.param('weight', [dim]);
    this.bias = scope.param('bias', [dim]);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return ops().layerNorm(x, this.weight, this.bias, this.eps);
  }
}
