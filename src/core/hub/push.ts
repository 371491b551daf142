// Pushing a finished run to the Hub, as the guide's `--push_to_hub` does at the end of training:
// create the repository if needed (`hub_model_id`, else the output folder's name, in the token owner's
// namespace when it has no `org/`), write the model card and its images into output_dir, and upload in one
// commit ("End of training") the LoRA files, the card, its images, metrics.jsonl and samples/ — not the
// checkpoint-<step>/ folders (resumable training state, large). Everything stays on disk: a failed push is
// retried with `lora-studio push OUTPUT_DIR`.
import fs from 'node:fs';
import path from 'node:path';
import { commit, createRepo, HubApiError, whoAmI, type CommitFile } from '@huggingface/hub';
import { hubEndpoint, hubRepoUrl, hubToken } from '../config/hub_cache.js';
import { FINAL_SAMPLES, LORA_FILE, SAMPLES_DIR, writeFileAtomic } from '../config/run_folder.js';
import { HubError } from './download.js';
import { cardImageName, modelCard } from './model_card.js';

export const MODEL_CARD_FILE = 'README.md';
export const PUSH_COMMIT_TITLE = 'End of training';

export interface PushOptions {
  outputDir: string;
  /** hub_model_id; else the output folder's name. */
  repoId?: string | null;
  token?: string | null;
  /** For the model card. */
  baseModel: string;
  datasetName: string;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

export interface PushResult {
  repoId: string;
  url: string;
  commit: string;
  files: string[];
}

/** The command that retries a push, for messages. */
export const retryPushCommand = (outputDir: string) => `lora-studio push ${JSON.stringify(outputDir)}`;

export async function pushToHub(o: PushOptions): Promise<PushResult> {
  const env = o.env ?? process.env;
  const retry = `everything is kept in ${o.outputDir}; retry with \`${retryPushCommand(o.outputDir)}\``;
  const token = hubToken(o.token, env);
  if (!token) {
    throw new HubError('unauthorized', 'push_to_hub needs a Hugging Face token with write access, and none was found', `create one at https://huggingface.co/settings/tokens, set HF_TOKEN (or run \`huggingface-cli login\`); ${retry}`);
  }
  if (!fs.existsSync(path.join(o.outputDir, LORA_FILE))) {
    throw new HubError('not_found', `${o.outputDir} holds no ${LORA_FILE}`, 'push the output_dir of a finished run');
  }
  const hubUrl = hubEndpoint(env);
  const signalled: typeof fetch = (input, init) => fetch(input, { ...init, signal: o.signal });
  const common = { hubUrl, accessToken: token.token, fetch: signalled };
  let repoId = o.repoId || path.basename(path.resolve(o.outputDir));
  try {
    if (!repoId.includes('/')) repoId = `${(await whoAmI(common)).name}/${repoId}`;
    try {
      await createRepo({ ...common, repo: { type: 'model', name: repoId } });
    } catch (e) {
      if (!(e instanceof HubApiError && e.statusCode === 409)) throw e; // 409: it exists (exist_ok=True)
    }
    const files = prepareUpload(o.outputDir, repoId, o.baseModel, o.datasetName);
    const operations: CommitFile[] = files.map((rel) => ({ operation: 'addOrUpdate', path: rel, content: new Blob([fs.readFileSync(path.join(o.outputDir, ...rel.split('/')))]) }));
    const result = await commit({ ...common, repo: { type: 'model', name: repoId }, title: PUSH_COMMIT_TITLE, operations, useXet: false });
    return { repoId, url: hubRepoUrl('model', repoId, env), commit: result?.commit.oid ?? '', files };
  } catch (e) {
    if (e instanceof HubError) throw e;
    if (e instanceof HubApiError) {
      const why = e.statusCode === 401 || e.statusCode === 403 ? `the token from ${token.source} may not write to ${repoId}` : e.message;
      throw new HubError(e.statusCode === 401 ? 'unauthorized' : e.statusCode === 403 ? 'forbidden' : 'hub', `pushing to ${hubRepoUrl('model', repoId, env)} failed (${e.statusCode}: ${why})`, retry);
    }
    throw new HubError('network', `pushing to ${hubUrl} failed (${(e as Error).message})`, retry);
  }
}

/** Writes README.md and image_<i>.png into output_dir and lists the files to upload (repo paths). */
export function prepareUpload(outputDir: string, repoId: string, baseModel: string, datasetName: string): string[] {
  const samples = path.join(outputDir, SAMPLES_DIR);
  const finals = fs.existsSync(samples)
    ? fs.readdirSync(samples).filter((f) => new RegExp(`^${FINAL_SAMPLES}-(\\d+)\\.png$`).test(f)).sort((a, b) => Number(/(\d+)\.png$/.exec(a)![1]) - Number(/(\d+)\.png$/.exec(b)![1]))
    : [];
  finals.forEach((f, i) => fs.copyFileSync(path.join(samples, f), path.join(outputDir, cardImageName(i))));
  writeFileAtomic(path.join(outputDir, MODEL_CARD_FILE), modelCard({ repoId, baseModel, datasetName, images: finals.length }));
  const top = fs.readdirSync(outputDir, { withFileTypes: true }).filter((e) => e.isFile() && !e.name.startsWith('.')).map((e) => e.name);
  const sampleFiles = fs.existsSync(samples) ? fs.readdirSync(samples).filter((f) => f.endsWith('.png')).map((f) => `${SAMPLES_DIR}/${f}`) : [];
  return [...top.sort(), ...sampleFiles.sort()];
}
