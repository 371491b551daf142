// Checks a run config against the disk, relative to the config file's folder: the base model is a
// diffusers folder with safetensors weights, the dataset folder holds images and captions (counted),
// resume_from_checkpoint names a checkpoint, network_weights a safetensors file, and output_dir does not already hold a finished LoRA.
// Used by the trainer at start and by the language server (which re-runs it when those files change).
// Reads headers and folder listings only, never tensor data, so it stays fast on real models.
import fs from 'node:fs';
import { SINGLE_FILE_FAMILY_NAMES } from '../io/single_file.js';
import { modelSource } from './model_source.js';
import os from 'node:os';
import path from 'node:path';
import { DiffusersFolder } from '../io/diffusers_folder.js';
import { READ_LIMITS, checkRegular, readRegularFile, readRegularText } from '../io/safe_read.js';
import { SafetensorsFile } from '../io/safetensors.js';
import type { RunFacts } from './cross_checks.js';
import type { Severity } from './problems.js';
import type { RunConfig } from './run_config.js';
import { METADATA_FILE, UNSUPPORTED_IMAGE_EXTENSIONS, isImageFile } from './dataset_files.js';
import { TENSORFLOW_MISSING, tensorflowInstalled } from './tensorflow_backend.js';
import { cachedSnapshot, hubCacheDir, hubEndpoint, hubOffline, isHubId } from './hub_cache.js';
import { LORA_FILE, checkpointStep, listCheckpoints, type CheckpointFolder } from './run_folder.js';

export interface DiskFinding {
  key: keyof RunConfig;
  severity: Severity;
  /** Said about the key's value: the caller prefixes the key's name. */
  message: string;
  /** The value that fixes it (a quick fix sets the key, adding it when absent). */
  suggest?: { key: keyof RunConfig; value: string };
}

export interface DatasetSummary {
  dir: string;
  /** Readable images found (PNG, JPEG, WebP). */
  images: number;
  /** Images that have a caption. */
  captions: number;
  captionSource: 'metadata.jsonl' | '.txt files' | 'none';
  /** Training examples: images with a caption (metadata rows whose image exists). */
  examples: number;
}

export interface ModelSummary {
  dir: string;
  pipeline: string;
  /** Pixels per latent pixel (2^(VAE blocks − 1)): 8 for Stable Diffusion. */
  vaeScaleFactor?: number;
  /** The UNet's sample_size × vaeScaleFactor: the resolution the model was trained at. */
  nativeResolution?: number;
}

export interface DiskReport {
  findings: DiskFinding[];
  dataset?: DatasetSummary;
  model?: ModelSummary;
  /** checkpoint-<step> folders in output_dir, by step. */
  checkpoints: CheckpointFolder[];
  /** The checkpoint folder a resume would start from. */
  resumeFrom?: string;
  facts: RunFacts;
  /** Every path consulted: when something under one changes, the result may change. */
  watched: string[];
}

/** Folder walks stop here: a dataset is not a home directory. */
const MAX_FILES = 200_000;
const MAX_DEPTH = 4;

/** A config path as the trainer uses it: `~` is the home folder, relative paths start at the config's folder. */
export function resolveConfigPath(p: string, baseDir: string): string {
  if (p === '~' || p.startsWith('~/') || p.startsWith('~\\')) p = path.join(os.homedir(), p.slice(1));
  return path.resolve(baseDir, p);
}

/**
 * The folder resume_from_checkpoint means: `latest` is the highest checkpoint in output_dir (undefined when
 * there is none); a path is relative to the config, and — as in diffusers, which joins the name to
 * output_dir — a bare `checkpoint-500` that is not beside the config is looked up in output_dir.
 */
export function resolveCheckpoint(value: string, baseDir: string, outputDir: string): string | undefined {
  if (value === 'latest') return listCheckpoints(outputDir).at(-1)?.path;
  const direct = resolveConfigPath(value, baseDir);
  if (fs.existsSync(direct)) return direct;
  const inOutput = path.join(outputDir, path.basename(value));
  return fs.existsSync(inOutput) ? inOutput : direct;
}

export interface DiskCheckOptions {
  /** Keys whose values failed validation: not checked. */
  skip?: ReadonlySet<string>;
  /** Keys written in the config (the others hold defaults, which some messages say). */
  present?: ReadonlySet<string>;
}

export function checkRunConfigOnDisk(c: RunConfig, baseDir: string, opts: DiskCheckOptions = {}): DiskReport {
  const skip = opts.skip ?? new Set<string>();
  const report: DiskReport = { findings: [], checkpoints: [], facts: {}, watched: [] };
  const use = (k: keyof RunConfig) => !skip.has(k) && c[k] !== '' && c[k] !== null;
  if (use('pretrained_model_name_or_path')) checkModel(c, baseDir, report, skip, opts.present);
  if (use('train_data_dir') && !use('dataset_name')) checkDataset(c, baseDir, report, skip);
  if (use('output_dir')) checkOutput(c, baseDir, report, skip);
  if (use('network_weights')) checkNetworkWeights(c, baseDir, report, skip);
  if (c.backend === 'tensorflow' && !skip.has('backend') && !tensorflowInstalled()) {
    report.findings.push({ key: 'backend', severity: 'error', message: TENSORFLOW_MISSING, suggest: { key: 'backend', value: 'auto' } });
  }
  return report;
}

// ── model ──

function checkModel(c: RunConfig, baseDir: string, report: DiskReport, skip: ReadonlySet<string>, present?: ReadonlySet<string>): void {
  const key = 'pretrained_model_name_or_path';
  const value = c[key];
  let dir = resolveConfigPath(value, baseDir);
  report.watched.push(dir);
  const add = (severity: Severity, message: string, k: keyof RunConfig = key) => void report.findings.push({ key: k, severity, message });
  if (isHubId(value, baseDir)) {
    // A Hub id: checked in the cache when it is there; otherwise downloaded when the run starts.
    const cacheDir = c.cache_dir && !skip.has('cache_dir') ? resolveConfigPath(c.cache_dir, baseDir) : undefined;
    const snapshot = cachedSnapshot('model', value, skip.has('revision') ? null : c.revision, cacheDir);
    report.watched.push(hubCacheDir(cacheDir));
    if (!snapshot) {
      if (hubOffline()) add('error', `\`${value}\` is not in the Hugging Face cache ${hubCacheDir(cacheDir)}, and HF_HUB_OFFLINE is set: unset it to download the model`);
      else add('info', `Hub model: downloaded from ${hubEndpoint()}/${value} into ${hubCacheDir(cacheDir)} when the run starts`);
      return;
    }
    dir = snapshot;
  }
  const source = modelSource(dir);
  if (source.kind === 'problem' && (!fs.existsSync(dir) || !isDir(dir))) {
    add('error', source.message);
    return;
  }
  if (source.kind === 'single-file') {
    const family = source.family;
    report.model = { dir, pipeline: `single-file ${family} checkpoint` };
    if (c.pretrained_model_config === null) {
      add('info', `${SINGLE_FILE_FAMILY_NAMES[family]} single file: the standard ${SINGLE_FILE_FAMILY_NAMES[family]} architecture and CLIP's bundled tokenizer are used; if the file is of another architecture, set pretrained_model_config to a diffusers folder of it`, 'pretrained_model_config');
    } else {
      const cfg = resolveConfigPath(c.pretrained_model_config, baseDir);
      try {
        DiffusersFolder.open(cfg);
      } catch (e) {
        add('error', (e as Error).message, 'pretrained_model_config');
      }
    }
    return;
  }
  let folder: DiffusersFolder;
  try {
    folder = DiffusersFolder.open(dir);
  } catch (e) {
    add('error', (e as Error).message);
    return;
  }
  const pipeline = String(folder.index._class_name ?? 'unknown');
  report.model = { dir, pipeline };
  const variant = c.variant === 'fp16' && !skip.has('variant') ? 'fp16' : undefined;
  let unetConfig: Record<string, unknown> | undefined;
  let vaeConfig: Record<string, unknown> | undefined;
  for (const name of ['unet', 'vae', 'text_encoder', 'tokenizer', ...('text_encoder_2' in folder.index ? ['text_encoder_2', 'tokenizer_2'] : []), 'scheduler']) {
    try {
      const comp = folder.component(name, { variant });
      if (name === 'unet') unetConfig = comp.config;
      if (name === 'vae') vaeConfig = comp.config;
      if (name.startsWith('tokenizer')) checkTokenizer(comp.dir);
      if (name === 'scheduler' && !fs.existsSync(path.join(comp.dir, 'scheduler_config.json'))) throw new Error(`${comp.dir}: scheduler_config.json is missing`);
      for (const w of comp.weights) checkWeightsFile(w);
      if (variant && comp.weights.length && !comp.weights.some((w) => w.includes('.fp16.'))) {
        add('info', `${name}/ has no fp16 variant files; the plain ones are read (variant: fp16 only chooses files)`, 'variant');
      }
    } catch (e) {
      add('error', (e as Error).message);
    }
  }
  if (unetConfig && vaeConfig) sizeChecks(c, unetConfig, vaeConfig, report, skip, present);
}

function checkTokenizer(dir: string): void {
  const has = (f: string) => fs.existsSync(path.join(dir, f));
  if (!has('tokenizer.json') && !(has('vocab.json') && has('merges.txt'))) {
    throw new Error(`${dir}: the CLIP tokenizer needs vocab.json and merges.txt, or tokenizer.json`);
  }
}

/** Git LFS pointers (a clone without `git lfs pull`) and truncated downloads are the usual broken weights. */
function checkWeightsFile(file: string): void {
  const st = fs.statSync(file);
  checkRegular(file, st, Number.MAX_SAFE_INTEGER, 'a weights file');
  if (st.size < 1024) {
    const head = readRegularFile(file, 1024, 'a weights file').toString('utf8', 0, 100);
    if (head.startsWith('version https://git-lfs')) throw new Error(`${file} is a Git LFS pointer, not the weights: run \`git lfs pull\` in the model's repository`);
  }
  SafetensorsFile.open(file).close();
}

function sizeChecks(c: RunConfig, unet: Record<string, unknown>, vae: Record<string, unknown>, report: DiskReport, skip: ReadonlySet<string>, present?: ReadonlySet<string>): void {
  const vaeBlocks = Array.isArray(vae.block_out_channels) ? vae.block_out_channels.length : undefined;
  const unetBlocks = Array.isArray(unet.down_block_types) ? unet.down_block_types.length : undefined;
  if (!vaeBlocks) return;
  const factor = 2 ** (vaeBlocks - 1);
  const native = typeof unet.sample_size === 'number' ? unet.sample_size * factor : undefined;
  report.model = { ...report.model!, vaeScaleFactor: factor, nativeResolution: native };
  if (skip.has('resolution')) return;
  // The UNet halves the latent (unetBlocks − 1) times; the skip connections line up only when each halving is exact.
  const multiple = unetBlocks ? factor * 2 ** (unetBlocks - 1) : factor;
  if (c.resolution % multiple !== 0) {
    const better = Math.round(c.resolution / multiple) * multiple || multiple;
    report.findings.push({
      key: 'resolution',
      severity: 'warning',
      message: `${c.resolution} is not a multiple of ${multiple} (this model's VAE factor ${factor} × the UNet's ${unetBlocks! - 1} downsamplings): the UNet's skip connections will not line up exactly — use ${better}`,
      suggest: { key: 'resolution', value: String(better) },
    });
  } else if (native && c.resolution !== native) {
    const given = present === undefined || present.has('resolution');
    report.findings.push(
      given
        ? { key: 'resolution', severity: 'info', message: `the model was trained at ${native} px; training at ${c.resolution} px works but may need more steps` }
        : { key: 'resolution', severity: 'warning', message: `the model was trained at ${native} px — add \`resolution: ${native}\``, suggest: { key: 'resolution', value: String(native) } },
    );
  }
}

// ── dataset ──

function checkDataset(c: RunConfig, baseDir: string, report: DiskReport, skip: ReadonlySet<string>): void {
  const key = 'train_data_dir';
  const dir = resolveConfigPath(c[key]!, baseDir);
  report.watched.push(dir);
  const add = (severity: Severity, message: string, k: keyof RunConfig = key) => void report.findings.push({ key: k, severity, message });
  if (!fs.existsSync(dir)) return add('error', `folder not found: ${dir}`);
  if (!isDir(dir)) return add('error', `${dir} is a file — point to the folder that holds the images and metadata.jsonl`);

  const files = walk(dir);
  const images = files.filter(isImageFile);
  if (!images.length) {
    const others = files.filter((f) => UNSUPPORTED_IMAGE_EXTENSIONS.includes(path.extname(f).toLowerCase()));
    add(
      'error',
      others.length
        ? `holds no PNG, JPEG or WebP images, only ${others.length} ${[...new Set(others.map((f) => path.extname(f).toLowerCase()))].join('/')} file(s): convert them to PNG`
        : `holds no images (PNG, JPEG or WebP) in ${dir}`,
    );
    report.dataset = { dir, images: 0, captions: 0, captionSource: 'none', examples: 0 };
    report.facts.numExamples = 0;
    return;
  }
  const metadataFile = path.join(dir, METADATA_FILE);
  const summary = fs.existsSync(metadataFile) ? checkMetadata(c, dir, metadataFile, images, add, skip, report) : checkTxtCaptions(dir, images, files, add);
  report.dataset = summary;
  report.facts.numExamples = summary.examples;
  if (summary.examples > 0) {
    // A fact, not a problem: every config would otherwise carry a Problems entry.
    add('hint', `${count(summary.images, 'image')}, ${count(summary.captions, 'caption')} (${summary.captionSource})`);
  }
}

type Add = (severity: Severity, message: string, k?: keyof RunConfig) => void;

function checkMetadata(c: RunConfig, dir: string, file: string, images: string[], add: Add, skip: ReadonlySet<string>, report: DiskReport): DatasetSummary {
  const rows: { line: number; row: Record<string, unknown> }[] = [];
  const bad: number[] = [];
  let text: string;
  try {
    text = readRegularText(file, READ_LIMITS.metadata, METADATA_FILE);
  } catch (e) {
    add('error', (e as Error).message);
    return { dir, images: images.length, captions: 0, captionSource: 'none', examples: 0 };
  }
  text
    .split('\n')
    .forEach((text, i) => {
      if (!text.trim()) return;
      try {
        const row = JSON.parse(text);
        if (row && typeof row === 'object' && !Array.isArray(row)) rows.push({ line: i + 1, row });
        else bad.push(i + 1);
      } catch {
        bad.push(i + 1);
      }
    });
  if (bad.length) add('error', `metadata.jsonl: ${lines(bad)} ${bad.length === 1 ? 'is' : 'are'} not a JSON object ({"file_name": "…", "text": "…"} per line)`);
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r.row)))];
  const imageField = c.image_column === 'image' || skip.has('image_column') ? 'file_name' : c.image_column;
  if (c.image_column !== 'image' && !skip.has('image_column') && !columns.includes(c.image_column)) {
    add('error', `metadata.jsonl has no \`${c.image_column}\` field (its fields: ${columns.join(', ')}); the imagefolder image column is \`image\`, made from \`file_name\``, 'image_column');
  }
  const captionKey = c.caption_column;
  const captionOk = skip.has('caption_column') || columns.includes(captionKey);
  if (!captionOk) {
    const guess = columns.find((k) => k !== 'file_name' && rows.every((r) => typeof r.row[k] === 'string'));
    report.findings.push({
      key: 'caption_column',
      severity: 'error',
      message: `metadata.jsonl has no \`${captionKey}\` field (its fields: ${columns.join(', ')})${guess ? ` — set caption_column: ${guess}` : ''}`,
      suggest: guess ? { key: 'caption_column', value: guess } : undefined,
    });
  }
  const onDisk = new Set(images.map((f) => path.relative(dir, f).split(path.sep).join('/')));
  const listed = new Set<string>();
  const missingImage: string[] = [];
  const noName: number[] = [];
  const noCaption: number[] = [];
  let examples = 0;
  let captions = 0;
  for (const { line, row } of rows) {
    const name = row[imageField];
    if (typeof name !== 'string' || !name) {
      noName.push(line);
      continue;
    }
    const rel = path.posix.normalize(name.replace(/\\/g, '/'));
    listed.add(rel);
    const captioned = isCaption(row[captionKey]);
    if (!onDisk.has(rel)) {
      missingImage.push(`${name} (line ${line})`);
      continue;
    }
    examples++;
    if (captioned) captions++;
    else if (captionOk) noCaption.push(line);
  }
  if (noName.length) add('error', `metadata.jsonl: ${lines(noName)} ${noName.length === 1 ? 'has' : 'have'} no \`${imageField}\``);
  if (missingImage.length) add('error', `metadata.jsonl names ${count(missingImage.length, 'image')} that ${missingImage.length === 1 ? 'is' : 'are'} not in the folder: ${sample(missingImage)}`);
  if (noCaption.length) add('warning', `metadata.jsonl: ${lines(noCaption)} ${noCaption.length === 1 ? 'has' : 'have'} no caption in \`${captionKey}\` (an empty caption is trained)`);
  const unlisted = [...onDisk].filter((f) => !listed.has(f));
  if (unlisted.length) add('warning', `${count(unlisted.length, 'image')} ${unlisted.length === 1 ? 'is' : 'are'} not listed in metadata.jsonl and will not be used: ${sample(unlisted)}`);
  if (rows.length === 0) add('error', 'metadata.jsonl is empty: one line {"file_name": "…", "text": "…"} per image');
  return { dir, images: images.length, captions: captionOk ? captions : 0, captionSource: 'metadata.jsonl', examples };
}

function checkTxtCaptions(dir: string, images: string[], files: string[], add: Add): DatasetSummary {
  const all = new Set(files);
  if (all.has(path.join(dir, 'metadata.csv'))) {
    add('error', 'metadata.csv is not read: convert it to metadata.jsonl (one {"file_name": "…", "text": "…"} per line)');
  }
  const missing: string[] = [];
  let captions = 0;
  for (const img of images) {
    const txt = img.slice(0, img.length - path.extname(img).length) + '.txt';
    if (all.has(txt) && fs.statSync(txt).size > 0) captions++;
    else missing.push(path.relative(dir, img));
  }
  if (captions === 0) {
    add('error', `no captions: found ${count(images.length, 'image')} but neither metadata.jsonl nor .txt caption files beside the images`);
    return { dir, images: images.length, captions: 0, captionSource: 'none', examples: 0 };
  }
  if (missing.length) add('warning', `${count(missing.length, 'image')} ${missing.length === 1 ? 'has' : 'have'} no .txt caption beside ${missing.length === 1 ? 'it' : 'them'}: ${sample(missing)}`);
  return { dir, images: images.length, captions, captionSource: '.txt files', examples: images.length };
}

function isCaption(v: unknown): boolean {
  return (typeof v === 'string' && v.trim() !== '') || (Array.isArray(v) && v.some((x) => typeof x === 'string' && x.trim() !== ''));
}

// ── output and resume ──

function checkOutput(c: RunConfig, baseDir: string, report: DiskReport, skip: ReadonlySet<string>): void {
  const out = resolveConfigPath(c.output_dir, baseDir);
  report.watched.push(out);
  const resuming = c.resume_from_checkpoint !== null && !skip.has('resume_from_checkpoint');
  if (fs.existsSync(out) && !isDir(out)) {
    report.findings.push({ key: 'output_dir', severity: 'error', message: `${out} is a file — output_dir must be a folder (it is created when missing)` });
    return;
  }
  report.checkpoints = listCheckpoints(out);
  const weights = path.join(out, LORA_FILE);
  if (!resuming && fs.existsSync(weights)) {
    const when = fs.statSync(weights).mtime.toISOString().slice(0, 16).replace('T', ' ');
    report.findings.push({
      key: 'output_dir',
      severity: 'warning',
      message: `already holds a trained LoRA (${LORA_FILE}, ${when}) that this run will overwrite — choose another output_dir or move the file`,
    });
  } else if (!resuming && report.checkpoints.length) {
    report.findings.push({
      key: 'output_dir',
      severity: 'info',
      message: `holds ${report.checkpoints.map((c) => path.basename(c.path)).join(', ')} from an earlier run: \`resume_from_checkpoint: latest\` continues it`,
    });
  }
  if (resuming) checkResume(c.resume_from_checkpoint!, baseDir, out, report);
}

/** network_weights names a safetensors file (its keys are matched against the model when the run starts). */
function checkNetworkWeights(c: RunConfig, baseDir: string, report: DiskReport, skip: ReadonlySet<string>): void {
  const file = resolveConfigPath(c.network_weights!, baseDir);
  report.watched.push(file);
  const add = (severity: Severity, message: string) => void report.findings.push({ key: 'network_weights', severity, message });
  if (!fs.existsSync(file)) return add('error', `file not found: ${file}`);
  if (isDir(file)) return add('error', `${file} is a folder — name the LoRA .safetensors file in it`);
  if (!/\.safetensors$/i.test(file)) return add('error', `${file} is not a .safetensors file (pickle files are never loaded: convert it to .safetensors)`);
  try {
    SafetensorsFile.open(file).close();
  } catch (e) {
    return add('error', (e as Error).message);
  }
  if (c.resume_from_checkpoint !== null && !skip.has('resume_from_checkpoint')) {
    add('info', 'not read when resume_from_checkpoint finds a checkpoint: the checkpoint holds the weights (and the optimizer state)');
  }
}

function checkResume(value: string, baseDir: string, outputDir: string, report: DiskReport): void {
  const add = (severity: Severity, message: string) => void report.findings.push({ key: 'resume_from_checkpoint', severity, message });
  const available = report.checkpoints.map((c) => path.basename(c.path));
  if (value === 'latest') {
    const last = report.checkpoints.at(-1);
    if (!last) return add('info', `no checkpoint in ${outputDir} yet: the run starts from step 0`);
    report.resumeFrom = last.path;
    report.facts.resumeStep = last.step;
    report.watched.push(last.path);
    return add('info', `resumes from ${path.basename(last.path)}`);
  }
  const dir = resolveCheckpoint(value, baseDir, outputDir)!;
  report.watched.push(dir);
  const choices = available.length ? ` (${outputDir} has: ${available.join(', ')})` : '';
  if (!fs.existsSync(dir)) return add('error', `checkpoint not found: ${dir} — use \`latest\` or a checkpoint-<step> folder${choices}`);
  if (!isDir(dir)) return add('error', `${dir} is a file; a checkpoint is a checkpoint-<step> folder${choices}`);
  const inside = listCheckpoints(dir);
  const step = checkpointStep(dir);
  if (step === undefined) {
    if (inside.length) return add('error', `${dir} is a run's output folder, not a checkpoint — use \`latest\` or one of ${inside.map((c) => path.basename(c.path)).join(', ')}`);
    return add('warning', `${dir} does not look like a checkpoint (a checkpoint-<step> folder written by a run)`);
  }
  if (fs.readdirSync(dir).length === 0) return add('error', `${dir} is empty: the checkpoint was not written completely — use an earlier one${choices}`);
  report.resumeFrom = dir;
  report.facts.resumeStep = step;
}

// ── helpers ──

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Files under dir (absolute paths), skipping hidden entries; bounded in depth and count. */
function walk(dir: string): string[] {
  const out: string[] = [];
  const visit = (d: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (out.length >= MAX_FILES) return;
      if (e.name.startsWith('.')) continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        if (depth < MAX_DEPTH) visit(p, depth + 1);
      } else out.push(p);
    }
  };
  visit(dir, 0);
  return out;
}

function count(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function sample(items: string[], max = 3): string {
  return items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}

function lines(ns: number[]): string {
  return `line${ns.length === 1 ? '' : 's'} ${sample(ns.map(String), 5)}`;
}

