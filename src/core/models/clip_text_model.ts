// transformers' CLIPTextModel (models/clip/modeling_clip.py), the text encoder of Stable Diffusion 1.x/2.x,
// built from text_encoder/config.json. The classes below are modeling_clip.py's, in its order:
//
//   CLIPTextEmbeddings   token_embedding(ids) + position_embedding(0..T-1)
//   CLIPAttention        q_proj/k_proj/v_proj → causal multi-head attention → out_proj
//   CLIPMLP              fc1 → hidden_act → fc2
//   CLIPEncoderLayer     x + self_attn(layer_norm1(x)), then x + mlp(layer_norm2(x))
//   CLIPEncoder          num_hidden_layers × CLIPEncoderLayer
//   CLIPTextTransformer  embeddings → encoder → final_layer_norm; pooled output at the end-of-text token
//   CLIPTextModel        text_model: CLIPTextTransformer
//
// Outputs what pipelines use: last_hidden_state (SD 1.x conditioning), hidden_states[-2] (the input of the
// last layer, before the final LayerNorm: "clip skip" / SD 2.x-style conditioning) and pooler_output.
//
// Parameter names are transformers' state_dict names relative to the text model
// (`embeddings.token_embedding.weight`, `encoder.layers.0.self_attn.q_proj.weight`, …, `final_layer_norm.bias`).
// Files from transformers ≤ 4 (every SD repository on the Hub) prefix them with `text_model.`; files written by
// transformers 5 do not. Both load.
import * as tf from '@tensorflow/tfjs';
import { ModelFolderError, type DiffusersFolder } from '../io/diffusers_folder.js';
import { ops, type LoraLookup } from '../engine/ops.js';
import { CheckedParams, Embedding, LayerNorm, Linear, ModuleScope, randomParams, ShapeRecorder, type LoraLayer, type ParamSource } from './layers.js';
import type { Params } from './params.js';
import { fromPretrained, type PretrainedOptions } from './pretrained.js';

export type ClipActivation = 'quick_gelu' | 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh';
const ACTIVATIONS: readonly ClipActivation[] = ['quick_gelu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh'];

/** transformers' CLIPTextConfig: its key names and defaults, for the keys that shape the model. */
export interface CLIPTextConfig {
  readonly vocab_size: number;
  readonly hidden_size: number;
  readonly intermediate_size: number;
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  readonly max_position_embeddings: number;
  readonly hidden_act: ClipActivation;
  readonly layer_norm_eps: number;
  /** The pooled output is read at this token; 2 means "legacy config: use the argmax of the ids" (transformers' rule). */
  readonly eos_token_id: number;
  /** Output size of CLIPTextModelWithProjection's text_projection (unused by CLIPTextModel). */
  readonly projection_dim: number;
  readonly [key: string]: unknown;
}

const DEFAULTS = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  eos_token_id: 2,
  projection_dim: 512,
} as const;

/**
 * Fills transformers' defaults and checks what this engine implements. Reads a text_encoder/config.json
 * object (a CLIPModel config's text_config too); idempotent. `source` names the file in errors.
 */
export function normalizeClipTextConfig(raw: Record<string, unknown>, source = 'text_encoder/config.json'): CLIPTextConfig {
  const json = (raw.text_config && typeof raw.text_config === 'object' ? raw.text_config : raw) as Record<string, unknown>;
  const c: Record<string, unknown> = { ...DEFAULTS };
  for (const [k, v] of Object.entries(json)) if (v !== undefined && v !== null) c[k] = v;
  const fail = (why: string): never => {
    throw new ModelFolderError(`${source}: ${why}`);
  };
  for (const key of ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'max_position_embeddings', 'eos_token_id', 'projection_dim']) {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) fail(`"${key}" must be a non-negative integer, got ${JSON.stringify(v)}`);
  }
  if (!ACTIVATIONS.includes(c.hidden_act as ClipActivation)) fail(`hidden_act ${JSON.stringify(c.hidden_act)} is not supported (supported: ${ACTIVATIONS.join(', ')})`);
  if (!(Number(c.layer_norm_eps) > 0)) fail('layer_norm_eps must be a positive number');
  const heads = c.num_attention_heads as number;
  if (heads === 0 || (c.hidden_size as number) % heads !== 0) fail(`hidden_size ${String(c.hidden_size)} is not divisible by num_attention_heads ${heads}`);
  return { ...c, layer_norm_eps: Number(c.layer_norm_eps) } as CLIPTextConfig;
}

export interface CLIPTextOutput {
  /** [B, T, hidden] after the final LayerNorm. */
  readonly lastHiddenState: tf.Tensor3D;
  /** [B, T, hidden]: hidden_states[-2], the input of the last layer, without the final LayerNorm. */
  readonly penultimateHiddenState: tf.Tensor3D;
  /** [B, hidden]: lastHiddenState at the end-of-text token. */
  readonly poolerOutput: tf.Tensor2D;
}

/** Token embeddings plus learned absolute position embeddings 0..T-1. */
export class CLIPTextEmbeddings {
  readonly token_embedding: Embedding;
  readonly position_embedding: Embedding;

  constructor(scope: ModuleScope, c: CLIPTextConfig) {
    this.token_embedding = new Embedding(scope.child('token_embedding'), c.vocab_size, c.hidden_size);
    this.position_embedding = new Embedding(scope.child('position_embedding'), c.max_position_embeddings, c.hidden_size);
  }

  forward(inputIds: tf.Tensor2D): tf.Tensor3D {
    const [, t] = inputIds.shape;
    const positions = this.position_embedding.weight.slice([0, 0], [t, this.position_embedding.embeddingDim]);
    return this.token_embedding.forward(inputIds).add(positions) as tf.Tensor3D;
  }
}

/** Multi-head self-attention with CLIP's causal mask (each token sees itself and the tokens before it). */
export class CLIPAttention {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;

  constructor(
    scope: ModuleScope,
    c: CLIPTextConfig,
    readonly numHeads = c.num_attention_heads,
  ) {
    const h = c.hidden_size;
    this.q_proj = new Linear(scope.child('q_proj'), h, h);
    this.k_proj = new Linear(scope.child('k_proj'), h, h);
    this.v_proj = new Linear(scope.child('v_proj'), h, h);
    this.out_proj = new Linear(scope.child('out_proj'), h, h);
  }

  forward(x: tf.Tensor3D, lora?: LoraLookup): tf.Tensor3D {
    const q = this.q_proj.forward(x, lora) as tf.Tensor3D;
    const k = this.k_proj.forward(x, lora) as tf.Tensor3D;
    const v = this.v_proj.forward(x, lora) as tf.Tensor3D;
    return this.out_proj.forward(ops().attention(q, k, v, this.numHeads, true), lora) as tf.Tensor3D;
  }
}

export class CLIPMLP {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(
    scope: ModuleScope,
    c: CLIPTextConfig,
    readonly act = c.hidden_act,
  ) {
    this.fc1 = new Linear(scope.child('fc1'), c.hidden_size, c.intermediate_size);
    this.fc2 = new Linear(scope.child('fc2'), c.intermediate_size, c.hidden_size);
  }

  forward(x: tf.Tensor3D, lora?: LoraLookup): tf.Tensor3D {
    return this.fc2.forward(activation(this.fc1.forward(x, lora), this.act), lora) as tf.Tensor3D;
  }
}

/** Pre-LN causal self-attention and pre-LN MLP, each with a residual. */
export class CLIPEncoderLayer {
  readonly self_attn: CLIPAttention;
  readonly layer_norm1: LayerNorm;
  readonly mlp: CLIPMLP;
  readonly layer_norm2: LayerNorm;

  constructor(scope: ModuleScope, c: CLIPTextConfig) {
    this.self_attn = new CLIPAttention(scope.child('self_attn'), c);
    this.layer_norm1 = new LayerNorm(scope.child('layer_norm1'), c.hidden_size, c.layer_norm_eps);
    this.mlp = new CLIPMLP(scope.child('mlp'), c);
    this.layer_norm2 = new LayerNorm(scope.child('layer_norm2'), c.hidden_size, c.layer_norm_eps);
  }

  forward(x: tf.Tensor3D, lora?: LoraLookup): tf.Tensor3D {
    const h = x.add(this.self_attn.forward(this.layer_norm1.forward(x) as tf.Tensor3D, lora)) as tf.Tensor3D;
    return h.add(this.mlp.forward(this.layer_norm2.forward(h) as tf.Tensor3D, lora)) as tf.Tensor3D;
  }
}

export class CLIPEncoder {
  readonly layers: CLIPEncoderLayer[];

  constructor(scope: ModuleScope, c: CLIPTextConfig) {
    this.layers = Array.from({ length: c.num_hidden_layers }, (_, i) => new CLIPEncoderLayer(scope.child('layers').child(i), c));
  }

  /** The last hidden state and hidden_states[-2], the last layer's input (the embeddings when there is one layer). */
  forward(x: tf.Tensor3D, lora?: LoraLookup): { last: tf.Tensor3D; penultimate: tf.Tensor3D } {
    let hidden = x;
    let penultimate = x;
    for (const layer of this.layers) {
      penultimate = hidden;
      hidden = layer.forward(hidden, lora);
    }
    return { last: hidden, penultimate };
  }
}

export class CLIPTextTransformer {
  readonly embeddings: CLIPTextEmbeddings;
  readonly encoder: CLIPEncoder;
  readonly final_layer_norm: LayerNorm;

  constructor(
    readonly scope: ModuleScope,
    readonly config: CLIPTextConfig,
  ) {
    this.embeddings = new CLIPTextEmbeddings(scope.child('embeddings'), config);
    this.encoder = new CLIPEncoder(scope.child('encoder'), config);
    this.final_layer_norm = new LayerNorm(scope.child('final_layer_norm'), config.hidden_size, config.layer_norm_eps);
  }

  forward(inputIds: tf.Tensor2D, lora?: LoraLookup): CLIPTextOutput {
    const [b, t] = inputIds.shape;
    const c = this.config;
    if (t > c.max_position_embeddings) throw new Error(`CLIPTextModel: ${t} tokens exceed max_position_embeddings ${c.max_position_embeddings}`);
    return tf.tidy(() => {
      const ids: tf.Tensor2D = inputIds.dtype === 'int32' ? inputIds : inputIds.cast('int32');
      const { last, penultimate } = this.encoder.forward(this.embeddings.forward(ids), lora);
      const lastHiddenState = this.final_layer_norm.forward(last) as tf.Tensor3D;
      const flatIndex = tf.range(0, b * t, t, 'int32').add(this.eosPositions(ids));
      const poolerOutput = tf.gather(lastHiddenState.reshape([b * t, c.hidden_size]), flatIndex) as tf.Tensor2D;
      return { lastHiddenState, penultimateHiddenState: penultimate, poolerOutput };
    });
  }

  /**
   * Where each row's end-of-text token is, as transformers picks it: with the legacy eos_token_id 2, the
   * argmax of the ids (the eos has the largest id); otherwise the first position holding eos_token_id
   * (position 0 when there is none, like torch's argmax of an all-zero row). Computed on the device, as the
   * first index reaching the row's target value, so no backend's tie-breaking in argMax matters.
   */
  private eosPositions(ids: tf.Tensor2D): tf.Tensor1D {
    const t = ids.shape[1];
    const target = this.config.eos_token_id === 2 ? ids.max(1, true) : tf.scalar(this.config.eos_token_id, 'int32');
    const hit = ids.equal(target);
    const positions = tf.range(0, t, 1, 'int32').reshape([1, t]).tile([ids.shape[0], 1]);
    const first = tf.where(hit, positions, tf.fill(hit.shape, t, 'int32')).min(1);
    return tf.where(first.equal(t), tf.zerosLike(first), first) as tf.Tensor1D;
  }
}

/** Buffers older transformers saved with the weights; they are no parameters. */
export const CLIP_BUFFERS = /^embeddings\.position_ids$/;

export class CLIPTextModel {
  readonly config: CLIPTextConfig;
  readonly text_model: CLIPTextTransformer;

  /** Builds the model of `config` (raw config.json or normalized) on these weights; throws naming every missing, unexpected or wrong-shaped key. */
  constructor(
    config: Record<string, unknown>,
    /** Names relative to the text model (no `text_model.` prefix). */
    readonly params: Params,
  ) {
    const cfg = normalizeClipTextConfig(config);
    const checked = new CheckedParams(params, 'CLIPTextModel', CLIP_BUFFERS);
    this.text_model = CLIPTextModel.build(cfg, checked);
    checked.throwIfProblems();
    this.config = cfg;
  }

  /** Loads a diffusers pipeline folder's text_encoder/, or a text_encoder folder itself (config.json + *.safetensors). */
  static fromPretrained(source: string | DiffusersFolder, opts: PretrainedOptions = {}): CLIPTextModel {
    return fromPretrained(
      { className: 'CLIPTextModel', subfolder: 'text_encoder', prefixes: ['text_model.'], create: (config, params) => new CLIPTextModel(config, params) },
      source,
      opts,
    );
  }

  /** Every parameter the config needs, by state-dict name (relative to the text model), with its PyTorch shape. */
  static expectedParamShapes(config: Record<string, unknown>): Map<string, number[]> {
    const recorder = new ShapeRecorder();
    CLIPTextModel.build(normalizeClipTextConfig(config), recorder);
    return recorder.shapes;
  }

  /** The model of `config` with reproducible random weights (benchmarks, shape tests). */
  static random(config: Record<string, unknown>, seed = 0): CLIPTextModel {
    const cfg = normalizeClipTextConfig(config);
    return new CLIPTextModel(cfg, randomParams(CLIPTextModel.expectedParamShapes(cfg), seed));
  }

  private static build(cfg: CLIPTextConfig, source: ParamSource): CLIPTextTransformer {
    return new CLIPTextTransformer(new ModuleScope(source, ''), cfg);
  }

  /**
   * inputIds: int32 [B, T] with T ≤ max_position_embeddings (77 from the tokenizer). `lora` is asked for
   * the adapters of each Linear by its path relative to the text model (`encoder.layers.0.self_attn.q_proj`,
   * the LoRA files' `text_model.encoder.…` without `text_model.`).
   */
  forward(inputIds: tf.Tensor2D, lora?: LoraLookup): CLIPTextOutput {
    return this.text_model.forward(inputIds, lora);
  }

  /** Every Linear a LoRA can attach to (q/k/v/out_proj, fc1, fc2 of each layer), by path relative to the text model. */
  loraLayers(): LoraLayer[] {
    return [...this.text_model.scope.layers.values()];
  }

  dispose(): void {
    this.params.dispose();
  }
}

function activation(x: tf.Tensor, act: ClipActivation): tf.Tensor {
  switch (act) {
    case 'quick_gelu':
      // OpenAI CLIP's approximation: x · σ(1.702 x).
      return x.mul(tf.sigmoid(x.mul(1.702)));
    case 'gelu':
      // Exact GELU, as torch.nn.functional.gelu: ½x(1 + erf(x/√2)).
      return x.mul(0.5).mul(tf.erf(x.mul(Math.SQRT1_2)).add(1));
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
      // tanh approximation: ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
      return x.mul(0.5).mul(tf.tanh(x.add(x.pow(3).mul(0.044715)).mul(Math.sqrt(2 / Math.PI))).add(1));
  }
}
