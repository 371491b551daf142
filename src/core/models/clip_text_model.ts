// transformers' CLIPTextModel, the text encoder of Stable Diffusion 1.x/2.x, built from text_encoder/config.json.
//
//   token embedding + position embedding
//   → num_hidden_layers × [x + attn(LN1(x)) with a causal mask, x + fc2(act(fc1(LN2(x))))]
//   → final LayerNorm
//
// Outputs what pipelines use: last_hidden_state (SD 1.x conditioning), the hidden state before the last
// layer (hidden_states[-2], "clip skip" / SD 2.x-style conditioning, before the final LayerNorm) and the
// pooled output (last_hidden_state at the end-of-text token).
//
// Parameter names are transformers' state_dict names relative to the text model
// (`embeddings.token_embedding.weight`, `encoder.layers.0.self_attn.q_proj.weight`, …, `final_layer_norm.bias`).
// Files from transformers ≤ 4 (every SD repository on the Hub) prefix them with `text_model.`; files written by
// transformers 5 do not. Both load.
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { DiffusersFolder, ModelFolderError, readJson } from '../io/diffusers_folder.js';
import { SafetensorsFile, refusePickle } from '../io/safetensors.js';
import { ops, noLora, type LoraLookup } from '../engine/ops.js';
import { Params } from './params.js';

export type ClipActivation = 'quick_gelu' | 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh';
const ACTIVATIONS: readonly ClipActivation[] = ['quick_gelu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh'];

export interface CLIPTextConfig {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numAttentionHeads: number;
  readonly numHiddenLayers: number;
  readonly layerNormEps: number;
  readonly hiddenAct: ClipActivation;
  readonly maxPositionEmbeddings: number;
  /** The pooled output is read at this token; 2 means "legacy config: use the argmax of the ids" (transformers' rule). */
  readonly eosTokenId: number;
}

/** transformers' CLIPTextConfig defaults, for keys a config.json leaves out. */
const DEFAULTS = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  num_attention_heads: 8,
  num_hidden_layers: 12,
  layer_norm_eps: 1e-5,
  hidden_act: 'quick_gelu',
  max_position_embeddings: 77,
  eos_token_id: 2,
} as const;

/** Reads a text_encoder/config.json object; `source` names the file in errors. */
export function clipTextConfigFromJson(json: Record<string, unknown>, source = 'text_encoder/config.json'): CLIPTextConfig {
  // CLIPModel configs nest the text tower under text_config.
  const c = (json.text_config && typeof json.text_config === 'object' ? json.text_config : json) as Record<string, unknown>;
  const int = (key: keyof typeof DEFAULTS): number => {
    const v = c[key] ?? DEFAULTS[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new ModelFolderError(`${source}: "${key}" must be a non-negative integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const hiddenAct = (c.hidden_act ?? DEFAULTS.hidden_act) as ClipActivation;
  if (!ACTIVATIONS.includes(hiddenAct)) throw new ModelFolderError(`${source}: hidden_act ${JSON.stringify(hiddenAct)} is not supported (supported: ${ACTIVATIONS.join(', ')})`);
  const layerNormEps = Number(c.layer_norm_eps ?? DEFAULTS.layer_norm_eps);
  if (!(layerNormEps > 0)) throw new ModelFolderError(`${source}: layer_norm_eps must be a positive number`);
  const config: CLIPTextConfig = {
    vocabSize: int('vocab_size'),
    hiddenSize: int('hidden_size'),
    intermediateSize: int('intermediate_size'),
    numAttentionHeads: int('num_attention_heads'),
    numHiddenLayers: int('num_hidden_layers'),
    layerNormEps,
    hiddenAct,
    maxPositionEmbeddings: int('max_position_embeddings'),
    eosTokenId: int('eos_token_id'),
  };
  if (config.numAttentionHeads === 0 || config.hiddenSize % config.numAttentionHeads !== 0) {
    throw new ModelFolderError(`${source}: hidden_size ${config.hiddenSize} is not divisible by num_attention_heads ${config.numAttentionHeads}`);
  }
  return config;
}

/** Every parameter the architecture needs, by name (relative to the text model) and PyTorch shape. */
export function expectedParamShapes(config: CLIPTextConfig): Map<string, number[]> {
  const h = config.hiddenSize;
  const m = new Map<string, number[]>();
  m.set('embeddings.token_embedding.weight', [config.vocabSize, h]);
  m.set('embeddings.position_embedding.weight', [config.maxPositionEmbeddings, h]);
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const l = `encoder.layers.${i}`;
    for (const ln of ['layer_norm1', 'layer_norm2']) {
      m.set(`${l}.${ln}.weight`, [h]);
      m.set(`${l}.${ln}.bias`, [h]);
    }
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      m.set(`${l}.self_attn.${p}.weight`, [h, h]);
      m.set(`${l}.self_attn.${p}.bias`, [h]);
    }
    m.set(`${l}.mlp.fc1.weight`, [config.intermediateSize, h]);
    m.set(`${l}.mlp.fc1.bias`, [config.intermediateSize]);
    m.set(`${l}.mlp.fc2.weight`, [h, config.intermediateSize]);
    m.set(`${l}.mlp.fc2.bias`, [h]);
  }
  m.set('final_layer_norm.weight', [h]);
  m.set('final_layer_norm.bias', [h]);
  return m;
}

/** Throws one error listing every missing or mis-shaped parameter, so a wrong config is diagnosed in one go. */
export function validateParams(params: Params, config: CLIPTextConfig): void {
  const missing: string[] = [];
  const mismatched: string[] = [];
  for (const [name, shape] of expectedParamShapes(config)) {
    const t = params.tensors.get(name);
    if (!t) missing.push(name);
    else if (t.shape.join(',') !== shape.join(',')) mismatched.push(`${name}: file [${t.shape.join(', ')}], config.json implies [${shape.join(', ')}]`);
  }
  if (missing.length === 0 && mismatched.length === 0) return;
  const list = (xs: string[]) => xs.slice(0, 10).join('; ') + (xs.length > 10 ? `; … (${xs.length} in all)` : '');
  const parts = [];
  if (missing.length) parts.push(`missing ${list(missing)}`);
  if (mismatched.length) parts.push(`wrong shape ${list(mismatched)}`);
  throw new ModelFolderError(`${params.source}: the weights do not match the CLIP text encoder described by config.json — ${parts.join(' | ')}. Check that config.json and the weights come from the same model.`);
}

export interface CLIPTextOutput {
  /** [B, T, hidden] after the final LayerNorm. */
  readonly lastHiddenState: tf.Tensor3D;
  /** [B, T, hidden]: hidden_states[-2], the input of the last layer, without the final LayerNorm. */
  readonly penultimateHiddenState: tf.Tensor3D;
  /** [B, hidden]: lastHiddenState at the end-of-text token. */
  readonly poolerOutput: tf.Tensor2D;
}

export class CLIPTextModel {
  constructor(
    readonly config: CLIPTextConfig,
    /** Names relative to the text model (no `text_model.` prefix); validated against the config. */
    readonly params: Params,
  ) {
    validateParams(params, config);
  }

  /**
   * Loads from a diffusers pipeline folder (its text_encoder/), a DiffusersFolder, or a text_encoder folder
   * itself (config.json + *.safetensors). fp16/bf16 files become f32.
   */
  static fromPretrained(source: string | DiffusersFolder, opts: { variant?: 'fp32' | 'fp16' } = {}): CLIPTextModel {
    const { dir, config, weights } = textEncoderFiles(source, opts.variant);
    if (Object.keys(config).length === 0) throw new ModelFolderError(`${dir}: config.json is missing — the text encoder's architecture cannot be known without it`);
    const cfg = clipTextConfigFromJson(config, path.join(dir, 'config.json'));
    const params = Params.load(weights, weightPrefix(weights));
    try {
      return new CLIPTextModel(cfg, params);
    } catch (e) {
      params.dispose();
      throw e;
    }
  }

  /** Random weights with the config's shapes (N(0, 0.02) matrices, unit LayerNorms), for benchmarks and tests. */
  static randomInit(config: CLIPTextConfig, seed = 0): CLIPTextModel {
    const tensors = new Map<string, tf.Tensor>();
    let s = seed;
    for (const [name, shape] of expectedParamShapes(config)) {
      const isNorm = /layer_norm\d?\.weight$/.test(name);
      const isBias = name.endsWith('.bias');
      tensors.set(name, isNorm ? tf.ones(shape) : isBias ? tf.zeros(shape) : tf.randomNormal(shape, 0, 0.02, 'float32', s++));
    }
    return new CLIPTextModel(config, new Params(tensors, 'random weights'));
  }

  /**
   * inputIds: int32 [B, T] with T ≤ max_position_embeddings (77 from the tokenizer). `lora` finds adapters by
   * transformers' module path (`text_model.encoder.layers.0.self_attn.q_proj`, `….mlp.fc1`), as LoRA files name them.
   */
  forward(inputIds: tf.Tensor2D, lora: LoraLookup = noLora): CLIPTextOutput {
    const [b, t] = inputIds.shape;
    const c = this.config;
    if (t > c.maxPositionEmbeddings) throw new Error(`CLIPTextModel: ${t} tokens exceed max_position_embeddings ${c.maxPositionEmbeddings}`);
    const p = this.params;
    const o = ops();
    return tf.tidy(() => {
      const ids: tf.Tensor2D = inputIds.dtype === 'int32' ? inputIds : inputIds.cast('int32');

      // Embeddings: token lookup + learned absolute positions 0..T-1.
      const tokens = tf.gather(p.get<tf.Rank.R2>('embeddings.token_embedding.weight'), ids.reshape([-1])).reshape([b, t, c.hiddenSize]);
      const positions = p.get<tf.Rank.R2>('embeddings.position_embedding.weight').slice([0, 0], [t, c.hiddenSize]);
      let hidden = tokens.add(positions) as tf.Tensor3D;

      // hidden_states[-2] is the input of the last layer (the embeddings when there is only one layer).
      let penultimate = hidden;
      for (let i = 0; i < c.numHiddenLayers; i++) {
        if (i === c.numHiddenLayers - 1) penultimate = hidden;
        hidden = this.encoderLayer(hidden, i, lora);
      }

      const lastHiddenState = o.layerNorm(hidden, p.get('final_layer_norm.weight'), p.get('final_layer_norm.bias'), c.layerNormEps) as tf.Tensor3D;
      const eos = this.eosPositions(ids);
      const flatIndex = tf.range(0, b * t, t, 'int32').add(eos);
      const poolerOutput = tf.gather(lastHiddenState.reshape([b * t, c.hiddenSize]), flatIndex) as tf.Tensor2D;
      return { lastHiddenState, penultimateHiddenState: penultimate, poolerOutput };
    });
  }

  /** One CLIPEncoderLayer: pre-LN causal self-attention and pre-LN MLP, each with a residual. */
  private encoderLayer(x: tf.Tensor3D, i: number, lora: LoraLookup): tf.Tensor3D {
    const c = this.config;
    const o = ops();
    const prefix = `encoder.layers.${i}`;
    const lp = this.params.scope(prefix);
    const linear = (input: tf.Tensor, name: string) =>
      o.linear(input, lp.get(`${name}.weight`), lp.get(`${name}.bias`), lora(`text_model.${prefix}.${name}`));

    const h1 = o.layerNorm(x, lp.get('layer_norm1.weight'), lp.get('layer_norm1.bias'), c.layerNormEps);
    const q = linear(h1, 'self_attn.q_proj') as tf.Tensor3D;
    const k = linear(h1, 'self_attn.k_proj') as tf.Tensor3D;
    const v = linear(h1, 'self_attn.v_proj') as tf.Tensor3D;
    // Causal: each token sees itself and the tokens before it (CLIP was trained left-to-right).
    const attn = o.attention(q, k, v, c.numAttentionHeads, true);
    const afterAttn = x.add(linear(attn, 'self_attn.out_proj')) as tf.Tensor3D;

    const h2 = o.layerNorm(afterAttn, lp.get('layer_norm2.weight'), lp.get('layer_norm2.bias'), c.layerNormEps);
    const mlp = linear(activation(linear(h2, 'mlp.fc1'), c.hiddenAct), 'mlp.fc2');
    return afterAttn.add(mlp) as tf.Tensor3D;
  }

  /**
   * Where each row's end-of-text token is, as transformers picks it: with the legacy eos_token_id 2, the
   * argmax of the ids (the eos has the largest id); otherwise the first position holding eos_token_id
   * (position 0 when there is none, like torch's argmax of an all-zero row). Computed on the device, as the
   * first index reaching the row's target value, so no backend's tie-breaking in argMax matters.
   */
  private eosPositions(ids: tf.Tensor2D): tf.Tensor1D {
    const t = ids.shape[1];
    const target = this.config.eosTokenId === 2 ? ids.max(1, true) : tf.scalar(this.config.eosTokenId, 'int32');
    const hit = ids.equal(target);
    const positions = tf.range(0, t, 1, 'int32').reshape([1, t]).tile([ids.shape[0], 1]);
    const first = tf.where(hit, positions, tf.fill(hit.shape, t, 'int32')).min(1);
    return tf.where(first.equal(t), tf.zerosLike(first), first) as tf.Tensor1D;
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

/** The text_encoder folder's config and weights, from whichever form of source was given. */
function textEncoderFiles(source: string | DiffusersFolder, variant: 'fp32' | 'fp16' | undefined): { dir: string; config: Record<string, unknown>; weights: readonly string[] } {
  if (source instanceof DiffusersFolder) return source.component('text_encoder', { variant });
  if (fs.existsSync(path.join(source, 'model_index.json'))) return DiffusersFolder.open(source).component('text_encoder', { variant });
  // A text_encoder folder inside a pipeline: let the pipeline folder pick the weights (variants, shards).
  const parent = path.dirname(path.resolve(source));
  if (fs.existsSync(path.join(parent, 'model_index.json'))) return DiffusersFolder.open(parent).component(path.basename(path.resolve(source)), { variant });
  // A stand-alone text encoder folder.
  if (!fs.existsSync(source) || !fs.statSync(source).isDirectory()) throw new ModelFolderError(`${source}: text encoder folder not found`);
  const configPath = path.join(source, 'config.json');
  const config = fs.existsSync(configPath) ? (readJson(configPath) as Record<string, unknown>) : {};
  const files = fs.readdirSync(source).sort();
  const st = files.filter((f) => f.endsWith('.safetensors'));
  const isFp16 = (f: string) => f.endsWith('.fp16.safetensors');
  const preferred = st.filter((f) => (variant === 'fp16' ? isFp16(f) : !isFp16(f)));
  const chosen = preferred.length ? preferred : st;
  if (chosen.length === 0) {
    const pickle = files.find((f) => /\.(bin|ckpt|pt|pth)$/.test(f));
    if (pickle) refusePickle(path.join(source, pickle));
    throw new ModelFolderError(`${source}: no .safetensors weights found for the text encoder`);
  }
  return { dir: source, config, weights: chosen.map((f) => path.join(source, f)) };
}

/** "text_model." when the files use transformers ≤ 4's names, "" for transformers 5's. */
function weightPrefix(files: readonly string[]): string {
  for (const file of files) {
    const f = SafetensorsFile.open(file);
    try {
      for (const name of f.tensors.keys()) {
        if (name.startsWith('text_model.')) return 'text_model.';
        if (name.startsWith('embeddings.') || name.startsWith('encoder.') || name.startsWith('final_layer_norm.')) return '';
      }
    } finally {
      f.close();
    }
  }
  return '';
}
