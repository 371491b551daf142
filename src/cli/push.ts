// `lora-studio push OUTPUT_DIR [--hub_model_id=org/name] [--hub_token=…]`: uploads a finished run to the
// Hub as push_to_hub does at the end of training (core/hub/push.ts) — the retry when that upload failed.
// The model card's base model and dataset come from the run config recorded in the LoRA file.
import path from 'node:path';
import { SafetensorsFile } from '../core/io/safetensors.js';
import { LORA_FILE } from '../core/config/run_folder.js';
import { HubError } from '../core/hub/download.js';
import { pushToHub } from '../core/hub/push.js';

const HELP = `usage: lora-studio push OUTPUT_DIR [--hub_model_id=NAME|ORG/NAME] [--hub_token=TOKEN]

Uploads a finished run (${LORA_FILE}, a README.md model card as diffusers writes it, the final validation
images, metrics.jsonl, samples/) to the Hugging Face Hub, creating the repository if needed. The repository is
--hub_model_id, else the one the run was configured with, else the folder's name in your namespace. The token
is --hub_token, else $HF_TOKEN, else the one \`huggingface-cli login\` saved. HF_ENDPOINT points to another Hub.`;

export async function runPushCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(HELP);
    return 0;
  }
  const flags = new Map<string, string>();
  const dirs: string[] = [];
  for (const a of argv) {
    const m = /^--(hub_model_id|hub_token)=(.+)$/.exec(a);
    if (m) flags.set(m[1], m[2]);
    else if (a.startsWith('-')) {
      console.error(`lora-studio push: unknown option ${a}\n\n${HELP}`);
      return 2;
    } else dirs.push(a);
  }
  if (dirs.length !== 1) {
    console.error(HELP);
    return 2;
  }
  const outputDir = path.resolve(dirs[0]);
  const recorded = recordedRunConfig(path.join(outputDir, LORA_FILE));
  try {
    const r = await pushToHub({
      outputDir,
      repoId: flags.get('hub_model_id') ?? recorded.hub_model_id ?? null,
      token: flags.get('hub_token') ?? null,
      baseModel: recorded.pretrained_model_name_or_path ?? 'unknown',
      datasetName: recorded.dataset_name ?? path.basename(recorded.train_data_dir ?? 'unknown'),
    });
    console.error(`pushed ${r.files.length} files to ${r.url} (${r.commit.slice(0, 10)}):\n  ${r.files.join('\n  ')}`);
    return 0;
  } catch (e) {
    if (!(e instanceof HubError)) throw e;
    console.error(`lora-studio push: ${e.message}`);
    return 1;
  }
}

/** The run config the trainer recorded in the LoRA's metadata (empty when the file has none). */
function recordedRunConfig(file: string): { pretrained_model_name_or_path?: string; dataset_name?: string | null; train_data_dir?: string | null; hub_model_id?: string | null } {
  try {
    const f = SafetensorsFile.open(file);
    try {
      return JSON.parse(f.metadata['lora_studio.run_config'] ?? '{}');
    } finally {
      f.close();
    }
  } catch {
    return {};
  }
}
