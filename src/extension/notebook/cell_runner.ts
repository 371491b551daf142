// Running one generation cell: parse it, plan its images, send one request to the worker, and turn the
// worker's messages into the cell's GenerationOutput as images arrive. No `vscode` import: the controller
// maps what this reports onto a NotebookCellExecution, and tests drive it against the real worker.
import path from 'node:path';
import { FileRefusedError, READ_LIMITS, readRegularFile } from '../../core/io/safe_read.js';
import type { GenerateRequest, WorkerMessage } from '../../protocol/inference.js';
import { parseCell, planCell, type CellProblem } from './cell_spec.js';
import type { GenerationOutput } from '../../protocol/generation_output.js';
import type { WorkerClient } from './worker_client.js';
import { modelForWorker } from './notebook_paths.js';
import { formatBytes } from '../../protocol/format.js';

export interface CellRunOptions {
  client: WorkerClient;
  /** The cell's text. */
  text: string;
  /** Folder that relative paths in the cell are relative to (the notebook's). */
  notebookDir: string;
  /** Where the PNGs go (absolute). */
  outDir: string;
  /** File-name prefix for this run's PNGs (unique per run, e.g. `cell2-20261128-101500`). */
  fileBase: string;
  /** `model:` of the nearest cell above that names one, as written there. */
  inheritedModel?: string;
  /** Stops the run; the images made so far stay. */
  signal?: AbortSignal;
  randomSeed?: () => number;
  /** A new image arrived (or the output changed state). */
  onOutput?: (o: GenerationOutput) => void;
  /** "loading model…", "image 2/4 · step 7/20". */
  onProgress?: (text: string) => void;
  /** Every worker message of this run (tests count model loads with it). */
  onMessage?: (m: WorkerMessage) => void;
}

export type CellRunResult =
  /** The cell's text is wrong: nothing was sent to the worker. */
  | { kind: 'problems'; problems: CellProblem[] }
  | { kind: 'output'; output: GenerationOutput; status: 'done' | 'cancelled' | 'failed'; error?: string };

export async function runCell(o: CellRunOptions): Promise<CellRunResult> {
  const parsed = parseCell(o.text);
  if (!parsed.spec) return { kind: 'problems', problems: parsed.problems };
  const spec = parsed.spec;
  const model = spec.model ?? o.inheritedModel;
  if (!model) {
    return { kind: 'problems', problems: [{ message: 'which model? Add `model: path/to/diffusers-folder` or a Hub id such as `model: runwayml/stable-diffusion-v1-5` (this cell or one above it)', line: 0, column: 0 }] };
  }
  const resolve = (p: string) => path.resolve(o.notebookDir, p);
  const plan = planCell(spec, resolve, o.randomSeed ?? (() => Math.floor(Math.random() * 2 ** 31)));
  const asWritten = new Map(spec.loras.map((l) => [resolve(l.file), l.file]));
  const forCell = (file: string) => asWritten.get(file) ?? file;
  // A generated file that is not a regular file under the cap (the output folder is the notebook's, so someone
  // else's repository may have put a link to /dev/zero there) is not read; the first such refusal fails the cell.
  let refused: string | undefined;
  const readBase64 = (file: string) => {
    try {
      return readRegularFile(file, READ_LIMITS.generatedImage, 'a generated image').toString('base64');
    } catch (e) {
      if (e instanceof FileRefusedError) refused ??= e.message;
      return undefined;
    }
  };
  const relative = (file: string) => {
    const rel = path.relative(o.notebookDir, file);
    return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel.split(path.sep).join('/') : file;
  };

  const output: GenerationOutput = {
    v: 1,
    runId: o.fileBase,
    layout: plan.layout,
    status: 'running',
    settings: {
      prompt: spec.prompt,
      negativePrompt: spec.negativePrompt,
      model,
      scheduler: spec.scheduler,
      steps: spec.steps,
      guidance: spec.guidance,
      width: spec.width ?? 0,
      height: spec.height ?? 0,
      loras: spec.loras,
    },
    columns: plan.columns,
    rows: plan.rows,
    ...(plan.layout === 'sweep' ? { sweep: { lora: plan.sweepLora!, scales: spec.sweep! } } : {}),
    images: [],
    planned: plan.images.length,
    seconds: 0,
  };
  const request: GenerateRequest = {
    type: 'generate',
    id: o.client.newId('cell'),
    model: modelForWorker(model, o.notebookDir),
    prompt: spec.prompt,
    negativePrompt: spec.negativePrompt,
    scheduler: spec.scheduler,
    steps: spec.steps,
    guidance: spec.guidance,
    width: spec.width,
    height: spec.height,
    outDir: o.outDir,
    jobs: plan.images.map((im, i) => ({ seed: im.seed, loras: im.loras, fileName: `${o.fileBase}-${i}-seed${im.seed}.png` })),
    sheet: { columns: plan.columns, fileName: `${o.fileBase}-sheet.png` },
  };

  const started = Date.now();
  const onAbort = () => o.client.cancel(request.id);
  if (o.signal?.aborted) return { kind: 'output', output: { ...output, status: 'cancelled' }, status: 'cancelled' };
  o.signal?.addEventListener('abort', onAbort);
  const final = await o.client
    .request(request, (m) => {
      o.onMessage?.(m);
      switch (m.type) {
        case 'model_downloading':
          o.onProgress?.(`downloading ${m.model}: ${formatBytes(m.bytes)}/${formatBytes(m.totalBytes)} (file ${Math.min(m.filesDone + 1, m.totalFiles)}/${m.totalFiles})…`);
          break;
        case 'model_loading':
          o.onProgress?.(`loading model ${path.basename(m.model)}…`);
          break;
        case 'model_loaded':
          output.settings.width ||= m.width;
          output.settings.height ||= m.height;
          break;
        case 'progress':
          o.onProgress?.(`image ${m.job + 1}/${m.jobs} · step ${m.step}/${m.steps}`);
          break;
        case 'image': {
          const planned = plan.images[m.job];
          output.settings.width = m.width;
          output.settings.height = m.height;
          output.images.push({
            file: relative(m.file!),
            seed: m.seed,
            loras: m.loras.map((l) => ({ file: forCell(l.file), scale: l.scale })),
            row: planned.row,
            column: planned.column,
            label: planned.label,
            seconds: m.seconds,
            data: readBase64(m.file!),
          });
          output.seconds = (Date.now() - started) / 1000;
          o.onOutput?.(output);
          break;
        }
        case 'sheet':
          output.sheet = relative(m.file!);
          output.sheetData = readBase64(m.file!);
          break;
      }
    })
    .finally(() => o.signal?.removeEventListener('abort', onAbort));

  output.seconds = (Date.now() - started) / 1000;
  if (final.type === 'done' && refused) {
    output.status = 'failed';
    output.error = refused;
    o.onOutput?.(output);
    return { kind: 'output', output, status: 'failed', error: refused };
  }
  if (final.type === 'done') {
    output.status = 'done';
    o.onOutput?.(output);
    return { kind: 'output', output, status: 'done' };
  }
  if (final.type === 'cancelled') {
    output.status = 'cancelled';
    o.onOutput?.(output);
    return { kind: 'output', output, status: 'cancelled' };
  }
  const error = final.type === 'error' ? `${final.message}${final.hint ? `\n${final.hint}` : ''}` : `unexpected answer "${final.type}" from the worker`;
  output.status = 'failed';
  output.error = error;
  o.onOutput?.(output);
  return { kind: 'output', output, status: 'failed', error };
}
