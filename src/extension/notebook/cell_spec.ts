// The notebook's cell language (`lora-generation`): a small YAML mapping that asks for images. This
// module is its one definition — the keys and their documentation (completion, hover), the parser with
// line-exact problems, and the expansion of a cell into the images a worker request makes
// (seeds × batch, compare with/without the LoRAs, a LoRA-scale sweep). No `vscode` import.
import path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type Pair, type YAMLMap } from 'yaml';
import type { GenerationJob, LoraRef } from '../../protocol/inference.js';
import { GENERATION_DEFAULTS as D, INFERENCE_SCHEDULERS, SCHEDULER_TITLES, type InferenceScheduler } from '../../core/config/generation.js';
import { LORA_FILE } from '../../core/config/run_folder.js';
import { nearest } from '../../core/config/suggest.js';

export const CELL_LANGUAGE_ID = 'lora-generation';

export interface CellKeyDoc {
  key: string;
  /** One line for completion lists. */
  detail: string;
  /** Markdown for the completion's documentation and hover. */
  doc: string;
  /** What completion inserts after `key: ` (a VS Code snippet). */
  snippet: string;
  values?: readonly string[];
}

export const CELL_KEYS: readonly CellKeyDoc[] = [
  { key: 'prompt', detail: 'what to draw (required)', doc: 'The text prompt.', snippet: '${1:a red circle}' },
  { key: 'negative_prompt', detail: 'what to steer away from', doc: `The negative prompt (classifier-free guidance pushes away from it). Default: ${D.negativePrompt ? `"${D.negativePrompt}"` : 'empty'}.`, snippet: '${1:blurry}' },
  {
    key: 'model',
    detail: 'diffusers pipeline folder, single-file checkpoint or Hub id',
    doc: 'Base model: a diffusers folder with `model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/` or a single-file `.safetensors` checkpoint (SD 1.x, 2.x, SDXL base), relative to the notebook, or a Hugging Face Hub id such as `runwayml/stable-diffusion-v1-5`, taken from the Hugging Face cache and downloaded into it the first time. Default: the model named by the nearest cell above.',
    snippet: '${1:path/to/model}',
  },
  {
    key: 'loras',
    detail: 'LoRA files with scales',
    doc: 'LoRAs to apply, each `- file: path.safetensors` with an optional `scale:` (default 1); a plain `- path.safetensors` works too. Paths are relative to the notebook.',
    snippet: `\n  - file: \${1:output/${LORA_FILE}}\n    scale: \${2:1.0}`,
  },
  { key: 'scheduler', detail: INFERENCE_SCHEDULERS.join(' | '), doc: `The sampler. Default \`${D.scheduler}\` (${SCHEDULER_TITLES[D.scheduler]}).`, snippet: '${1|' + INFERENCE_SCHEDULERS.join(',') + '|}', values: INFERENCE_SCHEDULERS },
  { key: 'steps', detail: 'denoising steps', doc: `Number of denoising steps. Default ${D.steps}.`, snippet: `\${1:${D.steps}}` },
  { key: 'guidance', detail: 'classifier-free guidance scale', doc: `Guidance scale; ≤ 1 turns classifier-free guidance off. Default ${D.guidance}.`, snippet: `\${1:${D.guidance}}` },
  { key: 'seed', detail: 'a seed or a list of seeds', doc: 'Seed of the initial noise: a number, or a list `[0, 1, 2]` for one image per seed. Default: a random seed, shown under the image.', snippet: '${1:0}' },
  { key: 'width', detail: 'pixels', doc: 'Image width, a multiple of 8. Default: the model’s size.', snippet: '${1:512}' },
  { key: 'height', detail: 'pixels', doc: 'Image height, a multiple of 8. Default: the model’s size.', snippet: '${1:512}' },
  { key: 'batch', detail: 'images per seed', doc: 'Images per seed, with consecutive seeds (`seed: 5, batch: 3` makes seeds 5, 6, 7). Default 1.', snippet: '${1:4}' },
  { key: 'compare', detail: 'with and without the LoRAs', doc: '`true`: each seed twice, side by side — without the LoRAs and with them.', snippet: '${1|true,false|}', values: ['true', 'false'] },
  { key: 'sweep', detail: 'LoRA scales, a row each', doc: 'A list of scales for the first LoRA, e.g. `[0, 0.5, 1]`: a row of images per scale, with a slider to try other scales.', snippet: '[${1:0, 0.5, 1}]' },
];

const KEY_NAMES = CELL_KEYS.map((k) => k.key);

export interface CellSpec {
  prompt: string;
  negativePrompt: string;
  /** As written in the cell (relative to the notebook), or inherited. */
  model?: string;
  /** As written in the cell. */
  loras: LoraRef[];
  scheduler: InferenceScheduler;
  steps: number;
  guidance: number;
  /** Undefined: one random seed per run. */
  seeds?: number[];
  width?: number;
  height?: number;
  batch: number;
  compare: boolean;
  sweep?: number[];
}

export interface CellProblem {
  message: string;
  /** 0-based line and column of the offending text. */
  line: number;
  column: number;
}

export type ParsedCell = { spec: CellSpec; problems: [] } | { spec?: undefined; problems: CellProblem[] };

/** Images per seed when a cell does not say. */
const DEFAULT_BATCH = 1;

/** Parses a cell's text. Every problem names its line; unknown keys get a "did you mean". */
export function parseCell(text: string): ParsedCell {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const problems: CellProblem[] = [];
  const at = (node: Node | null | undefined, message: string) => {
    const offset = node?.range?.[0] ?? 0;
    const pos = lineCounter.linePos(offset);
    problems.push({ message, line: pos.line - 1, column: pos.col - 1 });
  };
  for (const e of doc.errors) {
    const pos = lineCounter.linePos(e.pos[0]);
    problems.push({ message: `not valid YAML: ${e.message.split('\n')[0]}`, line: pos.line - 1, column: pos.col - 1 });
  }
  if (problems.length) return { problems };
  const root = doc.contents;
  if (!isMap(root)) {
    at(root, 'a generation cell is a list of `key: value` lines, starting with `prompt: …`');
    return { problems };
  }

  const byKey = new Map<string, Pair<unknown, unknown>>();
  for (const pair of (root as YAMLMap).items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
    if (key === undefined) {
      at(pair.key as Node, 'keys must be plain words like `prompt`');
      continue;
    }
    if (!KEY_NAMES.includes(key)) {
      const near = nearest(key, KEY_NAMES, { minEdits: 2 });
      at(pair.key as Node, `unknown key "${key}"${near ? ` — did you mean "${near}"?` : ''} (keys: ${KEY_NAMES.join(', ')})`);
      continue;
    }
    byKey.set(key, pair);
  }

  const valueNode = (key: string) => byKey.get(key)?.value as Node | null | undefined;
  const keyNode = (key: string) => byKey.get(key)?.key as Node | undefined;
  const plain = (key: string): unknown => {
    const n = valueNode(key);
    return n === undefined ? undefined : n === null ? null : n.toJSON();
  };
  const str = (key: string): string | undefined => {
    const v = plain(key);
    if (v === undefined) return undefined;
    if (v === null) return '';
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
    at(valueNode(key) ?? keyNode(key), `${key} must be text`);
    return undefined;
  };
  const int = (key: string, min: number, multipleOf = 1): number | undefined => {
    const v = plain(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v % multipleOf !== 0) {
      at(valueNode(key) ?? keyNode(key), `${key} must be an integer ≥ ${min}${multipleOf > 1 ? ` and a multiple of ${multipleOf}` : ''}, got ${JSON.stringify(v)}`);
      return undefined;
    }
    return v;
  };
  const num = (key: string): number | undefined => {
    const v = plain(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      at(valueNode(key) ?? keyNode(key), `${key} must be a number, got ${JSON.stringify(v)}`);
      return undefined;
    }
    return v;
  };

  const prompt = str('prompt');
  if (prompt === undefined && !byKey.has('prompt')) at(root, 'the cell needs a `prompt: …` line');
  const scheduler = str('scheduler');
  if (scheduler !== undefined && !INFERENCE_SCHEDULERS.includes(scheduler as InferenceScheduler)) {
    const near = nearest(scheduler, INFERENCE_SCHEDULERS, { minEdits: 2 });
    at(valueNode('scheduler'), `scheduler must be one of ${INFERENCE_SCHEDULERS.join(', ')}, got "${scheduler}"${near ? ` — did you mean "${near}"?` : ''}`);
  }

  let seeds: number[] | undefined;
  const seedNode = valueNode('seed');
  if (seedNode !== undefined) {
    const v = plain('seed');
    const list = Array.isArray(v) ? v : [v];
    if (list.length === 0 || !list.every((s) => typeof s === 'number' && Number.isInteger(s) && s >= 0 && s < 2 ** 32)) {
      at(seedNode ?? keyNode('seed'), `seed must be an integer ≥ 0 or a list of them, got ${JSON.stringify(v)}`);
    } else seeds = list as number[];
  }

  const loras: LoraRef[] = [];
  const lorasNode = valueNode('loras');
  if (lorasNode !== undefined && lorasNode !== null) {
    const items = isSeq(lorasNode) ? lorasNode.items : [lorasNode];
    for (const item of items as Node[]) {
      const v = item && 'toJSON' in item ? (item as Node).toJSON() : item;
      if (typeof v === 'string' && v) loras.push({ file: v, scale: 1 });
      else if (v && typeof v === 'object' && !Array.isArray(v) && typeof v.file === 'string' && v.file) {
        const extra = Object.keys(v).filter((k) => k !== 'file' && k !== 'scale');
        if (extra.length) at(item, `a LoRA entry has \`file\` and \`scale\` only, not ${extra.map((k) => `"${k}"`).join(', ')}`);
        else if (v.scale !== undefined && (typeof v.scale !== 'number' || !Number.isFinite(v.scale))) at(item, `scale of ${v.file} must be a number, got ${JSON.stringify(v.scale)}`);
        else loras.push({ file: v.file, scale: v.scale ?? 1 });
      } else at(item, 'each LoRA is `- file: path/to/lora.safetensors` (with an optional `scale: 0.8`) or a plain path');
    }
  }

  let sweep: number[] | undefined;
  const sweepNode = valueNode('sweep');
  if (sweepNode !== undefined) {
    const v = plain('sweep');
    if (!Array.isArray(v) || v.length === 0 || !v.every((s) => typeof s === 'number' && Number.isFinite(s))) at(sweepNode ?? keyNode('sweep'), `sweep must be a list of LoRA scales like [0, 0.5, 1], got ${JSON.stringify(v)}`);
    else sweep = v as number[];
  }
  const compareValue = plain('compare');
  if (compareValue !== undefined && typeof compareValue !== 'boolean') at(valueNode('compare') ?? keyNode('compare'), `compare must be true or false, got ${JSON.stringify(compareValue)}`);
  const compare = compareValue === true;
  if (compare && sweep) at(keyNode('sweep'), 'choose one of `compare` and `sweep` for a cell');
  if ((compare || sweep) && loras.length === 0 && lorasNode !== undefined) at(keyNode(compare ? 'compare' : 'sweep'), `${compare ? 'compare' : 'sweep'} needs at least one LoRA in \`loras\``);
  else if ((compare || sweep) && loras.length === 0) at(keyNode(compare ? 'compare' : 'sweep'), `${compare ? 'compare' : 'sweep'} needs at least one LoRA: add \`loras:\``);

  const steps = int('steps', 1);
  const guidance = num('guidance');
  const width = int('width', 8, 8);
  const height = int('height', 8, 8);
  const batch = int('batch', 1);
  const model = str('model');
  const negativePrompt = str('negative_prompt');
  if (problems.length) return { problems };
  return {
    spec: {
      prompt: prompt ?? '',
      negativePrompt: negativePrompt ?? D.negativePrompt,
      model: model || undefined,
      loras,
      scheduler: (scheduler as InferenceScheduler | undefined) ?? D.scheduler,
      steps: steps ?? D.steps,
      guidance: guidance ?? D.guidance,
      seeds,
      width,
      height,
      batch: batch ?? DEFAULT_BATCH,
      compare,
      sweep,
    },
    problems: [],
  };
}

/** The value of `model:` in a cell's text, without a full parse (for inheriting it from cells above). */
export function modelOfCell(text: string): string | undefined {
  const parsed = parseCell(text);
  return parsed.spec?.model;
}

export type Layout = 'grid' | 'compare' | 'sweep';

export interface PlannedImage extends GenerationJob {
  /** Where it goes in the layout. */
  row: number;
  column: number;
  /** "without LoRA", "with LoRA", "scale 0.5" — empty for a plain grid. */
  label: string;
}

export interface CellPlan {
  layout: Layout;
  columns: number;
  rows: number;
  images: PlannedImage[];
  /** The LoRA a sweep varies (as written in the cell). */
  sweepLora?: string;
}

/** Images in a grid row, when the cell does not say otherwise. */
const GRID_COLUMNS = 4;

/**
 * A cell → the images to make, in request order. `resolve` turns a path written in the cell into the
 * absolute one the worker opens; `randomSeed` supplies a seed when the cell names none.
 */
export function planCell(spec: CellSpec, resolve: (p: string) => string, randomSeed: () => number): CellPlan {
  const base = (spec.seeds ?? [randomSeed()]).flatMap((s) => Array.from({ length: spec.batch }, (_, i) => (s + i) % 2 ** 32));
  const loras = spec.loras.map((l) => ({ file: resolve(l.file), scale: l.scale }));
  if (spec.compare) {
    const off = loras.map((l) => ({ ...l, scale: 0 }));
    return {
      layout: 'compare',
      columns: 2,
      rows: base.length,
      images: base.flatMap((seed, row) => [
        { seed, loras: off, row, column: 0, label: 'without LoRA' },
        { seed, loras, row, column: 1, label: 'with LoRA' },
      ]),
    };
  }
  if (spec.sweep) {
    const sweep = spec.sweep;
    return {
      layout: 'sweep',
      columns: base.length,
      rows: sweep.length,
      sweepLora: spec.loras[0].file,
      images: sweep.flatMap((scale, row) =>
        base.map((seed, column) => ({ seed, loras: loras.map((l, i) => (i === 0 ? { ...l, scale } : l)), row, column, label: `scale ${scale}` })),
      ),
    };
  }
  const columns = Math.min(GRID_COLUMNS, base.length);
  return {
    layout: 'grid',
    columns,
    rows: Math.ceil(base.length / columns),
    images: base.map((seed, i) => ({ seed, loras, row: Math.floor(i / columns), column: i % columns, label: '' })),
  };
}

/** Cell text for given settings, in the keys' canonical order (for "copy settings to a new cell" and new notebooks). */
export function cellText(s: {
  prompt: string;
  negativePrompt?: string;
  model?: string;
  loras?: readonly LoraRef[];
  scheduler?: string;
  steps?: number;
  guidance?: number;
  seed?: number | readonly number[];
  width?: number;
  height?: number;
  batch?: number;
  compare?: boolean;
  sweep?: readonly number[];
}): string {
  const q = (v: string) => (v === '' || /^[\s]|[\s]$|[:#{}[\],&*!|>'"%@`]|^(true|false|null|yes|no|~|[-+.\d])/i.test(v) ? JSON.stringify(v) : v);
  const lines = [`prompt: ${q(s.prompt)}`];
  if (s.negativePrompt) lines.push(`negative_prompt: ${q(s.negativePrompt)}`);
  if (s.model) lines.push(`model: ${q(s.model)}`);
  if (s.loras?.length) {
    lines.push('loras:');
    for (const l of s.loras) lines.push(`  - file: ${q(l.file)}`, `    scale: ${l.scale}`);
  }
  if (s.scheduler) lines.push(`scheduler: ${s.scheduler}`);
  if (s.steps !== undefined) lines.push(`steps: ${s.steps}`);
  if (s.guidance !== undefined) lines.push(`guidance: ${s.guidance}`);
  if (s.seed !== undefined) lines.push(`seed: ${Array.isArray(s.seed) ? `[${s.seed.join(', ')}]` : s.seed}`);
  if (s.width !== undefined) lines.push(`width: ${s.width}`);
  if (s.height !== undefined) lines.push(`height: ${s.height}`);
  if (s.batch !== undefined && s.batch !== 1) lines.push(`batch: ${s.batch}`);
  if (s.compare) lines.push('compare: true');
  if (s.sweep?.length) lines.push(`sweep: [${s.sweep.join(', ')}]`);
  return lines.join('\n');
}

/** A path for a cell: relative to the notebook's folder when inside it or near it, with forward slashes. */
export function pathForCell(notebookDir: string, file: string): string {
  const rel = path.relative(notebookDir, file);
  if (!rel || path.isAbsolute(rel) || rel.split(path.sep).filter((p) => p === '..').length > 2) return file;
  return rel.split(path.sep).join('/');
}
