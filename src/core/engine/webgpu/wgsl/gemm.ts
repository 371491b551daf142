// One tiled GEMM shader, C[M,N] = A[M,K] · B[K,N] (+ bias[n]) (+ H[M,R] · U[N,R]ᵀ), whose A and B are
// read through "loaders", so the same tile loop computes:
//   - a matmul (A row-major; B as [K,N] or as a PyTorch linear weight [N,K]),
//   - a convolution as an implicit GEMM (A = the im2col view of an NHWC input, never materialised;
//     B = the HWIO weight, which already is the [KH·KW·Cin, Cout] matrix),
//   - the convolution's input gradient as a forward convolution over dy (A = dy read at
//     (y + pad − ky)/stride, B = the weight with its two channel axes swapped, read in place).
// The low-rank epilogue is LoRA's s·(x·Aᵀ)·Bᵀ fused into the frozen layer's matmul.
//
// Tiling: a workgroup computes a BM×BN tile of C, stepping over K by BK; A and B tiles go through
// workgroup memory (k-major, so the inner loop reads vec4s); each thread owns a TM×TN register tile,
// its rows and columns strided by 4·(threads along that axis) to spread shared-memory banks.

export interface GemmTile {
  readonly BM: number;
  readonly BN: number;
  readonly BK: number;
  readonly TM: number;
  readonly TN: number;
}

export const DEFAULT_TILE: GemmTile = { BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 };
/** Tiles the benchmark tries (all valid for any shape). */
export const GEMM_TILES: Record<string, GemmTile> = {
  t64x64k16m4: { BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 },
  t128x64k8m8x4: { BM: 128, BN: 64, BK: 8, TM: 8, TN: 4 },
  t128x128k8m8: { BM: 128, BN: 128, BK: 8, TM: 8, TN: 8 },
  t64x128k8m4x8: { BM: 64, BN: 128, BK: 8, TM: 4, TN: 8 },
};

export type ALoader =
  | { readonly kind: 'rows' }
  | { readonly kind: 'conv'; readonly H: number; readonly W: number; readonly C: number; readonly KH: number; readonly KW: number; readonly stride: number; readonly pad: number; readonly Ho: number; readonly Wo: number }
  /** dy [B,Ho,Wo,Co] seen from dx positions [B,H,W]: k = (ky, kx, co). */
  | { readonly kind: 'convT'; readonly H: number; readonly W: number; readonly Co: number; readonly KH: number; readonly KW: number; readonly stride: number; readonly pad: number; readonly Ho: number; readonly Wo: number };

export type BLoader =
  | { readonly kind: 'kn' }
  | { readonly kind: 'nk' }
  /** weight HWIO [KH,KW,N=Ci,Co] read as B[(ky,kx,co), ci]. */
  | { readonly kind: 'convT'; readonly Co: number };

export interface GemmShader {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly a: ALoader;
  readonly b: BLoader;
  readonly bias: boolean;
  /** Rank of the fused low-rank term, 0 for none. */
  readonly lowRank: number;
  readonly tile: GemmTile;
  /**
   * Workgroup tiles as vec4 arrays (one 16-byte read per 4 values in the inner loop) instead of scalars.
   * Writing single components of a vec4 (the tile transpose needs it) makes lavapipe's JIT take seconds
   * per pipeline, so software adapters use scalar tiles; GPUs use vec4.
   */
  readonly vec4Shared: boolean;
}

export function gemmKey(s: GemmShader): string {
  return `gemm:${JSON.stringify(s)}`;
}

export function checkTile(t: GemmTile): number {
  const threads = (t.BM / t.TM) * (t.BN / t.TN);
  const ok = t.TM % 4 === 0 && t.TN % 4 === 0 && t.BM % t.TM === 0 && t.BN % t.TN === 0 && threads <= 256 &&
    (t.BM * t.BK) % threads === 0 && (t.BN * t.BK) % threads === 0;
  if (!ok) throw new Error(`invalid GEMM tile ${JSON.stringify(t)}`);
  return threads;
}

const u = (n: number) => `${n}u`;

function aLoader(s: GemmShader): string {
  const a = s.a;
  const guard = `if (m >= ${u(s.M)} || k >= ${u(s.K)}) { return 0.0; }`;
  if (a.kind === 'rows') return `fn loadA(m: u32, k: u32) -> f32 { ${guard} return A[m * ${u(s.K)} + k]; }`;
  if (a.kind === 'conv') {
    return `fn loadA(m: u32, k: u32) -> f32 {
  ${guard}
  let ox = m % ${u(a.Wo)}; let t0 = m / ${u(a.Wo)}; let oy = t0 % ${u(a.Ho)}; let b = t0 / ${u(a.Ho)};
  let ci = k % ${u(a.C)}; let t1 = k / ${u(a.C)}; let kx = t1 % ${u(a.KW)}; let ky = t1 / ${u(a.KW)};
  let iy = i32(oy * ${u(a.stride)} + ky) - ${a.pad}; let ix = i32(ox * ${u(a.stride)} + kx) - ${a.pad};
  if (iy < 0 || ix < 0 || iy >= ${a.H} || ix >= ${a.W}) { return 0.0; }
  return A[((b * ${u(a.H)} + u32(iy)) * ${u(a.W)} + u32(ix)) * ${u(a.C)} + ci];
}`;
  }
  // convT: dx[b,y,x,ci] = Σ dy[b,oy,ox,co]·W[ky,kx,ci,co] over oy·s + ky − pad = y.
  const div = a.stride === 1
    ? `let oy = ty; let ox = tx;`
    : `if (ty % ${a.stride} != 0 || tx % ${a.stride} != 0) { return 0.0; } let oy = ty / ${a.stride}; let ox = tx / ${a.stride};`;
  return `fn loadA(m: u32, k: u32) -> f32 {
  ${guard}
  let x = m % ${u(a.W)}; let t0 = m / ${u(a.W)}; let y = t0 % ${u(a.H)}; let b = t0 / ${u(a.H)};
  let co = k % ${u(a.Co)}; let t1 = k / ${u(a.Co)}; let kx = t1 % ${u(a.KW)}; let ky = t1 / ${u(a.KW)};
  let ty = i32(y + ${u(a.pad)}) - i32(ky); let tx = i32(x + ${u(a.pad)}) - i32(kx);
  if (ty < 0 || tx < 0) { return 0.0; }
  ${div}
  if (oy >= ${a.Ho} || ox >= ${a.Wo}) { return 0.0; }
  return A[((b * ${u(a.Ho)} + u32(oy)) * ${u(a.Wo)} + u32(ox)) * ${u(a.Co)} + co];
}`;
}

function bLoader(s: GemmShader): string {
  const b = s.b;
  const guard = `if (k >= ${u(s.K)} || n >= ${u(s.N)}) { return 0.0; }`;
  if (b.kind === 'kn') return `fn loadB(k: u32, n: u32) -> f32 { ${guard} return B[k * ${u(s.N)} + n]; }`;
  if (b.kind === 'nk') return `fn loadB(k: u32, n: u32) -> f32 { ${guard} return B[n * ${u(s.K)} + k]; }`;
  return `fn loadB(k: u32, n: u32) -> f32 {
  ${guard}
  let co = k % ${u(b.Co)}; let kk = k / ${u(b.Co)};
  return B[(kk * ${u(s.N)} + n) * ${u(b.Co)} + co];
}`;
}

/** Bindings: A, B, [bias], [H, U], C. */
export function gemmWgsl(s: GemmShader): string {
  const t = s.tile;
  const NT = checkTile(t);
  const TX = t.BN / t.TN;
  const TY = t.BM / t.TM;
  const QN = t.TN / 4;
  const PM = t.TM / 4;
  const bindings = ['A', 'B'];
  if (s.bias) bindings.push('Bias');
  if (s.lowRank > 0) bindings.push('H', 'U');
  const decl = bindings.map((n, i) => `@group(0) @binding(${i}) var<storage, read> ${n}: array<f32>;`).join('\n');
  const out = `@group(0) @binding(${bindings.length}) var<storage, read_write> C: array<f32>;`;
  // B tile: 'kn' is contiguous along n, the others along k: let consecutive threads walk the contiguous axis.
  const bNFastest = s.b.kind === 'kn';
  const aSlots = (t.BM * t.BK) / NT;
  const bSlots = (t.BN * t.BK) / NT;
  const v4 = s.vec4Shared;
  const storeA = v4 ? `As[(kk * ${u(t.BM)} + mm) / 4u][mm % 4u]` : `As[kk * ${u(t.BM)} + mm]`;
  const storeB = v4 ? `Bs[(kk * ${u(t.BN)} + nn) / 4u][nn % 4u]` : `Bs[kk * ${u(t.BN)} + nn]`;
  const loads: string[] = [];
  for (let i = 0; i < aSlots; i++) {
    loads.push(`{ let idx = t + ${u(i * NT)}; let kk = idx % ${u(t.BK)}; let mm = idx / ${u(t.BK)};
      ${storeA} = loadA(m0 + mm, k0 + kk); }`);
  }
  for (let i = 0; i < bSlots; i++) {
    loads.push(bNFastest
      ? `{ let idx = t + ${u(i * NT)}; let nn = idx % ${u(t.BN)}; let kk = idx / ${u(t.BN)};
      ${storeB} = loadB(k0 + kk, n0 + nn); }`
      : `{ let idx = t + ${u(i * NT)}; let kk = idx % ${u(t.BK)}; let nn = idx / ${u(t.BK)};
      ${storeB} = loadB(k0 + kk, n0 + nn); }`);
  }
  // The k step is a loop (the driver unrolls a constant trip count where it pays; emitting it unrolled
  // made lavapipe's LLVM take seconds per pipeline); the register tile inside is written out.
  const inner: string[] = [];
  for (let p = 0; p < PM; p++) {
    inner.push(v4
      ? `a${p} = As[kk * ${u(t.BM / 4)} + ${u(p * TY)} + ty];`
      : `{ let i = kk * ${u(t.BM)} + ${u(p * TY * 4)} + ty * 4u; a${p} = vec4<f32>(As[i], As[i + 1u], As[i + 2u], As[i + 3u]); }`);
  }
  for (let q = 0; q < QN; q++) {
    inner.push(v4
      ? `b${q} = Bs[kk * ${u(t.BN / 4)} + ${u(q * TX)} + tx];`
      : `{ let i = kk * ${u(t.BN)} + ${u(q * TX * 4)} + tx * 4u; b${q} = vec4<f32>(Bs[i], Bs[i + 1u], Bs[i + 2u], Bs[i + 3u]); }`);
  }
  for (let p = 0; p < PM; p++) {
    for (let r = 0; r < 4; r++) {
      for (let q = 0; q < QN; q++) {
        const i = (p * 4 + r) * QN + q;
        inner.push(`acc[${i}] = fma(vec4<f32>(a${p}[${r}]), b${q}, acc[${i}]);`);
      }
    }
  }
  const R = s.lowRank;
  const lowRankTerm = R > 0
    ? `for (var r = 0u; r < ${u(R)}; r++) { v = fma(H[m * ${u(R)} + r], U[n * ${u(R)} + r], v); }`
    : '';
  // The epilogue is written out so every register-tile index is a constant (dynamic indices into a
  // function-scope array cost lavapipe's JIT seconds per pipeline, and registers on a real GPU).
  const epilogue: string[] = [];
  for (let p = 0; p < PM; p++) {
    for (let r = 0; r < 4; r++) {
      epilogue.push(`{ let m = m0 + ${u(p * 4 * TY + r)} + ty * 4u; if (m < ${u(s.M)}) {`);
      for (let q = 0; q < QN; q++) {
        epilogue.push(`  { let a = acc[${(p * 4 + r) * QN + q}]; let nb = n0 + ${u(q * 4 * TX)} + tx * 4u;`);
        for (let c = 0; c < 4; c++) {
          epilogue.push(`    if (nb + ${u(c)} < ${u(s.N)}) { let n = nb + ${u(c)}; var v = a[${c}];${s.bias ? ' v += Bias[n];' : ''} ${lowRankTerm} C[m * ${u(s.N)} + n] = v; }`);
        }
        epilogue.push('  }');
      }
      epilogue.push('} }');
    }
  }
  return `${decl}
${out}
var<workgroup> As: array<${v4 ? `vec4<f32>, ${(t.BK * t.BM) / 4}` : `f32, ${t.BK * t.BM}`}>;
var<workgroup> Bs: array<${v4 ? `vec4<f32>, ${(t.BK * t.BN) / 4}` : `f32, ${t.BK * t.BN}`}>;
${aLoader(s)}
${bLoader(s)}
@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let n0 = wg.x * ${u(t.BN)};
  let m0 = wg.y * ${u(t.BM)};
  let tx = t % ${u(TX)};
  let ty = t / ${u(TX)};
  var acc: array<vec4<f32>, ${(t.TM * t.TN) / 4}>;
  ${Array.from({ length: PM }, (_, p) => `var a${p}: vec4<f32>;`).join(' ')}
  ${Array.from({ length: QN }, (_, q) => `var b${q}: vec4<f32>;`).join(' ')}
  for (var k0 = 0u; k0 < ${u(s.K)}; k0 += ${u(t.BK)}) {
    ${loads.join('\n    ')}
    workgroupBarrier();
    for (var kk = 0u; kk < ${u(t.BK)}; kk++) {
      ${inner.join('\n      ')}
    }
    workgroupBarrier();
  }
  ${epilogue.join('\n  ')}
}
`;
}

/** Workgroup grid: x over N tiles, y over M tiles. */
export function gemmGrid(s: GemmShader): [number, number, number] {
  return [Math.ceil(s.N / s.tile.BN), Math.ceil(s.M / s.tile.BM), 1];
}
