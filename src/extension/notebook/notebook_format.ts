// The *.loranb file: YAML that reads and diffs well. Cell sources are literal blocks (a changed prompt is a
// one-line diff), keys come in a fixed order, and outputs are the generation parameters with the PNG file
// names beside the notebook — never image bytes. No `vscode` import; serializer.ts adapts it to VS Code.
//
//   loranb: 1
//   cells:
//     - markdown: |
//         # Shapes
//     - generation: |
//         prompt: a red circle
//         seed: [0, 1]
//       outputs:
//         - layout: grid
//           …
import { Document, isMap, isScalar, isSeq, parse, Scalar, visit, YAMLParseError } from 'yaml';
import type { LoraRef } from '../../protocol/inference.js';
import { withoutImageData, type GenerationOutput, type GenerationSettings, type OutputImage } from '../../protocol/generation_output.js';
import { errorMessage } from '../util.js';

export const NOTEBOOK_FORMAT_VERSION = 1;

export interface NotebookFileCell {
  kind: 'markdown' | 'generation';
  source: string;
  outputs: GenerationOutput[];
}

export interface NotebookFile {
  cells: NotebookFileCell[];
}

export class NotebookFormatError extends Error {}

const HEADER = '# LoRA Studio inference notebook: open it in VS Code with the LoRA Studio extension.\n# Generated images are PNG files next to this file; outputs below name them.\n';

export function parseNotebookFile(text: string): NotebookFile {
  if (!text.trim()) return { cells: [] };
  let data: unknown;
  try {
    data = parse(text);
  } catch (e) {
    const where = e instanceof YAMLParseError && e.linePos ? ` at line ${e.linePos[0].line}` : '';
    throw new NotebookFormatError(`this .loranb file is not valid YAML${where}: ${errorMessage(e).split('\n')[0]}`);
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw new NotebookFormatError('a .loranb file is a YAML mapping with `loranb: 1` and `cells:`');
  const root = data as Record<string, unknown>;
  if (root.loranb !== undefined && root.loranb !== NOTEBOOK_FORMAT_VERSION) {
    throw new NotebookFormatError(`this notebook has format version ${JSON.stringify(root.loranb)}; this LoRA Studio reads version ${NOTEBOOK_FORMAT_VERSION} — update the extension`);
  }
  const cells = root.cells ?? [];
  if (!Array.isArray(cells)) throw new NotebookFormatError('`cells:` must be a list');
  return {
    cells: cells.map((c: unknown, i) => {
      if (!c || typeof c !== 'object') throw new NotebookFormatError(`cells[${i}] must be a mapping with \`markdown:\` or \`generation:\``);
      const cell = c as Record<string, unknown>;
      const kind = 'markdown' in cell ? 'markdown' : 'generation' in cell ? 'generation' : undefined;
      if (!kind) throw new NotebookFormatError(`cells[${i}] has neither \`markdown:\` nor \`generation:\` (keys: ${Object.keys(cell).join(', ')})`);
      const source = cell[kind] ?? '';
      if (typeof source !== 'string') throw new NotebookFormatError(`cells[${i}].${kind} must be text`);
      const outputs = cell.outputs ?? [];
      if (!Array.isArray(outputs)) throw new NotebookFormatError(`cells[${i}].outputs must be a list`);
      // Outputs from another version of the extension that do not look right are dropped, not fatal: they are only a cache of a run.
      return { kind, source, outputs: outputs.filter(isGenerationOutput).map(canonicalOutput) };
    }),
  };
}

export function formatNotebookFile(nb: NotebookFile): string {
  const data = {
    loranb: NOTEBOOK_FORMAT_VERSION,
    cells: nb.cells.map((c) => {
      const cell: Record<string, unknown> = { [c.kind]: c.source };
      const outputs = c.outputs.filter((o) => o.images.length > 0).map((o) => canonicalOutput(withoutImageData(o)));
      if (outputs.length) cell.outputs = outputs;
      return cell;
    }),
  };
  const doc = new Document(data);
  // Every cell source is a literal block, even a one-liner, so adding a line to it stays a one-line diff;
  // each image is one flow line, so a re-run changes one line per image.
  visit(doc, {
    Pair(_, pair) {
      const key = isScalar(pair.key) ? pair.key.value : undefined;
      if ((key === 'markdown' || key === 'generation') && isScalar(pair.value) && pair.value.value !== '') pair.value.type = Scalar.BLOCK_LITERAL;
      if (key === 'images' && isSeq(pair.value)) for (const item of pair.value.items) if (isMap(item)) item.flow = true;
    },
  });
  // Literal blocks for multi-line text; no line folding, which would turn an edit into a multi-line diff.
  return HEADER + doc.toString({ blockQuote: 'literal', lineWidth: 0, minContentWidth: 0, flowCollectionPadding: false });
}

function isGenerationOutput(o: unknown): o is GenerationOutput {
  if (!o || typeof o !== 'object') return false;
  const g = o as Partial<GenerationOutput>;
  return (g.layout === 'grid' || g.layout === 'compare' || g.layout === 'sweep') && !!g.settings && Array.isArray(g.images);
}

/** Fixed key order (objects rebuilt field by field), finished runs only, numbers rounded for stable diffs. */
function canonicalOutput(o: GenerationOutput): GenerationOutput {
  const s = o.settings;
  const settings: GenerationSettings = {
    prompt: String(s.prompt ?? ''),
    negativePrompt: String(s.negativePrompt ?? ''),
    model: String(s.model ?? ''),
    scheduler: s.scheduler,
    steps: s.steps,
    guidance: s.guidance,
    width: s.width,
    height: s.height,
    loras: (s.loras ?? []).map(canonicalLora),
  };
  const out: GenerationOutput = {
    v: 1,
    runId: String(o.runId ?? ''),
    layout: o.layout,
    status: o.status === 'running' ? 'cancelled' : o.status,
    settings,
    columns: o.columns,
    rows: o.rows,
    ...(o.sweep ? { sweep: { lora: o.sweep.lora, scales: [...o.sweep.scales] } } : {}),
    images: o.images.map((im): OutputImage => ({
      file: im.file,
      seed: im.seed,
      loras: (im.loras ?? []).map(canonicalLora),
      row: im.row,
      column: im.column,
      label: im.label ?? '',
      seconds: round(im.seconds ?? 0),
      ...(im.data !== undefined ? { data: im.data } : {}),
    })),
    ...(o.sheet ? { sheet: o.sheet } : {}),
    planned: o.planned ?? o.images.length,
    seconds: round(o.seconds ?? 0),
    ...(o.error ? { error: o.error } : {}),
  };
  return out;
}

const canonicalLora = (l: LoraRef): LoraRef => ({ file: l.file, scale: l.scale });
const round = (x: number) => Math.round(x * 100) / 100;
