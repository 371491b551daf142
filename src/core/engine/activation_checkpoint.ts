// Activation checkpointing: run a block's forward without keeping its intermediate activations, and
// recompute them in the backward pass. Backend-independent (it lives here because it came with the GPU
// memory work; nothing in it is WebGPU-specific).
//
// How: tf.customGrad runs `fn` as one node of the tape (ops inside a custom gradient are not recorded),
// saving only the block's inputs. Its gradient re-runs `fn` under a nested tf.grads. tfjs 4.22 crashes on
// that nesting ("activeTape is null"): the inner tf.grads, seeing gradient depth 0 during the outer
// backward pass, replaces the engine's active tape with its own and sets it to null when done, and the
// outer backward then reads the null tape. Saving and restoring `engine.state.activeTape` around the inner
// call is all it takes — the inner pass disposes what it saved itself.
//
// Only the tensors passed as arguments get gradients. Everything `fn` closes over is a constant to the
// checkpoint: pass trainable tensors used inside (LoRA down/up weights) as arguments.
import * as tf from '@tensorflow/tfjs';
import type { LoraAdapter, LoraLookup } from './ops.js';

interface EngineState {
  activeTape: unknown;
}

/** Wraps `fn` so that calling it keeps only its inputs for the backward pass (which recomputes `fn`). */
export function checkpoint<T extends tf.Tensor>(fn: (...inputs: tf.Tensor[]) => T): (...inputs: tf.Tensor[]) => T {
  const wrapped = tf.customGrad(((...args: unknown[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const inputs = args as tf.Tensor[];
    save(inputs);
    return {
      value: fn(...inputs),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const state = (tf.engine() as unknown as { state: EngineState }).state;
        const outerTape = state.activeTape;
        try {
          return tf.grads((...xs: tf.Tensor[]) => fn(...xs))(saved, dy);
        } finally {
          state.activeTape = outerTape;
        }
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (...inputs: tf.Tensor[]) => tf.Tensor;
  return (...inputs: tf.Tensor[]) => wrapped(...inputs) as T;
}

/**
 * Checkpoints a block that reads LoRA adapters through a lookup: the adapters of `paths` (the block's
 * LoRA targets) become explicit inputs, so they get gradients, and the block sees them through a lookup
 * of the same shape. Use: `y = checkpointWithLora((h, l) => blk.forward(h, temb, enc, l), lora, paths)(x)`.
 * Other inputs `fn` closes over (time embedding, text states) are constants: fine while they do not
 * depend on trained tensors (in LoRA-on-UNet training they do not).
 */
export function checkpointWithLora<T extends tf.Tensor>(
  fn: (x: tf.Tensor, lora: LoraLookup) => T,
  lora: LoraLookup,
  paths: readonly string[],
): (x: tf.Tensor) => T {
  const slots: { path: string; index: number; scale: number }[] = [];
  const tensors: tf.Tensor[] = [];
  for (const path of paths) {
    lora(path).forEach((a, index) => {
      slots.push({ path, index, scale: a.scale });
      tensors.push(a.down, a.up);
    });
  }
  const run = checkpoint((x: tf.Tensor, ...ab: tf.Tensor[]) => {
    const byPath = new Map<string, LoraAdapter[]>();
    slots.forEach((s, i) => {
      const list = byPath.get(s.path) ?? [];
      list[s.index] = { down: ab[2 * i] as tf.Tensor2D, up: ab[2 * i + 1] as tf.Tensor2D, scale: s.scale };
      byPath.set(s.path, list);
    });
    return fn(x, (p) => byPath.get(p) ?? lora(p));
  });
  return (x: tf.Tensor) => run(x, ...tensors);
}
