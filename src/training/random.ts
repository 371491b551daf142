// The trainer's randomness: seeded, serializable, and drawn in a fixed order, so that a run is a pure
// function of its seed and an interrupted run resumes onto exactly the numbers it would have drawn.
//
// The engine is PyTorch's CPU generator (engine/torch_random.ts: mt19937, torch's float uniforms and its
// 16-wide Box–Muller for randn), so each individual draw means what the same call means in torch:
// `normal(shape)` ≡ torch.randn, `randint` ≡ torch.randint, `randperm` ≡ torch.randperm. A whole run is not
// bit-identical to diffusers' (its dataloader, workers and VAE sampling draw from several generators), but
// the distributions and the per-call arithmetic are the same.
//
// Streams (each its own generator, so one consumer never shifts another's numbers):
// - `training`: per micro-batch — random crop/flip, the VAE latent sample, noise, noise offset, timesteps.
//   Its state is saved in every checkpoint.
// - data order: a fresh generator per epoch seeded from (seed, epoch), so the position in the data is
//   just (epoch, batch index) and needs no generator state of its own.
// - `caching`: the one-off draws made while caching latents (seeded from the seed alone, so a resumed run
//   rebuilds the identical cache).
// - `init`: the LoRA initialisation.
import { TorchGenerator, type TorchGeneratorState } from '../core/engine/torch_random.js';

export type RandomState = TorchGeneratorState;

export class Random {
  private readonly gen: TorchGenerator;

  constructor(seed: number | bigint) {
    this.gen = new TorchGenerator(seed);
  }

  static fromState(state: RandomState): Random {
    const r = new Random(0);
    r.setState(state);
    return r;
  }

  /** torch.randn(shape): standard normals (float32, row-major). */
  normal(shape: readonly number[]): Float32Array {
    return this.gen.randn(shape);
  }

  /** torch.rand(shape): float32 uniforms in [0, 1). */
  uniform(shape: readonly number[] = [1]): Float32Array {
    return this.gen.rand(shape);
  }

  /**
   * torch.randint(low, high, (count,)): uniform integers in [low, high). torch draws one 32-bit word per
   * value and takes it modulo the range (ranges below 2³²), which is what this does.
   */
  randint(low: number, high: number, count = 1): Int32Array {
    const range = high - low;
    if (!(range >= 1 && range < 2 ** 32)) throw new Error(`randint: empty or too large range [${low}, ${high})`);
    const out = new Int32Array(count);
    for (let i = 0; i < count; i++) out[i] = low + (this.gen.random() % range);
    return out;
  }

  /** torch.randperm(n) on CPU: Fisher–Yates from the front, one 32-bit word per swap. */
  randperm(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = 0; i < n - 1; i++) {
      const z = this.gen.random() % (n - i);
      const t = p[i];
      p[i] = p[i + z];
      p[i + z] = t;
    }
    return p;
  }

  getState(): RandomState {
    return this.gen.getState();
  }

  setState(state: RandomState): void {
    this.gen.setState(state);
  }
}

export type StreamPurpose = 'training' | 'data_order' | 'caching' | 'init' | 'max_samples' | 'validation_split' | 'validation_loss' | 'dropout';

/** Derives an independent stream's seed from the run's seed and a purpose (and an index, e.g. the epoch). */
export function streamSeed(seed: number, purpose: StreamPurpose, index = 0): bigint {
  const tag = { training: 1n, data_order: 2n, caching: 3n, init: 4n, max_samples: 5n, validation_split: 6n, validation_loss: 7n, dropout: 8n }[purpose];
  // A splitmix64 finaliser over (seed, tag, index): nearby seeds and epochs give unrelated streams.
  let z = (BigInt(seed) * 0x9e3779b97f4a7c15n + tag * 0xbf58476d1ce4e5b9n + BigInt(index) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
  return z ^ (z >> 31n);
}

/** The order in which epoch `epoch` visits the `n` examples (the DataLoader's shuffle=True). */
export function epochOrder(seed: number, epoch: number, n: number): number[] {
  return new Random(streamSeed(seed, 'data_order', epoch)).randperm(n);
}

/** A seed for runs that name none: recorded in the outputs so the run can be repeated. */
export function freshSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}
