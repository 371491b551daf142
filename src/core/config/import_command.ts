// Turns a pasted training command — `accelerate launch train_text_to_image_lora.py --… \` with its
// `export MODEL_NAME=…` lines, quotes and continuations — into the text of a commented `*.lora.yaml`.
// Settings LoRA Studio ignores become comments saying why; hub ids get a note on downloading them.
import fs from 'node:fs';
import path from 'node:path';
import { looksLikeLocalPath } from './check_entries.js';
import { convert, parseFlags } from './flags.js';
import { formatValue, GUIDE_ONLY, KEY_SPECS, RUN_CONFIG_KEYS, type KeySpec } from './schema.js';
import { parseShell, type ShellCommand } from './shell_words.js';

/** accelerate launch options, with what becomes of them. */
const LAUNCHER_NOTES: Record<string, string> = {
  mixed_precision: GUIDE_ONLY.get('mixed_precision')!.reason,
  multi_gpu: 'training runs on one device',
  num_processes: 'training runs on one device',
  num_machines: 'training runs on one device',
  gpu_ids: 'the backend picks the GPU (WebGPU: the default adapter)',
  main_process_port: 'training runs in one process',
  config_file: 'accelerate is not used',
  dynamo_backend: 'a PyTorch setting',
};
/**
 * kohya sd-scripts' train_network.py flags with a run-config key of another name (`--network_dim` is the
 * rank). A flag whose key this schema lacks stays a comment saying what became of it.
 */
const KOHYA_FLAGS: Record<string, { key: string; otherwise: (value: string) => string }> = {
  network_dim: { key: 'rank', otherwise: () => 'the rank' },
  network_alpha: { key: 'lora_alpha', otherwise: () => 'alpha equals the rank here (scale 1)' },
  optimizer_type: {
    key: 'optimizer_type',
    otherwise: (v) => (/^adamw$/i.test(v) ? 'AdamW is the optimizer here, as given' : `AdamW is used (the only optimizer here)${/8bit/i.test(v) ? '; only the LoRA weights have optimizer state, so float32 state is small' : ''}`),
  },
  network_module: { key: 'network_module', otherwise: (v) => (/networks\.lora$/.test(v) ? 'LoRA is what is trained, as given' : 'LoRA Studio trains LoRA (networks.lora)') },
};

export interface ImportOptions {
  /** The folder relative paths in the command are read against: a path that exists there is a local folder, not a Hub id. */
  baseDir?: string;
}

const LAUNCHER_SWITCHES = new Set(['multi_gpu', 'cpu', 'mps', 'use_deepspeed', 'use_fsdp', 'quiet', 'debug']);

export function importAccelerateCommand(cmd: string, options: ImportOptions = {}): string {
  const isLocal = (v: string) => looksLikeLocalPath(v) || (options.baseDir !== undefined && fs.existsSync(path.resolve(options.baseDir, v)));
  const commands = parseShell(cmd);
  const chosen = pickTrainingCommand(commands);
  const out: string[] = [
    '# LoRA Studio run config, imported from a diffusers training command.',
    "# Keys not listed keep diffusers' defaults; hover a key for its documentation. Run it with:",
    '#   lora-studio train <this file>',
  ];
  if (!chosen) {
    out.push('#', '# No training command was found in the pasted text (expected `accelerate launch train_text_to_image_lora.py --…`).');
    return out.join('\n') + '\n';
  }
  const { command, scriptIndex } = chosen;
  const notes: string[] = [];
  const script = scriptIndex >= 0 ? command.words[scriptIndex] : undefined;
  if (script && !/train_text_to_image_lora\.py$/.test(script)) {
    notes.push(`# Note: the command ran ${script}; LoRA Studio reproduces train_text_to_image_lora.py — check the settings below.`);
  }
  for (const [name, value] of Object.entries(command.env)) notes.push(`# Environment ${name}=${value} is not used.`);
  if (scriptIndex > 0) notes.push(...launcherNotes(command.words.slice(0, scriptIndex)));
  for (const v of command.unresolved) notes.push(`# TODO: $${v} is not set in the pasted text; replace it below.`);

  const parsed = parseFlags(command.words.slice(scriptIndex + 1));
  const last = new Map<string, unknown>();
  const ignored: string[] = [];
  const unknown: string[] = [];
  for (const e of parsed.entries) {
    const rawValue = parsed.raw.get(e)!;
    const kohya = KOHYA_FLAGS[e.key];
    if (kohya) {
      const spec = KEY_SPECS.get(kohya.key);
      if (spec) last.set(kohya.key, convert(spec, rawValue));
      else ignored.push(`# --${e.key}${rawValue === true ? '' : `=${rawValue}`} — kohya flag, not imported: ${kohya.otherwise(String(rawValue))}`);
      continue;
    }
    if (e.key === 'dataset_name' && typeof rawValue === 'string' && isLocal(rawValue)) last.set('train_data_dir', { fromDataset: rawValue });
    else if (e.key === 'hub_token') ignored.push('# hub_token: <removed> — not imported: set HF_TOKEN or run `huggingface-cli login` (a token in a config file is easily shared)');
    else if (KEY_SPECS.has(e.key)) last.set(e.key, e.value);
    else if (GUIDE_ONLY.has(e.key)) ignored.push(`# ${e.key}${rawValue === true ? '' : `: ${e.key === 'hub_token' ? '<removed>' : rawValue}`} — ignored: ${GUIDE_ONLY.get(e.key)!.reason}`);
    else unknown.push(`# --${e.key}${rawValue === true ? '' : `=${rawValue}`} — unknown flag, not imported`);
  }
  for (const p of parsed.positionals) unknown.push(`# ${p} — unexpected argument, not imported`);
  if (notes.length) out.push('#', ...notes);

  let group = '';
  const needsData = !last.has('train_data_dir') && !last.has('dataset_name');
  for (const spec of RUN_CONFIG_KEYS) {
    if (!last.has(spec.key) && !spec.required && !(spec.key === 'train_data_dir' && needsData)) continue;
    if (spec.group !== group) {
      group = spec.group;
      out.push('', `# ── ${group} ──`);
    }
    out.push(...keyLines(spec, last.get(spec.key), last.has(spec.key)));
  }
  if (ignored.length || unknown.length) out.push('', '# ── from the command, not used by LoRA Studio ──', ...ignored, ...unknown);
  return out.join('\n') + '\n';
}

function keyLines(spec: KeySpec, value: unknown, given: boolean): string[] {
  const comment = `  # ${spec.summary}`;
  if (spec.key === 'train_data_dir' && value && typeof value === 'object' && 'fromDataset' in value) {
    return [`train_data_dir: ${formatValue((value as { fromDataset: string }).fromDataset)}  # was --dataset_name`];
  }
  if (!given) return [`# TODO: ${spec.summary}`, `${spec.key}: ${spec.placeholder ?? formatValue(spec.default)}`];
  const text = formatValue(value);
  return [`${spec.key}: ${text}${comment}`];
}

function launcherNotes(words: string[]): string[] {
  const notes: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (!w.startsWith('-')) continue;
    const eq = w.indexOf('=');
    const name = (eq < 0 ? w : w.slice(0, eq)).replace(/^-+/, '').replace(/-/g, '_');
    let value = eq < 0 ? undefined : w.slice(eq + 1);
    if (value === undefined && !LAUNCHER_SWITCHES.has(name) && i + 1 < words.length && !words[i + 1].startsWith('-')) value = words[++i];
    const why = LAUNCHER_NOTES[name] ?? 'an accelerate option with no equivalent here';
    notes.push(`# accelerate ${w.startsWith('--') ? '--' : '-'}${name}${value !== undefined ? `=${value}` : ''} — ignored: ${why}.`);
  }
  return notes;
}

/** The command that runs a training script (a *.py word), else the first made only of --flags. */
function pickTrainingCommand(commands: ShellCommand[]): { command: ShellCommand; scriptIndex: number } | undefined {
  for (const command of commands) {
    const scriptIndex = command.words.findIndex((w) => /\.py$/.test(w));
    if (scriptIndex >= 0 && command.words.slice(scriptIndex + 1).some((w) => w.startsWith('--'))) return { command, scriptIndex };
  }
  for (const command of commands) {
    if (command.words[0]?.startsWith('--')) return { command, scriptIndex: -1 };
  }
  return undefined;
}
