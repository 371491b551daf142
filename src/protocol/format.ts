// How the status bar and the dashboard write durations and losses: the pure helpers the webview bundle
// may import as values (everything else it takes from src/protocol is types only).

/** "1:05:03", "4:09", "0:07" — compact and stable width, for ETAs and elapsed times. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** Loss values span 1e-4..10: four significant digits read well everywhere. */
export function formatLoss(loss: number): string {
  if (!Number.isFinite(loss)) return String(loss);
  return loss === 0 ? '0' : Math.abs(loss) >= 1e-3 ? loss.toFixed(4) : loss.toExponential(2);
}
