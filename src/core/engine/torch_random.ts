// A random generator that draws the same numbers as PyTorch's CPU generator, so that a seed gives the
// same noise here as `torch.manual_seed(seed); torch.randn(shape)` (or `torch.Generator().manual_seed(seed)`)
// does in diffusers. What torch does (aten/src/ATen/core/MT19937RNGEngine.h, CPUGeneratorImpl.cpp,
// core/DistributionsHelper.h, native/cpu/DistributionTemplates.h):
//
// - the engine is a plain 32-bit Mersenne Twister (mt19937) seeded with the low 32 bits of the seed;
//   random64() is two draws, the first one the high word;
// - a float uniform in [0,1) takes the low 24 bits of one draw × 2⁻²⁴; a double one the low 53 bits of
//   random64() × 2⁻⁵³;
// - randn of a contiguous float tensor with ≥ 16 elements first fills the whole tensor with float
//   uniforms, then turns each block of 16 into normals with Box–Muller, pairing element j (radius, from
//   1 − u) with element j + 8 (angle): out[j] = r·cos θ, out[j+8] = r·sin θ. If the size is not a
//   multiple of 16, the last 16 elements are drawn again (16 fresh uniforms) and transformed as a block;
// - randn of fewer than 16 elements draws each value with the double-precision Box–Muller of
//   normal_distribution<double>, which caches the second (sine) value in the generator for the next call.
//
// torch evaluates the ≥16 path's log/sqrt/sin/cos in float (vectorised on AVX2); here each is evaluated
// in double and rounded to float, so single values can differ from torch's by an ulp of float.

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

/** The 32-bit Mersenne Twister exactly as torch's at::mt19937. */
export class MT19937 {
  private readonly state = new Uint32Array(N);
  private index = N;

  constructor(seed: number | bigint) {
    this.seed(seed);
  }

  seed(seed: number | bigint): void {
    // torch keeps a 64-bit seed but initialises the state with its low 32 bits.
    const s = typeof seed === 'bigint' ? Number(BigInt.asUintN(32, seed)) : Number(BigInt.asUintN(32, BigInt(Math.trunc(seed))));
    this.state[0] = s >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = this.state[i - 1] ^ (this.state[i - 1] >>> 30);
      this.state[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
    this.index = N;
  }

  private twist(): void {
    const s = this.state;
    for (let i = 0; i < N; i++) {
      const y = (s[i] & UPPER_MASK) | (s[(i + 1) % N] & LOWER_MASK);
      s[i] = s[(i + M) % N] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    this.index = 0;
  }

  /** Next 32-bit output, as an unsigned number. */
  nextUint32(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** The engine's state for checkpoints: 624 words and the position in them. */
  getState(): { state: number[]; index: number } {
    return { state: Array.from(this.state), index: this.index };
  }

  setState(st: { state: number[]; index: number }): void {
    if (st.state.length !== N || !(st.index >= 0 && st.index <= N)) throw new Error('torch_random: invalid mt19937 state (need 624 words and an index in 0..624)');
    this.state.set(st.state);
    this.index = st.index;
  }
}

const TWO_POW_M24 = 2 ** -24;
const TWO_POW_M53 = 2 ** -53;
const TWO_POW_32 = 2 ** 32;
const f32 = Math.fround;
const TWO_PI_F32 = Math.fround(2 * Math.PI);

export interface TorchGeneratorState {
  seed: string;
  mt: { state: number[]; index: number };
  nextDoubleNormal: number | null;
}

/** torch.Generator (CPU): `new TorchGenerator(seed)` ≡ `torch.Generator().manual_seed(seed)`. */
export class TorchGenerator {
  private engine: MT19937;
  private initialSeed: bigint;
  // normal_distribution<double> caches the sine half of its Box–Muller pair here.
  private nextDoubleNormal: number | null = null;

  constructor(seed: number | bigint = 67280421310721n) {
    this.initialSeed = BigInt(seed);
    this.engine = new MT19937(this.initialSeed);
  }

  manualSeed(seed: number | bigint): this {
    this.initialSeed = BigInt(seed);
    this.engine.seed(this.initialSeed);
    this.nextDoubleNormal = null;
    return this;
  }

  initialSeedValue(): bigint {
    return this.initialSeed;
  }

  random(): number {
    return this.engine.nextUint32();
  }

  /** Two draws, the first the high word: returned as the 53-bit uniform numerator it feeds. */
  private random53(): number {
    const hi = this.engine.nextUint32();
    const lo = this.engine.nextUint32();
    // (hi·2³² + lo) & (2⁵³ − 1) = (hi & 0x1fffff)·2³² + lo, exact in a double.
    return (hi & 0x1fffff) * TWO_POW_32 + lo;
  }

  /** uniform_real_distribution<float>(0, 1) */
  uniformFloat(): number {
    return (this.engine.nextUint32() & 0xffffff) * TWO_POW_M24;
  }

  /** uniform_real_distribution<double>(0, 1) */
  uniformDouble(): number {
    return this.random53() * TWO_POW_M53;
  }

  /** normal_distribution<double>(0, 1), with torch's cached second value. */
  normalDouble(): number {
    if (this.nextDoubleNormal !== null) {
      const v = this.nextDoubleNormal;
      this.nextDoubleNormal = null;
      return v;
    }
    const u1 = this.uniformDouble();
    const u2 = this.uniformDouble();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.nextDoubleNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** torch.randn(shape, generator=this) as float32 values (row-major, contiguous). */
  randn(shape: readonly number[]): Float32Array {
    const size = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(size);
    if (size < 16) {
      for (let i = 0; i < size; i++) out[i] = this.normalDouble();
      return out;
    }
    for (let i = 0; i < size; i++) out[i] = this.uniformFloat();
    for (let i = 0; i + 16 <= size; i += 16) boxMuller16(out, i);
    if (size % 16 !== 0) {
      const start = size - 16;
      for (let i = 0; i < 16; i++) out[start + i] = this.uniformFloat();
      boxMuller16(out, start);
    }
    return out;
  }

  /** torch.rand(shape, generator=this) for float32: one float uniform per element. */
  rand(shape: readonly number[]): Float32Array {
    const size = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(size);
    for (let i = 0; i < size; i++) out[i] = this.uniformFloat();
    return out;
  }

  getState(): TorchGeneratorState {
    return { seed: this.initialSeed.toString(), mt: this.engine.getState(), nextDoubleNormal: this.nextDoubleNormal };
  }

  setState(st: TorchGeneratorState): void {
    this.initialSeed = BigInt(st.seed);
    this.engine.setState(st.mt);
    this.nextDoubleNormal = st.nextDoubleNormal;
  }
}

/** normal_fill_16: uniforms in data[o..o+16) → 16 normals, element j paired with j + 8. */
function boxMuller16(data: Float32Array, o: number): void {
  // Every step rounded to float as torch's AVX2 kernel does (2π itself is a float constant there):
  // this reproduces torch bit for bit on ~85% of elements and within 1 float ulp on the rest (its
  // vectorised log/sincos are polynomial approximations, not correctly rounded).
  for (let j = 0; j < 8; j++) {
    const u1 = f32(1 - data[o + j]); // [0,1) → (0,1] so the log is finite
    const u2 = data[o + j + 8];
    const radius = f32(Math.sqrt(f32(-2 * f32(Math.log(u1)))));
    const theta = f32(TWO_PI_F32 * u2);
    data[o + j] = radius * f32(Math.cos(theta));
    data[o + j + 8] = radius * f32(Math.sin(theta));
  }
}

/** `torch.manual_seed(seed); torch.randn(shape)` */
export function torchRandn(seed: number | bigint, shape: readonly number[]): Float32Array {
  return new TorchGenerator(seed).randn(shape);
}
