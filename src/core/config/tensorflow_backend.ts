// The `tensorflow` backend is a package the user installs (libtensorflow with CUDA), never bundled: whether
// it is installed is one check shared by the backend choice (src/core/engine/backend.ts) and validation
// (disk_checks.ts), so `backend: tensorflow` without it is an error in the editor, not at run time.
import { createRequire } from 'node:module';

export const TENSORFLOW_PACKAGE = '@tensorflow/tfjs-node-gpu';

/** What to do when it is missing (one sentence end, shared by the trainer's error and the editor's). */
export const TENSORFLOW_MISSING = `needs ${TENSORFLOW_PACKAGE}, which is not installed: install it (npm install ${TENSORFLOW_PACKAGE}, which downloads libtensorflow with CUDA) or choose webgpu, wasm or cpu`;

export function tensorflowInstalled(): boolean {
  try {
    // The CommonJS bundles (language server, extension) have `require`; ESM (the CLI bundle's banner, tsx) makes one.
    const req = typeof require === 'function' ? require : createRequire(import.meta.url);
    req.resolve(TENSORFLOW_PACKAGE);
    return true;
  } catch {
    return false;
  }
}
