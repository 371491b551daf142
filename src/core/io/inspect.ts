// `lora-studio inspect FILE.safetensors`: says what a safetensors file is — a LoRA (which layout, ranks,
// alphas, modules), a model component (UNet, VAE, CLIP text encoder, recognised by its key names), a
// single-file checkpoint, or unknown — and shows its header metadata. Reads the header only, plus the
// scalar alpha tensors of a kohya LoRA.
import fs from 'node:fs';
import path from 'node:path';
import { SafetensorsFile, type TensorInfo } from './safetensors.js';
import { COMPONENT_PREFIXES, SINGLE_FILE_FAMILY_NAMES, inferFamily } from './single_file.js';
import {
  adapterConfigFromHeader,
  alphaFromAdapterConfig,
  guessPathFromKohya,
  moduleKind,
  parseLoraKey,
  type LoraComponent,
  type LoraFormat,
} from '../lora/formats.js';
import { toolSupport, type ToolVerdict } from '../lora/tool_support.js';

export type FileKind = 'lora' | 'unet' | 'vae' | 'text_encoder' | 'checkpoint' | 'unknown';

export interface LoraModuleSummary {
  /** Dotted module path (for kohya names, the best guess at it). */
  readonly path: string;
  readonly component: LoraComponent;
  readonly rank: number | undefined;
  /** undefined: no alpha stored, so alpha = rank. */
  readonly alpha: number | undefined;
}

export interface LoraDescription {
  readonly format: LoraFormat | 'mixed';
  readonly modules: LoraModuleSummary[];
  /** Adapter kinds found that LoRA Studio cannot apply (LoHa, LoKr, …). */
  readonly unsupported: string[];
  /** Keys that are neither LoRA weights nor known adapter parts. */
  readonly unknownKeys: string[];
  /** Which tools load the file, and why not, key by key (lora/tool_support.ts). */
  readonly tools: ToolVerdict[];
}

export interface Description {
  readonly file: string;
  readonly bytes: number;
  readonly kind: FileKind;
  /** One line: what the file is. */
  readonly summary: string;
  readonly tensors: number;
  readonly parameters: number;
  /** Parameter count per stored dtype. */
  readonly dtypes: Record<string, number>;
  readonly metadata: Record<string, string>;
  /** Model components: a few figures read off the shapes (channels, widths, layer counts). */
  readonly details: [string, string][];
  readonly lora?: LoraDescription;
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export function describeSafetensors(file: string): Description {
  const f = SafetensorsFile.open(file);
  try {
    const tensors = f.tensors;
    let parameters = 0;
    const dtypes: Record<string, number> = {};
    for (const t of tensors.values()) {
      const n = numel(t.shape);
      parameters += n;
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + n;
    }
    const base = { file, bytes: fs.statSync(file).size, tensors: tensors.size, parameters, dtypes, metadata: { ...f.metadata } };
    const lora = describeLora(f);
    if (lora) {
      return { ...base, kind: 'lora', summary: loraSummary(lora), details: [], lora };
    }
    const model = recogniseComponent(tensors);
    return { ...base, ...model };
  } finally {
    f.close();
  }
}

const FORMAT_LAYOUT: Record<LoraFormat, string> = {
  diffusers: 'diffusers layout (unet.<module>.lora.down/up.weight)',
  peft: 'PEFT layout (<module>.lora_A/lora_B.weight)',
  kohya: 'kohya/A1111 layout (lora_unet_<module>.lora_down/lora_up.weight + .alpha)',
};

/** A LoRA description when most keys are LoRA keys; undefined otherwise. */
function describeLora(f: SafetensorsFile): LoraDescription | undefined {
  const names = f.names();
  if (names.length === 0) return undefined;
  const unsupported = new Set<string>();
  const unknownKeys: string[] = [];
  const formats = new Set<LoraFormat>();
  const mods = new Map<string, { path: string; component: LoraComponent; format?: LoraFormat; down?: TensorInfo; alphaKey?: string }>();
  for (const key of names) {
    const p = parseLoraKey(key);
    if (p.kind === 'unknown') {
      unknownKeys.push(key);
      continue;
    }
    if (p.kind === 'unsupported') {
      unsupported.add(p.what);
      continue;
    }
    const id = `${p.component}:${p.naming}:${p.module}`;
    const m = mods.get(id) ?? { path: p.naming === 'kohya' ? guessPathFromKohya(p.module) : p.module, component: p.component };
    mods.set(id, m);
    if (p.format) formats.add(p.format);
    if (p.part === 'down') m.down = f.info(key);
    if (p.part === 'alpha') m.alphaKey = key;
  }
  // A model file may hold a stray key that looks like LoRA; a LoRA is mostly LoRA keys.
  if (mods.size === 0 || unknownKeys.length > names.length / 2) return undefined;

  const configs = new Map<LoraComponent, ReturnType<typeof adapterConfigFromHeader>>();
  const modules: LoraModuleSummary[] = [];
  for (const m of mods.values()) {
    const rank = m.down?.shape[0];
    let alpha: number | undefined;
    if (m.alphaKey && numel(f.info(m.alphaKey).shape) === 1) alpha = f.readFloat32(m.alphaKey)[0];
    if (alpha === undefined && !formats.has('kohya') && rank !== undefined) {
      if (!configs.has(m.component)) configs.set(m.component, adapterConfigFromHeader(f.metadata, m.component));
      const config = configs.get(m.component);
      if (config) alpha = alphaFromAdapterConfig(config, m.path, rank);
    }
    modules.push({ path: m.path, component: m.component, rank, alpha });
  }
  modules.sort((a, b) => (a.component === b.component ? (a.path < b.path ? -1 : a.path > b.path ? 1 : 0) : a.component === 'unet' ? -1 : 1));
  return { format: formats.size === 1 ? [...formats][0] : formats.size ? 'mixed' : 'diffusers', modules, unsupported: [...unsupported], unknownKeys, tools: toolSupport(names) };
}

function loraSummary(l: LoraDescription): string {
  const layout = l.format === 'mixed' ? 'mixed layouts' : FORMAT_LAYOUT[l.format];
  return `LoRA, ${layout}`;
}

/** Recognises a model component by names every diffusers/transformers file of that kind has. */
function recogniseComponent(t: ReadonlyMap<string, TensorInfo>): Pick<Description, 'kind' | 'summary' | 'details'> {
  const has = (k: string) => t.has(k);
  const shape = (k: string) => t.get(k)?.shape;
  const count = (re: RegExp) => new Set([...t.keys()].map((k) => re.exec(k)?.[1]).filter((x) => x !== undefined)).size;
  const blockChannels = (prefix: string) => {
    const out: number[] = [];
    for (let i = 0; ; i++) {
      const s = shape(`${prefix}down_blocks.${i}.resnets.0.conv2.weight`);
      if (!s) return out;
      out.push(s[0]);
    }
  };

  if ([...t.keys()].some((k) => k.startsWith('model.diffusion_model.'))) {
    try {
      const { family, because } = inferFamily(t, 'this file');
      const parts = COMPONENT_PREFIXES[family];
      const details: [string, string][] = [
        ['family', `${SINGLE_FILE_FAMILY_NAMES[family]} (${because})`],
        ['layout', 'original (LDM/SGM) single file'],
        ...(Object.entries(parts) as [string, { prefix: string; naming: string }][]).map(([c, p]): [string, string] => [c, `${p.prefix}* (${[...t.keys()].filter((k) => k.startsWith(p.prefix)).length} tensors, ${p.naming} names)`]),
      ];
      return { kind: 'checkpoint', summary: `single-file ${SINGLE_FILE_FAMILY_NAMES[family]} checkpoint (original LDM layout); use it as pretrained_model_name_or_path (its family's standard configs and CLIP's tokenizer are bundled; pretrained_model_config names a diffusers folder for a file of another architecture)`, details };
    } catch (e) {
      return { kind: 'checkpoint', summary: `single-file checkpoint LoRA Studio cannot load: ${(e as Error).message.replace(/^this file: /, '')}`, details: [] };
    }
  }
  if (has('conv_in.weight') && has('time_embedding.linear_1.weight')) {
    const conv = shape('conv_in.weight')!;
    const attn2 = [...t.keys()].find((k) => k.endsWith('.attn2.to_k.weight'));
    const targets = [...t.keys()].filter((k) => /\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(k)).length;
    const details: [string, string][] = [
      ['in channels', String(conv[1])],
      ['block channels', blockChannels('').join(', ')],
    ];
    if (attn2) details.push(['cross-attention dim', String(shape(attn2)![1])]);
    details.push(['attention blocks', String(count(/^(.*\.attentions\.\d+)\./))]);
    details.push(['LoRA targets', `${targets} (to_q, to_k, to_v, to_out.0)`]);
    return { kind: 'unet', summary: 'UNet (diffusers UNet2DConditionModel weights)', details };
  }
  if (has('encoder.conv_in.weight') && has('decoder.conv_in.weight')) {
    const latent = shape('decoder.conv_in.weight')![1];
    return {
      kind: 'vae',
      summary: 'VAE (diffusers AutoencoderKL weights)',
      details: [
        ['latent channels', String(latent)],
        ['image channels', String(shape('encoder.conv_in.weight')![1])],
        ['block channels', blockChannels('encoder.').join(', ')],
      ],
    };
  }
  // transformers writes CLIPTextModel with a `text_model.` prefix (v4) or without it (v5).
  const te = has('text_model.embeddings.token_embedding.weight') ? 'text_model.' : has('embeddings.token_embedding.weight') ? '' : undefined;
  if (te !== undefined) {
    const [vocab, hidden] = shape(`${te}embeddings.token_embedding.weight`)!;
    const details: [string, string][] = [
      ['hidden size', String(hidden)],
      ['layers', String(count(new RegExp(`^${te.replace('.', '\\.')}encoder\\.layers\\.(\\d+)\\.`)))],
      ['vocabulary', String(vocab)],
    ];
    const pos = shape(`${te}embeddings.position_embedding.weight`);
    if (pos) details.push(['max tokens', String(pos[0])]);
    const proj = has('text_projection.weight');
    if (proj) details.push(['projection dim', String(shape('text_projection.weight')![0])]);
    return { kind: 'text_encoder', summary: `CLIP text encoder (transformers ${proj ? 'CLIPTextModelWithProjection' : 'CLIPTextModel'} weights)`, details };
  }
  return { kind: 'unknown', summary: 'not a LoRA or a Stable Diffusion component LoRA Studio recognises', details: [] };
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function humanBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** "4" or "4 (40 modules), 8 (8 modules)", ascending; `none` (not stored) last. */
function distinct(values: (number | undefined)[]): string {
  const counts = new Map<number | undefined, number>();
  for (const v of values) {
    const k = v === undefined ? undefined : Math.round(v * 1e4) / 1e4;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  const sorted = [...counts.entries()].sort(([a], [b]) => (a === undefined ? 1 : b === undefined ? -1 : a - b));
  const label = (k: number | undefined) => (k === undefined ? 'none' : String(k));
  if (sorted.length === 1) return label(sorted[0][0]);
  return sorted.map(([k, n]) => `${label(k)} (${plural(n, 'module')})`).join(', ');
}

const KIND_ORDER = ['to_q', 'to_k', 'to_v', 'to_out.0', 'q_proj', 'k_proj', 'v_proj', 'out_proj'];
const byKindOrder = (a: string, b: string) => {
  const ia = KIND_ORDER.indexOf(a);
  const ib = KIND_ORDER.indexOf(b);
  return ia === -1 && ib === -1 ? (a < b ? -1 : a > b ? 1 : 0) : ia === -1 ? 1 : ib === -1 ? -1 : ia - ib;
};

/**
 * One line per group of sibling modules: paths grouped by parent (the attention), projections listed once,
 * and siblings with the same projections merged — `….transformer_blocks.0.{attn1,attn2}: to_q to_k to_v to_out.0`.
 */
function compactModuleList(paths: string[]): string[] {
  const byParent = new Map<string, string[]>();
  for (const p of paths) {
    const kind = moduleKind(p);
    const parent = p.length > kind.length ? p.slice(0, p.length - kind.length - 1) : '';
    byParent.set(parent, [...(byParent.get(parent) ?? []), kind]);
  }
  const merged = new Map<string, { stem: string; leaves: string[]; kinds: string }>();
  for (const [parent, kinds] of byParent) {
    const cut = parent.lastIndexOf('.');
    const stem = cut < 0 ? '' : parent.slice(0, cut);
    const leaf = cut < 0 ? parent : parent.slice(cut + 1);
    const kindList = [...kinds].sort(byKindOrder).join(' ');
    const id = `${stem}|${kindList}`;
    const g = merged.get(id) ?? { stem, leaves: [], kinds: kindList };
    g.leaves.push(leaf);
    merged.set(id, g);
  }
  return [...merged.values()].map(({ stem, leaves, kinds }) => {
    const last = leaves.length === 1 ? leaves[0] : `{${leaves.join(',')}}`;
    const parent = stem ? `${stem}.${last}` : last;
    return parent ? `${parent}: ${kinds}` : kinds;
  });
}

const MAX_METADATA_CHARS = 160;

export function formatDescription(d: Description): string {
  const lines: string[] = [`${path.basename(d.file)} — ${d.summary}`];
  const dtypes = Object.entries(d.dtypes)
    .map(([k, n]) => (Object.keys(d.dtypes).length > 1 ? `${k} ${n.toLocaleString('en-US')}` : k))
    .join(', ');
  lines.push(`  ${plural(d.tensors, 'tensor')} · ${d.parameters.toLocaleString('en-US')} parameters · ${dtypes || 'no data'} · ${humanBytes(d.bytes)}`);
  for (const [k, v] of d.details) lines.push(`  ${k}: ${v}`);

  if (d.lora) {
    const l = d.lora;
    const unet = l.modules.filter((m) => m.component === 'unet');
    const te = l.modules.filter((m) => m.component !== 'unet');
    lines.push(`  modules: ${unet.length} UNet${te.length ? `, ${te.length} text encoder` : ''}`);
    lines.push(`  rank: ${distinct(l.modules.map((m) => m.rank))}`);
    const alphas = l.modules.map((m) => m.alpha);
    if (alphas.every((a) => a === undefined)) {
      lines.push('  alpha: none stored (alpha = rank, scale 1)');
    } else {
      const scales = l.modules.map((m) => (m.alpha !== undefined && m.rank ? m.alpha / m.rank : m.alpha === undefined ? 1 : undefined));
      lines.push(`  alpha: ${distinct(alphas)} (scale alpha/rank: ${distinct(scales)})`);
    }
    if (l.unsupported.length) lines.push(`  also holds adapters LoRA Studio cannot apply: ${l.unsupported.join(', ')}`);
    if (l.unknownKeys.length) lines.push(`  unrecognised keys: ${l.unknownKeys.slice(0, 5).join(', ')}${l.unknownKeys.length > 5 ? `, … (${l.unknownKeys.length})` : ''}`);
    const loads = l.tools.filter((t) => t.loads).map((t) => t.tool);
    lines.push(`  loads in: ${loads.length ? loads.join(', ') : 'none of diffusers, ComfyUI, A1111, sd-scripts'}`);
    for (const t of l.tools.filter((v) => !v.loads)) {
      lines.push(`  not in ${t.tool}: ${t.rejected} of ${d.tensors} keys unused`);
      for (const r of t.reasons) lines.push(`    ${r.count}× ${r.reason} (e.g. ${r.key})`);
    }
    if (unet.length) {
      lines.push('  UNet modules:');
      for (const line of compactModuleList(unet.map((m) => m.path))) lines.push(`    ${line}`);
    }
    if (te.length) {
      lines.push('  text encoder modules:');
      for (const line of compactModuleList(te.map((m) => m.path))) lines.push(`    ${line}`);
    }
  }

  const meta = Object.entries(d.metadata);
  if (meta.length) {
    lines.push('  metadata:');
    for (const [k, v] of meta.sort(([a], [b]) => (a < b ? -1 : 1))) {
      const one = v.replace(/\s+/g, ' ');
      lines.push(`    ${k}: ${one.length > MAX_METADATA_CHARS ? `${one.slice(0, MAX_METADATA_CHARS)}… (${one.length} chars)` : one}`);
    }
  } else {
    lines.push('  metadata: none');
  }
  return lines.join('\n');
}
