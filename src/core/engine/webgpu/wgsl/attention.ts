// Flash-style attention in WGSL: no Tq×Tk matrix is ever written to memory.
//
// Tensors stay in the models' layout, [B, T, H·D] (head h's slice of a token is d = h·D … h·D + D − 1),
// so no head split/merge transposes are needed. Per (query block, batch·head) the forward streams over
// key blocks of BC: S = Q·Kᵀ·scale in registers (D consumed in chunks of DK through workgroup memory),
// an online softmax (running row max m and sum l; the partial output is rescaled by exp(m_old − m_new)),
// O += P·V with V streamed in VK-row slices. It also writes the row log-sum-exp L = m + log l.
// The backward (FlashAttention-2's) recomputes P = exp(S·scale − L) instead of storing it:
//   Δ_i = Σ_d dO_i·O_i;  dS = P ∘ (dO·Vᵀ − Δ);  dV = Pᵀ·dO;  dK = dSᵀ·Q·scale;  dQ = dS·K·scale,
// in two kernels so no atomics are needed: one per key block (dK, dV; loops over queries), one per query
// block (dQ; loops over keys). Masked scores (keys past Tk, and future keys when causal) get p = 0.

export interface AttentionShape {
  readonly B: number;
  readonly H: number;
  readonly Tq: number;
  readonly Tk: number;
  readonly D: number;
  readonly causal: boolean;
  readonly scale: number;
  /** Row reductions of the online softmax with subgroup shuffles (4 lanes per row) instead of one thread per row. */
  readonly subgroups: boolean;
}

const NT = 256;
const DK = 8;
const u = (n: number) => `${n}u`;
const f = (x: number) => (Number.isInteger(x) ? `${x}.0` : x.toPrecision(9));
const MASKED = '-3.0e38';

/** Writes a loop out in the generator: function-scope arrays are then only ever indexed by constants
 *  (dynamic indices cost lavapipe's JIT seconds per pipeline, and registers on a real GPU). */
const unroll = (n: number, body: (i: number) => string, sep = '\n    ') => Array.from({ length: n }, (_, i) => body(i)).join(sep);

const nextPow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** Thread grid TR×TC over a rows×D output tile: columns tc + TC·j (j < CN), rows tr + TR·i (i < RM). */
function outGrid(rows: number, D: number) {
  const TC = Math.min(NT, Math.max(NT / rows, nextPow2(Math.ceil(D / 8))));
  const TR = NT / TC;
  return { TC, TR, RM: Math.max(1, rows / TR), CN: Math.ceil(D / TC) };
}

/** V (or K, dO, Q) rows per slice in the P·V-like phases: keeps workgroup memory under 16 KiB. */
const sliceRows = (D: number) => (D > 96 ? 4 : 8);

export function attentionKey(kind: string, s: AttentionShape): string {
  return `attn_${kind}:${JSON.stringify(s)}`;
}

/** Loads a DK-wide chunk of `rows` rows of a [B,T,H·D] tensor into tile[dd·rows + r] (zero outside). */
function loadChunk(name: string, tile: string, tileOffset: number, rows: number, row0: string, T: number, base: string, s: AttentionShape): string {
  const n = rows * DK;
  const out: string[] = [];
  for (let e = 0; e < Math.ceil(n / NT); e++) {
    const guard = (e + 1) * NT > n ? `if (idx < ${u(n)}) ` : '';
    out.push(`{ let idx = t + ${u(e * NT)}; ${guard}{ let dd = idx % ${u(DK)}; let r = idx / ${u(DK)}; let row = ${row0} + r; let d = d0 + dd;
        ${tile}[${u(tileOffset)} + dd * ${u(rows)} + r] = select(0.0, ${name}[${base} + min(row, ${u(T - 1)}) * ${u(s.H * s.D)} + min(d, ${u(s.D - 1)})], row < ${u(T)} && d < ${u(s.D)}); } }`);
  }
  return out.join('\n      ');
}

/** Loads `rows` full rows (all D) of a [B,T,H·D] tensor into tile[r·D + d] (zero outside). */
function loadRows(name: string, tile: string, tileOffset: number, rows: number, row0: string, T: number, base: string, s: AttentionShape): string {
  const n = rows * s.D;
  const out: string[] = [];
  for (let e = 0; e < Math.ceil(n / NT); e++) {
    const guard = (e + 1) * NT > n ? `if (idx < ${u(n)}) ` : '';
    out.push(`{ let idx = t + ${u(e * NT)}; ${guard}{ let r = idx / ${u(s.D)}; let d = idx % ${u(s.D)}; let row = ${row0} + r;
        ${tile}[${u(tileOffset)} + idx] = select(0.0, ${name}[${base} + min(row, ${u(T - 1)}) * ${u(s.H * s.D)} + d], row < ${u(T)}); } }`);
  }
  return out.join('\n      ');
}

const header = (s: AttentionShape) => (s.subgroups ? 'enable subgroups;\n' : '');

/**
 * Forward. Bindings: Q, K, V → O [B,Tq,H·D], L [B·H, Tq].
 * Workgroup (query block of BR = 64, b·h). Phase-1 threads: 8 along keys × 32 along queries, 2×4 scores each.
 */
export function attentionForwardWgsl(s: AttentionShape): string {
  const BR = 64;
  const BC = 32;
  const VK = sliceRows(s.D);
  const HD = s.H * s.D;
  const g = outGrid(BR, s.D);
  const tileB = Math.max(DK * BC, VK * s.D);
  const AR = 2;
  const AC = 4;
  const acc1: string[] = [];
  for (let dd = 0; dd < DK; dd++) {
    for (let i = 0; i < AR; i++) acc1.push(`a${i} = tileA[${u(dd * BR + i * 32)} + ay];`);
    for (let j = 0; j < AC; j++) acc1.push(`b${j} = tileB[${u(dd * BC + j * 8)} + ax];`);
    for (let i = 0; i < AR; i++) for (let j = 0; j < AC; j++) acc1.push(`sc[${i * AC + j}] = fma(a${i}, b${j}, sc[${i * AC + j}]);`);
  }
  const softmax = s.subgroups
    ? `{
      // 4 lanes per row, 8 columns each; lanes of a row are adjacent (1-D workgroup), within one subgroup.
      let r = t / 4u; let part = t % 4u;
      let mOld = rowM[r];
      var mx = mOld;
      for (var c = part * 8u; c < part * 8u + 8u; c++) { mx = max(mx, Ps[r * ${u(BC + 1)} + c]); }
      mx = max(mx, subgroupShuffleXor(mx, 1u));
      mx = max(mx, subgroupShuffleXor(mx, 2u));
      var sum = 0.0;
      for (var c = part * 8u; c < part * 8u + 8u; c++) {
        let v = Ps[r * ${u(BC + 1)} + c];
        let p = select(exp(v - mx), 0.0, v <= -1.0e38);
        Ps[r * ${u(BC + 1)} + c] = p; sum += p;
      }
      sum += subgroupShuffleXor(sum, 1u);
      sum += subgroupShuffleXor(sum, 2u);
      workgroupBarrier();
      if (part == 0u) { let alpha = exp(mOld - mx); rowL[r] = rowL[r] * alpha + sum; rowM[r] = mx; rowA[r] = alpha; }
    }`
    : `if (t < ${u(BR)}) {
      let r = t;
      let mOld = rowM[r];
      var mx = mOld;
      for (var c = 0u; c < ${u(BC)}; c++) { mx = max(mx, Ps[r * ${u(BC + 1)} + c]); }
      var sum = 0.0;
      for (var c = 0u; c < ${u(BC)}; c++) {
        let v = Ps[r * ${u(BC + 1)} + c];
        let p = select(exp(v - mx), 0.0, v <= -1.0e38);
        Ps[r * ${u(BC + 1)} + c] = p; sum += p;
      }
      let alpha = exp(mOld - mx);
      rowL[r] = rowL[r] * alpha + sum; rowM[r] = mx; rowA[r] = alpha;
    }`;
  const pv: string[] = [];
  for (let kk = 0; kk < VK; kk++) {
    for (let i = 0; i < g.RM; i++) pv.push(`p${i} = Ps[(tr + ${u(g.TR * i)}) * ${u(BC + 1)} + kc + ${u(kk)}];`);
    for (let j = 0; j < g.CN; j++) pv.push(`v${j} = tileB[${u(kk * s.D)} + col${j}];`);
    for (let i = 0; i < g.RM; i++) for (let j = 0; j < g.CN; j++) pv.push(`o[${i * g.CN + j}] = fma(p${i}, v${j}, o[${i * g.CN + j}]);`);
  }
  const jEnd = s.causal ? `min(${u(s.Tk)}, i0 + ${u(BR)})` : u(s.Tk);
  return `${header(s)}
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> K: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@group(0) @binding(4) var<storage, read_write> L: array<f32>;
var<workgroup> tileA: array<f32, ${DK * BR}>;
var<workgroup> tileB: array<f32, ${tileB}>;
var<workgroup> Ps: array<f32, ${BR * (BC + 1)}>;
var<workgroup> rowM: array<f32, ${BR}>;
var<workgroup> rowL: array<f32, ${BR}>;
var<workgroup> rowA: array<f32, ${BR}>;
@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let bh = wg.y; let b = bh / ${u(s.H)}; let h = bh % ${u(s.H)};
  let i0 = wg.x * ${u(BR)};
  let qBase = b * ${u(s.Tq * HD)} + h * ${u(s.D)};
  let kBase = b * ${u(s.Tk * HD)} + h * ${u(s.D)};
  if (t < ${u(BR)}) { rowM[t] = ${MASKED}; rowL[t] = 0.0; }
  let ax = t % 8u; let ay = t / 8u;
  let tc = t % ${u(g.TC)}; let tr = t / ${u(g.TC)};
  ${Array.from({ length: g.CN }, (_, j) => `let col${j} = min(tc + ${u(g.TC * j)}, ${u(s.D - 1)});`).join(' ')}
  var o: array<f32, ${g.RM * g.CN}>;
  var sc: array<f32, ${AR * AC}>;
  ${Array.from({ length: AR }, (_, i) => `var a${i}: f32;`).join(' ')} ${Array.from({ length: AC }, (_, j) => `var b${j}: f32;`).join(' ')}
  ${Array.from({ length: g.RM }, (_, i) => `var p${i}: f32;`).join(' ')} ${Array.from({ length: g.CN }, (_, j) => `var v${j}: f32;`).join(' ')}
  for (var j0 = 0u; j0 < ${jEnd}; j0 += ${u(BC)}) {
    ${unroll(AR * AC, (e) => `sc[${e}] = 0.0;`, ' ')}
    for (var d0 = 0u; d0 < ${u(s.D)}; d0 += ${u(DK)}) {
      workgroupBarrier();
      ${loadChunk('Q', 'tileA', 0, BR, 'i0', s.Tq, 'qBase', s)}
      ${loadChunk('K', 'tileB', 0, BC, 'j0', s.Tk, 'kBase', s)}
      workgroupBarrier();
      ${acc1.join('\n      ')}
    }
    ${unroll(AR * AC, (e) => `{ let r = ay + ${u(32 * Math.floor(e / AC))}; let c = ax + ${u(8 * (e % AC))};
      let masked = j0 + c >= ${u(s.Tk)}${s.causal ? ' || j0 + c > i0 + r' : ''};
      Ps[r * ${u(BC + 1)} + c] = select(sc[${e}] * ${f(s.scale)}, ${MASKED}, masked); }`)}
    workgroupBarrier();
    ${softmax}
    workgroupBarrier();
    ${unroll(g.RM, (i) => `{ let alpha = rowA[tr + ${u(g.TR * i)}]; ${unroll(g.CN, (j) => `o[${i * g.CN + j}] *= alpha;`, ' ')} }`)}
    for (var kc = 0u; kc < ${u(BC)}; kc += ${u(VK)}) {
      ${loadRows('V', 'tileB', 0, VK, 'j0 + kc', s.Tk, 'kBase', s)}
      workgroupBarrier();
      ${pv.join('\n      ')}
      workgroupBarrier();
    }
  }
  ${unroll(g.RM, (i) => `{ let r = tr + ${u(g.TR * i)};
    if (i0 + r < ${u(s.Tq)}) {
      let l = rowL[r];
      let inv = select(1.0 / l, 0.0, l == 0.0);
      ${unroll(g.CN, (j) => `if (tc + ${u(g.TC * j)} < ${u(s.D)}) { O[qBase + (i0 + r) * ${u(HD)} + tc + ${u(g.TC * j)}] = o[${i * g.CN + j}] * inv; }`, '\n      ')}
    } }`, '\n  ')}
  if (t < ${u(BR)} && i0 + t < ${u(s.Tq)}) { L[bh * ${u(s.Tq)} + i0 + t] = rowM[t] + log(rowL[t]); }
}
`;
}

export function attentionForwardGrid(s: AttentionShape): [number, number, number] {
  return [Math.ceil(s.Tq / 64), s.B * s.H, 1];
}

/** Δ[bh, i] = Σ_d dO·O. Bindings: dO, O → Δ [B·H, Tq]. One thread per (b, i, h). */
export function attentionDeltaWgsl(s: AttentionShape): string {
  const HD = s.H * s.D;
  const n = s.B * s.Tq * s.H;
  return `@group(0) @binding(0) var<storage, read> DO: array<f32>;
@group(0) @binding(1) var<storage, read> O: array<f32>;
@group(0) @binding(2) var<storage, read_write> Delta: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let id = (wg.y * nwg.x + wg.x) * 256u + t;
  if (id >= ${u(n)}) { return; }
  let h = id % ${u(s.H)}; let bi = id / ${u(s.H)}; let i = bi % ${u(s.Tq)}; let b = bi / ${u(s.Tq)};
  let base = bi * ${u(HD)} + h * ${u(s.D)};
  var acc = 0.0;
  for (var d = 0u; d < ${u(s.D)}; d++) { acc = fma(DO[base + d], O[base + d], acc); }
  Delta[(b * ${u(s.H)} + h) * ${u(s.Tq)} + i] = acc;
}
`;
}

/**
 * dK, dV. Bindings: Q, K, V, dO, L, Δ → dK, dV. Workgroup (key block of 32, b·h), looping over query
 * chunks of 32: Sᵀ and dPᵀ (8 lanes along queries × 32 along keys, 4 each), then dV += Pᵀ·dO, dK += dSᵀ·Q.
 */
export function attentionBackwardKVWgsl(s: AttentionShape): string {
  const BKV = 32;
  const BQ = 32;
  const VK = sliceRows(s.D);
  const HD = s.H * s.D;
  const g = outGrid(BKV, s.D);
  // Phase A tiles (K, V chunks [DK][32], Q, dO chunks [DK][32]) and phase B rows (dO, Q [VK][D]) alias.
  const tileSize = Math.max(4 * DK * 32, 2 * VK * s.D);
  const acc: string[] = [];
  for (let dd = 0; dd < DK; dd++) {
    acc.push(`kv = tile[${u(dd * BKV)} + ay]; vv = tile[${u(DK * BKV + dd * BKV)} + ay];`);
    for (let j = 0; j < 4; j++) {
      acc.push(`st[${j}] = fma(kv, tile[${u(2 * DK * BKV + dd * BQ + j * 8)} + ax], st[${j}]); dpt[${j}] = fma(vv, tile[${u(2 * DK * BKV + DK * BQ + dd * BQ + j * 8)} + ax], dpt[${j}]);`);
    }
  }
  const upd: string[] = [];
  for (let kk = 0; kk < VK; kk++) {
    for (let i = 0; i < g.RM; i++) upd.push(`p${i} = Pt[(tr + ${u(g.TR * i)}) * ${u(BQ + 1)} + kc + ${u(kk)}]; ds${i} = dSt[(tr + ${u(g.TR * i)}) * ${u(BQ + 1)} + kc + ${u(kk)}];`);
    for (let j = 0; j < g.CN; j++) upd.push(`go${j} = tile[${u(kk * s.D)} + col${j}]; qq${j} = tile[${u(VK * s.D + kk * s.D)} + col${j}];`);
    for (let i = 0; i < g.RM; i++) {
      for (let j = 0; j < g.CN; j++) {
        const k = i * g.CN + j;
        upd.push(`dv[${k}] = fma(p${i}, go${j}, dv[${k}]); dk[${k}] = fma(ds${i}, qq${j}, dk[${k}]);`);
      }
    }
  }
  const qStart = s.causal ? `(j0 / ${u(BQ)}) * ${u(BQ)}` : '0u';
  return `
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> K: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read> DO: array<f32>;
@group(0) @binding(4) var<storage, read> L: array<f32>;
@group(0) @binding(5) var<storage, read> Delta: array<f32>;
@group(0) @binding(6) var<storage, read_write> DK_: array<f32>;
@group(0) @binding(7) var<storage, read_write> DV_: array<f32>;
var<workgroup> tile: array<f32, ${tileSize}>;
var<workgroup> Pt: array<f32, ${BKV * (BQ + 1)}>;
var<workgroup> dSt: array<f32, ${BKV * (BQ + 1)}>;
@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let bh = wg.y; let b = bh / ${u(s.H)}; let h = bh % ${u(s.H)};
  let j0 = wg.x * ${u(BKV)};
  let qBase = b * ${u(s.Tq * HD)} + h * ${u(s.D)};
  let kBase = b * ${u(s.Tk * HD)} + h * ${u(s.D)};
  let ax = t % 8u; let ay = t / 8u;
  let tc = t % ${u(g.TC)}; let tr = t / ${u(g.TC)};
  ${Array.from({ length: g.CN }, (_, j) => `let col${j} = min(tc + ${u(g.TC * j)}, ${u(s.D - 1)});`).join(' ')}
  var dk: array<f32, ${g.RM * g.CN}>;
  var dv: array<f32, ${g.RM * g.CN}>;
  var st: array<f32, 4>; var dpt: array<f32, 4>;
  var kv: f32; var vv: f32;
  ${Array.from({ length: g.RM }, (_, i) => `var p${i}: f32; var ds${i}: f32;`).join(' ')}
  ${Array.from({ length: g.CN }, (_, j) => `var go${j}: f32; var qq${j}: f32;`).join(' ')}
  for (var q0 = ${qStart}; q0 < ${u(s.Tq)}; q0 += ${u(BQ)}) {
    ${unroll(4, (e) => `st[${e}] = 0.0; dpt[${e}] = 0.0;`, ' ')}
    for (var d0 = 0u; d0 < ${u(s.D)}; d0 += ${u(DK)}) {
      workgroupBarrier();
      ${loadChunk('K', 'tile', 0, BKV, 'j0', s.Tk, 'kBase', s)}
      ${loadChunk('V', 'tile', DK * BKV, BKV, 'j0', s.Tk, 'kBase', s)}
      ${loadChunk('Q', 'tile', 2 * DK * BKV, BQ, 'q0', s.Tq, 'qBase', s)}
      ${loadChunk('DO', 'tile', 2 * DK * BKV + DK * BQ, BQ, 'q0', s.Tq, 'qBase', s)}
      workgroupBarrier();
      ${acc.join('\n      ')}
    }
    ${unroll(4, (j) => `{ let qi = q0 + ax + ${u(8 * j)}; let kj = j0 + ay;
      let masked = qi >= ${u(s.Tq)} || kj >= ${u(s.Tk)}${s.causal ? ' || kj > qi' : ''};
      let li = bh * ${u(s.Tq)} + min(qi, ${u(s.Tq - 1)});
      let p = select(exp(st[${j}] * ${f(s.scale)} - L[li]), 0.0, masked);
      Pt[ay * ${u(BQ + 1)} + ax + ${u(8 * j)}] = p;
      dSt[ay * ${u(BQ + 1)} + ax + ${u(8 * j)}] = p * (dpt[${j}] - Delta[li]); }`)}
    for (var kc = 0u; kc < ${u(BQ)}; kc += ${u(VK)}) {
      workgroupBarrier();
      ${loadRows('DO', 'tile', 0, VK, 'q0 + kc', s.Tq, 'qBase', s)}
      ${loadRows('Q', 'tile', VK * s.D, VK, 'q0 + kc', s.Tq, 'qBase', s)}
      workgroupBarrier();
      ${upd.join('\n      ')}
    }
  }
  ${unroll(g.RM, (i) => `{ let r = j0 + tr + ${u(g.TR * i)};
    if (r < ${u(s.Tk)}) {
      ${unroll(g.CN, (j) => `if (tc + ${u(g.TC * j)} < ${u(s.D)}) { let col = tc + ${u(g.TC * j)};
        DK_[kBase + r * ${u(HD)} + col] = dk[${i * g.CN + j}] * ${f(s.scale)}; DV_[kBase + r * ${u(HD)} + col] = dv[${i * g.CN + j}]; }`, '\n      ')}
    } }`, '\n  ')}
}
`;
}

export function attentionBackwardKVGrid(s: AttentionShape): [number, number, number] {
  return [Math.ceil(s.Tk / 32), s.B * s.H, 1];
}

/**
 * dQ. Bindings: Q, K, V, dO, L, Δ → dQ. Workgroup (query block of 64, b·h), looping over key chunks of
 * 32: S and dP (8 lanes along keys × 32 along queries, 2×4 each), then dQ += dS·K.
 */
export function attentionBackwardQWgsl(s: AttentionShape): string {
  const BR = 64;
  const BC = 32;
  const VK = sliceRows(s.D);
  const HD = s.H * s.D;
  const g = outGrid(BR, s.D);
  const tileSize = Math.max(2 * DK * BR + 2 * DK * BC, VK * s.D);
  const acc: string[] = [];
  for (let dd = 0; dd < DK; dd++) {
    for (let i = 0; i < 2; i++) acc.push(`qa${i} = tile[${u(dd * BR + i * 32)} + ay]; ga${i} = tile[${u(DK * BR + dd * BR + i * 32)} + ay];`);
    for (let j = 0; j < 4; j++) acc.push(`kb${j} = tile[${u(2 * DK * BR + dd * BC + j * 8)} + ax]; vb${j} = tile[${u(2 * DK * BR + DK * BC + dd * BC + j * 8)} + ax];`);
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < 4; j++) acc.push(`sc[${i * 4 + j}] = fma(qa${i}, kb${j}, sc[${i * 4 + j}]); dp[${i * 4 + j}] = fma(ga${i}, vb${j}, dp[${i * 4 + j}]);`);
    }
  }
  const upd: string[] = [];
  for (let kk = 0; kk < VK; kk++) {
    for (let i = 0; i < g.RM; i++) upd.push(`ds${i} = dSs[(tr + ${u(g.TR * i)}) * ${u(BC + 1)} + kc + ${u(kk)}];`);
    for (let j = 0; j < g.CN; j++) upd.push(`kr${j} = tile[${u(kk * s.D)} + col${j}];`);
    for (let i = 0; i < g.RM; i++) for (let j = 0; j < g.CN; j++) upd.push(`dq[${i * g.CN + j}] = fma(ds${i}, kr${j}, dq[${i * g.CN + j}]);`);
  }
  const jEnd = s.causal ? `min(${u(s.Tk)}, i0 + ${u(BR)})` : u(s.Tk);
  return `
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> K: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read> DO: array<f32>;
@group(0) @binding(4) var<storage, read> L: array<f32>;
@group(0) @binding(5) var<storage, read> Delta: array<f32>;
@group(0) @binding(6) var<storage, read_write> DQ: array<f32>;
var<workgroup> tile: array<f32, ${tileSize}>;
var<workgroup> dSs: array<f32, ${BR * (BC + 1)}>;
@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let bh = wg.y; let b = bh / ${u(s.H)}; let h = bh % ${u(s.H)};
  let i0 = wg.x * ${u(BR)};
  let qBase = b * ${u(s.Tq * HD)} + h * ${u(s.D)};
  let kBase = b * ${u(s.Tk * HD)} + h * ${u(s.D)};
  let ax = t % 8u; let ay = t / 8u;
  let tc = t % ${u(g.TC)}; let tr = t / ${u(g.TC)};
  ${Array.from({ length: g.CN }, (_, j) => `let col${j} = min(tc + ${u(g.TC * j)}, ${u(s.D - 1)});`).join(' ')}
  var rowL: array<f32, 2>; var rowD: array<f32, 2>;
  ${unroll(2, (i) => `{ let li = bh * ${u(s.Tq)} + min(i0 + ay + ${u(32 * i)}, ${u(s.Tq - 1)}); rowL[${i}] = L[li]; rowD[${i}] = Delta[li]; }`, '\n  ')}
  var dq: array<f32, ${g.RM * g.CN}>;
  var sc: array<f32, 8>; var dp: array<f32, 8>;
  var qa0: f32; var qa1: f32; var ga0: f32; var ga1: f32;
  ${Array.from({ length: 4 }, (_, j) => `var kb${j}: f32; var vb${j}: f32;`).join(' ')}
  ${Array.from({ length: g.RM }, (_, i) => `var ds${i}: f32;`).join(' ')} ${Array.from({ length: g.CN }, (_, j) => `var kr${j}: f32;`).join(' ')}
  for (var j0 = 0u; j0 < ${jEnd}; j0 += ${u(BC)}) {
    ${unroll(8, (e) => `sc[${e}] = 0.0; dp[${e}] = 0.0;`, ' ')}
    for (var d0 = 0u; d0 < ${u(s.D)}; d0 += ${u(DK)}) {
      workgroupBarrier();
      ${loadChunk('Q', 'tile', 0, BR, 'i0', s.Tq, 'qBase', s)}
      ${loadChunk('DO', 'tile', DK * BR, BR, 'i0', s.Tq, 'qBase', s)}
      ${loadChunk('K', 'tile', 2 * DK * BR, BC, 'j0', s.Tk, 'kBase', s)}
      ${loadChunk('V', 'tile', 2 * DK * BR + DK * BC, BC, 'j0', s.Tk, 'kBase', s)}
      workgroupBarrier();
      ${acc.join('\n      ')}
    }
    ${unroll(8, (e) => `{ let r = ay + ${u(32 * Math.floor(e / 4))}; let c = ax + ${u(8 * (e % 4))};
      let masked = i0 + r >= ${u(s.Tq)} || j0 + c >= ${u(s.Tk)}${s.causal ? ' || j0 + c > i0 + r' : ''};
      let p = select(exp(sc[${e}] * ${f(s.scale)} - rowL[${Math.floor(e / 4)}]), 0.0, masked);
      dSs[r * ${u(BC + 1)} + c] = p * (dp[${e}] - rowD[${Math.floor(e / 4)}]); }`)}
    for (var kc = 0u; kc < ${u(BC)}; kc += ${u(VK)}) {
      workgroupBarrier();
      ${loadRows('K', 'tile', 0, VK, 'j0 + kc', s.Tk, 'kBase', s)}
      workgroupBarrier();
      ${upd.join('\n      ')}
    }
  }
  ${unroll(g.RM, (i) => `{ let r = i0 + tr + ${u(g.TR * i)};
    if (r < ${u(s.Tq)}) {
      ${unroll(g.CN, (j) => `if (tc + ${u(g.TC * j)} < ${u(s.D)}) { DQ[qBase + r * ${u(HD)} + tc + ${u(g.TC * j)}] = dq[${i * g.CN + j}] * ${f(s.scale)}; }`, '\n      ')}
    } }`, '\n  ')}
}
`;
}

export function attentionBackwardQGrid(s: AttentionShape): [number, number, number] {
  return [Math.ceil(s.Tq / 64), s.B * s.H, 1];
}
