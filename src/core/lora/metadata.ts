// The header metadata of a trained LoRA: the keys kohya's sd-scripts writes (train_network.py), which A1111,
// Forge, civitai and the additional-networks extension read; the ModelSpec keys (Stability AI's ModelSpec
// 1.0.1, as sd-scripts' library/sai_model_spec.py fills them); the additional-networks hashes; and ours
// (`lora_studio.*`). Values are strings (the safetensors rule). Only base names, never a local path.
import crypto from 'node:crypto';
import { encodeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { ATTENTION_PROJECTIONS } from './formats.js';

/**
 * sd-scripts' model family name (`ss_base_model_version`) for a base model, from its UNet config:
 * `sdxl_base_v1-0` (SDXL: `addition_embed_type: text_time` with 2048-wide text features), `sd_v1` (SD 1.x:
 * CLIP ViT-L, 768 wide), `sd_v2` (SD 2.x: OpenCLIP ViT-H, 1024 wide), `_v` appended for v-prediction — as
 * model_util.get_model_version_str_for_sd1_sd2 and sdxl_model_util.MODEL_VERSION_SDXL_BASE_V1_0 spell them.
 * Undefined for any other UNet (the tiny test models): no family is better than a wrong one, which makes
 * A1111 hide the LoRA.
 */
export function baseModelVersion(unetConfig: { readonly cross_attention_dim?: unknown; readonly addition_embed_type?: unknown }, vPrediction: boolean): string | undefined {
  if (unetConfig.addition_embed_type === 'text_time') return Number(unetConfig.cross_attention_dim) === 2048 ? 'sdxl_base_v1-0' : undefined;
  const family = { 768: 'sd_v1', 1024: 'sd_v2' }[Number(unetConfig.cross_attention_dim)];
  return family && family + (vPrediction ? '_v' : '');
}

/** ModelSpec's architecture id of a LoRA for each sd-scripts family (sai_model_spec.determine_architecture). */
const MODELSPEC_ARCHITECTURE: Record<string, string> = {
  sd_v1: 'stable-diffusion-v1',
  sd_v1_v: 'stable-diffusion-v1',
  sd_v2: 'stable-diffusion-v2-512',
  sd_v2_v: 'stable-diffusion-v2-768-v',
  'sdxl_base_v1-0': 'stable-diffusion-xl-v1-base',
};

/** One folder of training images, as sd-scripts records it (`ss_dataset_dirs`, `ss_tag_frequency`). */
export interface DatasetDirInfo {
  /** The folder's base name (or a Hub dataset id): never a local path. */
  readonly name: string;
  readonly imageCount: number;
  /** Every caption of the folder's images (all alternatives), for the tag counts. */
  readonly captions: readonly string[];
}

/** What LoRA Studio records about a training run in a LoRA file's header. All fields optional but rank/alpha. */
export interface TrainingInfo {
  readonly rank: number;
  readonly alpha: number;
  /** sd-scripts' network module (`networks.lora`; LyCORIS: `lycoris.kohya`). */
  readonly networkModule?: string;
  /** sd-scripts' `--network_args` (conv_dim, algo, dora_wd, …), recorded as JSON in ss_network_args. */
  readonly networkArgs?: Readonly<Record<string, string | number | boolean>>;
  /** The base model's name (its folder's base name or hub id). */
  readonly baseModel?: string;
  /** sd-scripts' model family name: `sd_v1`, `sd_v2`, `sd_v2_v`, `sdxl_base_v1-0` (A1111 hides LoRAs of another family). */
  readonly baseModelVersion?: string;
  readonly vPrediction?: boolean;
  readonly outputName?: string;
  readonly steps?: number;
  readonly epochs?: number;
  readonly learningRate?: number;
  readonly resolution?: number;
  readonly numTrainImages?: number;
  readonly seed?: number;
  /** kohya's --clip_skip (undefined: the last layer, recorded as sd-scripts records None). */
  readonly clipSkip?: number;
  readonly datasetDirs?: readonly DatasetDirInfo[];
  readonly startedAt?: Date;
  readonly finishedAt?: Date;
  readonly targetModules?: readonly string[];
  /** The run config, stored as JSON so a LoRA says how it was made. */
  readonly runConfig?: unknown;
  readonly version?: string;
}

/**
 * sd-scripts' tag counts (train_util BaseDataset.set_tag_frequency): each caption split at commas, each
 * tag stripped and lower-cased, empty tags dropped, counted per folder.
 */
export function tagFrequency(captions: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const caption of captions) {
    for (const raw of caption.split(',')) {
      const tag = raw.trim().toLowerCase();
      if (tag) counts[tag] = (counts[tag] ?? 0) + 1;
    }
  }
  return counts;
}

const pyBool = (v: boolean) => (v ? 'True' : 'False');

/**
 * Header metadata for a trained LoRA file.
 *
 * - `ss_*`: sd-scripts' keys — its minimum set (ss_network_module, ss_network_dim, ss_network_alpha,
 *   ss_network_args, ss_v2, ss_base_model_version), the training facts (ss_sd_model_name, ss_output_name,
 *   ss_steps, ss_epoch, ss_learning_rate, ss_resolution "(512, 512)", ss_num_train_images, ss_seed, ss_clip_skip,
 *   ss_training_started_at / _finished_at in Unix seconds) and the dataset (ss_dataset_dirs, ss_tag_frequency).
 * - `modelspec.*`: ModelSpec 1.0.1 (architecture e.g. `stable-diffusion-v1/lora`, implementation, title,
 *   date, resolution "512x512", prediction_type).
 * - `lora_studio.*`: ours — version, target_modules (comma-separated), run_config (JSON).
 *
 * The additional-networks hashes (sshs_*) depend on the file's tensors: writeLoraFile adds them.
 * Readers never take alpha from ss_network_alpha: in a diffusers-layout file alpha is already folded into
 * the weights, and kohya files carry their `.alpha` tensors.
 */
export function loraTrainingMetadata(info: TrainingInfo): Record<string, string> {
  const m: Record<string, string> = {};
  const set = (k: string, v: string | number | boolean | undefined) => {
    if (v !== undefined) m[k] = typeof v === 'boolean' ? pyBool(v) : String(v);
  };
  set('ss_network_module', info.networkModule ?? 'networks.lora');
  set('ss_network_dim', info.rank);
  set('ss_network_alpha', info.alpha);
  set('ss_network_args', JSON.stringify(info.networkArgs ?? {}));
  const family = info.baseModelVersion;
  set('ss_base_model_version', family);
  set('ss_v2', family !== undefined ? family.startsWith('sd_v2') : undefined);
  set('ss_v_parameterization', info.vPrediction);
  set('ss_sd_model_name', info.baseModel);
  set('ss_output_name', info.outputName);
  set('ss_steps', info.steps);
  set('ss_epoch', info.epochs);
  set('ss_learning_rate', info.learningRate);
  if (info.resolution !== undefined) set('ss_resolution', `(${info.resolution}, ${info.resolution})`);
  set('ss_num_train_images', info.numTrainImages);
  set('ss_seed', info.seed);
  // sd-scripts writes str(args.clip_skip): "None" when not given.
  set('ss_clip_skip', info.clipSkip ?? 'None');
  if (info.datasetDirs) {
    const dirs: Record<string, { n_repeats: number; img_count: number }> = {};
    const tags: Record<string, Record<string, number>> = {};
    for (const d of info.datasetDirs) {
      dirs[d.name] = { n_repeats: 1, img_count: d.imageCount };
      tags[d.name] = tagFrequency(d.captions);
    }
    set('ss_dataset_dirs', JSON.stringify(dirs));
    set('ss_tag_frequency', JSON.stringify(tags));
  }
  if (info.startedAt) set('ss_training_started_at', info.startedAt.getTime() / 1000);
  if (info.finishedAt) set('ss_training_finished_at', info.finishedAt.getTime() / 1000);

  set('modelspec.sai_model_spec', '1.0.1');
  const architecture = family !== undefined ? MODELSPEC_ARCHITECTURE[family] : undefined;
  set('modelspec.architecture', architecture && `${architecture}/lora`);
  // sai_model_spec.determine_implementation: SDXL LoRAs are "sgm" (Stability's generative-models), others diffusers'.
  set('modelspec.implementation', family === undefined ? undefined : family.startsWith('sdxl') ? 'https://github.com/Stability-AI/generative-models' : 'diffusers');
  set('modelspec.implementation_version', info.version && `lora-studio/${info.version}`);
  set('modelspec.title', info.outputName);
  set('modelspec.date', info.finishedAt && info.finishedAt.toISOString().replace(/\.\d{3}Z$/, 'Z'));
  if (info.resolution !== undefined) set('modelspec.resolution', `${info.resolution}x${info.resolution}`);
  set('modelspec.prediction_type', info.vPrediction === undefined ? undefined : info.vPrediction ? 'v' : 'epsilon');
  set('modelspec.encoder_layer', info.clipSkip);

  set('lora_studio.version', info.version);
  set('lora_studio.target_modules', (info.targetModules ?? ATTENTION_PROJECTIONS).join(','));
  if (info.runConfig !== undefined) set('lora_studio.run_config', JSON.stringify(info.runConfig));
  return m;
}

/**
 * The additional-networks hashes sd-scripts stores (train_util.precalculate_safetensors_hashes): the file
 * serialized with only its `ss_*` metadata (user edits of other keys must not change them), then
 * `sshs_model_hash` = sha256 of everything after the header (addnet_hash_safetensors), `sshs_legacy_hash` =
 * the first 8 hex digits of sha256 of the 64 KiB at offset 1 MiB (addnet_hash_legacy; of nothing in a file
 * smaller than 1 MiB, as Python's read past the end gives b"").
 */
export function additionalNetworksHashes(tensors: ReadonlyMap<string, TensorToWrite>, metadata: Readonly<Record<string, string>>): { sshs_model_hash: string; sshs_legacy_hash: string } {
  const ss = Object.fromEntries(Object.entries(metadata).filter(([k]) => k.startsWith('ss_')));
  const bytes = encodeSafetensors(new Map(tensors), ss);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const model = crypto.createHash('sha256').update(bytes.subarray(8 + headerLength)).digest('hex');
  const legacy = crypto.createHash('sha256').update(bytes.subarray(0x100000, 0x110000)).digest('hex').slice(0, 8);
  return { sshs_model_hash: model, sshs_legacy_hash: legacy };
}
