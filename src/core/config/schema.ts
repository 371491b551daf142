// The run-config schema: the ONE definition of every `*.lora.yaml` key — its type, default, range, enum
// values and documentation. The validator (YAML and command-line flags), the language server (diagnostics,
// completion, hover, quick fixes), the JSON Schema shipped for other YAML tools and the docs all read it.
// Descriptions start with what diffusers' train_text_to_image_lora.py --help says, then our advice.
// This module is pure data plus tiny helpers: no fs, no tfjs, so the language server can bundle it.
import { KOHYA_LORA_FILE_PATTERN, LORA_FILE, METRICS_FILE, SAMPLES_DIR } from './run_folder.js';
import { INFERENCE_SCHEDULERS, SCHEDULER_TITLES } from './generation.js';
import { BACKENDS, LR_SCHEDULERS, NETWORK_TYPES, PREDICTION_TYPES, SAVE_FORMATS, SAVE_PRECISIONS, type RunConfig } from './run_config.js';

/** `prompts`: a list of texts (kohya prompt lines, parsed by sample_prompts.ts). */
export type ValueType = 'string' | 'integer' | 'number' | 'boolean' | 'enum' | 'list' | 'prompts';

/** What a string names on disk; drives path resolution, folder completion and the disk checks. */
export type PathKind = 'model' | 'dataset' | 'output' | 'checkpoint' | 'lora';

export type Group = 'model and data' | 'batch and length' | 'optimizer and schedule' | 'LoRA and loss' | 'outputs' | 'engine';

export interface KeySpec<K extends keyof RunConfig = keyof RunConfig> {
  readonly key: K;
  readonly group: Group;
  readonly type: ValueType;
  /** null allowed (the meaning of null is in `nullMeans`). */
  readonly nullable?: boolean;
  readonly nullMeans?: string;
  readonly default: RunConfig[K];
  readonly required?: boolean;
  /** One line: what the key does. */
  readonly summary: string;
  /** Markdown: diffusers' help text, then our advice. */
  readonly description: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly exclusiveMaximum?: number;
  readonly multipleOf?: number;
  /** Strings: the empty string is refused. */
  readonly nonEmpty?: boolean;
  /** Values of an enum, or of a list's items. */
  readonly values?: readonly string[];
  /** One line per enum value, for completion and hover. */
  readonly valueDocs?: Readonly<Record<string, string>>;
  /** Values that are valid but unusual: a warning, never an error. */
  readonly advisory?: { readonly above?: number; readonly below?: number; readonly message: string };
  readonly path?: PathKind;
  /** A value to write when the key is added and has no useful default (quick fix, completion). */
  readonly placeholder?: string;
}


/** Every key, in the order the docs and a generated config list them. */
export const RUN_CONFIG_KEYS: readonly KeySpec[] = [
  // ── model and data ──
  {
    key: 'pretrained_model_name_or_path',
    group: 'model and data',
    type: 'string',
    default: '',
    required: true,
    path: 'model',
    placeholder: './model',
    summary: 'The base model: a Hub id, a diffusers pipeline folder or a single-file .safetensors checkpoint (SD 1.x, 2.x, SDXL).',
    description:
      'Path to pretrained model or model identifier from huggingface.co/models.\n\n' +
      'A **Hub id** (`runwayml/stable-diffusion-v1-5`) is downloaded once into the Hugging Face cache (`cache_dir`, else `HF_HUB_CACHE` / `HF_HOME`), ' +
      'the same cache diffusers and `huggingface-cli` use: only model_index.json, the configs, the tokenizer and the `.safetensors` weights of ' +
      'unet/, vae/, text_encoder/. Private or gated models need a token (`HF_TOKEN`, `huggingface-cli login`, or `hub_token`); `HF_HUB_OFFLINE=1` uses the cache only. ' +
      'A **local folder** in the diffusers layout (`model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`; SDXL also `text_encoder_2/`, `tokenizer_2/`) ' +
      'or a **single-file checkpoint** (`.safetensors` in the original layout, as A1111/ComfyUI/Civitai hold them: its family is told from its keys) is relative to this file. Pickle weights (`.bin`, `.ckpt`) are refused.',
  },
  {
    key: 'revision',
    group: 'model and data',
    type: 'string',
    nullable: true,
    nullMeans: 'the `main` branch',
    default: null,
    nonEmpty: true,
    summary: 'Which branch, tag or commit of a Hub model to download.',
    description: 'Revision of pretrained model identifier from huggingface.co/models.\n\nOnly for a Hub id; the cache keeps each revision\'s files (`refs/<revision>`).',
  },
  {
    key: 'pretrained_model_config',
    group: 'model and data',
    type: 'string',
    nullable: true,
    nullMeans: "a single file's architecture is its family's standard one (SD 1.5, SD 2.1, SDXL base), with CLIP's bundled tokenizer",
    default: null,
    nonEmpty: true,
    path: 'model',
    summary: 'For a single-file checkpoint: a diffusers folder giving its configs and tokenizers.',
    description:
      "diffusers' `from_single_file(..., config=...)`: a diffusers folder of the same architecture whose `config.json` files, `tokenizer/` " +
      '(and `tokenizer_2/`) and `scheduler/` are used with the weights of `pretrained_model_name_or_path`. Without it a single file is read as its family\'s standard architecture (told from its keys), with the configs and CLIP tokenizer bundled with LoRA Studio; name a folder for a file of another architecture (a pruned or resized model).',
  },
  {
    key: 'variant',
    group: 'model and data',
    type: 'enum',
    values: ['fp16'],
    nullable: true,
    nullMeans: 'the plain weight files (the fp16 ones when they are the only ones)',
    default: null,
    summary: 'Which weight files of the model to read.',
    description:
      "Variant of the model files of the pretrained model identifier from huggingface.co/models, 'e.g.' fp16.\n\n" +
      '`fp16` reads `*.fp16.safetensors` (half the download); the weights become float32 at load either way, so training is the same.',
    valueDocs: { fp16: 'read the `*.fp16.safetensors` files' },
  },
  {
    key: 'train_data_dir',
    group: 'model and data',
    type: 'string',
    nullable: true,
    nullMeans: '`dataset_name` gives the data',
    default: null,
    nonEmpty: true,
    path: 'dataset',
    placeholder: './dataset',
    summary: 'The folder of training images and captions.',
    description:
      'A folder containing the training data. Folder contents must follow the structure described in ' +
      'https://huggingface.co/docs/datasets/image_dataset#imagefolder. In particular, a `metadata.jsonl` file must exist to provide the captions for the images.\n\n' +
      'Here: images (PNG, JPEG, WebP) with either `metadata.jsonl` (`{"file_name": "0001.png", "text": "a caption"}` per line) ' +
      'or a `.txt` caption file beside each image (`0001.png` + `0001.txt`, the kohya convention). Relative to this file. ' +
      'Give this or `dataset_name`.',
  },
  {
    key: 'dataset_name',
    group: 'model and data',
    type: 'string',
    nullable: true,
    nullMeans: '`train_data_dir` gives the data',
    default: null,
    nonEmpty: true,
    summary: 'A Hub dataset to train on (`lambdalabs/pokemon-blip-captions`).',
    description:
      'The name of the Dataset (from the HuggingFace hub) to train on (could be your own, possibly private, dataset).\n\n' +
      "Its train split's Parquet files (the repository's own, or the Hub's conversion on `refs/convert/parquet`) are downloaded into the Hugging Face cache; " +
      '`image_column` holds the images (`{bytes, path}` structs or paths into the repository), `caption_column` the captions (a string or a list). Used instead of `train_data_dir` when both are set, as in diffusers.',
  },
  {
    key: 'dataset_config_name',
    group: 'model and data',
    type: 'string',
    nullable: true,
    nullMeans: "the dataset's only (default) configuration",
    default: null,
    nonEmpty: true,
    summary: 'Which configuration of the Hub dataset.',
    description: "The config of the Dataset, leave as None if there's only one config.\n\nPicks the Parquet files under the folder of that name.",
  },
  {
    key: 'cache_dir',
    group: 'model and data',
    type: 'string',
    nullable: true,
    nullMeans: '`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`',
    default: null,
    nonEmpty: true,
    summary: 'Where Hub downloads are cached.',
    description: 'The directory where the downloaded models and datasets will be stored.\n\nThe standard Hugging Face cache layout (`models--org--name/`), relative to this file.',
  },
  {
    key: 'image_column',
    group: 'model and data',
    type: 'string',
    default: 'image',
    nonEmpty: true,
    summary: 'The dataset column that holds the image.',
    description:
      'The column of the dataset containing an image.\n\n' +
      'With `metadata.jsonl` the imagefolder convention names the image column `image` (made from `file_name`); change it only if your metadata names the image file in another column.',
  },
  {
    key: 'caption_column',
    group: 'model and data',
    type: 'string',
    default: 'text',
    nonEmpty: true,
    summary: 'The metadata.jsonl field that holds the caption.',
    description:
      'The column of the dataset containing a caption or a list of captions.\n\n' +
      'The field of each `metadata.jsonl` line to read captions from (a list of captions picks one at random each time, as diffusers does). Not used with `.txt` captions.',
  },
  {
    key: 'resolution',
    group: 'model and data',
    type: 'integer',
    default: 512,
    minimum: 8,
    multipleOf: 8,
    advisory: { above: 1024, message: 'Stable Diffusion 1.x/2.x were trained at 512–768; above 1024 training is slow and memory-hungry' },
    summary: 'Training image size in pixels (square).',
    description:
      'The resolution for input images, all the images in the train/validation dataset will be resized to this resolution.\n\n' +
      'A multiple of 8 (the VAE works on 8×8 pixel blocks). Use the size the base model was trained at: 512 for SD 1.x, 768 for SD 2.x, 64 for the bundled tiny-shapes model. ' +
      'Memory and time grow with its square.',
  },
  {
    key: 'center_crop',
    group: 'model and data',
    type: 'boolean',
    default: false,
    summary: 'Crop the centre instead of a random crop.',
    description:
      'Whether to center crop the input images to the resolution. If not set, the images will be randomly cropped. ' +
      'The images will be resized to the resolution first before cropping.\n\n' +
      'Turn it on when subjects sit in the middle of the images and must not be cut off.',
  },
  {
    key: 'random_flip',
    group: 'model and data',
    type: 'boolean',
    default: false,
    summary: 'Mirror images left–right at random.',
    description:
      'Whether to randomly flip images horizontally.\n\n' +
      'Doubles the variety of a small dataset; leave it off when left and right matter (text, asymmetric logos, compositions placed on one side).',
  },
  {
    key: 'max_train_samples',
    group: 'model and data',
    type: 'integer',
    nullable: true,
    nullMeans: 'every image in the dataset',
    default: null,
    minimum: 1,
    summary: 'Train on only the first N examples.',
    description: 'For debugging purposes or quicker training, truncate the number of training examples to this value if set.',
  },
  {
    key: 'enable_bucket',
    group: 'model and data',
    type: 'boolean',
    default: false,
    summary: 'Aspect-ratio bucketing: train each image near its own shape instead of a square crop.',
    description:
      "kohya's `--enable_bucket`: enable buckets for multi aspect ratio training.\n\n" +
      'Buckets are the sizes of about `resolution`² pixels whose sides are multiples of `bucket_reso_steps` between `min_bucket_reso` and `max_bucket_reso` ' +
      "(sd-scripts' rule); each image goes to the bucket nearest its aspect ratio, is resized to cover it and center-cropped (randomly when `center_crop: false`). " +
      'A batch holds images of one bucket. The buckets and their counts are written into the LoRA as `ss_bucket_info`.',
  },
  {
    key: 'min_bucket_reso',
    group: 'model and data',
    type: 'integer',
    default: 256,
    minimum: 8,
    multipleOf: 8,
    summary: 'Smallest bucket side in pixels.',
    description: "kohya's `--min_bucket_reso`: minimum resolution for buckets. Only with `enable_bucket: true`; must be ≤ `resolution`.",
  },
  {
    key: 'max_bucket_reso',
    group: 'model and data',
    type: 'integer',
    default: 1024,
    minimum: 8,
    multipleOf: 8,
    summary: 'Largest bucket side in pixels.',
    description: "kohya's `--max_bucket_reso`: maximum resolution for buckets. Only with `enable_bucket: true`; must be ≥ `resolution`.",
  },
  {
    key: 'bucket_reso_steps',
    group: 'model and data',
    type: 'integer',
    default: 64,
    minimum: 8,
    multipleOf: 8,
    summary: 'Bucket sides are multiples of this many pixels.',
    description:
      "kohya's `--bucket_reso_steps`: steps of resolution for buckets, divisible by 8 is recommended.\n\n" +
      'Also a multiple of what the UNet needs (8 × 2^(down blocks − 1) pixels: 64 for Stable Diffusion 1.x/2.x); the trainer says so when it is not.',
  },
  {
    key: 'validation_split',
    group: 'model and data',
    type: 'number',
    default: 0,
    minimum: 0,
    exclusiveMaximum: 1,
    summary: 'Hold out this fraction of the images to measure a validation loss.',
    description:
      "kohya's `--validation_split`: split for validation images out of the training dataset.\n\n" +
      'The held-out images (a seeded random choice) are not trained on; at each validation (every `validation_epochs` epochs, and at the end) ' +
      'their loss is measured with the same noise and timesteps every time, so the curve on the dashboard moves only with the LoRA. 0 turns it off.',
  },
  {
    key: 'caption_dropout_rate',
    group: 'model and data',
    type: 'number',
    default: 0,
    minimum: 0,
    maximum: 1,
    summary: 'Train this fraction of the steps with an empty caption.',
    description:
      "kohya's `--caption_dropout_rate`: rate for dropout caption.\n\n" +
      'Each time an image is used its caption is replaced by the empty text with this probability, which teaches the unconditional case ' +
      '(classifier-free guidance leans on it). 0.05–0.1 is typical.',
  },
  {
    key: 'shuffle_caption',
    group: 'model and data',
    type: 'boolean',
    default: false,
    summary: 'Shuffle the comma-separated tags of each caption every time it is used.',
    description:
      "kohya's `--shuffle_caption`: shuffle separated caption.\n\n" +
      'For tag-style captions (`1girl, red hair, smiling`): the order stops carrying meaning. The first `keep_tokens` tags stay in place.',
  },
  {
    key: 'keep_tokens',
    group: 'model and data',
    type: 'integer',
    default: 0,
    minimum: 0,
    summary: 'With shuffle_caption: keep the first N tags in place.',
    description:
      "kohya's `--keep_tokens`: keep heading N tokens when shuffling caption tokens (token means comma separated strings).\n\n" +
      'Keep the trigger word first: `keep_tokens: 1`.',
  },
  // ── batch and length ──
  {
    key: 'train_batch_size',
    group: 'batch and length',
    type: 'integer',
    default: 16,
    minimum: 1,
    summary: 'Images per forward/backward pass.',
    description:
      'Batch size (per device) for the training dataloader.\n\n' +
      'Larger batches use more memory; to train with a large effective batch on a small GPU, lower this and raise `gradient_accumulation_steps`.',
  },
  {
    key: 'gradient_accumulation_steps',
    group: 'batch and length',
    type: 'integer',
    default: 1,
    minimum: 1,
    summary: 'Batches summed before each optimizer step.',
    description:
      'Number of updates steps to accumulate before performing a backward/update pass.\n\n' +
      'The effective batch is `train_batch_size × gradient_accumulation_steps`. Steps (`max_train_steps`, `checkpointing_steps`, warmup) count optimizer updates, not batches.',
  },
  {
    key: 'gradient_checkpointing',
    group: 'batch and length',
    type: 'boolean',
    default: false,
    summary: 'Recompute activations in the backward pass to save memory.',
    description:
      'Whether or not to use gradient checkpointing to save memory at the expense of slower backward pass.\n\n' +
      "Each of the UNet's resnet and transformer blocks keeps only its input and recomputes its activations when the gradient reaches it: " +
      'activation memory drops to about a third for roughly one more forward pass of compute. Turn it on when a run is out of memory.',
  },
  {
    key: 'num_train_epochs',
    group: 'batch and length',
    type: 'integer',
    default: 100,
    minimum: 1,
    summary: 'Passes over the dataset (when max_train_steps is not set).',
    description:
      "Number of passes over the training data. diffusers' default.\n\n" +
      'Ignored when `max_train_steps` is set, which then decides the length of the run (as in diffusers).',
  },
  {
    key: 'max_train_steps',
    group: 'batch and length',
    type: 'integer',
    nullable: true,
    nullMeans: 'num_train_epochs decides the length',
    default: null,
    minimum: 1,
    summary: 'Total optimizer steps; overrides num_train_epochs.',
    description:
      'Total number of training steps to perform. If provided, overrides num_train_epochs.\n\n' +
      'The clearest way to size a run: a few hundred to a few thousand steps is typical for a LoRA.',
  },
  // ── optimizer and schedule ──
  {
    key: 'learning_rate',
    group: 'optimizer and schedule',
    type: 'number',
    default: 1e-4,
    exclusiveMinimum: 0,
    advisory: { above: 0.01, message: 'LoRA learning rates are typically 1e-4 to 1e-3; this high the loss is likely to diverge (NaN)' },
    summary: 'Initial learning rate (after warmup).',
    description:
      'Initial learning rate (after the potential warmup period) to use.\n\n' +
      'LoRA tolerates a higher rate than full fine-tuning: 1e-4 (the guide) to 1e-3 (small datasets, few steps). Lower it if the loss jumps or turns NaN.',
  },
  {
    key: 'scale_lr',
    group: 'optimizer and schedule',
    type: 'boolean',
    default: false,
    summary: 'Multiply the learning rate by the effective batch size.',
    description:
      'Scale the learning rate by the number of GPUs, gradient accumulation steps, and batch size.\n\n' +
      'The rate actually used becomes `learning_rate × train_batch_size × gradient_accumulation_steps` (one device).',
  },
  {
    key: 'lr_scheduler',
    group: 'optimizer and schedule',
    type: 'enum',
    values: LR_SCHEDULERS,
    default: 'constant',
    valueDocs: {
      linear: 'warm up, then decrease linearly to 0 at the last step',
      cosine: 'warm up, then follow half a cosine down to 0',
      cosine_with_restarts: 'warm up, then cosine down to 0, restarting (hard restarts)',
      polynomial: 'warm up, then decay as a power (1 = linear) down to 1e-7',
      constant: 'the same rate throughout; ignores lr_warmup_steps',
      constant_with_warmup: 'warm up linearly, then constant',
    },
    summary: 'How the learning rate changes over the run.',
    description:
      'The scheduler type to use. Choose between ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"].\n\n' +
      '`constant` ignores `lr_warmup_steps`; use `constant_with_warmup` to warm up and then hold.',
  },
  {
    key: 'lr_warmup_steps',
    group: 'optimizer and schedule',
    type: 'integer',
    default: 500,
    minimum: 0,
    summary: 'Steps over which the learning rate ramps up from 0.',
    description:
      'Number of steps for the warmup in the lr scheduler.\n\n' +
      "diffusers' default of 500 is longer than many LoRA runs; keep it well under the run's length (around 5–10 % of it), or 0.",
  },
  {
    key: 'adam_beta1',
    group: 'optimizer and schedule',
    type: 'number',
    default: 0.9,
    minimum: 0,
    exclusiveMaximum: 1,
    summary: "AdamW's first-moment decay.",
    description: 'The beta1 parameter for the Adam optimizer.',
  },
  {
    key: 'adam_beta2',
    group: 'optimizer and schedule',
    type: 'number',
    default: 0.999,
    minimum: 0,
    exclusiveMaximum: 1,
    summary: "AdamW's second-moment decay.",
    description: 'The beta2 parameter for the Adam optimizer.',
  },
  {
    key: 'adam_weight_decay',
    group: 'optimizer and schedule',
    type: 'number',
    default: 1e-2,
    minimum: 0,
    summary: 'Decoupled weight decay (AdamW).',
    description: 'Weight decay to use.\n\nApplied as in torch.optim.AdamW: `p ← p − lr · weight_decay · p` before the Adam update.',
  },
  {
    key: 'adam_epsilon',
    group: 'optimizer and schedule',
    type: 'number',
    default: 1e-8,
    exclusiveMinimum: 0,
    summary: "AdamW's denominator epsilon.",
    description: 'Epsilon value for the Adam optimizer.',
  },
  {
    key: 'max_grad_norm',
    group: 'optimizer and schedule',
    type: 'number',
    default: 1.0,
    exclusiveMinimum: 0,
    summary: 'Clip the gradient norm to this value.',
    description: 'Max gradient norm.\n\nThe LoRA gradients are scaled down together when their global L2 norm exceeds this value; 1.0 is the usual choice.',
  },
  // ── LoRA and loss ──
  {
    key: 'rank',
    group: 'LoRA and loss',
    type: 'integer',
    default: 4,
    minimum: 1,
    advisory: { above: 256, message: 'ranks above 128 rarely help and make the file and the training large' },
    summary: 'The LoRA rank r.',
    description:
      'The dimension of the LoRA update matrices.\n\n' +
      'Higher ranks learn more detail and give bigger files: 4–16 for a style or a composition, 32–128 for a detailed subject. ' +
      'Alpha equals the rank (scale 1) unless `lora_alpha` says otherwise, as in the guide.',
  },
  {
    key: 'lora_alpha',
    group: 'LoRA and loss',
    type: 'number',
    nullable: true,
    nullMeans: 'the rank (scale 1, as the guide)',
    default: null,
    exclusiveMinimum: 0,
    summary: 'LoRA alpha: the update is scaled by alpha / rank.',
    description:
      "PEFT's `lora_alpha` (kohya's `--network_alpha`).\n\n" +
      'The LoRA update is multiplied by `lora_alpha / rank`: kohya users often train with alpha = rank / 2 or 1 and a higher learning rate. ' +
      'Written into the LoRA files (the kohya file as `.alpha`, the diffusers file in its metadata), so every tool applies the same scale.',
  },
  {
    key: 'network_type',
    group: 'LoRA and loss',
    type: 'enum',
    values: NETWORK_TYPES,
    default: 'lora',
    valueDocs: {
      lora: 'LoRA on the UNet attention projections (to_q, to_k, to_v, to_out.0), as the guide',
      locon: "LoCon: also the resnets' and up/downsamplers' convolutions (3×3 kernels), proj_in/out and the feed-forward layers (kohya's conv set)",
      dora: 'DoRA (peft `use_dora`): LoRA on the attention projections plus a trained magnitude per output channel',
    },
    summary: 'Which layers the adapter trains, and how: LoRA, LoCon or DoRA.',
    description:
      "kohya's `--network_module` / LyCORIS' `algo` and peft's `use_dora`.\n\n" +
      '`locon` adapts the convolutions too (kohya `networks.lora` with `conv_dim`, the same rank and alpha here): more capacity for styles and textures, bigger files. ' +
      '`dora` learns a magnitude per output channel beside the LoRA direction (Liu et al., 2024); files carry it as `lora_magnitude_vector` / `dora_scale`.',
  },
  {
    key: 'lora_dropout',
    group: 'LoRA and loss',
    type: 'number',
    default: 0,
    minimum: 0,
    exclusiveMaximum: 1,
    summary: "Dropout on each LoRA layer's input while training (peft's lora_dropout).",
    description:
      "peft's `lora_dropout` (kohya's `--network_dropout`).\n\n" +
      'During training each adapter sees its input with this fraction of values zeroed (the rest scaled by 1 / (1 − p)); the base layer sees it unchanged. ' +
      '0.05–0.1 can reduce overfitting on small datasets. Generation never drops anything.',
  },
  {
    key: 'train_text_encoder',
    group: 'LoRA and loss',
    type: 'boolean',
    default: false,
    summary: "Also train a LoRA on the text encoder's attention (q/k/v/out_proj).",
    description:
      "diffusers' `--train_text_encoder` (train_dreambooth_lora.py); kohya trains it unless `--network_train_unet_only`.\n\n" +
      'Helps a LoRA bind a new word (a trigger token) to what it learns. The captions are then encoded at every step, not cached; ' +
      'the files gain `text_encoder.…` (diffusers) and `lora_te_…` (kohya) keys. SD 1.x/2.x only for now.',
  },
  {
    key: 'text_encoder_lr',
    group: 'LoRA and loss',
    type: 'number',
    nullable: true,
    nullMeans: '`learning_rate`',
    default: null,
    exclusiveMinimum: 0,
    summary: "The text encoder LoRA's learning rate (with train_text_encoder).",
    description:
      "kohya's `--text_encoder_lr`.\n\n" +
      'The text encoder is sensitive: kohya users often give it a half or a tenth of the UNet rate. Follows the same schedule (warmup, decay) as `learning_rate`.',
  },
  {
    key: 'network_weights',
    group: 'LoRA and loss',
    type: 'string',
    nullable: true,
    nullMeans: 'start from a fresh LoRA (lora_A gaussian, lora_B zero)',
    default: null,
    nonEmpty: true,
    path: 'lora',
    summary: 'Start training from an existing LoRA file (any tool\'s).',
    description:
      "kohya's `--network_weights`: pretrained weights for the network.\n\n" +
      'A `.safetensors` LoRA in diffusers, PEFT, kohya/A1111 (diffusers or SGM block names) or ComfyUI layout, LoCon and DoRA included; a path is relative to this file. ' +
      'Its modules must be the ones this run trains (`network_type`, `train_text_encoder`) at this `rank`; anything else is an error naming the key. ' +
      "The run's alpha stays `lora_alpha`: a file of another alpha has its up weights rescaled so training starts from exactly the file's LoRA (a LoRA file into a `dora` run gets the magnitude ‖W + ΔW‖, which leaves it unchanged). " +
      'A fresh optimizer and step 0: to continue a run of this project with its optimizer state, use `resume_from_checkpoint` (which then wins).',
  },
  {
    key: 'snr_gamma',
    group: 'LoRA and loss',
    type: 'number',
    nullable: true,
    nullMeans: 'plain MSE',
    default: null,
    exclusiveMinimum: 0,
    summary: 'Min-SNR loss weighting gamma.',
    description:
      'SNR weighting gamma to be used if rebalancing the loss. Recommended value is 5.0. More details here: https://huggingface.co/papers/2303.09556.\n\n' +
      'Weights each timestep by `min(SNR, γ)/SNR` (÷ (SNR+1) for v-prediction): faster convergence, fewer blown-out steps.',
  },
  {
    key: 'noise_offset',
    group: 'LoRA and loss',
    type: 'number',
    default: 0,
    minimum: 0,
    advisory: { above: 0.2, message: 'noise offsets above ~0.1 shift the brightness of every generation' },
    summary: 'Scale of the per-channel noise offset.',
    description:
      'The scale of noise offset.\n\n' +
      'Adds `noise_offset × N(0,1)` per image and channel to the noise, which lets the model learn very dark and very bright images. 0.05–0.1 is typical; 0 turns it off.',
  },
  {
    key: 'prediction_type',
    group: 'LoRA and loss',
    type: 'enum',
    values: PREDICTION_TYPES,
    nullable: true,
    nullMeans: "the model's scheduler config decides",
    default: null,
    valueDocs: { epsilon: 'the UNet predicts the noise (SD 1.x, SD 2 base)', v_prediction: 'the UNet predicts the velocity (SD 2.x 768)' },
    summary: 'What the UNet learns to predict.',
    description:
      "The prediction_type that shall be used for training. Choose between 'epsilon' or 'v_prediction' or leave `None`. " +
      'If left to `None` the default prediction type of the scheduler: `noise_scheduler.config.prediction_type` is chosen.\n\n' +
      'Leave it unset unless you know the model was trained otherwise: a mismatch ruins the LoRA.',
  },
  {
    key: 'seed',
    group: 'LoRA and loss',
    type: 'integer',
    nullable: true,
    nullMeans: 'a random seed (recorded in the output metadata)',
    default: null,
    minimum: 0,
    maximum: Number.MAX_SAFE_INTEGER,
    summary: 'Seed for reproducible training.',
    description: 'A seed for reproducible training.\n\nThe same seed, data and config give the same LoRA, step for step, on the same backend.',
  },
  // ── outputs ──
  {
    key: 'output_dir',
    group: 'outputs',
    type: 'string',
    default: 'sd-model-finetuned-lora',
    nonEmpty: true,
    path: 'output',
    summary: 'Where the LoRA, checkpoints and samples are written.',
    description:
      'The output directory where the model predictions and checkpoints will be written.\n\n' +
      `Receives \`${LORA_FILE}\`, \`checkpoint-<step>/\` folders, \`${SAMPLES_DIR}/\` and \`${METRICS_FILE}\`. Relative to this file.`,
  },
  {
    key: 'checkpointing_steps',
    group: 'outputs',
    type: 'integer',
    default: 500,
    minimum: 1,
    summary: 'Save a resumable checkpoint every N steps.',
    description:
      'Save a checkpoint of the training state every X updates. These checkpoints are only suitable for resuming training using `--resume_from_checkpoint`.\n\n' +
      'Each `checkpoint-<step>/` holds the LoRA, the optimizer state, the random state and the data position, so a resumed run ends exactly where an uninterrupted one would.',
  },
  {
    key: 'checkpoints_total_limit',
    group: 'outputs',
    type: 'integer',
    nullable: true,
    nullMeans: 'keep every checkpoint',
    default: null,
    minimum: 1,
    summary: 'Keep at most N checkpoints (oldest removed first).',
    description: 'Max number of checkpoints to store.',
  },
  {
    key: 'resume_from_checkpoint',
    group: 'outputs',
    type: 'string',
    nullable: true,
    nullMeans: 'start a new run',
    default: null,
    nonEmpty: true,
    path: 'checkpoint',
    summary: 'Continue a run from a checkpoint: `latest` or a checkpoint-<step> folder.',
    description:
      'Whether training should be resumed from a previous checkpoint. Use a path saved by `--checkpointing_steps`, or `"latest"` to automatically select the last available checkpoint.\n\n' +
      '`latest` picks the highest `checkpoint-<step>` in `output_dir` (and starts afresh when there is none); a path is relative to this file.',
  },
  {
    key: 'validation_prompt',
    group: 'outputs',
    type: 'string',
    nullable: true,
    nullMeans: 'no validation images',
    default: null,
    summary: 'Prompt for the sample images made during training.',
    description: `A prompt that is sampled during training for inference.\n\nImages go to \`output_dir/${SAMPLES_DIR}/\` and appear on the dashboard.`,
  },
  {
    key: 'num_validation_images',
    group: 'outputs',
    type: 'integer',
    default: 4,
    minimum: 0,
    summary: 'Images generated per validation.',
    description: 'Number of images that should be generated during validation with `validation_prompt`.',
  },
  {
    key: 'validation_epochs',
    group: 'outputs',
    type: 'integer',
    default: 1,
    minimum: 1,
    summary: 'Validate every N epochs.',
    description:
      'Run fine-tuning validation every X epochs. The validation process consists of running the prompt `args.validation_prompt` multiple times: `args.num_validation_images`.',
  },
  {
    key: 'sample_prompts',
    group: 'outputs',
    type: 'prompts',
    default: [],
    summary: 'Prompts to sample during training, one image each, in kohya\'s prompt syntax.',
    description:
      "kohya's sample prompts (the lines of its `--sample_prompts` file), as a list: each is a prompt with optional " +
      '`--n` negative prompt, `--d` seed, `--s` steps, `--l` guidance scale, `--w` / `--h` size and `--ss` sampler, e.g. ' +
      '`a red circle on grey --n blurry --d 42 --s 20 --l 7.5 --ss euler`.\n\n' +
      `Sampled every \`sample_every_n_steps\` steps (else every \`validation_epochs\` epochs) and at the end; images go to \`output_dir/${SAMPLES_DIR}/\` ` +
      'and appear on the dashboard by step. `validation_prompt` stays as the guide\'s shorthand (its `num_validation_images` images come first).',
  },
  {
    key: 'sample_every_n_steps',
    group: 'outputs',
    type: 'integer',
    nullable: true,
    nullMeans: 'every `validation_epochs` epochs',
    default: null,
    minimum: 1,
    summary: 'Sample the prompts every N optimizer steps.',
    description: "kohya's `--sample_every_n_steps`: generate sample images every N steps.",
  },
  {
    key: 'sample_sampler',
    group: 'outputs',
    type: 'enum',
    values: INFERENCE_SCHEDULERS,
    nullable: true,
    nullMeans: "the model's own scheduler (PNDM for Stable Diffusion 1.x), as the guide's validation",
    default: null,
    summary: 'Sampler for the sample images (a prompt\'s `--ss` overrides it).',
    description: "kohya's `--sample_sampler`: sampler (scheduler) type for sample images.",
    valueDocs: Object.fromEntries(INFERENCE_SCHEDULERS.map((n) => [n, SCHEDULER_TITLES[n]])),
  },
  {
    key: 'save_formats',
    group: 'outputs',
    type: 'list',
    values: SAVE_FORMATS,
    default: ['diffusers', 'kohya'],
    valueDocs: {
      diffusers: `\`${LORA_FILE}\` with diffusers keys (\`load_lora_weights\`)`,
      kohya: `also \`${KOHYA_LORA_FILE_PATTERN}\` with kohya/A1111 keys and alpha (what ComfyUI, A1111/Forge and sd-scripts load)`,
    },
    summary: 'Which LoRA file formats to write (both by default: diffusers loads the first, ComfyUI, A1111 and sd-scripts the second).',
    description:
      `LoRA Studio only. \`diffusers\` writes \`${LORA_FILE}\` as diffusers does; \`kohya\` adds \`${KOHYA_LORA_FILE_PATTERN}\`, a copy with kohya/A1111 key names ` +
      '(`lora_unet_…lora_down.weight`, `.alpha`) for ComfyUI, the AUTOMATIC1111 web UI, Forge and sd-scripts.',
  },
  {
    key: 'output_name',
    group: 'outputs',
    type: 'string',
    nullable: true,
    nullMeans: "output_dir's folder name",
    default: null,
    nonEmpty: true,
    summary: 'The name of the kohya/A1111 LoRA file (what A1111 and ComfyUI list it as).',
    description:
      "kohya's `--output_name`: base name of trained model file.\n\n" +
      `The kohya copy is written as \`${KOHYA_LORA_FILE_PATTERN}\` in output_dir, and the name is recorded as \`ss_output_name\` and \`modelspec.title\`. ` +
      'A plain file name, without `.safetensors` and without folders.',
  },
  {
    key: 'save_precision',
    group: 'outputs',
    type: 'enum',
    values: SAVE_PRECISIONS,
    default: 'fp32',
    valueDocs: { fp32: '32-bit floats, exactly what was trained', fp16: 'half the size; what most shared LoRAs use', bf16: 'half the size, fp32\'s range' },
    summary: 'The precision of the LoRA files (fp16 files are half the size).',
    description:
      "kohya's `--save_precision`: precision in saving. Applies to both LoRA files; checkpoints stay fp32 so a resume is exact.",
  },
  {
    key: 'no_metadata',
    group: 'outputs',
    type: 'boolean',
    default: false,
    summary: 'Write no training metadata into the LoRA files.',
    description:
      "kohya's `--no_metadata`: do not save metadata in output model.\n\n" +
      'By default the files carry what sd-scripts records (ss_* keys: rank, alpha, base model family, steps, tag counts, …), ' +
      'ModelSpec keys and the run config, with folder names only, never local paths.',
  },
  {
    key: 'push_to_hub',
    group: 'outputs',
    type: 'boolean',
    default: false,
    summary: 'Upload the LoRA and a model card to the Hub at the end.',
    description:
      'Whether or not to push the model to the Hub.\n\n' +
      `Creates \`hub_model_id\` if needed and uploads \`${LORA_FILE}\`, a \`README.md\` model card (as diffusers writes it) with the final validation images, ` +
      `\`${METRICS_FILE}\` and \`${SAMPLES_DIR}/\` (not the checkpoints). Needs a token with write access. A failed upload keeps everything on disk: retry with \`lora-studio push OUTPUT_DIR\`.`,
  },
  {
    key: 'hub_model_id',
    group: 'outputs',
    type: 'string',
    nullable: true,
    nullMeans: "output_dir's folder name, in your namespace",
    default: null,
    nonEmpty: true,
    summary: 'The Hub repository to push to.',
    description: 'The name of the repository to keep in sync with the local `output_dir`.\n\n`name` (your namespace) or `org/name`.',
  },
  {
    key: 'hub_token',
    group: 'outputs',
    type: 'string',
    nullable: true,
    nullMeans: '`HF_TOKEN`, else the token file `huggingface-cli login` writes',
    default: null,
    nonEmpty: true,
    summary: 'The token to download private models and to push with.',
    description:
      'The token to use to push to the Model Hub.\n\nPrefer `HF_TOKEN` or `huggingface-cli login`: a token in a config file is easily shared by mistake. ' +
      'It is never written into the LoRA file or the checkpoints.',
  },
  // ── engine ──
  {
    key: 'backend',
    group: 'engine',
    type: 'enum',
    values: BACKENDS,
    default: 'auto',
    valueDocs: {
      auto: 'the fastest that works here: webgpu, then tensorflow, then wasm',
      webgpu: 'the GPU through WebGPU (Vulkan, Metal, D3D12): NVIDIA, AMD, Intel, Apple',
      tensorflow: 'libtensorflow with CUDA (@tensorflow/tfjs-node-gpu, installed separately)',
      wasm: 'CPU, WebAssembly with SIMD and threads: the fast CPU path',
      cpu: 'CPU, plain JavaScript: slowest, the reference',
    },
    summary: 'Which TensorFlow.js backend computes.',
    description: 'LoRA Studio only. The tensor backend: `auto` tries `webgpu`, then `tensorflow`, then `wasm`.',
  },
  {
    key: 'cache_latents',
    group: 'engine',
    type: 'boolean',
    default: true,
    summary: 'Encode the images with the VAE once and reuse the latents.',
    description:
      "LoRA Studio only. Encodes every training image with the VAE before the first step and keeps the latents (and the captions' text embeddings), " +
      'saving a VAE pass per image per step. Costs memory: 4 × (resolution/8)² floats per image.',
  },
];

export const KEY_SPECS: ReadonlyMap<string, KeySpec> = new Map(RUN_CONFIG_KEYS.map((s) => [s.key, s]));

/** diffusers flags (and accelerate launch options) that a pasted command may carry but LoRA Studio does not use. */
export interface GuideOnlyKey {
  readonly key: string;
  readonly severity: 'error' | 'warning' | 'info';
  /** Why it is ignored or refused, and what to do instead. */
  readonly reason: string;
  /** store_true flags take no value on the command line. */
  readonly isSwitch?: boolean;
}

export const GUIDE_ONLY_KEYS: readonly GuideOnlyKey[] = [
  { key: 'mixed_precision', severity: 'warning', reason: 'training runs in float32 (TensorFlow.js has no float16/bfloat16 tensors); fp16 model files are converted at load' },
  { key: 'report_to', severity: 'warning', reason: `metrics go to output_dir/${METRICS_FILE} and the LoRA Studio dashboard` },
  { key: 'logging_dir', severity: 'warning', reason: `metrics go to output_dir/${METRICS_FILE}` },
  { key: 'use_8bit_adam', severity: 'warning', reason: 'AdamW runs in float32 (only the LoRA weights have optimizer state, so it is small)', isSwitch: true },
  { key: 'allow_tf32', severity: 'info', reason: 'a CUDA/PyTorch setting with no equivalent here; the backend chooses its own precision', isSwitch: true },
  { key: 'enable_xformers_memory_efficient_attention', severity: 'info', reason: "a PyTorch extension; LoRA Studio's backends use their own attention kernels", isSwitch: true },
  { key: 'dataloader_num_workers', severity: 'info', reason: 'images are decoded in the trainer process' },
  { key: 'local_rank', severity: 'warning', reason: 'training runs on one device' },
  { key: 'image_interpolation_mode', severity: 'info', reason: 'images are resized with Lanczos (sharp), the guide\'s default' },
];
export const GUIDE_ONLY: ReadonlyMap<string, GuideOnlyKey> = new Map(GUIDE_ONLY_KEYS.map((g) => [g.key, g]));

/** A fresh config holding every default (required keys hold ''; validation rejects those). */
export function defaultRunConfig(): RunConfig {
  const c: Record<string, unknown> = {};
  for (const s of RUN_CONFIG_KEYS) c[s.key] = Array.isArray(s.default) ? [...s.default] : s.default;
  return c as unknown as RunConfig;
}

/** The value as YAML would spell it (defaults in docs, completion, quick fixes). */
export function formatValue(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return `[${v.map(formatValue).join(', ')}]`;
  if (typeof v === 'number') return formatNumber(v);
  if (typeof v === 'string') return needsQuotes(v) ? JSON.stringify(v) : v;
  return String(v);
}

/** Whether a plain YAML scalar would read back as something else than this string. */
function needsQuotes(v: string): boolean {
  if (v === '' || v !== v.trim() || /[\n\r\t\0]/.test(v)) return true;
  if (/^[[\]{}#&*!|>'"%@`,]/.test(v) || /^[-?:](\s|$)/.test(v) || /: |:$| #/.test(v)) return true;
  // YAML 1.2 core schema: null, booleans, numbers (and yes/no/on/off, which YAML 1.1 tools read as booleans).
  return /^(~|null|true|false|yes|no|on|off|y|n)$/i.test(v) || /^[-+]?(\.\d+|\d+(\.\d*)?)([eE][-+]?\d+)?$|^0x[\da-f]+$|^0o[0-7]+$|^[-+]?\.(inf|nan)$/i.test(v);
}

function formatNumber(n: number): string {
  if (n !== 0 && (Math.abs(n) < 1e-3 || Math.abs(n) >= 1e7)) return n.toExponential().replace('e+', 'e');
  return String(n);
}

/** "an integer ≥ 8 and a multiple of 8", "a number > 0", "one of `a`, `b`", "true or false" (+ "or null"). */
export function describeExpected(spec: KeySpec): string {
  let s: string;
  switch (spec.type) {
    case 'boolean':
      s = 'true or false';
      break;
    case 'enum':
      s = `one of ${spec.values!.map((v) => `\`${v}\``).join(', ')}`;
      break;
    case 'list':
      s = `a list of ${spec.values!.map((v) => `\`${v}\``).join(' and/or ')}, e.g. [${spec.values![0]}]`;
      break;
    case 'string':
      s = spec.path ? 'a path' : spec.nonEmpty ? 'a non-empty text' : 'a text';
      break;
    case 'prompts':
      s = 'a list of prompts, e.g. ["a red circle --n blurry --d 1"]';
      break;
    default: {
      s = spec.type === 'integer' ? 'an integer' : 'a number';
      const bounds: string[] = [];
      if (spec.minimum !== undefined && spec.maximum !== undefined) bounds.push(`from ${spec.minimum} to ${spec.maximum}`);
      else {
        if (spec.minimum !== undefined) bounds.push(`≥ ${spec.minimum}`);
        if (spec.exclusiveMinimum !== undefined) bounds.push(`> ${spec.exclusiveMinimum}`);
        if (spec.maximum !== undefined) bounds.push(`≤ ${spec.maximum}`);
      }
      if (spec.exclusiveMaximum !== undefined) bounds.push(`< ${spec.exclusiveMaximum}`);
      if (bounds.length) s += ' ' + bounds.join(' and ');
      if (spec.multipleOf !== undefined) s += ` and a multiple of ${spec.multipleOf}`;
    }
  }
  return spec.nullable ? `${s}, or null` : s;
}

/** The range line of the hover: "≥ 8, multiple of 8", "0 ≤ x < 1". */
export function describeRange(spec: KeySpec): string | undefined {
  if (spec.type !== 'integer' && spec.type !== 'number') return undefined;
  const lo = spec.minimum !== undefined ? `${spec.minimum} ≤ ` : spec.exclusiveMinimum !== undefined ? `${spec.exclusiveMinimum} < ` : '';
  const hi =
    spec.maximum !== undefined ? ` ≤ ${spec.maximum}` : spec.exclusiveMaximum !== undefined ? ` < ${spec.exclusiveMaximum}` : '';
  let r = lo || hi ? `${lo}${spec.key}${hi}` : '';
  if (spec.multipleOf !== undefined) r += `${r ? ', ' : ''}multiple of ${spec.multipleOf}`;
  return r || undefined;
}

/** Markdown documentation of a key (hover and completion). */
export function keyDocumentation(spec: KeySpec): string {
  const lines = [`**\`${spec.key}\`** — ${spec.summary}`, ''];
  const facts = [`type: ${spec.type === 'enum' ? describeExpected(spec) : spec.type === 'list' ? `list of ${spec.values!.join(', ')}` : spec.type === 'prompts' ? 'list of prompts' : spec.type + (spec.nullable ? ' or null' : '')}`];
  if (spec.required) facts.push('**required**');
  else facts.push(`default: \`${formatValue(spec.default)}\`${spec.default === null && spec.nullMeans ? ` (${spec.nullMeans})` : ''}`);
  const range = describeRange(spec);
  if (range) facts.push(`range: ${range}`);
  lines.push(facts.join(' · '), '', spec.description);
  if (spec.valueDocs) {
    lines.push('');
    for (const [v, d] of Object.entries(spec.valueDocs)) lines.push(`- \`${v}\`: ${d}`);
  }
  if (!spec.description.startsWith('LoRA Studio only')) lines.push('', `Command line: \`--${spec.key}${spec.type === 'boolean' ? '' : '=…'}\``);
  return lines.join('\n');
}

/**
 * The JSON Schema (draft-07) generated from the definition above. `forEditors` adds the guide-only keys
 * as deprecated properties and markdown descriptions, for the Red Hat YAML extension (`yaml.schemas`)
 * or any JSON Schema tool; without it the schema is the strict one the validator runs through ajv.
 */
export function runConfigJsonSchema(opts: { forEditors?: boolean } = {}): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  for (const spec of RUN_CONFIG_KEYS) {
    const p: Record<string, unknown> = {};
    if (spec.type === 'enum') p.enum = spec.nullable ? [...spec.values!, null] : [...spec.values!];
    else if (spec.type === 'list') Object.assign(p, { type: 'array', items: { enum: [...spec.values!] }, minItems: 1, uniqueItems: true });
    else if (spec.type === 'prompts') Object.assign(p, { type: 'array', items: { type: 'string', minLength: 1 } });
    else p.type = spec.nullable ? [spec.type, 'null'] : spec.type;
    if (spec.type === 'string' && (spec.nonEmpty || spec.required)) p.minLength = 1;
    if (spec.type === 'integer' || spec.type === 'number') {
      for (const k of ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf'] as const) if (spec[k] !== undefined) p[k] = spec[k];
      // Above 2^53 a number is no longer an exact integer (2^64 + 1 reads as 2^64): refused.
      if (spec.type === 'integer' && spec.maximum === undefined) p.maximum = Number.MAX_SAFE_INTEGER;
    }
    if (!spec.required) p.default = spec.default;
    if (opts.forEditors) {
      p.description = `${spec.summary} ${spec.description.split('\n\n')[0]}`;
      p.markdownDescription = keyDocumentation(spec);
    }
    properties[spec.key] = p;
  }
  if (opts.forEditors) for (const g of GUIDE_ONLY_KEYS) properties[g.key] = { deprecationMessage: `Ignored by LoRA Studio: ${g.reason}.`, description: `Ignored by LoRA Studio: ${g.reason}.` };
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://lora-studio.dev/schemas/lora-yaml.json',
    title: 'LoRA Studio run config (*.lora.yaml)',
    type: 'object',
    properties,
    required: RUN_CONFIG_KEYS.filter((s) => s.required).map((s) => s.key),
    additionalProperties: false,
  };
}
