// The Hub's part in a run: the base model by Hub id and a Hub dataset, downloaded into the Hugging Face
// cache before training (`download` events, cancelled by a stop request), and the push at the end
// (push_to_hub; a `pushed` event). A Hub failure is a TrainingError with code `hub` and what to do.
import path from 'node:path';
import type { RunConfig } from '../core/config/run_config.js';
import { HubError, type DownloadProgress } from '../core/hub/download.js';
import { resolveModel } from '../core/hub/model.js';
import { pushToHub } from '../core/hub/push.js';
import type { ErrorCode } from '../protocol/training.js';
import { openDataset, type Dataset } from './dataset.js';
import type { ControlRequests, EventSink } from './events.js';
import { openHubDataset } from './hub_dataset.js';

type Fail = (code: ErrorCode, message: string, hint?: string) => Error;

/** An AbortSignal that fires when a stop is requested (checked every 200 ms while a download runs). */
function stopSignal(req: ControlRequests): { signal: AbortSignal; done: () => void } {
  const ac = new AbortController();
  const timer = setInterval(() => req.stop && ac.abort(), 200);
  return { signal: ac.signal, done: () => clearInterval(timer) };
}

function progressTo(ev: EventSink, repoType: 'model' | 'dataset') {
  return (p: DownloadProgress) => ev.emit({ type: 'download', repo: p.repo, repoType, file: p.file, bytes: p.bytes, totalBytes: p.totalBytes, filesDone: p.filesDone, totalFiles: p.totalFiles });
}

/** The local folder of the base model: the config's folder, or the Hub model's cached snapshot. */
export async function resolveModelDir(c: RunConfig, ev: EventSink, req: ControlRequests, fail: Fail): Promise<string> {
  const id = c.pretrained_model_name_or_path;
  const stop = stopSignal(req);
  try {
    const { dir, hub: snap } = await resolveModel(id, process.cwd(), {
      revision: c.revision,
      variant: c.variant,
      cacheDir: c.cache_dir,
      token: c.hub_token,
      onProgress: progressTo(ev, 'model'),
      onNotice: (m) => ev.emit({ type: 'warning', code: 'hub_cache', message: m }),
      signal: stop.signal,
    });
    if (snap) ev.log(`model: ${id} (${snap.commit.slice(0, 10)}) from ${snap.fromCache ? 'the cache' : `the Hub, ${snap.downloaded.length} file(s) downloaded`}: ${snap.dir}`);
    return dir;
  } catch (e) {
    throw e instanceof HubError ? fail('hub', e.message, e.hint) : e;
  } finally {
    stop.done();
  }
}

/** The training examples: a Hub dataset (dataset_name) or the local folder (train_data_dir). */
export async function openRunDataset(c: RunConfig, seed: number, ev: EventSink, req: ControlRequests, fail: Fail): Promise<Dataset> {
  const common = { imageColumn: c.image_column, captionColumn: c.caption_column, maxTrainSamples: c.max_train_samples, seed };
  if (c.dataset_name === null) return openDataset(c.train_data_dir!, common);
  const stop = stopSignal(req);
  try {
    return await openHubDataset({
      ...common,
      datasetName: c.dataset_name,
      configName: c.dataset_config_name,
      cacheDir: c.cache_dir,
      token: c.hub_token,
      onProgress: progressTo(ev, 'dataset'),
      onNotice: (m) => ev.emit({ type: 'warning', code: 'hub_cache', message: m }),
      signal: stop.signal,
    });
  } catch (e) {
    throw e instanceof HubError ? fail('hub', e.message, e.hint) : e;
  } finally {
    stop.done();
  }
}

/** push_to_hub: uploads the finished run; everything stays on disk if it fails. */
export async function pushRun(c: RunConfig, ev: EventSink, fail: Fail): Promise<void> {
  ev.log(`pushing ${c.output_dir} to the Hub${c.hub_model_id ? ` (${c.hub_model_id})` : ''}…`);
  try {
    const r = await pushToHub({
      outputDir: c.output_dir,
      repoId: c.hub_model_id,
      token: c.hub_token,
      baseModel: c.pretrained_model_name_or_path,
      datasetName: c.dataset_name ?? path.basename(c.train_data_dir ?? ''),
    });
    ev.emit({ type: 'pushed', repoId: r.repoId, url: r.url, files: r.files });
    ev.log(`pushed ${r.files.length} files to ${r.url}`);
  } catch (e) {
    throw e instanceof HubError ? fail('hub', e.message, e.hint) : e;
  }
}

/** The run config as recorded in the LoRA file and checkpoints: never the token. */
export function recordableConfig(c: RunConfig): RunConfig {
  return c.hub_token === null ? c : { ...c, hub_token: '<removed>' };
}
