// Activation checkpointing: gradients through a checkpointed block equal those of the plain block, and
// nothing leaks. Runs on the cpu backend (the mechanism is backend-independent), and on webgpu with the
// project's kernels inside the block when an adapter exists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { tfjsOps, type Ops } from '../../src/core/engine/ops.js';
import { webgpuOps } from '../../src/core/engine/webgpu/ops.js';
import { checkpoint, checkpointWithLora } from '../../src/core/engine/activation_checkpoint.js';
import { webgpuOrSkip, randoms, errors } from './setup.js';

const skip = await webgpuOrSkip();

/** A small transformer-ish block: group norm + SiLU, a linear with a LoRA adapter, self-attention, residual. */
function block(ops: Ops, gamma: tf.Tensor1D, beta: tf.Tensor1D, w: tf.Tensor2D) {
  return (x: tf.Tensor, down: tf.Tensor, up: tf.Tensor) => {
    const [b, h, wd, c] = x.shape;
    const n = ops.groupNorm(x as tf.Tensor4D, 4, gamma, beta, 1e-5, true);
    const tokens = n.reshape([b, h * wd, c]);
    const q = ops.linear(tokens, w, undefined, [{ down: down as tf.Tensor2D, up: up as tf.Tensor2D, scale: 0.5 }]) as tf.Tensor3D;
    const a = ops.attention(q, tokens as tf.Tensor3D, tokens as tf.Tensor3D, 2);
    return x.add(a.reshape(x.shape));
  };
}

async function compare(ops: Ops) {
  const x = tf.tensor4d(randoms(2 * 4 * 5 * 8, 1), [2, 4, 5, 8]);
  const gamma = tf.tensor1d(randoms(8, 2).map((v) => 1 + 0.3 * v));
  const beta = tf.tensor1d(randoms(8, 3, 0.2));
  const w = tf.tensor2d(randoms(64, 4, 0.4), [8, 8]);
  const down = tf.tensor2d(randoms(16, 5, 0.4), [2, 8]);
  const up = tf.tensor2d(randoms(16, 6, 0.4), [8, 2]);
  const plain = block(ops, gamma, beta, w);
  const ckpt = checkpoint(plain);
  const loss = (f: typeof plain) => (xx: tf.Tensor, d: tf.Tensor, u: tf.Tensor) => f(f(xx, d, u), d, u).square().mean();
  const before = tf.memory().numTensors;
  const g1 = tf.grads(loss(plain))([x, down, up]);
  const g2 = tf.grads(loss(ckpt))([x, down, up]);
  for (let i = 0; i < 3; i++) {
    const e = errors(await g2[i].data(), await g1[i].data());
    // Same kernels, same order: the recomputed forward is bit-identical, so the gradients are too.
    assert.equal(e.err, 0, `gradient ${i}: checkpointed differs by ${e.err}`);
    assert.ok(e.scale > 0, `gradient ${i} is all zero: the test would not see a wrong checkpoint`);
  }
  tf.dispose([...g1, ...g2]);
  assert.equal(tf.memory().numTensors, before, 'tensors leaked');
  tf.dispose([x, gamma, beta, w, down, up]);
}

test('checkpointed block has the plain block\'s gradients (cpu, stock ops)', async () => {
  const prev = tf.getBackend();
  await tf.setBackend('cpu');
  try {
    await compare(tfjsOps);
  } finally {
    if (prev) await tf.setBackend(prev);
  }
});

test('checkpointed block has the plain block\'s gradients (webgpu, our kernels)', { skip }, async () => {
  await compare(webgpuOps);
});

test('checkpointWithLora passes the adapters as inputs: their gradients match (cpu)', async () => {
  const prev = tf.getBackend();
  await tf.setBackend('cpu');
  try {
    const x = tf.tensor2d(randoms(5 * 6, 7), [5, 6]);
    const w = tf.tensor2d(randoms(36, 8, 0.4), [6, 6]);
    const down = tf.tensor2d(randoms(12, 9, 0.4), [2, 6]);
    const up = tf.tensor2d(randoms(12, 10, 0.4), [6, 2]);
    const layer = (h: tf.Tensor, l: (p: string) => readonly { down: tf.Tensor2D; up: tf.Tensor2D; scale: number }[]) =>
      tf.tanh(tfjsOps.linear(tfjsOps.linear(h, w, undefined, l('a')), w, undefined, l('b')));
    const lookupOf = (d: tf.Tensor, u: tf.Tensor) => (p: string) => (p === 'a' || p === 'b' ? [{ down: d as tf.Tensor2D, up: u as tf.Tensor2D, scale: 0.7 }] : []);
    const plain = (xx: tf.Tensor, d: tf.Tensor, u: tf.Tensor) => layer(xx, lookupOf(d, u)).square().sum();
    const ckpt = (xx: tf.Tensor, d: tf.Tensor, u: tf.Tensor) => checkpointWithLora(layer, lookupOf(d, u), ['a', 'b'])(xx).square().sum();
    const g1 = tf.grads(plain)([x, down, up]);
    const g2 = tf.grads(ckpt)([x, down, up]);
    for (let i = 0; i < 3; i++) {
      const e = errors(await g2[i].data(), await g1[i].data());
      assert.equal(e.err, 0, `gradient ${i}: checkpointed differs by ${e.err}`);
      assert.ok(e.scale > 0);
    }
    tf.dispose([...g1, ...g2, x, w, down, up]);
  } finally {
    if (prev) await tf.setBackend(prev);
  }
});
