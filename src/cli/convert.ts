// `lora-studio convert IN OUT --to diffusers|kohya|peft [--precision fp32|fp16|bf16]`: a LoRA file in another layout.
import { SAVE_PRECISIONS, type SavePrecision } from '../core/config/run_config.js';
import { convertLoraFile } from '../core/lora/convert.js';
import { LORA_LAYOUTS, type LoraLayout } from '../core/lora/lora_writer.js';

const USAGE = `usage: lora-studio convert IN.safetensors OUT.safetensors --to ${LORA_LAYOUTS.join('|')} [--precision ${SAVE_PRECISIONS.join('|')}]

  --to diffusers   unet.<module>.lora.down/up.weight (what diffusers' load_lora_weights and save_lora_weights use)
  --to kohya       lora_unet_<module>.lora_down/up.weight + .alpha (ComfyUI, A1111, Forge, sd-scripts)
  --to peft        <component>.<module>.lora_A/lora_B.weight, rank and alpha in the header
  --precision      the dtype of every tensor written (default fp32; fp16 and bf16 files are half the size)

Reads diffusers, PEFT, kohya (diffusers or SGM block names) and ComfyUI files, LoCon and DoRA included.`;

function option(argv: string[], name: string): string | undefined {
  const i = argv.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return undefined;
  return argv[i].includes('=') ? argv[i].slice(name.length + 1) : argv[i + 1];
}

export async function runConvertCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help')) {
    console.log(USAGE);
    return 0;
  }
  const to = option(argv, '--to');
  const precision = option(argv, '--precision') ?? 'fp32';
  const valueOf = new Set([argv.indexOf('--to') + 1, argv.indexOf('--precision') + 1].filter((i) => i > 0));
  const files = argv.filter((a, i) => !a.startsWith('-') && !valueOf.has(i));
  const bad = (message: string) => {
    console.error(`lora-studio convert: ${message}\n\n${USAGE}`);
    return 2;
  };
  if (files.length !== 2) return bad(`expected an input and an output file, got ${files.length} file name(s)`);
  if (!to) return bad('--to is required');
  if (!(LORA_LAYOUTS as readonly string[]).includes(to)) return bad(`--to must be ${LORA_LAYOUTS.join(', ')}; got "${to}"`);
  if (!(SAVE_PRECISIONS as readonly string[]).includes(precision)) return bad(`--precision must be ${SAVE_PRECISIONS.join(', ')}; got "${precision}"`);
  const [input, output] = files;
  if (!output.endsWith('.safetensors')) return bad(`the output file must end in .safetensors, got "${output}"`);
  const r = convertLoraFile(input, output, to as LoraLayout, precision as SavePrecision);
  console.log(`wrote ${output}: ${r.modules} modules, ${r.from} → ${to}, ${precision}`);
  return 0;
}
