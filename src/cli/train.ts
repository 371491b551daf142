// `lora-studio train CONFIG.lora.yaml` or `lora-studio train --pretrained_model_name_or_path=… [the guide's flags]`.
//
// The config is validated (and checked against the disk) before anything is loaded; every problem is
// listed, by key and line. Then the run: protocol events on stdout (JSON lines, for the extension and
// scripts), logs on stderr, and on a terminal a progress bar on stderr instead of raw events. `stop`,
// `checkpoint` and `sample` are read from stdin; Ctrl-C (SIGINT) or SIGTERM saves a checkpoint and exits 0.
//
// Exit status: 0 completed or stopped on request, 1 the run failed (error event), 2 the config is invalid.
import path from 'node:path';
import { outsideTrustedFolders, realPathOfNearest, trustedWriteFolders } from '../core/config/paths.js';
import { isCheckpointTemporary, setWriteProbe } from '../core/config/run_folder.js';
import { loadRunConfig, loadRunConfigWithOverrides, type LoadedRunConfig } from '../core/config/load.js';
import { configFromFlags } from '../core/config/flags.js';
import { formatProblems, summarizeProblems, hasErrors } from '../core/config/problems.js';
import { train, type TrainHooks } from '../training/loop.js';
import { DownloadBar, ProgressBar, clock, type TerminalStream } from './terminal.js';
import { ControlRequests, StreamEventSink, TeeEventSink, listenForCommands, handleStopSignals, type EventInput, type EventSink } from '../training/events.js';

const HELP = `usage: lora-studio train CONFIG.lora.yaml
       lora-studio train --pretrained_model_name_or_path=DIR --train_data_dir=DIR [--flag=value …]

Trains a LoRA as diffusers' train_text_to_image_lora.py does. The flags are the guide's (--rank, --learning_rate,
--max_train_steps, --checkpointing_steps, --resume_from_checkpoint=latest, …) plus --backend, --cache_latents and
--save_formats; a *.lora.yaml holds the same keys.

While it runs: type stop, checkpoint or sample (Enter) — or send {"type":"stop"} lines on stdin; Ctrl-C saves a
checkpoint and stops (twice: exit at once). Protocol events go to stdout as JSON lines when stdout is not a
terminal (or with --json or LORA_STUDIO_EVENTS=1); logs and the progress bar go to stderr.

  --json       protocol events (JSON lines) on stdout even on a terminal
  --quiet, -q  no progress bar; warnings, errors and the output paths only

Exit status: 0 completed (or stopped on request), 1 the run failed, 2 the config or the command line is invalid.`;

export async function runTrainCommand(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    console.log(HELP);
    return 0;
  }
  const quiet = args.includes('--quiet') || args.includes('-q');
  const json = args.includes('--json');
  const argv = args.filter((a) => !['--quiet', '-q', '--json'].includes(a));
  const eventsOnStdout = json || !process.stdout.isTTY || process.env.LORA_STUDIO_EVENTS === '1';
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
  console.error(writesToLine(loaded.config.output_dir, loaded.file === 'command line' ? process.cwd() : path.dirname(path.resolve(loaded.file))));

  // Anything that prints with console.log from here on (a dependency) must not corrupt the protocol.
  const restoreConsole = redirectConsoleLog();
  const terminal = new ProgressSink(process.stderr, quiet);
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

/**
 * Said before anything is written, --quiet too (issue 18: a config from a cloned repository can point
 * anywhere): the folder the run really writes (symlinks resolved), and when that is outside the config's
 * folder and the home folder, that it is.
 */
export function writesToLine(outputDir: string, configDir: string): string {
  const real = realPathOfNearest(outputDir);
  const outside = outsideTrustedFolders(real, trustedWriteFolders([configDir]));
  return `lora-studio train: writes to ${real}${outside ? ` — outside ${configDir} and your home folder` : ''}`;
}

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
 * For the kill tests only: LORA_STUDIO_TEST_PAUSE_CHECKPOINT=<step> makes that step's checkpoint, once its
 * files are written and before it is published, announce itself on stderr and wait a minute, so the test
 * can SIGKILL the process in the middle of a checkpoint write, deterministically.
 * LORA_STUDIO_TEST_PAUSE_WRITE=<n> pauses the same way at the n-th stage of the run's atomic writes
 * (run_folder.ts's WriteProbe: half a file written, a file in place, a folder moved aside for deletion).
 */
function testHooks(): TrainHooks | undefined {
  const nth = Number(process.env.LORA_STUDIO_TEST_PAUSE_WRITE);
  if (nth > 0) {
    let seen = 0;
    setWriteProbe((stage, file) => {
      if (++seen !== nth) return;
      process.stderr.write(`test: paused at write ${nth} (${stage} ${file})\n`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
    });
  }
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

/** The trainer's events for a person: progress as the shared bar (terminal.ts), other events as lines above it. */
class ProgressSink implements EventSink {
  private readonly bar: ProgressBar;
  private readonly download: DownloadBar;
  constructor(
    out: TerminalStream,
    private readonly quiet: boolean,
  ) {
    this.bar = new ProgressBar(out, { label: 'train', quiet });
    this.download = new DownloadBar(out, quiet, (line) => this.bar.log(line));
  }

  emit(e: EventInput): void {
    if (e.type === 'download') return this.download.update(e);
    if (e.type === 'progress') {
      this.bar.update(e.step, e.totalSteps, `loss ${e.loss.toFixed(4)} · ${e.samplesPerSecond.toFixed(2)} samples/s · ETA ${clock(e.etaSeconds)}`);
      return;
    }
    const text = describe(e);
    if (text) this.bar.log(text);
  }

  log(message: string): void {
    // --quiet keeps what needs a person's attention: errors and warnings.
    if (this.quiet && !/^(error|warning)\b/.test(message)) return;
    this.bar.log(message);
  }

  done(): void {
    this.bar.finish();
  }
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
