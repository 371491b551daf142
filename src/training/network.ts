// Which layers a run trains and how (`network_type`, `train_text_encoder`, `lora_dropout`):
//
//   lora   the guide's LoRA on the UNet attention projections (to_q, to_k, to_v, to_out.0)
//   locon  kohya's LoCon set (networks/lora.py with conv_dim; LyCORIS' "locon"): every Linear and Conv2d of the
//          resnets (conv1, conv2, time_emb_proj, conv_shortcut), the up/downsamplers and the transformer blocks
//          (proj_in, proj_out, attention, feed-forward) — 3×3 convs get a 3×3 down kernel
//   dora   DoRA (peft use_dora) on the attention projections: LoRA plus a trained magnitude per output channel
//
// train_text_encoder adds LoRA on the CLIP text encoder's q_proj, k_proj, v_proj, out_proj (the target modules
// of diffusers' train_dreambooth_lora.py), with its own learning rate (text_encoder_lr, kohya's name).
import type * as tf from '@tensorflow/tfjs';
import type { NetworkType } from '../core/config/run_config.js';
import { ATTENTION_PROJECTIONS } from '../core/lora/formats.js';
import { Conv2d, type LoraLayer } from '../core/models/layers.js';
import type { LoraTarget, TrainableLoraOptions, TrainedComponent } from './lora_params.js';

/** LoCon's UNet layers, by module path (kohya's ResnetBlock2D, Downsample2D, Upsample2D and Transformer2DModel modules). */
export const LOCON_MODULES =
  /(resnets\.\d+\.(conv1|conv2|time_emb_proj|conv_shortcut)|(down|up)samplers\.0\.conv|attentions\.\d+\.(proj_in|proj_out)|\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj|ff\.net\.2)$/;
/** The text encoder's trained projections (diffusers' train_dreambooth_lora.py: q_proj, k_proj, v_proj, out_proj). */
export const TEXT_ENCODER_PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'out_proj'] as const;

const endsWithOneOf = (names: readonly string[]) => (p: string) => names.some((n) => p === n || p.endsWith(`.${n}`));

export interface NetworkModels {
  readonly unet: { loraLayers(): LoraLayer[] };
  readonly textEncoder: { loraLayers(): LoraLayer[] };
}

export interface NetworkChoice {
  readonly networkType: NetworkType;
  readonly trainTextEncoder: boolean;
  readonly dropout: number;
}

const targetOf = (l: LoraLayer, component: TrainedComponent): LoraTarget => ({
  path: l.path,
  inFeatures: l.inFeatures,
  outFeatures: l.outFeatures,
  ...(l.kernelSize !== 1 ? { kernelSize: l.kernelSize } : {}),
  ...(l instanceof Conv2d ? { conv: true } : {}),
  ...(component !== 'unet' ? { component } : {}),
});

/** The layers to train, in model order: the UNet's, then the text encoder's. */
export function networkTargets(sd: NetworkModels, choice: Pick<NetworkChoice, 'networkType' | 'trainTextEncoder'>): LoraTarget[] {
  const unetLayer = choice.networkType === 'locon' ? (p: string) => LOCON_MODULES.test(p) : endsWithOneOf(ATTENTION_PROJECTIONS);
  const unet = sd.unet.loraLayers().filter((l) => unetLayer(l.path)).map((l) => targetOf(l, 'unet'));
  if (!choice.trainTextEncoder) return unet;
  const text = sd.textEncoder.loraLayers().filter((l) => endsWithOneOf(TEXT_ENCODER_PROJECTIONS)(l.path)).map((l) => targetOf(l, 'text_encoder'));
  return [...unet, ...text];
}

/** TrainableLora's options for a choice: DoRA's frozen weights (PyTorch rows [out, in·k·k]) and the dropout. */
export function networkOptions(sd: NetworkModels, choice: NetworkChoice): TrainableLoraOptions {
  const layers = new Map<string, LoraLayer>([
    ...sd.unet.loraLayers().map((l) => [l.path, l] as const),
    ...sd.textEncoder.loraLayers().map((l) => [`text_encoder.${l.path}`, l] as const),
  ]);
  const rows = (t: LoraTarget): tf.Tensor2D => {
    const l = layers.get(t.component === 'text_encoder' ? `text_encoder.${t.path}` : t.path)!;
    // Conv2d weights are kept HWIO: back to PyTorch's [out, in, kh, kw], flattened per output channel.
    return l.weight.rank === 2 ? (l.weight as tf.Tensor2D) : (l.weight.transpose([3, 2, 0, 1]).reshape([l.outFeatures, -1]) as tf.Tensor2D);
  };
  return { ...(choice.networkType === 'dora' ? { doraWeights: rows } : {}), ...(choice.dropout > 0 ? { dropout: choice.dropout } : {}) };
}

/** The module names of LOCON_MODULES, as `lora_studio.target_modules` lists them. */
const LOCON_TARGET_NAMES = ['conv1', 'conv2', 'time_emb_proj', 'conv_shortcut', 'conv', 'proj_in', 'proj_out', ...ATTENTION_PROJECTIONS, 'ff.net.0.proj', 'ff.net.2'];

/**
 * What a LoRA file's header says about the network (metadata.ts TrainingInfo): the trained module names (text
 * encoder ones as `text_encoder.q_proj`), and sd-scripts' network args as a kohya user would have passed them —
 * LoCon `conv_dim`/`conv_alpha` (networks.lora), DoRA LyCORIS' `algo: lora, dora_wd` (lycoris.kohya).
 */
export function networkMetadata(choice: Pick<NetworkChoice, 'networkType' | 'trainTextEncoder'>, rank: number, alpha: number): { targetModules: string[]; networkModule?: string; networkArgs?: Record<string, string> } {
  const unet = choice.networkType === 'locon' ? LOCON_TARGET_NAMES : [...ATTENTION_PROJECTIONS];
  const targetModules = [...unet, ...(choice.trainTextEncoder ? TEXT_ENCODER_PROJECTIONS.map((n) => `text_encoder.${n}`) : [])];
  if (choice.networkType === 'locon') return { targetModules, networkArgs: { conv_dim: String(rank), conv_alpha: String(alpha) } };
  if (choice.networkType === 'dora') return { targetModules, networkModule: 'lycoris.kohya', networkArgs: { algo: 'lora', dora_wd: 'True' } };
  return { targetModules };
}
