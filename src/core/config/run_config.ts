// The run config: what a `*.lora.yaml` holds once validated and defaults are applied. Key names are
// diffusers' train_text_to_image_lora.py flags, so a user can paste the guide's command.
// The schema (descriptions, defaults, ranges, enums) that validates it lives beside this file and is the
// one definition the trainer, the language server and the docs use.
import type { InferenceScheduler } from './generation.js';

/** The tensor backends a run or a generation can ask for (`auto`: the fastest that works here). */
export const BACKENDS = ['auto', 'webgpu', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

/** diffusers' get_scheduler names (src/training/lr_schedules.ts computes each). */
export const LR_SCHEDULERS = ['linear', 'cosine', 'cosine_with_restarts', 'polynomial', 'constant', 'constant_with_warmup'] as const;
export type LrSchedulerName = (typeof LR_SCHEDULERS)[number];
export const PREDICTION_TYPES = ['epsilon', 'v_prediction'] as const;
export type PredictionType = (typeof PREDICTION_TYPES)[number];
export const SAVE_FORMATS = ['diffusers', 'kohya'] as const;
export type SaveFormat = (typeof SAVE_FORMATS)[number];
/** `save_precision` (and `convert --precision`): the dtype of every tensor in a written LoRA file. */
export const SAVE_PRECISIONS = ['fp32', 'fp16', 'bf16'] as const;
export type SavePrecision = (typeof SAVE_PRECISIONS)[number];

export interface RunConfig {
  // model and data
  pretrained_model_name_or_path: string;
  pretrained_model_config: string | null;
  variant: 'fp16' | null;
  revision: string | null;
  train_data_dir: string | null;
  dataset_name: string | null;
  dataset_config_name: string | null;
  cache_dir: string | null;
  image_column: string;
  caption_column: string;
  resolution: number;
  center_crop: boolean;
  random_flip: boolean;
  max_train_samples: number | null;
  enable_bucket: boolean;
  min_bucket_reso: number;
  max_bucket_reso: number;
  bucket_reso_steps: number;
  validation_split: number;
  caption_dropout_rate: number;
  shuffle_caption: boolean;
  keep_tokens: number;
  // batch and length
  train_batch_size: number;
  gradient_accumulation_steps: number;
  gradient_checkpointing: boolean;
  num_train_epochs: number;
  max_train_steps: number | null;
  // optimizer and schedule
  learning_rate: number;
  scale_lr: boolean;
  lr_scheduler: LrSchedulerName;
  lr_warmup_steps: number;
  adam_beta1: number;
  adam_beta2: number;
  adam_weight_decay: number;
  adam_epsilon: number;
  max_grad_norm: number;
  // LoRA and loss
  rank: number;
  lora_alpha: number | null;
  network_type: NetworkType;
  lora_dropout: number;
  train_text_encoder: boolean;
  text_encoder_lr: number | null;
  network_weights: string | null;
  snr_gamma: number | null;
  noise_offset: number;
  prediction_type: PredictionType | null;
  seed: number | null;
  // outputs
  output_dir: string;
  checkpointing_steps: number;
  checkpoints_total_limit: number | null;
  resume_from_checkpoint: string | null;
  validation_prompt: string | null;
  num_validation_images: number;
  validation_epochs: number;
  sample_prompts: string[];
  sample_every_n_steps: number | null;
  sample_sampler: InferenceScheduler | null;
  save_formats: SaveFormat[];
  output_name: string | null;
  save_precision: SavePrecision;
  no_metadata: boolean;
  push_to_hub: boolean;
  hub_model_id: string | null;
  hub_token: string | null;
  // engine
  backend: BackendName;
  cache_latents: boolean;
}

/** The adapter kinds training makes (`network_type`): LoRA on the attention projections, LoCon (kohya's conv set too), DoRA. */
export const NETWORK_TYPES = ['lora', 'locon', 'dora'] as const;
export type NetworkType = (typeof NETWORK_TYPES)[number];
