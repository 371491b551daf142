// transformers' CLIPTextModelWithProjection (models/clip/modeling_clip.py): SDXL's second text encoder
// (text_encoder_2). The CLIPTextTransformer of clip_text_model.ts plus `text_projection`, a bias-free
// Linear(hidden_size → projection_dim) applied to the pooled output:
//
//   text_model: CLIPTextTransformer → pooler_output ─ text_projection ─ text_embeds
//
// SDXL conditions on this model's hidden_states[-2] (concatenated with the first encoder's) and on
// text_embeds (the "pooled prompt embeds"). Parameter names: the text model's, relative to it (a
// transformers ≤ 4 file prefixes them with `text_model.`), and `text_projection.weight` at the top level.
import type * as tf from '@tensorflow/tfjs';
import type { DiffusersFolder } from '../io/diffusers_folder.js';
import type { LoraLookup } from '../engine/ops.js';
import { CLIP_BUFFERS, CLIPTextTransformer, normalizeClipTextConfig, type CLIPTextConfig, type CLIPTextOutput } from './clip_text_model.js';
import { CheckedParams, Linear, ModuleScope, randomParams, ShapeRecorder, type ParamSource } from './layers.js';
import type { Params } from './params.js';
import { fromPretrained, type PretrainedOptions } from './pretrained.js';

export interface CLIPTextModelWithProjectionOutput extends CLIPTextOutput {
  /** [B, projection_dim]: text_projection(pooler_output). */
  readonly textEmbeds: tf.Tensor2D;
}

export class CLIPTextModelWithProjection {
  readonly config: CLIPTextConfig;
  readonly text_model: CLIPTextTransformer;
  readonly text_projection: Linear;

  /** Builds the model of `config` on these weights; throws naming every missing, unexpected or wrong-shaped key. */
  constructor(
    config: Record<string, unknown>,
    readonly params: Params,
  ) {
    const cfg = normalizeClipTextConfig(config);
    const checked = new CheckedParams(params, 'CLIPTextModelWithProjection', CLIP_BUFFERS);
    const parts = CLIPTextModelWithProjection.build(cfg, checked);
    checked.throwIfProblems();
    this.config = cfg;
    this.text_model = parts.text_model;
    this.text_projection = parts.text_projection;
  }

  /** Loads a diffusers pipeline folder's text_encoder_2/, or such a folder itself (config.json + *.safetensors). */
  static fromPretrained(source: string | DiffusersFolder, opts: PretrainedOptions = {}): CLIPTextModelWithProjection {
    return fromPretrained(
      { className: 'CLIPTextModelWithProjection', subfolder: 'text_encoder_2', prefixes: ['text_model.'], create: (config, params) => new CLIPTextModelWithProjection(config, params) },
      source,
      opts,
    );
  }

  static expectedParamShapes(config: Record<string, unknown>): Map<string, number[]> {
    const recorder = new ShapeRecorder();
    CLIPTextModelWithProjection.build(normalizeClipTextConfig(config), recorder);
    return recorder.shapes;
  }

  static random(config: Record<string, unknown>, seed = 0): CLIPTextModelWithProjection {
    const cfg = normalizeClipTextConfig(config);
    return new CLIPTextModelWithProjection(cfg, randomParams(CLIPTextModelWithProjection.expectedParamShapes(cfg), seed));
  }

  private static build(cfg: CLIPTextConfig, source: ParamSource) {
    const root = new ModuleScope(source, '');
    return {
      text_model: new CLIPTextTransformer(root, cfg),
      text_projection: new Linear(root.child('text_projection'), cfg.hidden_size, cfg.projection_dim, false),
    };
  }

  /** `lora`: adapters by path relative to the text model, as CLIPTextModel.forward. */
  forward(inputIds: tf.Tensor2D, lora?: LoraLookup): CLIPTextModelWithProjectionOutput {
    const out = this.text_model.forward(inputIds, lora);
    return { ...out, textEmbeds: this.text_projection.forward(out.poolerOutput) as tf.Tensor2D };
  }

  dispose(): void {
    this.params.dispose();
  }
}
