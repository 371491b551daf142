// How the status bar and the dashboard write durations and losses: the pure helpers the webview bundle
// may import as values (everything else it takes from src/protocol is types only).

/** "1:05:03", "4:09", "0:07" — compact and stable width, for ETAs and elapsed times; `unknown` when not a time. */
export function formatDuration(seconds: number, unknown = '–'): string {
  if (!Number.isFinite(seconds) || seconds < 0) return unknown;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** Loss values span 1e-4..10: four significant digits read well everywhere. */
export function formatLoss(loss: number): string {
  if (!Number.isFinite(loss)) return String(loss);
  return loss === 0 ? '0' : Math.abs(loss) >= 1e-3 ? loss.toFixed(4) : loss.toExponential(2);
}

/** "epoch 3 / 10" (epochs count from 0, as diffusers' loop does; the total is the run's epoch count). */
export function formatEpoch(epoch: number, numEpochs?: number): string {
  const e = Number.isInteger(epoch) ? String(epoch) : epoch.toFixed(2);
  return numEpochs ? `${e} / ${numEpochs}` : e;
}

/**
 * Throughput both ways: samples/s (diffusers) and seconds per optimizer step (kohya's tqdm "s/it"), one
 * step being `batchSize × gradientAccumulationSteps` samples.
 */
export function formatThroughput(samplesPerSecond: number, samplesPerStep?: number): { samplesPerSecond: string; secondsPerStep?: string } {
  const sps = samplesPerSecond.toFixed(2);
  if (!samplesPerStep || !(samplesPerSecond > 0)) return { samplesPerSecond: sps };
  const spi = samplesPerStep / samplesPerSecond;
  return { samplesPerSecond: sps, secondsPerStep: spi >= 100 ? spi.toFixed(0) : spi >= 10 ? spi.toFixed(1) : spi.toFixed(2) };
}

/** "1.2 GiB", "640 MiB" */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 || v >= 100 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

/** "webgpu · llvmpipe (software renderer)", "wasm (CPU)": where the run computes, as the dashboard and log say it. */
export function formatDevice(started: { backend: string; adapter?: string; softwareAdapter?: boolean }): string {
  const where = started.adapter ? `${started.backend} · ${started.adapter}` : started.backend;
  if (started.softwareAdapter) return `${where} (software renderer)`;
  return started.backend === 'wasm' || started.backend === 'cpu' ? `${where} (CPU)` : where;
}

/** What the trainer is doing, for a status bar: "validating", "saving a checkpoint". */
export function formatPhase(phase: string, detail?: string): string {
  const word = phase === 'saving' ? 'saving a checkpoint' : phase === 'caching' ? 'caching latents' : phase;
  return detail ? `${word} (${detail})` : word;
}

/** The one warning for a run on a software adapter. */
export const SOFTWARE_ADAPTER_WARNING =
  'WebGPU is running on a software renderer (no GPU driver found), which is slower than the CPU: set `backend: wasm` (or `auto`, which skips software adapters), or install your GPU’s Vulkan/Metal/D3D12 driver.';
