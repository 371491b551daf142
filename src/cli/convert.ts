// `lora-studio convert IN OUT --to diffusers|kohya|peft [--precision fp32|fp16|bf16] [--model M]`: a LoRA file in another layout.
import path from 'node:path';
import { SAVE_PRECISIONS, type SavePrecision } from '../core/config/run_config.js';
import { loadRunConfig } from '../core/config/load.js';
import { convertLoraFile, modelLoraLayout } from '../core/lora/convert.js';
import { LORA_LAYOUTS, type LoraLayout } from '../core/lora/lora_writer.js';
import { resolveModel } from '../core/hub/model.js';
import { HubError } from '../core/hub/download.js';
import { DownloadBar } from './terminal.js';

const USAGE = `usage: lora-studio convert IN.safetensors OUT.safetensors --to ${LORA_LAYOUTS.join('|')} [--precision ${SAVE_PRECISIONS.join('|')}] [--model DIR|FILE|ORG/NAME|RUN.lora.yaml]

  --to diffusers   unet.<module>.lora.down/up.weight (what diffusers' load_lora_weights and save_lora_weights use)
  --to kohya       lora_unet_<module>.lora_down/up.weight + .alpha (ComfyUI, A1111, Forge, sd-scripts)
  --to peft        <component>.<module>.lora_A/lora_B.weight, rank and alpha in the header
  --precision      the dtype of every tensor written (default fp32; fp16 and bf16 files are half the size)
  --model          the base model the LoRA is for: a diffusers folder, a single-file checkpoint, a Hub id, or a
                   run config (its pretrained_model_name_or_path). Needed to turn SGM/LDM block names (SDXL kohya
                   files, ComfyUI's diffusion_model.) into diffusers names; with an SDXL model --to kohya writes
                   SGM names, as sd-scripts does. Only the UNet's config is read.
  --model-config   for a single-file --model: a diffusers folder of its architecture (default: the bundled one)

Reads diffusers, PEFT, kohya (diffusers or SGM block names) and ComfyUI files, LoCon and DoRA included.`;

const VALUED = ['--to', '--precision', '--model', '--model-config'] as const;

function option(argv: string[], name: string): string | undefined {
  const i = argv.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return undefined;
  return argv[i].includes('=') ? argv[i].slice(name.length + 1) : argv[i + 1];
}

/** `--model` as a local path (a Hub id downloaded into the cache first; a run config's model and its cache). */
async function modelPath(model: string, quiet: boolean): Promise<{ dir: string; config?: string }> {
  let name = model;
  let config: string | undefined;
  let o: { revision?: string | null; cacheDir?: string | null } = {};
  if (/\.ya?ml$/i.test(model)) {
    const loaded = loadRunConfig(model, { disk: false });
    if (!loaded.config) throw new Error(`${loaded.file}: ${loaded.problems.filter((p) => p.severity === 'error').map((p) => p.message).join('; ')}`);
    const c = loaded.config;
    name = c.pretrained_model_name_or_path;
    config = c.pretrained_model_config ?? undefined;
    o = { revision: c.revision, cacheDir: c.cache_dir };
  }
  const download = new DownloadBar(process.stderr, quiet, (line) => console.error(line));
  const dir = (await resolveModel(name, process.cwd(), { ...o, onProgress: (p) => download.update(p), onNotice: (m) => console.error(`warning: ${m}`) })).dir;
  return { dir, ...(config ? { config } : {}) };
}

export async function runConvertCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help')) {
    console.log(USAGE);
    return 0;
  }
  const to = option(argv, '--to');
  const precision = option(argv, '--precision') ?? 'fp32';
  const model = option(argv, '--model');
  const modelConfig = option(argv, '--model-config');
  const valueOf = new Set(VALUED.map((f) => argv.indexOf(f) + 1).filter((i) => i > 0));
  const files = argv.filter((a, i) => !a.startsWith('-') && !valueOf.has(i));
  const bad = (message: string) => {
    console.error(`lora-studio convert: ${message}\n\n${USAGE}`);
    return 2;
  };
  if (files.length !== 2) return bad(`expected an input and an output file, got ${files.length} file name(s)`);
  if (!to) return bad('--to is required');
  if (!(LORA_LAYOUTS as readonly string[]).includes(to)) return bad(`--to must be ${LORA_LAYOUTS.join(', ')}; got "${to}"`);
  if (!(SAVE_PRECISIONS as readonly string[]).includes(precision)) return bad(`--precision must be ${SAVE_PRECISIONS.join(', ')}; got "${precision}"`);
  if (model === '' || (argv.includes('--model') && model === undefined)) return bad('--model needs a value: a diffusers folder, a single-file checkpoint, a Hub id or a run config');
  if (modelConfig !== undefined && model === undefined) return bad('--model-config describes a single-file --model: give --model too');
  const [input, output] = files;
  if (!output.endsWith('.safetensors')) return bad(`the output file must end in .safetensors, got "${output}"`);
  let layout;
  if (model !== undefined) {
    let where: { dir: string; config?: string };
    try {
      where = await modelPath(model, argv.includes('--quiet'));
    } catch (e) {
      if (!(e instanceof HubError)) throw e;
      console.error(`lora-studio convert: ${e.message}`);
      return 1;
    }
    const config = modelConfig !== undefined ? path.resolve(modelConfig) : where.config;
    layout = modelLoraLayout(where.dir, config ? { config } : {});
  }
  const r = convertLoraFile(input, output, to as LoraLayout, precision as SavePrecision, layout);
  console.log(`wrote ${output}: ${r.modules} modules, ${r.from} → ${to}, ${precision}`);
  return 0;
}
