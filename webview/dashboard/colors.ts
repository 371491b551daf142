// Colour arithmetic for the charts: WCAG 2 relative luminance and contrast, compositing a translucent
// stroke over the background, and the least opacity that keeps a line at 3:1 (WCAG 1.4.11, non-text
// contrast). Pure, so the browser test and the page compute the same numbers.

export type Rgb = [number, number, number];

/** `#rgb`, `#rrggbb`, `#rrggbbaa`, `rgb(…)`, `rgba(…)` → [r, g, b] 0..255 and alpha 0..1; undefined otherwise. */
export function parseColor(css: string): { rgb: Rgb; alpha: number } | undefined {
  const s = css.trim();
  const hex = /^#([0-9a-f]{3,8})$/i.exec(s)?.[1];
  if (hex && [3, 4, 6, 8].includes(hex.length)) {
    const full = hex.length <= 4 ? [...hex].map((c) => c + c).join('') : hex;
    const n = (i: number) => parseInt(full.slice(i, i + 2), 16);
    return { rgb: [n(0), n(2), n(4)], alpha: full.length === 8 ? n(6) / 255 : 1 };
  }
  const m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)(?:[\s,/]+([\d.]+%?))?\s*\)$/i.exec(s);
  if (m) {
    const a = m[4] === undefined ? 1 : m[4].endsWith('%') ? Number(m[4].slice(0, -1)) / 100 : Number(m[4]);
    return { rgb: [Number(m[1]), Number(m[2]), Number(m[3])], alpha: a };
  }
  return undefined;
}

export function luminance([r, g, b]: Rgb): number {
  const lin = (c: number) => {
    const v = c / 255;
    return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

export function contrast(a: Rgb, b: Rgb): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

/** `fg` at opacity `alpha` painted over the opaque `bg`. */
export function over(fg: Rgb, alpha: number, bg: Rgb): Rgb {
  return [0, 1, 2].map((i) => Math.round(fg[i] * alpha + bg[i] * (1 - alpha))) as Rgb;
}

export function toHex([r, g, b]: Rgb, alpha = 1): string {
  const h = (n: number) => Math.round(n).toString(16).padStart(2, '0');
  return `#${h(r)}${h(g)}${h(b)}${alpha < 1 ? h(alpha * 255) : ''}`;
}

/**
 * The stroke to draw: `color` at the wanted opacity, raised (in steps of 0.05) until the line composited
 * over `bg` reaches `min` contrast; if even opaque it does not, `fallback` (the theme's foreground). The
 * result is an opaque colour, what the line looks like on the background.
 */
export function legibleStroke(color: Rgb, alpha: number, bg: Rgb, fallback: Rgb, min = 3): Rgb {
  for (let a = alpha; a <= 1.0001; a += 0.05) {
    const c = over(color, Math.min(a, 1), bg);
    if (contrast(c, bg) >= min) return c;
  }
  return contrast(color, bg) >= min ? color : fallback;
}
