// One micro-batch of the guide's training step (train_text_to_image_lora.py, inside `accelerator.accumulate`):
//
//   latents        = vae.encode(pixels).latent_dist.sample() · scaling_factor     (see encodeLatents)
//   noisy_latents  = scheduler.add_noise(latents, noise, timesteps)
//   target         = noise (epsilon) or scheduler.get_velocity(latents, noise, timesteps) (v_prediction)
//   model_pred     = unet(noisy_latents, timesteps, encoder_hidden_states[, added_cond_kwargs (SDXL)]) with the LoRA
//   loss           = mse(model_pred, target) — mean over everything; or with min-SNR γ:
//                    per-sample mean, weighted by min(snr, γ)/snr (epsilon) or min(snr, γ)/(snr + 1) (v),
//                    then the mean over the batch
//
// and its backward pass for the LoRA weights only: the frozen UNet, VAE and text encoder are constants to
// the tape, so tfjs never computes a weight gradient for them (wasm has no Conv2DBackpropFilter).
// accelerate divides the loss by gradient_accumulation_steps before backward; `lossScale` does that.
// With a text-encoder LoRA (train_text_encoder, as train_dreambooth_lora.py) the captions' hidden states are
// computed inside the step from their token ids, so the gradient reaches the text encoder's adapters too.
import * as tf from '@tensorflow/tfjs';
import type { AddedCondKwargs, UNet2DConditionModel } from '../core/models/unet_2d_condition.js';
import type { AutoencoderKL } from '../core/models/autoencoder_kl.js';
import type { DDPMScheduler } from '../core/schedulers/ddpm.js';
import type { PredictionType } from '../core/config/run_config.js';
import type { TrainableLora } from './lora_params.js';
import type { CLIPTextModel } from '../core/models/clip_text_model.js';
import type { LoraLookup } from '../core/engine/ops.js';
import { installCpuKernelFixes } from '../core/engine/cpu_kernel_fixes.js';

// tfjs' cpu gradient of nearest upsampling is wrong for batch > 1; every gradient here goes through it.
installCpuKernelFixes();

export interface StepModels {
  readonly unet: UNet2DConditionModel;
  readonly scheduler: DDPMScheduler;
  readonly lora: TrainableLora;
  readonly predictionType: PredictionType;
  readonly snrGamma: number | null;
  /** Needed when the LoRA trains the text encoder: StepInputs then carry token ids. */
  readonly textEncoder?: CLIPTextModel;
}

export interface StepInputs {
  /** Scaled latents [B, h, w, C] (NHWC). */
  readonly latents: tf.Tensor4D;
  /** The noise to add, same shape (noise offset already included). */
  readonly noise: tf.Tensor4D;
  /** One training timestep per sample, in [0, num_train_timesteps). */
  readonly timesteps: Int32Array;
  /** The text encoder's last hidden state for each sample's caption [B, 77, D] (SDXL: both encoders' hidden_states[-2], concatenated). */
  readonly encoderHiddenStates: tf.Tensor3D;
  /** SDXL: each sample's pooled caption embedding and time ids (train_text_to_image_lora_sdxl.py's unet_added_conditions). */
  readonly addedCond?: AddedCondKwargs;
}

/** A micro-batch when the text encoder is trained: each caption's token ids [B, 77] (int32) instead of its hidden states. */
export type TextEncoderStepInputs = Omit<StepInputs, 'encoderHiddenStates'> & { readonly inputIds: tf.Tensor2D };

export interface StepResult {
  /** The loss as the guide logs it (before dividing by the accumulation steps). */
  readonly loss: number;
  /** d(loss · lossScale)/d(param) for every LoRA parameter, by name. The caller disposes them. */
  readonly grads: Map<string, tf.Tensor>;
}

/** The guide's loss for one micro-batch; `lora` (and `textLora`) give the adapters to use (the differentiated copies). */
export function diffusionLoss(m: Omit<StepModels, 'lora'>, x: StepInputs | TextEncoderStepInputs, lora: LoraLookup, textLora?: LoraLookup): tf.Scalar {
  return tf.tidy(() => {
    const ehs = 'inputIds' in x ? encodeIds(m.textEncoder, x.inputIds, textLora) : x.encoderHiddenStates;
    const ts = tf.tensor1d(x.timesteps, 'int32');
    const noisy = m.scheduler.addNoise(x.latents, x.noise, ts) as tf.Tensor4D;
    const target = m.predictionType === 'epsilon' ? x.noise : m.scheduler.getVelocity(x.latents, x.noise, ts);
    const pred = m.unet.forward(noisy, tf.cast(ts, 'float32') as tf.Tensor1D, ehs, lora, x.addedCond);
    const sq = tf.squaredDifference(pred, target);
    if (m.snrGamma == null) return tf.mean(sq) as tf.Scalar;
    const weights = minSnrWeights(m.scheduler, [...x.timesteps], m.snrGamma, m.predictionType);
    const perSample = tf.mean(sq, [1, 2, 3]);
    return tf.mean(perSample.mul(tf.tensor1d(weights))) as tf.Scalar;
  });
}

/** Min-SNR-γ loss weights (Hang et al., arXiv 2303.09556), as the guide computes them, in float32. */
export function minSnrWeights(scheduler: DDPMScheduler, timesteps: readonly number[], gamma: number, predictionType: PredictionType): Float32Array {
  const f = Math.fround;
  const snr = scheduler.computeSnr(timesteps);
  return Float32Array.from(snr, (s) => {
    const w = Math.min(s, f(gamma));
    return predictionType === 'epsilon' ? f(w / s) : f(w / f(s + 1));
  });
}

/** Loss and LoRA gradients of one micro-batch. */
export async function lossAndGrads(m: StepModels, x: StepInputs | TextEncoderStepInputs, lossScale = 1): Promise<StepResult> {
  const names = [...m.lora.params.keys()];
  const values = names.map((n) => m.lora.params.get(n)!);
  let lossValue: tf.Scalar | undefined;
  const f = (...params: tf.Tensor[]) => {
    const tensors = new Map(names.map((n, i) => [n, params[i]]));
    const textLora = m.lora.trains('text_encoder') ? m.lora.lookup(tensors, 'text_encoder') : undefined;
    const loss = diffusionLoss(m, x, m.lora.lookup(tensors, 'unet'), textLora);
    lossValue = tf.keep(loss.clone());
    return lossScale === 1 ? loss : (loss.mul(lossScale) as tf.Scalar);
  };
  const { value, grads } = tf.valueAndGrads(f)(values);
  value.dispose();
  // data(), not dataSync(): WebGPU tensors cannot be read synchronously in Node.
  const loss = (await lossValue!.data())[0];
  lossValue!.dispose();
  return { loss, grads: new Map(names.map((n, i) => [n, grads[i]])) };
}

/** The text encoder's last hidden state for token ids, with its LoRA. */
function encodeIds(textEncoder: CLIPTextModel | undefined, ids: tf.Tensor2D, lora: LoraLookup | undefined): tf.Tensor3D {
  if (!textEncoder) throw new Error('internal: a step from token ids needs StepModels.textEncoder');
  return textEncoder.forward(ids, lora).lastHiddenState;
}

/**
 * The guide's latents: a sample of the VAE's latent distribution, mean + std · eps, times scaling_factor
 * (minus shift_factor first for VAEs that have one). `eps` [B, h, w, C] is the standard-normal draw.
 */
export function encodeLatents(vae: AutoencoderKL, pixels: tf.Tensor4D, eps: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const { mean, std } = vae.encode(pixels);
    const sample = mean.add(std.mul(eps));
    const scale = vae.config.scaling_factor as number;
    const shift = (vae.config.shift_factor as number | null | undefined) ?? null;
    return (shift === null ? sample.mul(scale) : sample.sub(shift).mul(scale)) as tf.Tensor4D;
  });
}
