// The model card (`README.md`) a pushed LoRA gets, as diffusers' `save_model_card` in
// examples/text_to_image/train_text_to_image_lora.py writes it: YAML front matter (base_model,
// library_name, license creativeml-openrail-m, inference: true, the guide's tags), the description naming
// the base model and the dataset, and the final validation images as `image_<i>.png` files shown in a gallery.
import YAML from 'yaml';

/** save_model_card's tags, in its order. */
export const MODEL_CARD_TAGS = ['stable-diffusion', 'stable-diffusion-diffusers', 'text-to-image', 'diffusers', 'diffusers-training', 'lora'] as const;
export const MODEL_CARD_LICENSE = 'creativeml-openrail-m';

/** The validation image files beside the card (save_model_card's `image_{i}.png`). */
export const cardImageName = (i: number) => `image_${i}.png`;

export interface ModelCardInput {
  repoId: string;
  baseModel: string;
  /** The Hub dataset, or the local folder's name. */
  datasetName: string;
  /** How many `image_<i>.png` files are beside the card. */
  images: number;
}

export function modelCard(o: ModelCardInput): string {
  const data = { base_model: o.baseModel, library_name: 'diffusers', license: MODEL_CARD_LICENSE, inference: true, tags: [...MODEL_CARD_TAGS] };
  const gallery = Array.from({ length: o.images }, (_, i) => `![img_${i}](./${cardImageName(i)})\n`).join('');
  const description =
    `\n# LoRA text2image fine-tuning - ${o.repoId}\n` +
    `These are LoRA adaption weights for ${o.baseModel}. The weights were fine-tuned on the ${o.datasetName} dataset. You can find some example images in the following. \n\n` +
    `${gallery}\n`;
  return [
    '---',
    YAML.stringify(data).trimEnd(),
    '---',
    '',
    '<!-- This model card has been generated automatically according to the information the training script had access to. You',
    'should probably proofread and complete it, then remove this comment. -->',
    '',
    description,
    '## Intended uses & limitations',
    '',
    '#### How to use',
    '',
    '```python',
    'from diffusers import StableDiffusionPipeline',
    '',
    `pipe = StableDiffusionPipeline.from_pretrained("${o.baseModel}")`,
    `pipe.load_lora_weights("${o.repoId}")`,
    '```',
    '',
    '#### Limitations and bias',
    '',
    '[TODO: provide examples of latent issues and potential remediations]',
    '',
    '## Training details',
    '',
    `Trained with LoRA Studio on ${o.datasetName}.`,
    '',
  ].join('\n');
}
