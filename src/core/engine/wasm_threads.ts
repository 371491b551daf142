// tfjs-wasm's threaded build (XNNPACK on a pthreadpool) in Node, opt-in with LORA_STUDIO_WASM_THREADS=N.
// tfjs switches it off in Node (tensorflow/tfjs#3830): its loader hands Emscripten the pthread worker
// script and the main script as blob: URLs, which Node's worker_threads cannot start. Here the 'wasm'
// backend is registered again with the same module factory given files instead: the worker script
// (tfjs ships it as a string, wasm-out/*.worker.js) written once to the temporary folder, the main
// script by its path. The module also sizes its pool as logical cores / 2 (it assumes two hyperthreads
// a core) and never above that, so on a 2-core machine it would run one thread whatever it is asked;
// while the module starts, os.cpus() reports each core twice so the cap is the core count.
// Measured (issue 16, one tiny-shapes image, 10 steps, 2 cores at load ~20): the same image byte for byte,
// and the process exits; but 83.8 s wall against 18.4 s single-threaded — the pool's threads spin and
// wait for cores the machine does not have free. Its figure on a quiet machine is unmeasured: off by default.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';

const require = createRequire(import.meta.url);

/** XNNPACK threads asked for by LORA_STUDIO_WASM_THREADS (undefined: tfjs' single-threaded SIMD build). */
export function wasmThreadsWanted(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env.LORA_STUDIO_WASM_THREADS;
  if (v === undefined || v === '' || v === '1') return undefined;
  const n = v === 'auto' ? os.cpus().length : Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 8) throw new Error(`LORA_STUDIO_WASM_THREADS must be an integer from 1 to 8 or "auto", got "${v}"`);
  return n > 1 ? n : undefined;
}

interface WasmModule {
  cwrap(name: string, ret: string | null, args: string[]): (...a: number[]) => number;
  tfjs?: Record<string, (...a: number[]) => number>;
}

/** Registers the 'wasm' backend on the threaded build with `threads` XNNPACK threads (call before tf.setBackend('wasm')). */
export function registerThreadedWasm(threads: number): void {
  const wasm = require('@tensorflow/tfjs-backend-wasm') as { BackendWasm: new (m: WasmModule) => tf.KernelBackend; setThreadsCount(n: number): void };
  const out = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'wasm-out');
  const mainScript = path.join(out, 'tfjs-backend-wasm-threaded-simd.js');
  const factory = require(mainScript) as (config: Record<string, unknown>) => Promise<WasmModule>;
  // tfjs escapes the script's newlines the same way before making its blob.
  const contents = (require(path.join(out, 'tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string }).wasmWorkerContents.replace(/\n/g, '\\n');
  const workerScript = path.join(os.tmpdir(), `lora-studio-tfjs-wasm-${createHash('sha256').update(contents).digest('hex').slice(0, 12)}.worker.js`);
  tf.removeBackend('wasm');
  tf.registerBackend(
    'wasm',
    async () => {
      if (!fs.existsSync(workerScript)) {
        const tmp = `${workerScript}.${process.pid}`;
        fs.writeFileSync(tmp, contents);
        fs.renameSync(tmp, workerScript);
      }
      const cpus = os.cpus;
      os.cpus = () => [...cpus(), ...cpus()];
      let module: WasmModule;
      try {
        module = await factory({ locateFile: (file: string) => (file.endsWith('.worker.js') ? workerScript : path.join(out, file)), mainScriptUrlOrBlob: mainScript });
      } finally {
        os.cpus = cpus;
      }
      // As tfjs' own loader wraps it (tf-backend-wasm's init()).
      module.tfjs = {
        init: module.cwrap('init', null, []),
        initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
        getThreadsCount: module.cwrap('get_threads_count', 'number', []),
        registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
        disposeData: module.cwrap('dispose_data', null, ['number']),
        dispose: module.cwrap('dispose', null, []),
      };
      wasm.setThreadsCount(threads);
      return new wasm.BackendWasm(module);
    },
    2,
  );
}
