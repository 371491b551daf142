// `lora-studio train CONFIG.lora.yaml` or `lora-studio train --pretrained_model_name_or_path=… [the guide's flags]`.
//
// The config is validated (and checked against the disk) before anything is loaded; every problem is
// listed, by key and line. Then the run: protocol events on stdout (JSON lines, for the extension and
// scripts), logs on stderr, and on a terminal a progress bar on stderr instead of raw events. `stop`,
// `checkpoint` and `sample` are read from stdin; Ctrl-C (SIGINT) or SIGTERM saves a checkpoint and exits 0.
//
// Exit status: 0 completed or stopped on request, 1 the run failed (error event), 2 the config is invalid.
import { isCheckpointTemporary } from '../core/config/run_folder.js';
import { loadRunConfig, loadRunConfigWithOverrides, type LoadedRunConfig } from '../core/config/load.js';
import { configFromFlags } from '../core/config/flags.js';
import { formatProblems, summarizeProblems, hasErrors } from '../core/config/problems.js';
import { train, type TrainHooks } from '../training/loop.js';
import { formatBytes } from '../protocol/format.js';
import { ControlRequests, StreamEventSink, TeeEventSink, listenForCommands, handleStopSignals, type EventInput, type EventSink } from '../training/events.js';

const HELP = `usage: lora-studio train CONFIG.lora.yaml
       lora-studio train --pretrained_model_name_or_path=DIR --train_data_dir=DIR [--flag=value …]

Trains a LoRA as diffusers' train_text_to_image_lora.py does. The flags are the guide's (--rank, --learning_rate,
--max_train_steps, --checkpointing_steps, --resume_from_checkpoint=latest, …) plus --backend, --cache_latents and
--save_formats; a *.lora.yaml holds the same keys.

While it runs: type stop, checkpoint or sample (Enter) — or send {"type":"stop"} lines on stdin; Ctrl-C saves a
checkpoint and stops (twice: exit at once). Protocol events go to stdout as JSON lines when stdout is not a
terminal (or with LORA_STUDIO_EVENTS=1); logs and the progress bar go to stderr.`;

export async function runTrainCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(HELP);
    return 0;
  }
  const eventsOnStdout = !process.stdout.isTTY || process.env.LORA_STUDIO_EVENTS === '1';
  const protocol = new StreamEventSink(eventsOnStdout ? process.stdout : devNull, process.stderr);

  const loaded = loadConfig(argv);
  if (!loaded) {
    console.error(HELP);
    return 2;
  }
  const warnings = loaded.problems.filter((p) => p.severity !== 'error');
  if (!loaded.config || hasErrors(loaded.problems)) {
    const errors = loaded.problems.filter((p) => p.severity === 'error');
    console.error(formatProblems(loaded.problems, displayName(loaded)));
    console.error(`lora-studio train: the run config has ${summarizeProblems(loaded.problems)}; nothing was loaded.`);
    protocol.emit({ type: 'error', code: 'config', message: errors.map((p) => p.message).join('\n'), hint: `fix ${displayName(loaded)} and run again` });
    return 2;
  }
  if (warnings.length) console.error(formatProblems(warnings, displayName(loaded)));

  // Anything that prints with console.log from here on (a dependency) must not corrupt the protocol.
  const restoreConsole = redirectConsoleLog();
  const terminal = process.stderr.isTTY ? new TerminalProgress(process.stderr) : new PlainProgress(process.stderr);
  const events: EventSink = new TeeEventSink(new StreamEventSink(eventsOnStdout ? process.stdout : devNull, devNull), terminal);
  const requests = new ControlRequests();
  const stopListening = listenForCommands(process.stdin, requests, events);
  const uninstallSignals = handleStopSignals(requests, events);
  try {
    const result = await train({ config: loaded.config, configPath: loaded.file === 'command line' ? undefined : loaded.file, events, requests, hooks: testHooks() });
    terminal.done();
    return result.status === 'failed' ? 1 : 0;
  } finally {
    uninstallSignals();
    stopListening();
    restoreConsole();
  }
}

function loadConfig(argv: string[]): LoadedRunConfig | undefined {
  const files = argv.filter((a) => !a.startsWith('-'));
  if (files.length === 1 && argv.length === 1) return loadRunConfig(files[0]);
  // A config file first, then --key=value overrides (the extension resumes runs this way).
  if (argv.length > 1 && !argv[0].startsWith('-') && /\.ya?ml$/i.test(argv[0])) return loadRunConfigWithOverrides(argv[0], argv.slice(1));
  if (argv.some((a) => a.startsWith('--'))) return configFromFlags(argv);
  if (argv.length === 0) console.error('lora-studio train: give a run config file (*.lora.yaml) or the guide\'s flags');
  else console.error(`lora-studio train: expected one run config file or --flags, got: ${argv.join(' ')}`);
  return undefined;
}

const displayName = (l: LoadedRunConfig) => l.file;

const devNull = { write: () => true } as unknown as NodeJS.WritableStream & import('node:stream').Writable;

function redirectConsoleLog(): () => void {
  const { log, info } = console;
  console.log = (...args: unknown[]) => console.error(...args);
  console.info = (...args: unknown[]) => console.error(...args);
  return () => {
    console.log = log;
    console.info = info;
  };
}

/**
 * For the kill test only: LORA_STUDIO_TEST_PAUSE_CHECKPOINT=<step> makes that step's checkpoint, once its
 * files are written and before it is published, announce itself on stderr and wait a minute, so the test
 * can SIGKILL the process in the middle of a checkpoint write, deterministically.
 */
function testHooks(): TrainHooks | undefined {
  const step = process.env.LORA_STUDIO_TEST_PAUSE_CHECKPOINT;
  if (!step) return undefined;
  return {
    beforeCheckpointPublish(tmpDir) {
      if (!isCheckpointTemporary(tmpDir, Number(step))) return;
      process.stderr.write(`test: checkpoint files written to ${tmpDir}; pausing before publishing\n`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
    },
  };
}

/** Progress as one line redrawn on a terminal; other events and logs printed above it. */
class TerminalProgress implements EventSink {
  private line = '';
  private readonly rate = new DownloadRate();
  constructor(private readonly out: NodeJS.WriteStream) {}

  emit(e: EventInput): void {
    if (e.type === 'download') {
      const width = Math.max(8, Math.min(30, (this.out.columns ?? 80) - 70));
      const filled = Math.round((width * e.bytes) / Math.max(1, e.totalBytes));
      const { perSecond, eta } = this.rate.update(e.repo, e.bytes, e.totalBytes);
      this.line = `${'█'.repeat(filled)}${'░'.repeat(width - filled)} ${e.repo} ${formatBytes(e.bytes)}/${formatBytes(e.totalBytes)} ${formatBytes(perSecond)}/s ETA ${clock(eta)} (${e.filesDone}/${e.totalFiles} files)`;
      if (e.filesDone === e.totalFiles) {
        this.log(`downloaded ${e.repo}: ${formatBytes(e.totalBytes)} in ${e.totalFiles} files`);
        this.line = '';
      } else this.redraw();
      return;
    }
    if (e.type === 'progress') {
      const width = Math.max(8, Math.min(30, (this.out.columns ?? 80) - 62));
      const filled = Math.round((width * e.step) / Math.max(1, e.totalSteps));
      const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
      this.line = `${bar} ${e.step}/${e.totalSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(1)} ${e.samplesPerSecond.toFixed(1)} img/s ETA ${clock(e.etaSeconds)}`;
      this.redraw();
      return;
    }
    const text = describe(e);
    if (text) this.log(text);
  }

  log(message: string): void {
    this.out.write(`\r\x1b[2K${message.replace(/\n$/, '')}\n`);
    this.redraw();
  }

  done(): void {
    if (this.line) this.out.write('\n');
    this.line = '';
  }

  private redraw(): void {
    if (this.line) this.out.write(`\r\x1b[2K${this.line.slice(0, (this.out.columns ?? 200) - 1)}`);
  }
}

/** Stderr that is a file or a pipe: logs as they come, and a progress line at most every 10 s (and the last). */
class PlainProgress implements EventSink {
  private last = 0;
  constructor(private readonly out: NodeJS.WritableStream) {}

  emit(e: EventInput): void {
    if (e.type === 'download') {
      const now = Date.now();
      if (now - this.last < 10_000 && e.filesDone !== e.totalFiles) return;
      this.last = now;
      this.out.write(`download ${e.repo}: ${formatBytes(e.bytes)}/${formatBytes(e.totalBytes)}, ${e.filesDone}/${e.totalFiles} files\n`);
      return;
    }
    if (e.type === 'progress') {
      const now = Date.now();
      if (now - this.last < 10_000 && e.step !== e.totalSteps && e.step !== 1) return;
      this.last = now;
      this.out.write(`step ${e.step}/${e.totalSteps}  loss ${e.loss.toFixed(4)}  lr ${e.lr.toExponential(2)}  ${e.samplesPerSecond.toFixed(2)} img/s  ETA ${clock(e.etaSeconds)}\n`);
      return;
    }
    const text = describe(e);
    if (text) this.log(text);
  }

  log(message: string): void {
    this.out.write(message.endsWith('\n') ? message : message + '\n');
  }

  done(): void {}
}

/** A line for the events a person should see (started and finished details come from the trainer's logs). */
function describe(e: EventInput): string | undefined {
  switch (e.type) {
    case 'warning':
      return `warning: ${e.message}`;
    case 'sample':
      return `sample: ${e.path}`;
    case 'pushed':
      return `pushed to ${e.url}`;
    case 'finished':
      return e.reason === 'completed' ? `done in ${clock(e.elapsedSeconds)}: ${e.outputs.lora ?? ''}` : `stopped at step ${e.step}; checkpoint ${e.outputs.checkpoint ?? '(none)'}`;
    default:
      return undefined; // error and checkpoint are logged by the trainer itself
  }
}

/** Bytes per second over the last ~5 s of a download, and the time left at that rate. */
class DownloadRate {
  private samples: { t: number; bytes: number }[] = [];
  private repo = '';
  update(repo: string, done: number, total: number): { perSecond: number; eta: number } {
    const t = Date.now();
    if (repo !== this.repo) [this.repo, this.samples] = [repo, []];
    this.samples.push({ t, bytes: done });
    while (this.samples.length > 2 && t - this.samples[0].t > 5000) this.samples.shift();
    const first = this.samples[0];
    const perSecond = t > first.t ? ((done - first.bytes) * 1000) / (t - first.t) : 0;
    return { perSecond, eta: perSecond > 0 ? (total - done) / perSecond : Infinity };
  }
}

function clock(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}
