// `lora-studio worker`: a long-lived inference process for the notebook. It reads JSON-line requests on
// stdin and answers on stdout (src/protocol/inference.ts); logs go to stderr. The model is loaded
// once and kept; LoRAs are added, rescaled and removed per image without touching the model, and their
// weights are cached by path and modification time, so flipping a LoRA on and off costs no disk reads.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import type * as tf from '@tensorflow/tfjs';
import { initBackend, isFatalEngineError, restartBackend, type BackendInfo } from '../core/engine/backend.js';
import { BACKENDS, type BackendName } from '../core/config/run_config.js';
import { GENERATION_DEFAULTS, imageSizeProblem } from '../core/config/generation.js';
import { modelSource } from '../core/config/model_source.js';
import { makeDirs, writeFileAtomic } from '../core/config/run_folder.js';
import { LineSplitter } from '../protocol/jsonl.js';
import type { LoraLookup } from '../core/engine/ops.js';
import { tensorToRgb8, writePng } from '../core/io/png.js';
import { LoraSet } from '../core/lora/lora_set.js';
import { isHubId } from '../core/config/hub_cache.js';
import { HubError } from '../core/hub/download.js';
import { resolveModel } from '../core/hub/model.js';
import type { LoraWeights } from '../core/lora/lora_file.js';
import {
  MAX_REQUEST_BYTES,
  WORKER_MESSAGES,
  WORKER_REQUESTS,
  type GenerateRequest,
  type GenerationJob,
  type LoraRef,
  type WorkerErrorCode,
  type WorkerMessageInput,
  type WorkerRequest,
} from '../protocol/inference.js';

const HELP = `usage: lora-studio worker [--backend ${BACKENDS.join('|')}]

Serves generation requests, one JSON object per line on stdin, answers one JSON object per line on
stdout (the protocol is src/protocol/inference.ts). The model stays loaded between requests.`;

/** What the worker needs from a loaded model; the real one wraps the Stable Diffusion pipeline. */
export interface LoadedModel {
  /** The model's own image size. */
  readonly width: number;
  readonly height: number;
  /** Sizes must be multiples of this (the VAE scale factor); default 8, Stable Diffusion's. */
  readonly sizeMultiple?: number;
  /** Reads a LoRA file checked against this model's LoRA targets. */
  readLora(file: string): LoraWeights;
  generate(o: {
    prompt: string;
    negativePrompt?: string;
    scheduler?: GenerateRequest['scheduler'];
    steps?: number;
    guidanceScale?: number;
    seed: number;
    width?: number;
    height?: number;
    lora: LoraLookup;
    textEncoderLora?: LoraLookup;
    textEncoder2Lora?: LoraLookup;
    onStep: (step: number, total: number) => boolean;
  }): Promise<tf.Tensor4D>;
  dispose(): void;
}

export type ModelLoader = (dir: string, variant: 'fp16' | undefined) => Promise<LoadedModel>;

/** The Stable Diffusion pipeline, imported when the first model is loaded so the worker answers `ready` at once. */
export const loadPipelineModel: ModelLoader = async (dir, variant) => {
  const { loadStableDiffusion, generate, disposeStableDiffusion } = await import('../core/pipeline/stable_diffusion.js');
  const { readLoraFile } = await import('../core/lora/lora_file.js');
  const { loraTargetsOf } = await import('../core/pipeline/loras.js');
  const sd = loadStableDiffusion(dir, { variant });
  const size = (sd.unet.config.sample_size as number) * sd.vaeScaleFactor;
  const targets = loraTargetsOf(sd);
  return {
    width: size,
    height: size,
    sizeMultiple: sd.vaeScaleFactor,
    readLora: (file) => readLoraFile(file, targets),
    generate: (o) => generate(sd, o),
    dispose: () => disposeStableDiffusion(sd),
  };
};

interface CachedLora {
  mtimeMs: number;
  size: number;
  weights: LoraWeights;
}

/** LoRA files kept in memory beyond the active ones (a notebook rarely switches among more). */
const LORA_CACHE_SIZE = 8;

class RequestError extends Error {
  constructor(
    readonly code: WorkerErrorCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

interface Running {
  id: string;
  cancelled: boolean;
  /** Aborts a model download in progress. */
  abort: AbortController;
}

/** The worker's state and request handling, independent of stdin/stdout so tests can drive it in-process. */
export class InferenceWorker {
  private model: { dir: string; variant?: 'fp16'; loaded: LoadedModel } | undefined;
  private loras = new LoraSet();
  /** By absolute path; Map order is least recently used first. */
  private readonly loraCache = new Map<string, CachedLora>();
  private readonly queue: Exclude<WorkerRequest, { type: 'cancel' }>[] = [];
  private running: Running | undefined;
  private pumping = false;
  private closing = false;
  private modelLoads = 0;
  private idleWaiters: (() => void)[] = [];
  private resolveShutdown!: () => void;
  /** Resolves when a `shutdown` request is reached. */
  readonly shutdown = new Promise<void>((resolve) => (this.resolveShutdown = resolve));

  constructor(
    /** One message out (the stdout writer frames it, stamping the protocol version). */
    private readonly send: (m: WorkerMessageInput) => void,
    private readonly backend: BackendInfo,
    private readonly loadModel: ModelLoader = loadPipelineModel,
    private readonly log: (line: string) => void = (l) => console.error(l),
    /** Starts the backend afresh after a fatal engine error (an aborted wasm module, a lost GPU device). */
    private readonly restartEngine: () => Promise<unknown> = restartBackend,
  ) {}

  /** One request line. `cancel` acts at once; everything else waits its turn. Whatever the line, it is answered and the worker goes on. */
  handleLine(line: string): void {
    try {
      this.readLine(line);
    } catch (e) {
      this.log(e instanceof Error && e.stack ? e.stack : String(e));
      this.send({ type: 'error', code: 'internal', message: `could not read a request: ${e instanceof Error ? e.message : String(e)}` });
    }
  }

  /** A request line longer than MAX_REQUEST_BYTES: it is dropped as it arrives, and answered. */
  lineTooLong(): void {
    this.send({ type: 'error', code: 'bad_request', message: `a request line is longer than ${MAX_REQUEST_BYTES / 1024 / 1024} MB, the limit; it was skipped up to its end` });
  }

  private readLine(line: string): void {
    if (!line.trim()) return;
    // A bad line is answered with an error naming the field, and the worker goes on serving.
    const read = WORKER_REQUESTS.read(line) ?? { ok: false, problem: `request is not a JSON object: ${line.trim().slice(0, 80)}` };
    if (!read.ok) {
      this.send({ type: 'error', id: read.id, code: 'bad_request', message: read.problem });
      return;
    }
    const r = read.message;
    if (r.type === 'cancel') return this.cancel(r.id);
    this.queue.push(r);
    void this.pump();
  }

  /** Resolves when no request is running or queued. */
  idle(): Promise<void> {
    if (!this.pumping && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  dispose(): void {
    this.loras.dispose();
    this.model?.loaded.dispose();
    this.model = undefined;
    this.loraCache.clear();
  }

  private cancel(id: string): void {
    if (this.running?.id === id) {
      this.running.cancelled = true;
      this.running.abort.abort();
      return;
    }
    const i = this.queue.findIndex((q) => 'id' in q && q.id === id);
    if (i >= 0) {
      this.queue.splice(i, 1);
      this.send({ type: 'cancelled', id, images: 0 });
    }
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      let r: Exclude<WorkerRequest, { type: 'cancel' }> | undefined;
      while (!this.closing && (r = this.queue.shift())) {
        if (r.type === 'shutdown') {
          this.closing = true;
          this.resolveShutdown();
          for (const q of this.queue.splice(0)) if ('id' in q && q.id) this.send({ type: 'cancelled', id: q.id, images: 0 });
          break;
        }
        await this.serve(r);
      }
    } finally {
      this.pumping = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private async serve(r: Exclude<WorkerRequest, { type: 'cancel' | 'shutdown' }>): Promise<void> {
    try {
      if (r.type === 'status') {
        this.send({
          type: 'status',
          id: r.id,
          model: this.model?.dir,
          loras: this.loras.names().map((file) => ({ file, scale: this.loras.scaleOf(file) })),
          cached: [...this.loraCache.keys()],
          modelLoads: this.modelLoads,
          backend: this.backend.name,
        });
      } else if (r.type === 'unload') {
        this.dispose();
        this.send({ type: 'done', id: r.id, images: 0, seconds: 0 });
      } else {
        await this.generate(r);
      }
    } catch (e) {
      if (isFatalEngineError(e)) return this.recover(r.id, e);
      const err = e instanceof RequestError ? e : new RequestError('internal', e instanceof Error ? e.message : String(e));
      if (!(e instanceof RequestError) && e instanceof Error && e.stack) this.log(e.stack);
      this.send({ type: 'error', id: r.id, code: err.code, message: err.message, hint: err.hint });
    }
  }

  /**
   * After a fatal engine error every later call on that backend fails too ("Aborted()"), so the backend is
   * started afresh and everything made on it (the model, the active LoRAs) is dropped; the next request
   * loads the model again. LoRA weights read from disk are plain arrays and stay cached.
   */
  private async recover(id: string, e: unknown): Promise<void> {
    const what = e instanceof Error ? e.message : String(e);
    this.log(`worker: ${id}: the ${this.backend.name} engine failed (${what}); restarting it`);
    let restarted = 'it was restarted and the model loads again on the next request';
    try {
      await this.restartEngine();
      // Disposing tensors of the dead backend is harmless once it is replaced (restartBackend).
      this.loras.dispose();
      this.model?.loaded.dispose();
    } catch (again) {
      restarted = `starting it again failed too (${again instanceof Error ? again.message : String(again)}); restart the worker`;
    }
    this.loras = new LoraSet();
    this.model = undefined;
    this.send({
      type: 'error',
      id,
      code: 'engine',
      message: `the ${this.backend.name} engine failed while serving this request (${what.split('\n')[0]}); ${restarted}`,
      hint: 'a smaller width and height, fewer images per request or another backend needs less memory',
    });
  }

  private async generate(r: GenerateRequest): Promise<void> {
    const started = performance.now();
    const running: Running = { id: r.id, cancelled: false, abort: new AbortController() };
    this.running = running;
    try {
      let model: LoadedModel;
      try {
        model = await this.ensureModel(r, running.abort.signal);
      } catch (e) {
        // Cancelled while the model was downloading: the partial file stays for the next request.
        if (running.cancelled) return this.sendCancelled(r.id, 0);
        throw e;
      }
      const sizeProblem = imageSizeProblem(r.width ?? model.width, r.height ?? model.height, model, model.sizeMultiple ?? 8);
      if (sizeProblem) throw new RequestError('bad_request', sizeProblem);
      if (r.outDir) makeDirs(path.resolve(r.outDir));
      const sheetParts: { data: Buffer; width: number; height: number }[] = [];
      for (const [index, job] of r.jobs.entries()) {
        if (running.cancelled) return this.sendCancelled(r.id, index);
        const loras = this.syncLoras(r.id, model, job.loras);
        const t0 = performance.now();
        let image: tf.Tensor4D;
        try {
          image = await model.generate({
            prompt: r.prompt,
            negativePrompt: r.negativePrompt,
            scheduler: r.scheduler,
            steps: r.steps,
            guidanceScale: r.guidance,
            seed: job.seed,
            width: r.width,
            height: r.height,
            lora: this.loras.lookup,
            textEncoderLora: this.loras.textEncoderLookup,
            textEncoder2Lora: this.loras.textEncoder2Lookup,
            onStep: (step, steps) => {
              if (running.cancelled) return false;
              this.send({ type: 'progress', id: r.id, job: index, jobs: r.jobs.length, step, steps });
              return true;
            },
          });
        } catch (e) {
          if (running.cancelled) return this.sendCancelled(r.id, index);
          if (isFatalEngineError(e)) throw e;
          throw new RequestError('generate', `generation failed: ${(e as Error).message}`);
        }
        try {
          const [, height, width] = image.shape;
          const out = await this.output(r, job, index, image, loras);
          if (r.sheet) sheetParts.push(await tensorToRgb8(image));
          this.send({ type: 'image', id: r.id, job: index, seed: job.seed, loras, width, height, ...out, seconds: (performance.now() - t0) / 1000 });
        } finally {
          image.dispose();
        }
      }
      if (r.sheet && sheetParts.length) await this.sendSheet(r, sheetParts);
      const seconds = (performance.now() - started) / 1000;
      this.log(`worker: ${r.id}: ${r.jobs.length} image(s) in ${seconds.toFixed(1)} s`);
      this.send({ type: 'done', id: r.id, images: r.jobs.length, seconds });
    } finally {
      this.running = undefined;
    }
  }

  private sendCancelled(id: string, images: number): void {
    this.log(`worker: ${id}: cancelled after ${images} image(s)`);
    this.send({ type: 'cancelled', id, images });
  }

  private async ensureModel(r: GenerateRequest, signal: AbortSignal): Promise<LoadedModel> {
    // A Hub id stays the model's name (the cache is not asked again while it is loaded); a path is absolute.
    const name = isHubId(r.model, process.cwd()) ? r.model : path.resolve(r.model);
    if (this.model && this.model.dir === name && this.model.variant === r.variant) return this.model.loaded;
    let dir: string;
    try {
      dir = (
        await resolveModel(name, process.cwd(), {
          variant: r.variant,
          signal,
          onProgress: (p) => this.send({ type: 'model_downloading', id: r.id, model: name, file: p.file, bytes: p.bytes, totalBytes: p.totalBytes, filesDone: p.filesDone, totalFiles: p.totalFiles }),
          onNotice: (m) => this.log(`worker: ${m}`),
        })
      ).dir;
    } catch (e) {
      if (e instanceof HubError) throw new RequestError('model', e.problem, e.hint);
      throw e;
    }
    const source = modelSource(dir);
    if (source.kind === 'problem') {
      throw new RequestError(
        'model',
        `model "${dir}": ${source.message}`,
        'name a folder with model_index.json, unet/, vae/, text_encoder/, tokenizer/ and scheduler/ (the layout of Stable Diffusion repositories on the Hugging Face Hub), or a single-file .safetensors checkpoint (SD 1.x, 2.x, SDXL base)',
      );
    }
    // A different model: everything tied to the old one goes (LoRAs were checked against its layers).
    this.dispose();
    this.send({ type: 'model_loading', id: r.id, model: name });
    const t0 = performance.now();
    let loaded: LoadedModel;
    try {
      loaded = await this.loadModel(dir, r.variant);
    } catch (e) {
      if (isFatalEngineError(e)) throw e;
      throw new RequestError('model', `could not load model "${dir}": ${(e as Error).message}`);
    }
    this.modelLoads++;
    this.model = { dir: name, variant: r.variant, loaded };
    const seconds = (performance.now() - t0) / 1000;
    this.log(`worker: loaded ${name === dir ? dir : `${name} (${dir})`} in ${seconds.toFixed(1)} s`);
    this.send({ type: 'model_loaded', id: r.id, model: name, seconds, width: loaded.width, height: loaded.height });
    return loaded;
  }

  /** Makes the active LoRA set exactly `wanted`; returns it with absolute paths. */
  private syncLoras(id: string, model: LoadedModel, wanted: readonly LoraRef[]): LoraRef[] {
    const refs = wanted.map((l) => ({ file: path.resolve(l.file), scale: l.scale }));
    const seen = new Set<string>();
    for (const l of refs) {
      if (seen.has(l.file)) throw new RequestError('lora', `LoRA "${l.file}" is listed twice`, 'list each LoRA file once, with one scale');
      seen.add(l.file);
    }
    for (const name of this.loras.names()) {
      if (!seen.has(name)) {
        this.loras.remove(name);
        this.send({ type: 'lora_unloaded', id, file: name });
      }
    }
    for (const l of refs) {
      const { weights, cached } = this.loraWeights(l.file, model);
      const active = this.loras.names().includes(l.file);
      // A file rewritten since it was added (a training run saved again) replaces the active copy.
      if (active && !cached) this.loras.remove(l.file);
      if (!active || !cached) {
        this.loras.add(weights, l.scale, l.file);
        for (const w of weights.warnings) this.log(`warning: ${w}`);
        this.send({ type: 'lora_loaded', id, file: l.file, cached, modules: weights.modules.size, format: weights.format, warnings: weights.warnings });
      } else if (this.loras.scaleOf(l.file) !== l.scale) {
        this.loras.setScale(l.file, l.scale);
      }
    }
    return refs;
  }

  private loraWeights(file: string, model: LoadedModel): { weights: LoraWeights; cached: boolean } {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(file);
    } catch {
      throw new RequestError('lora', `LoRA file "${file}" does not exist`, 'check the path in the cell (relative paths are relative to the notebook)');
    }
    const hit = this.loraCache.get(file);
    if (hit && hit.mtimeMs === stat.mtimeMs && hit.size === stat.size) {
      this.loraCache.delete(file);
      this.loraCache.set(file, hit); // most recently used goes last
      return { weights: hit.weights, cached: true };
    }
    let weights: LoraWeights;
    try {
      weights = model.readLora(file);
    } catch (e) {
      throw new RequestError('lora', (e as Error).message);
    }
    this.loraCache.delete(file);
    this.loraCache.set(file, { mtimeMs: stat.mtimeMs, size: stat.size, weights });
    const active = new Set(this.loras.names());
    for (const key of this.loraCache.keys()) {
      if (this.loraCache.size <= LORA_CACHE_SIZE) break;
      if (!active.has(key) && key !== file) this.loraCache.delete(key);
    }
    return { weights, cached: false };
  }

  private async output(r: GenerateRequest, job: GenerationJob, index: number, image: tf.Tensor4D, loras: LoraRef[]): Promise<{ file?: string; png?: string }> {
    if (!r.outDir) {
      const { data, width, height } = await tensorToRgb8(image);
      const png = await sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
      return { png: png.toString('base64') };
    }
    const file = outputFile(r.outDir, job.fileName ?? `${fileSafe(r.id)}-${index}.png`);
    const parameters = {
      prompt: r.prompt,
      negative_prompt: r.negativePrompt ?? GENERATION_DEFAULTS.negativePrompt,
      model: this.model?.dir,
      scheduler: r.scheduler ?? GENERATION_DEFAULTS.scheduler,
      steps: r.steps ?? GENERATION_DEFAULTS.steps,
      guidance: r.guidance ?? GENERATION_DEFAULTS.guidance,
      seed: job.seed,
      loras,
    };
    await writePng(file, image, { parameters: JSON.stringify(parameters), Software: 'LoRA Studio' });
    return { file };
  }

  private async sendSheet(r: GenerateRequest, parts: { data: Buffer; width: number; height: number }[]): Promise<void> {
    const columns = Math.min(r.sheet!.columns, parts.length);
    const rows = Math.ceil(parts.length / columns);
    const gap = 2;
    const { width: w, height: h } = parts[0];
    const sheet = sharp({
      create: { width: columns * w + (columns - 1) * gap, height: rows * h + (rows - 1) * gap, channels: 3, background: { r: 255, g: 255, b: 255 } },
    }).composite(parts.map((p, i) => ({ input: p.data, raw: { width: p.width, height: p.height, channels: 3 as const }, left: (i % columns) * (w + gap), top: Math.floor(i / columns) * (h + gap) })));
    const png = await sheet.png().toBuffer();
    if (r.outDir) {
      const file = outputFile(r.outDir, r.sheet!.fileName ?? `${fileSafe(r.id)}-sheet.png`);
      writeFileAtomic(file, png);
      this.send({ type: 'sheet', id: r.id, columns, rows, file });
    } else {
      this.send({ type: 'sheet', id: r.id, columns, rows, png: png.toString('base64') });
    }
  }
}

/** A request id as part of a file name: anything but letters, digits, `.`, `_` and `-` becomes `_`. */
const fileSafe = (id: string) => id.replace(/[^\w.-]/g, '_').replace(/^\.+/, '_') || '_';

/**
 * Where a PNG named in a request goes: inside `outDir`, never elsewhere (the protocol already refuses names
 * with folders; this holds whatever the name). Written by rename, so a symlink of that name is replaced, not followed.
 */
function outputFile(outDir: string, name: string): string {
  const dir = path.resolve(outDir);
  const file = path.resolve(dir, name);
  if (path.dirname(file) !== dir) throw new RequestError('bad_request', `file name "${name}" leads out of outDir "${dir}"`, 'give a plain file name, without folders');
  return file;
}

export async function runWorkerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { backend: { type: 'string', default: 'auto' }, help: { type: 'boolean', default: false } }, strict: true });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (!BACKENDS.includes(values.backend as BackendName)) {
    console.error(`lora-studio worker: --backend must be one of ${BACKENDS.join(', ')}, got "${values.backend}"`);
    return 2;
  }
  // stdout carries only protocol lines: anything a library prints with console.log goes to stderr.
  const writeOut = process.stdout.write.bind(process.stdout);
  console.log = console.error;
  console.info = console.error;
  const send = (m: WorkerMessageInput) => void writeOut(WORKER_MESSAGES.encode(m));

  const backend = await initBackend(values.backend as BackendName);
  console.error(`worker: backend ${backend.name}${backend.adapter ? ` (${backend.adapter})` : ''}`);
  const worker = new InferenceWorker(send, backend);
  send({ type: 'ready', pid: process.pid, backend: backend.name, adapter: backend.adapter });

  // Whatever goes wrong outside a request (a library's stray rejection) is logged; the worker goes on serving.
  process.on('uncaughtException', (e) => console.error(`worker: uncaught: ${e.stack ?? e.message}`));
  process.on('unhandledRejection', (e) => console.error(`worker: unhandled rejection: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`));
  // Lines are capped as they arrive: a 50 MB line is dropped chunk by chunk, never held or parsed.
  const lines = new LineSplitter(MAX_REQUEST_BYTES, (line) => worker.handleLine(line), () => worker.lineTooLong());
  process.stdin.on('data', (chunk: Buffer) => lines.push(chunk));
  const stdinClosed = new Promise<void>((resolve) => {
    process.stdin.on('end', () => {
      lines.end();
      resolve();
    });
    process.stdin.on('error', () => resolve());
  });
  // stdin closed or `shutdown`: finish what was asked, then go.
  await Promise.race([stdinClosed, worker.shutdown]);
  await worker.idle();
  process.stdin.destroy();
  worker.dispose();
  return 0;
}
