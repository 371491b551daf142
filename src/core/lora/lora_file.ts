// Reading and writing LoRA files. Reading checks every key against the model it is meant for, so a LoRA
// for another model fails with the key that does not fit, instead of producing garbage images.
import fs from 'node:fs';
import path from 'node:path';
import { READ_LIMITS, readRegularText } from '../io/safe_read.js';
import { SafetensorsFile, nonFinite, type TensorInfo } from '../io/safetensors.js';
import { unetLora, writeLoraFile, type LoraModuleToWrite } from './lora_writer.js';
import type { SavePrecision } from '../config/run_config.js';
import {
  adapterConfigFromHeader,
  alphaFromAdapterConfig,
  guessPathFromKohya,
  kohyaName,
  ldmUnetPaths,
  parseLoraKey,
  usesLdmBlockNames,
  type AdapterConfig,
  type LoraComponent,
  type LoraFormat,
  type LoraTarget,
} from './formats.js';

/** One module's LoRA: y += (alpha / rank) · up · down · x. Row-major f32, PyTorch layout. */
export interface LoraModule {
  /** [rank, in·k·k] (a k×k conv's [rank, in, k, k] flattened; k = 1 for Linear) */
  readonly down: Float32Array;
  /** [out, rank] */
  readonly up: Float32Array;
  readonly rank: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** 1 for Linear and 1×1 convs; 3 for a LoCon 3×3 conv. */
  readonly kernelSize?: number;
  /** alpha / rank is the module's scale; alpha = rank (scale 1) when the file stores none. */
  readonly alpha: number;
  /** The layer is a torch Conv2d (a file stores its weights 4-D, also at k = 1). */
  readonly conv?: boolean;
  /** DoRA's magnitude vector [out] (PEFT lora_magnitude_vector, LyCORIS dora_scale). */
  readonly magnitude?: Float32Array;
}

export type { LoraModuleToWrite } from './lora_writer.js';

/** The layers of each model component a LoRA may attach to (the UNet's, the text encoders'). */
export interface LoraModelTargets {
  readonly unet: readonly LoraTarget[];
  /** Paths relative to the text model (`encoder.layers.0.self_attn.q_proj`). */
  readonly text_encoder?: readonly LoraTarget[];
  readonly text_encoder_2?: readonly LoraTarget[];
}

export interface LoraWeights {
  readonly file: string;
  readonly format: LoraFormat;
  /** The UNet's modules, by UNet module path (`down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`). */
  readonly modules: Map<string, LoraModule>;
  /** Every component's modules (unet, text_encoder, text_encoder_2), by that component's module path; absent: the UNet's alone. */
  readonly components?: ReadonlyMap<LoraComponent, Map<string, LoraModule>>;
  readonly metadata: Record<string, string>;
  /** Keys that were recognised but left out (parts for a component the model was not given). */
  readonly skipped: string[];
  /** One sentence per kind of skipped part, for the user. */
  readonly warnings: string[];
  /** The file's key of each module's down weight, by component and module path (for messages naming the key). */
  readonly downKeys?: ReadonlyMap<LoraComponent, ReadonlyMap<string, string>>;
}

export class LoraFileError extends Error {
  constructor(
    readonly file: string,
    readonly key: string | undefined,
    problem: string,
  ) {
    super(key === undefined ? `${file}: ${problem}` : `${file}: key "${key}" ${problem}`);
    this.name = 'LoraFileError';
  }
}

interface Found {
  key: string;
  info: TensorInfo;
}
interface Pending {
  target: LoraTarget;
  component: LoraComponent;
  format?: LoraFormat;
  down?: Found;
  up?: Found;
  alpha?: Found;
  magnitude?: Found;
}

const COMPONENT_NAMES: Record<LoraComponent, string> = { unet: 'UNet', text_encoder: 'text encoder', text_encoder_2: 'second text encoder' };

/**
 * Reads a LoRA in diffusers, PEFT, kohya/A1111 (diffusers or LDM block names) or ComfyUI layout, LoCon and
 * DoRA included, and checks it against the model's LoRA targets (`loraTargetsOf`, or for the UNet alone
 * its loraTargets()). Parts for a component that is not given are skipped with a warning; anything that
 * does not fit the model is an error naming the key.
 */
export function readLoraFile(file: string, targets: readonly LoraTarget[] | LoraModelTargets): LoraWeights {
  const model: LoraModelTargets = Array.isArray(targets) ? { unet: targets as readonly LoraTarget[] } : (targets as LoraModelTargets);
  if (model.unet.length === 0 && !model.text_encoder?.length) throw new LoraFileError(file, undefined, 'the model offers no LoRA targets to apply this LoRA to');
  const f = SafetensorsFile.open(file);
  try {
    return readOpen(f, model);
  } finally {
    f.close();
  }
}

/** Every name a component's module goes by in LoRA files: its path, its kohya name, and for the UNet the LDM ones. */
function namesOf(component: LoraComponent, targets: readonly LoraTarget[]): { dotted: Map<string, LoraTarget>; kohya: Map<string, LoraTarget> } {
  const dotted = new Map(targets.map((t) => [t.path, t]));
  // kohya names are matched by building each target's name: the underscores cannot be undone reliably.
  const kohya = new Map(targets.map((t) => [kohyaName(t.path, ''), t]));
  if (component === 'unet') {
    const byPath = new Map(targets.map((t) => [t.path, t]));
    for (const [diffusersPath, ldm] of ldmUnetPaths(targets.map((t) => t.path))) {
      const t = byPath.get(diffusersPath)!;
      dotted.set(ldm, t);
      kohya.set(kohyaName(ldm, ''), t);
    }
  }
  return { dotted, kohya };
}

function readOpen(f: SafetensorsFile, model: LoraModelTargets): LoraWeights {
  const file = f.path;
  // Annotated so that TypeScript narrows after a call (control flow needs an explicit `never` type).
  const fail: (key: string | undefined, problem: string) => never = (key, problem) => {
    throw new LoraFileError(file, key, problem);
  };
  const names = new Map<LoraComponent, ReturnType<typeof namesOf>>();
  for (const c of ['unet', 'text_encoder', 'text_encoder_2'] as const) if (model[c]?.length) names.set(c, namesOf(c, model[c]!));

  const pending = new Map<string, Pending>();
  const skipped = new Map<LoraComponent, string[]>();
  const formatCount = new Map<LoraFormat, number>();

  for (const key of f.names()) {
    const parsed = parseLoraKey(key);
    if (parsed.kind === 'unknown') {
      fail(
        key,
        'is not a LoRA weight name LoRA Studio knows. Expected diffusers (`unet.<module>.lora.down.weight`), ' +
          'PEFT (`<module>.lora_A.weight`), kohya/A1111 (`lora_unet_<module>.lora_down.weight`) or ComfyUI (`diffusion_model.<module>.lora_down.weight`) keys — is this a LoRA file at all? (`lora-studio inspect` tells what a file is)',
      );
    }
    if (parsed.kind === 'unsupported') fail(key, `belongs to a ${parsed.what} adapter, which LoRA Studio cannot apply (it applies LoRA, LoCon and DoRA)`);
    if (parsed.kind !== 'lora') continue;
    const known = names.get(parsed.component);
    if (!known) {
      skipped.set(parsed.component, [...(skipped.get(parsed.component) ?? []), key]);
      continue;
    }
    const target = (parsed.naming === 'kohya' ? known.kohya : known.dotted).get(parsed.module);
    const what = COMPONENT_NAMES[parsed.component];
    if (!target) {
      const modulePath = parsed.naming === 'kohya' ? guessPathFromKohya(parsed.module) : parsed.module;
      const example = model[parsed.component]![0].path;
      fail(
        key,
        `is for ${what} module "${modulePath}", which this model does not have — is this a LoRA for another model? ` +
          `(this model's ${what} has ${model[parsed.component]!.length} layers a LoRA can attach to, e.g. "${example}"${usesLdmBlockNames(modulePath) ? ', or under LDM names input_blocks/middle_block/output_blocks' : ''})`,
      );
    }
    const id = `${parsed.component}:${target.path}`;
    const entry = pending.get(id) ?? { target, component: parsed.component };
    pending.set(id, entry);
    const slot = parsed.part;
    if (entry[slot]) fail(key, `gives the ${slot} weight of ${what} module "${target.path}" a second time (also in "${entry[slot].key}")`);
    entry[slot] = { key, info: f.info(key) };
    if (parsed.format && slot !== 'magnitude') {
      if (entry.format && entry.format !== parsed.format) fail(key, `mixes ${parsed.format} and ${entry.format} keys for ${what} module "${target.path}"`);
      entry.format = parsed.format;
      formatCount.set(parsed.format, (formatCount.get(parsed.format) ?? 0) + 1);
    }
  }

  const warnings: string[] = [];
  for (const [c, keys] of skipped) {
    warnings.push(`${file}: ${keys.length} ${COMPONENT_NAMES[c]} LoRA keys skipped — this model has no ${COMPONENT_NAMES[c]} to apply them to, so images can differ from other tools.`);
  }
  const skippedKeys = [...skipped.values()].flat();
  if (pending.size === 0) {
    fail(undefined, `holds no LoRA weights this model can use${warnings.length ? ` (${skippedKeys.length} keys skipped: ${warnings.map((w) => w.slice(file.length + 2)).join(' ')})` : ''}`);
  }

  const format = [...formatCount.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'diffusers';
  const components = new Map<LoraComponent, Map<string, LoraModule>>();
  const downKeys = new Map<LoraComponent, Map<string, string>>();
  const configs = new Map<LoraComponent, AdapterConfig | undefined>();
  for (const e of pending.values()) {
    if (!e.down || !e.up) {
      const have = (e.down ?? e.up ?? e.alpha ?? e.magnitude)!.key;
      fail(have, `has no matching ${e.down ? 'up' : 'down'} weight for module "${e.target.path}" (a LoRA needs both down/lora_A and up/lora_B) — the file is incomplete`);
    }
    if (!configs.has(e.component)) configs.set(e.component, format === 'kohya' ? undefined : adapterConfigFor(f, format, e.component));
    const mods = components.get(e.component) ?? new Map<string, LoraModule>();
    components.set(e.component, mods);
    mods.set(e.target.path, readModule(f, e as Pending & { down: Found; up: Found }, configs.get(e.component), fail));
    if (!downKeys.has(e.component)) downKeys.set(e.component, new Map());
    downKeys.get(e.component)!.set(e.target.path, e.down!.key);
  }
  return { file, format, modules: components.get('unet') ?? new Map(), components, metadata: { ...f.metadata }, skipped: skippedKeys, warnings, downKeys };
}

/** Hyper-parameters stored beside the weights: diffusers' header entry, or PEFT's adapter_config.json. */
function adapterConfigFor(f: SafetensorsFile, format: LoraFormat, component: LoraComponent): AdapterConfig | undefined {
  const fromHeader = adapterConfigFromHeader(f.metadata, component);
  if (fromHeader) return fromHeader;
  const configFile = path.join(path.dirname(f.path), 'adapter_config.json');
  if (format === 'peft' && fs.existsSync(configFile)) {
    const text = readRegularText(configFile, READ_LIMITS.json, 'adapter_config.json');
    try {
      return JSON.parse(text) as AdapterConfig;
    } catch (e) {
      throw new LoraFileError(configFile, undefined, `is not valid JSON (${(e as Error).message})`);
    }
  }
  return undefined;
}

function readModule(
  f: SafetensorsFile,
  e: Pending & { down: Found; up: Found },
  config: AdapterConfig | undefined,
  fail: (key: string | undefined, problem: string) => never,
): LoraModule {
  const t = e.target;
  const k = t.kernelSize ?? 1;
  const ds = e.down.info.shape;
  const us = e.up.info.shape;
  const kind = k === 1 ? `takes ${t.inFeatures} inputs` : `is a ${k}×${k} conv of ${t.inFeatures} channels`;
  // down: [r, in] (Linear), [r, in, 1, 1] (1×1 conv; also accepted on a Linear and the reverse), [r, in, k, k] (LoCon).
  const downOk = ds.length === 2 ? k === 1 : ds.length === 4 && ds[2] === k && ds[3] === k;
  if (!downOk || ds[1] !== t.inFeatures) {
    fail(e.down.key, `has shape ${JSON.stringify(ds)} but module "${t.path}" ${kind} (expected [rank, ${t.inFeatures}${k === 1 ? '' : `, ${k}, ${k}`}]) — is this a LoRA for another model?`);
  }
  if (!((us.length === 2 || (us.length === 4 && us[2] === 1 && us[3] === 1)) && us[0] === t.outFeatures)) {
    fail(e.up.key, `has shape ${JSON.stringify(us)} but module "${t.path}" has ${t.outFeatures} outputs (expected [${t.outFeatures}, rank]${k === 1 ? '' : ' or [out, rank, 1, 1]'}) — is this a LoRA for another model?`);
  }
  const rank = ds[0];
  if (us[1] !== rank) fail(e.up.key, `has rank ${us[1]} but its down weight "${e.down.key}" has rank ${rank}`);
  if (rank === 0) fail(e.down.key, 'has rank 0');

  let alpha: number | undefined;
  if (e.alpha) {
    const n = e.alpha.info.shape.reduce((a, b) => a * b, 1);
    if (n !== 1) fail(e.alpha.key, `should be a single number but has shape ${JSON.stringify(e.alpha.info.shape)}`);
    alpha = f.readFloat32(e.alpha.key)[0];
    if (!Number.isFinite(alpha)) fail(e.alpha.key, `is ${alpha}, not a finite number`);
    // sd-scripts and A1111 treat a zero alpha as "no alpha": scale 1.
    if (alpha === 0) alpha = undefined;
  }
  alpha ??= config ? alphaFromAdapterConfig(config, t.path, rank) : undefined;
  let magnitude: Float32Array | undefined;
  if (e.magnitude) {
    const ms = e.magnitude.info.shape;
    // PEFT: [out]; LyCORIS with wd_on_out (its default): [out, 1] / [out, 1, 1, 1].
    if (ms[0] !== t.outFeatures || ms.slice(1).some((d) => d !== 1)) {
      fail(
        e.magnitude.key,
        `has shape ${JSON.stringify(ms)}; a DoRA magnitude here is one value per output channel ([${t.outFeatures}] or [${t.outFeatures}, 1]). ` +
          'A magnitude per input channel (LyCORIS wd_on_out=False) is not supported.',
      );
    }
    magnitude = finite(e.magnitude.key, f.readFloat32(e.magnitude.key), fail);
  }
  return {
    down: finite(e.down.key, f.readFloat32(e.down.key), fail),
    up: finite(e.up.key, f.readFloat32(e.up.key), fail),
    rank,
    inFeatures: t.inFeatures,
    outFeatures: t.outFeatures,
    ...(k !== 1 ? { kernelSize: k } : {}),
    ...(t.conv ? { conv: true } : {}),
    alpha: alpha ?? rank,
    ...(magnitude ? { magnitude } : {}),
  };
}

/** The values, when every one is a finite number; else an error naming the tensor (a NaN weight makes every image NaN: black). */
function finite(key: string, values: Float32Array, fail: (key: string | undefined, problem: string) => never): Float32Array {
  const { count, first } = nonFinite(values);
  if (count) {
    fail(
      key,
      `holds ${count} NaN or infinite values of ${values.length} (the first at index ${first}: ${values[first]}) — the file is damaged or was saved from a run whose loss diverged; use an earlier checkpoint`,
    );
  }
  return values;
}

/** A UNet-only diffusers file (`pytorch_lora_weights.safetensors`, as `save_lora_weights`); see writeLoraFile. */
export function writeDiffusersLora(file: string, modules: ReadonlyMap<string, LoraModuleToWrite>, metadata: Record<string, string> = {}, precision: SavePrecision = 'fp32'): void {
  writeLoraFile(file, 'diffusers', unetLora(modules), { metadata, precision });
}

/** A UNet-only kohya/A1111 file (`lora_unet_<module>.lora_down.weight`, `.lora_up.weight`, `.alpha`); see writeLoraFile. */
export function writeKohyaLora(file: string, modules: ReadonlyMap<string, LoraModuleToWrite>, metadata: Record<string, string> = {}, precision: SavePrecision = 'fp32'): void {
  writeLoraFile(file, 'kohya', unetLora(modules), { metadata, precision });
}
