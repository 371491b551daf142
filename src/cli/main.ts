// `lora-studio <command>`: the engine's command line. The VS Code extension runs the same program as a
// child process, so everything the editor can do can be scripted, run over SSH or on a remote machine.
import { runConvertCommand } from './convert.js';
import { runGenerateCommand } from './generate.js';
import { runInspectCommand } from './inspect.js';
import { runPushCommand } from './push.js';
import { runTrainCommand } from './train.js';
import { runWorkerCommand } from './worker.js';
import { INFERENCE_SCHEDULERS } from '../core/config/generation.js';
import { LORA_STUDIO_VERSION } from '../core/config/version.js';

const USAGE = `usage: lora-studio <command> [options]

commands:
  train CONFIG.lora.yaml | --pretrained_model_name_or_path=… [guide flags]
                          train a LoRA (diffusers' train_text_to_image_lora.py workflow)
  generate --model DIR --prompt "…"… [--seed S]… [--lora FILE[:SCALE]]… [--lora-scale S]…
           [--scheduler ${INFERENCE_SCHEDULERS.join('|')}] [--steps N] [--guidance G]
           [--width W --height H] [--latents FILE.safetensors] [--backend B] --out FILE.png [--grid FILE.png]
                          generate images (several prompts, seeds, LoRA scales: the model loaded once)
  inspect FILE.safetensors
                          say what a safetensors file is (model component or LoRA, format, rank, …)
                          and, for a LoRA, which tools load it (diffusers, ComfyUI, A1111, sd-scripts) and why not
  convert IN.safetensors OUT.safetensors --to diffusers|kohya|peft [--precision fp32|fp16|bf16]
                          rewrite a LoRA file in another layout
  push OUTPUT_DIR [--hub_model_id=ORG/NAME]
                          upload a finished run and its model card to the Hugging Face Hub
  worker [--backend B]    long-lived inference worker for the notebook (JSON lines on stdin/stdout)

Run \`lora-studio <command> --help\` for a command's options; \`lora-studio --version\` for the version.
train and generate take --quiet (no progress bar) and --json (JSON lines on stdout). Colours only on a
terminal and never with NO_COLOR set.

Exit status: 0 success, 1 the work failed (error printed), 2 a bad command line or run config.`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'train':
      return runTrainCommand(rest);
    case 'generate':
      return runGenerateCommand(rest);
    case 'inspect':
      return runInspectCommand(rest);
    case 'convert':
      return runConvertCommand(rest);
    case 'push':
      return runPushCommand(rest);
    case 'worker':
      return runWorkerCommand(rest);
    case '--version':
    case '-v':
      console.log(LORA_STUDIO_VERSION);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return command === undefined ? 1 : 0;
    default:
      console.error(`lora-studio: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(`lora-studio: ${e instanceof Error ? e.message : String(e)}`);
    if (process.env.LORA_STUDIO_DEBUG && e instanceof Error) console.error(e.stack);
    process.exitCode = 1;
  },
);
