import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random, epochOrder, streamSeed } from '../../src/training/random.js';

test('randint draws what torch.randint draws for the same seed', () => {
  // torch.manual_seed(0); torch.randint(0, 10, (5,)) → tensor([4, 9, 3, 0, 3]): mt19937(0) words modulo 10.
  assert.deepEqual([...new Random(0).randint(0, 10, 5)], [4, 9, 3, 0, 3]);
  const r = new Random(123).randint(0, 1000, 2000);
  assert.ok(r.every((v) => v >= 0 && v < 1000));
  assert.ok(new Set(r).size > 800, 'covers the range');
});

test('the state round-trips: a restored generator continues with the same numbers', () => {
  const a = new Random(42);
  a.normal([37]);
  a.randint(0, 1000, 3);
  const saved = JSON.parse(JSON.stringify(a.getState()));
  const next = [...a.normal([4, 5]), ...a.randint(0, 7, 9), ...a.uniform([3])];
  const b = Random.fromState(saved);
  assert.deepEqual([...b.normal([4, 5]), ...b.randint(0, 7, 9), ...b.uniform([3])], next);
});

test('normals are standard normal', () => {
  const z = new Random(7).normal([20000]);
  let s = 0, s2 = 0;
  for (const v of z) { s += v; s2 += v * v; }
  const mean = s / z.length;
  const variance = s2 / z.length - mean * mean;
  assert.ok(Math.abs(mean) < 0.03, `mean ${mean}`);
  assert.ok(Math.abs(variance - 1) < 0.05, `variance ${variance}`);
});

test('epoch orders are permutations, fixed by (seed, epoch), different across epochs and seeds', () => {
  const o0 = epochOrder(5, 0, 16);
  assert.deepEqual([...o0].sort((a, b) => a - b), Array.from({ length: 16 }, (_, i) => i));
  assert.deepEqual(epochOrder(5, 0, 16), o0);
  assert.notDeepEqual(epochOrder(5, 1, 16), o0);
  assert.notDeepEqual(epochOrder(6, 0, 16), o0);
  assert.notEqual(streamSeed(1, 'training'), streamSeed(1, 'caching'));
  assert.notEqual(streamSeed(1, 'training'), streamSeed(2, 'training'));
});
