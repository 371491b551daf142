// "Did you mean …?": the nearest known name to a misspelt one.

// Rows reused across calls: the language server computes thousands of these for a file full of typos.
let rows: [Uint16Array, Uint16Array, Uint16Array] = [new Uint16Array(64), new Uint16Array(64), new Uint16Array(64)];

/**
 * Optimal string alignment distance: Levenshtein plus adjacent transpositions ("lerning" ↔ "learning",
 * "rnak" ↔ "rank"). Stops early and returns max + 1 once the distance must exceed `max`.
 */
export function editDistance(a: string, b: string, max = Infinity): number {
  const n = a.length;
  const m = b.length;
  if (Math.abs(n - m) > max) return max + 1;
  if (!n) return m;
  if (!m) return n;
  if (rows[0].length <= m) rows = [new Uint16Array(m + 1), new Uint16Array(m + 1), new Uint16Array(m + 1)];
  let [prev2, prev, cur] = rows;
  for (let j = 0; j <= m; j++) prev[j] = j;
  for (let i = 1; i <= n; i++) {
    cur[0] = i;
    let rowMin = i;
    for (let j = 1; j <= m; j++) {
      const cost = a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1;
      let d = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && a.charCodeAt(i - 1) === b.charCodeAt(j - 2) && a.charCodeAt(i - 2) === b.charCodeAt(j - 1)) d = Math.min(d, prev2[j - 2] + 1);
      cur[j] = d;
      if (d < rowMin) rowMin = d;
    }
    if (rowMin > max) return max + 1;
    [prev2, prev, cur] = [prev, cur, prev2];
  }
  return prev[m];
}

/** Spelling differences that are not typos: case and dashes (`--learning-rate`, `Learning_Rate`). */
function normalize(s: string): string {
  return s.toLowerCase().replace(/-/g, '_');
}

export interface NearestOptions {
  /**
   * The fewest edits always accepted, however short the name (default 1). The notebook's cell keys and
   * sampler names are few and short, so there 2 still means a typo (`dpm` → `ddim`); among the run
   * config's ~45 keys 2 edits on a short name are usually another key.
   */
  readonly minEdits?: number;
}

/**
 * The candidate nearest to `name`, if near enough to be a typo: at most a third of the name's length in
 * edits (at least `minEdits`, at most 3). Failing that, a candidate that starts or ends with the name (3
 * letters or more: `cos` → `cosine`, `lr_warmup` → `lr_warmup_steps`), the closest such one. Case and
 * `-`/`_` do not count as differences. Ties go to the earlier candidate.
 */
export function nearest(name: string, candidates: Iterable<string>, o: NearestOptions = {}): string | undefined {
  const n = normalize(name);
  const minEdits = o.minEdits ?? 1;
  const limit = Math.min(Math.max(3, minEdits), Math.max(minEdits, Math.floor(n.length / 3)));
  let best: string | undefined;
  let bestScore = Infinity;
  for (const c of candidates) {
    const cn = normalize(c);
    const d = editDistance(n, cn, limit);
    let score = Infinity;
    if (d <= limit) score = d;
    // Among names that merely start or end with it, the shortest.
    else if (n.length >= 3 && (cn.startsWith(n) || cn.endsWith(n))) score = limit + 1 + (cn.length - n.length) / 1000;
    if (score < bestScore) {
      bestScore = score;
      best = c;
    }
  }
  return best;
}
