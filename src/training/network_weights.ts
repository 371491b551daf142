// Training from an existing LoRA file (`network_weights`, kohya's `--network_weights`): the file is read by the
// one reader (core/lora/lora_file.ts: diffusers, PEFT, kohya with diffusers or SGM names, ComfyUI; LoCon, DoRA,
// text encoders) against every layer of the model, then matched to the layers this run trains. The trainable
// LoRA starts as exactly the file's LoRA:
//
//   - rank: the run's `rank`; a file of another rank is an error naming the key and the rank to set (kohya's
//     load_weights → load_state_dict(strict=False) also fails on a size mismatch unless --dim_from_weights);
//   - alpha: the run's `lora_alpha` (or the rank). A module whose file alpha differs has its up weights scaled by
//     file alpha / run alpha, so the update (alpha / rank) · up · down is the file's (kohya instead keeps the
//     file's up and the run's alpha, which changes the LoRA it starts from). diffusers files store no alpha
//     (their up has it folded in), so a kohya and a diffusers file of one LoRA give the same start;
//   - DoRA: a file's magnitude is taken; a plain LoRA into a `dora` run gets m = ‖W + ΔW‖ per output channel
//     (peft's DoraLinearLayer.update_layer norm, taken with the file's ΔW), so the DoRA layer starts equal to the
//     LoRA layer; a DoRA file into a run that is not `dora` is an error (its magnitudes would be dropped);
//   - every module the run trains must be in the file and every module in the file must be trained: a
//     missing or extra module is an error naming the key and the setting that fits the file.
//
// The optimizer and the step count start afresh; `resume_from_checkpoint` continues a run instead.
import * as tf from '@tensorflow/tfjs';
import { LoraFileError, readLoraFile, type LoraModule, type LoraWeights } from '../core/lora/lora_file.js';
import type { LoraComponent } from '../core/lora/formats.js';
import { loraTargetsOf } from '../core/pipeline/loras.js';
import type { StableDiffusion } from '../core/pipeline/stable_diffusion.js';
import { LOCON_MODULES, TEXT_ENCODER_PROJECTIONS, type NetworkChoice } from './network.js';
import { moduleKey, type LoraTarget, type TrainableLoraOptions } from './lora_params.js';

/** A network_weights file that does not fit the run: the message names the file and key, the hint the fix. */
export class NetworkWeightsError extends Error {
  constructor(
    message: string,
    readonly hint: string,
  ) {
    super(message);
    this.name = 'NetworkWeightsError';
  }
}

export interface StartWeights {
  /** By module key (TrainableLora.fromWeights' map). */
  readonly weights: Map<string, { down: Float32Array; up: Float32Array; magnitude?: Float32Array }>;
  /** What was read and what was fitted to the run, one line each, for the log. */
  readonly notes: string[];
}

export interface RunNetwork {
  readonly targets: readonly LoraTarget[];
  readonly rank: number;
  readonly alpha: number;
  readonly choice: NetworkChoice;
  readonly options: TrainableLoraOptions;
}

const COMPONENT: Record<LoraComponent, string> = { unet: 'UNet', text_encoder: 'text encoder', text_encoder_2: 'second text encoder' };
const FIX_OR_LEAVE = 'or leave network_weights out to start from a fresh LoRA';

/** The trainable LoRA's starting weights from `file` (see the file comment for the rules). */
export async function networkWeightsStart(file: string, sd: StableDiffusion, run: RunNetwork): Promise<StartWeights> {
  let read: LoraWeights;
  try {
    read = readLoraFile(file, loraTargetsOf(sd));
  } catch (e) {
    if (e instanceof LoraFileError) throw new NetworkWeightsError(`network_weights: ${e.message}`, `point network_weights at a LoRA file of this model (\`lora-studio inspect FILE\` says what a file holds), ${FIX_OR_LEAVE}`);
    throw e;
  }
  const at = (key: string, problem: string, hint: string) => new NetworkWeightsError(`network_weights: ${file}: key "${key}" ${problem}`, hint);
  if (read.skipped.length) {
    throw at(read.skipped[0], `is one of ${read.skipped.length} keys for a model component this model does not have (${read.warnings.join(' ')})`, `use a LoRA made for this model, ${FIX_OR_LEAVE}`);
  }

  const wanted = new Map(run.targets.map((t) => [moduleKey(t), t]));
  const found = new Map<string, { component: LoraComponent; path: string; module: LoraModule; key: string }>();
  for (const [component, modules] of read.components ?? new Map([['unet' as LoraComponent, read.modules]])) {
    for (const [p, module] of modules) {
      const key = read.downKeys?.get(component)?.get(p) ?? p;
      found.set(component === 'unet' ? p : `${component}.${p}`, { component, path: p, module, key });
    }
  }

  // Modules the file adapts that this run does not train.
  const extra = [...found.entries()].filter(([k]) => !wanted.has(k));
  if (extra.length) {
    const [, first] = extra[0];
    throw at(first.key, `adapts ${COMPONENT[first.component]} module "${first.path}", which this run does not train (${extra.length} of the file's ${found.size} modules are not trained here)`, extraHint(first.component, first.path, run.choice, sd.textEncoder2 !== undefined));
  }
  const missing = run.targets.filter((t) => !found.has(moduleKey(t)));
  if (missing.length) {
    const t = missing[0];
    const some = [...found.values()][0];
    throw new NetworkWeightsError(
      `network_weights: ${file} holds no LoRA for ${missing.length} of the ${run.targets.length} modules this run trains, e.g. ${COMPONENT[t.component ?? 'unet']} module "${t.path}" (the file adapts ${found.size} modules, e.g. "${some.key}")`,
      `${missingHint(missing, found.size, run.choice)}, ${FIX_OR_LEAVE}`,
    );
  }

  const ranks = new Set([...found.values()].map((f) => f.module.rank));
  const alphas = new Map<number, number>();
  const weights: StartWeights['weights'] = new Map();
  let computedMagnitudes = 0;
  for (const t of run.targets) {
    const { module: m, key } = found.get(moduleKey(t))!;
    if (m.rank !== run.rank) {
      throw at(key, `has rank ${m.rank}, but this run trains rank ${run.rank}`, ranks.size === 1 ? `set rank: ${m.rank} (the file's), ${FIX_OR_LEAVE}` : `the file's ranks differ per module (${[...ranks].sort((a, b) => a - b).join(', ')}) and a run trains one rank: ${FIX_OR_LEAVE}`);
    }
    if (m.magnitude && !run.options.doraWeights) {
      throw at(key, `is a DoRA module (it has a magnitude), but this run trains network_type ${run.choice.networkType}`, `set network_type: dora to train it with its magnitudes, ${FIX_OR_LEAVE}`);
    }
    alphas.set(m.alpha, (alphas.get(m.alpha) ?? 0) + 1);
    // The same update at the run's alpha: (alpha_file / r) · up = (alpha_run / r) · up · (alpha_file / alpha_run).
    const ratio = m.alpha / run.alpha;
    const up = ratio === 1 ? m.up : m.up.map((v) => v * ratio);
    let magnitude = m.magnitude;
    if (run.options.doraWeights && !magnitude) {
      magnitude = await normOfUpdatedWeight(run.options.doraWeights(t), m.down, up, m.rank, run.alpha / run.rank);
      computedMagnitudes++;
    }
    weights.set(moduleKey(t), { down: m.down, up, ...(magnitude ? { magnitude } : {}) });
  }

  const notes = [`network_weights: ${weights.size} modules from ${file} (${read.format} keys, rank ${run.rank})`];
  const other = [...alphas.entries()].filter(([a]) => a !== run.alpha);
  if (other.length) {
    const list = other.map(([a, n]) => `alpha ${a}${other.length > 1 || n !== weights.size ? ` (${n} modules)` : ''}`).join(', ');
    notes.push(
      `network_weights: the file's ${list} ≠ this run's alpha ${run.alpha}: their up weights are scaled by file alpha / ${run.alpha}, so training starts from the file's LoRA` +
        (other.length === 1 && other[0][1] === weights.size ? `; set lora_alpha: ${other[0][0]} to train at the file's scale` : ''),
    );
  }
  if (computedMagnitudes) notes.push(`network_weights: ${computedMagnitudes} modules have no DoRA magnitude in the file: each starts as ‖W + ΔW‖, so the DoRA layer equals the file's LoRA`);
  return { weights, notes };
}

/** DoRA's magnitude for a layer that starts at W + s · up · down: the norm of each output channel's row. */
async function normOfUpdatedWeight(rows: tf.Tensor2D, down: Float32Array, up: Float32Array, rank: number, scale: number): Promise<Float32Array> {
  const [out, fanIn] = rows.shape;
  const norm = tf.tidy(() => rows.add(tf.tensor2d(up, [out, rank]).matMul(tf.tensor2d(down, [rank, fanIn])).mul(scale)).square().sum(1).sqrt());
  const values = (await norm.data()) as Float32Array;
  norm.dispose();
  return values;
}

function extraHint(component: LoraComponent, modulePath: string, choice: NetworkChoice, sdxl: boolean): string {
  if (component !== 'unet' && sdxl) return `LoRA Studio does not train SDXL's text encoders yet: use a file without their (lora_te1_/lora_te2_, text_encoder./text_encoder_2.) keys, ${FIX_OR_LEAVE}`;
  if (component === 'text_encoder') {
    if (!choice.trainTextEncoder) return `set train_text_encoder: true to train the file's text-encoder modules too, ${FIX_OR_LEAVE}`;
    return `a run trains the text encoder's ${TEXT_ENCODER_PROJECTIONS.join('/')} only: use a file without the other text-encoder layers, ${FIX_OR_LEAVE}`;
  }
  if (choice.networkType !== 'locon' && LOCON_MODULES.test(modulePath)) return `set network_type: locon to train the file's convolution and feed-forward modules too, ${FIX_OR_LEAVE}`;
  return `no network_type trains that layer: use a file of the layers LoRA Studio trains (network_type lora: the attention projections; locon: kohya's conv set), ${FIX_OR_LEAVE}`;
}

function missingHint(missing: readonly LoraTarget[], fileModules: number, choice: NetworkChoice): string {
  if (missing.every((t) => t.component === 'text_encoder')) return 'set train_text_encoder: false (the file has no text-encoder LoRA)';
  if (choice.networkType === 'locon') return `set network_type: lora or dora if the file is a LoRA of the attention projections (it adapts ${fileModules} modules)`;
  return 'the file adapts fewer layers than the model has: use a LoRA trained on this model with the same modules';
}
