// Counts what reaches the device while `fn` runs: compute dispatches, copies and queue submits, whoever
// makes them (tfjs' eager kernels, ours, a plan's replay). The benchmark's dispatches/step and submits/step.
import { webgpuBackend } from '../dispatch.js';

export interface CommandCounts {
  dispatches: number;
  copies: number;
  submits: number;
}

export async function countCommands<T>(fn: () => Promise<T>): Promise<{ result: T; counts: CommandCounts }> {
  const device = webgpuBackend().device;
  const counts: CommandCounts = { dispatches: 0, copies: 0, submits: 0 };
  const origEncoder = device.createCommandEncoder;
  const queue = device.queue;
  const origSubmit = queue.submit;
  const dev = device as unknown as Record<string, unknown>;
  const q = queue as unknown as Record<string, unknown>;
  dev.createCommandEncoder = (desc?: GPUCommandEncoderDescriptor) => {
    const enc = origEncoder.call(device, desc);
    const e = enc as unknown as Record<string, unknown>;
    const begin = enc.beginComputePass;
    const copy = enc.copyBufferToBuffer;
    e.beginComputePass = (d?: GPUComputePassDescriptor) => {
      const pass = begin.call(enc, d);
      const dispatch = pass.dispatchWorkgroups;
      (pass as unknown as Record<string, unknown>).dispatchWorkgroups = (x: number, y?: number, z?: number) => {
        counts.dispatches++;
        dispatch.call(pass, x, y, z);
      };
      return pass;
    };
    e.copyBufferToBuffer = (...args: Parameters<GPUCommandEncoder['copyBufferToBuffer']>) => {
      counts.copies++;
      return (copy as (...a: unknown[]) => void).apply(enc, args);
    };
    return enc;
  };
  q.submit = (cbs: Iterable<GPUCommandBuffer>) => {
    counts.submits++;
    origSubmit.call(queue, cbs);
  };
  try {
    return { result: await fn(), counts };
  } finally {
    delete dev.createCommandEncoder;
    delete q.submit;
  }
}
