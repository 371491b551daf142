// How the notebook tests start the real inference worker: from TypeScript source through tsx, on the
// suite's backend (LORA_STUDIO_BACKEND, default wasm here: the cpu backend makes these tests slow).
import path from 'node:path';
import { REPO } from '../helpers/fixtures.js';
import { WorkerClient } from '../../src/extension/notebook/worker_client.js';

export const WORKER_BACKEND = process.env.LORA_STUDIO_BACKEND ?? 'wasm';

export function startTestWorker(): WorkerClient {
  return new WorkerClient({
    launch: { nodePath: process.execPath, nodeArgs: ['--import', 'tsx'], trainerPath: path.join(REPO, 'test/notebook/worker_entry.ts') },
    backend: WORKER_BACKEND,
    cwd: REPO,
  });
}
