// Activation checkpointing (torch.utils.checkpoint, which diffusers' `gradient_checkpointing` uses): run a
// block's forward without keeping its intermediate activations, and recompute them in the backward pass.
// Backend-independent. The UNet's blocks use it per resnet and per transformer (unet_2d_blocks.ts) when
// `gradient_checkpointing` is on; the planned step (training/planned_step.ts) records the recomputation
// like any other backward dispatch, so its memory plan frees a block's activations after the block.
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

/** Whether a gradient is being recorded (inside tf.grads / valueAndGrads): when checkpointing means anything. */
export function gradientTapeActive(): boolean {
  return (tf.engine() as unknown as { state: EngineState }).state.activeTape != null;
}

/**
 * Checkpoints a block that reads LoRA adapters through a lookup: the adapters of `paths` (the block's
 * LoRA targets) become explicit inputs, so they get gradients, and the block sees them through a lookup
 * of the same shape. Use: `y = checkpointWithLora((h, l, t, e) => blk.forward(h, t, e, l), lora, paths)(x, temb, enc)`.
 * Tensors passed after `x` (time embedding, text states) are inputs too and get gradients (a text-encoder
 * LoRA needs them); anything else `fn` closes over is a constant to the checkpoint.
 */
export function checkpointWithLora<T extends tf.Tensor>(
  fn: (x: tf.Tensor, lora: LoraLookup, ...rest: tf.Tensor[]) => T,
  lora: LoraLookup,
  paths: readonly string[],
): (x: tf.Tensor, ...rest: tf.Tensor[]) => T {
  // Each adapter's trained tensors (down, up, DoRA's magnitude) in order; `take` says how many it has.
  const slots: { path: string; index: number; adapter: LoraAdapter; take: number }[] = [];
  const tensors: tf.Tensor[] = [];
  for (const path of paths) {
    lora(path).forEach((adapter, index) => {
      if (adapter.dropInput) throw new Error(`${path}: gradient checkpointing cannot recompute LoRA dropout (the backward pass would draw other masks)`);
      const own = adapter.magnitude ? [adapter.down, adapter.up, adapter.magnitude] : [adapter.down, adapter.up];
      slots.push({ path, index, adapter, take: own.length });
      tensors.push(...own);
    });
  }
  return (x: tf.Tensor, ...rest: tf.Tensor[]) => {
    const run = checkpoint((...inputs: tf.Tensor[]) => {
      let k = 1 + rest.length;
      const byPath = new Map<string, LoraAdapter[]>();
      for (const s of slots) {
        const list = byPath.get(s.path) ?? [];
        const [down, up, magnitude] = inputs.slice(k, (k += s.take));
        list[s.index] = { ...s.adapter, down: down as tf.Tensor2D, up: up as tf.Tensor2D, ...(magnitude ? { magnitude: magnitude as tf.Tensor1D } : {}) };
        byPath.set(s.path, list);
      }
      return fn(inputs[0], (p) => byPath.get(p) ?? lora(p), ...inputs.slice(1, 1 + rest.length));
    });
    return run(x, ...rest, ...tensors);
  };
}
