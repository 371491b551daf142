// What the command line shows a person: one progress bar redrawn in place on a terminal (training steps,
// generations, downloads), log lines printed above it, colours only on a terminal and never with
// NO_COLOR (https://no-color.org) or TERM=dumb. On a pipe or a file the same progress is a plain line at
// most every `plainEveryMs` (and the first and the last), so logs stay readable and short.
//
// Every command shares this module: `ProgressBar` for anything with a count and a total, `colours(stream)`
// for emphasis, `clock` for durations.
import { formatBytes, formatDuration } from '../protocol/format.js';

/** The stream to draw on: process.stderr in the commands, a fake in tests. */
export interface TerminalStream {
  write(chunk: string): boolean;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface Colours {
  bold(s: string): string;
  dim(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  red(s: string): string;
  cyan(s: string): string;
}

/**
 * Whether the bar is redrawn in place: on a terminal, or when LORA_STUDIO_PROGRESS=bar says the pipe
 * ends on one (the demo tees its children's stderr into a log). Width: the stream's, else COLUMNS, else 80.
 */
export function drawsInPlace(stream: TerminalStream, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(stream.isTTY) || env.LORA_STUDIO_PROGRESS === 'bar';
}
const columnsOf = (stream: TerminalStream) => stream.columns || Number(process.env.COLUMNS) || 80;

/** True when colours may be written to `stream`: a terminal, NO_COLOR unset or empty, TERM not "dumb". */
export function coloursEnabled(stream: TerminalStream, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '' && env.FORCE_COLOR !== '0') return true;
  return Boolean(stream.isTTY) && env.TERM !== 'dumb';
}

export function colours(stream: TerminalStream, env: NodeJS.ProcessEnv = process.env): Colours {
  const on = coloursEnabled(stream, env);
  const sgr = (open: number, close: number) => (s: string) => (on ? `\x1b[${open}m${s}\x1b[${close}m` : s);
  return { bold: sgr(1, 22), dim: sgr(2, 22), green: sgr(32, 39), yellow: sgr(33, 39), red: sgr(31, 39), cyan: sgr(36, 39) };
}

/** Seconds as m:ss or h:mm:ss (the status bar's and dashboard's format); "?" when unknown. */
export function clock(seconds: number): string {
  return formatDuration(seconds, '?');
}

/** A bar of `width` cells, `fraction` of them filled. */
export function bar(fraction: number, width: number): string {
  const filled = Math.max(0, Math.min(width, Math.round(width * fraction)));
  return '█'.repeat(filled) + '░'.repeat(width - filled);
}

export interface ProgressOptions {
  /** Printed before the bar ("train", "generate", a file name). */
  readonly label?: string;
  /** On a pipe or file: at most one progress line this often (default 10 s). */
  readonly plainEveryMs?: number;
  /** Hide the bar entirely (--quiet); log lines still print. */
  readonly quiet?: boolean;
}

/**
 * One progress bar: `update(done, total, detail)` redraws it (on a terminal) or prints a line now and then
 * (elsewhere); `log` prints a line above it; `finish` ends the bar's line. The ETA is the caller's (in
 * `detail`) or, when it gives none, estimated from the rate since the first update.
 */
export class ProgressBar {
  private line = '';
  private lastPlain = -Infinity;
  private started?: number;
  private startedAt = 0;
  private readonly c: Colours;

  constructor(
    private readonly out: TerminalStream,
    private readonly o: ProgressOptions = {},
  ) {
    this.c = colours(out);
  }

  /** `detail` follows the count ("loss 0.0123 · 3.2 samples/s · ETA 1:02"); without one, an ETA is estimated. */
  update(done: number, total: number, detail?: string): void {
    if (this.o.quiet) return;
    const now = Date.now();
    if (this.started === undefined) {
      this.started = now;
      this.startedAt = done;
    }
    const rate = (done - this.startedAt) / Math.max(1e-3, (now - this.started) / 1000);
    const text = detail ?? (rate > 0 ? `ETA ${clock((total - done) / rate)}` : '');
    const label = this.o.label ? `${this.c.bold(this.o.label)} ` : '';
    const count = `${done}/${total}`;
    if (drawsInPlace(this.out)) {
      const columns = columnsOf(this.out);
      const width = Math.max(8, Math.min(30, columns - visibleLength(label + count + text) - 4));
      this.line = `${label}${this.c.cyan(bar(done / Math.max(1, total), width))} ${count} ${text}`;
      this.redraw();
      return;
    }
    const last = done >= total;
    if (!last && done !== 1 && now - this.lastPlain < (this.o.plainEveryMs ?? 10_000)) return;
    this.lastPlain = now;
    this.out.write(`${label}${count} ${text}\n`);
  }

  /** A line above the bar (the bar is redrawn under it on a terminal). */
  log(message: string): void {
    const text = message.replace(/\n$/, '');
    if (drawsInPlace(this.out) && this.line) {
      this.out.write(`\r\x1b[2K${text}\n`);
      this.redraw();
    } else {
      this.out.write(`${text}\n`);
    }
  }

  /** Ends the bar's line; the next output starts on a fresh line. */
  finish(): void {
    if (drawsInPlace(this.out) && this.line) this.out.write('\n');
    this.line = '';
    this.started = undefined;
  }

  private redraw(): void {
    if (!this.line) return;
    const columns = columnsOf(this.out);
    this.out.write(`\r\x1b[2K${truncateVisible(this.line, columns - 1)}`);
  }
}

const SGR = /\x1b\[[0-9;]*m/g;
const visibleLength = (s: string) => s.replace(SGR, '').length;

/** Cuts a line to `max` visible characters, keeping colour codes intact. */
function truncateVisible(s: string, max: number): string {
  if (visibleLength(s) <= max) return s;
  let out = '';
  let n = 0;
  for (const part of s.split(/(\x1b\[[0-9;]*m)/)) {
    if (part.startsWith('\x1b[')) out += part;
    else {
      const take = part.slice(0, Math.max(0, max - n));
      out += take;
      n += take.length;
    }
  }
  return out + (coloursPresent(s) ? '\x1b[0m' : '');
}
const coloursPresent = (s: string) => s.includes('\x1b[');

/** What a Hub download reports (core/hub/download.ts DownloadProgress, the protocol's `download` event). */
export interface DownloadState {
  repo: string;
  bytes: number;
  totalBytes: number;
  filesDone: number;
  totalFiles: number;
}

/** A Hub download as a bar: files, bytes, the rate over the last ~5 s and the ETA; one line when it ends. */
export class DownloadBar {
  private readonly bar: ProgressBar;
  private samples: { t: number; bytes: number }[] = [];
  private repo = '';

  constructor(
    out: TerminalStream,
    quiet: boolean,
    private readonly logLine: (line: string) => void,
  ) {
    this.bar = new ProgressBar(out, { label: 'download', quiet });
  }

  update(e: DownloadState): void {
    const t = Date.now();
    if (e.repo !== this.repo) [this.repo, this.samples] = [e.repo, []];
    this.samples.push({ t, bytes: e.bytes });
    while (this.samples.length > 2 && t - this.samples[0].t > 5000) this.samples.shift();
    const first = this.samples[0];
    const perSecond = t > first.t ? ((e.bytes - first.bytes) * 1000) / (t - first.t) : 0;
    const eta = perSecond > 0 ? (e.totalBytes - e.bytes) / perSecond : Infinity;
    if (e.filesDone === e.totalFiles) {
      this.bar.finish();
      this.logLine(`downloaded ${e.repo}: ${formatBytes(e.totalBytes)} in ${e.totalFiles} files`);
    } else {
      this.bar.update(e.filesDone, e.totalFiles, `files · ${e.repo} ${formatBytes(e.bytes)}/${formatBytes(e.totalBytes)} · ${formatBytes(perSecond)}/s · ETA ${clock(eta)}`);
    }
  }
}
