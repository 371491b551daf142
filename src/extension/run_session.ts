// One training run: the trainer as a child process, spoken to in the JSON-lines protocol of
// src/protocol/training.ts (framed by src/protocol/jsonl.ts). No `vscode` import, so the session logic is tested in plain node against the
// real trainer and a fake one; the extension attaches the status bar, notifications and dashboard to it.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import {
  TRAINER_COMMANDS,
  TRAINER_EVENTS,
  type CheckpointEvent,
  type ErrorEvent,
  type FinishedEvent,
  type PhaseEvent,
  type ProgressEvent,
  type SampleEvent,
  type StartedEvent,
  type TrainerCommand,
  type TrainerEvent,
  type ValidationLossEvent,
} from '../protocol/training.js';
import type { RunState } from '../protocol/dashboard.js';
import { Emitter, splitLines } from './util.js';

/** How to start the trainer program: `<nodePath> <trainerPath> train CONFIG …`. */
export interface TrainerLaunch {
  nodePath: string;
  /** Arguments for node itself, before the script (tests run the TypeScript source with `--import tsx`). */
  nodeArgs?: string[];
  /** dist/cli.mjs (or a fake trainer in tests). */
  trainerPath: string;
  /** Variables added to the environment (e.g. ELECTRON_RUN_AS_NODE when the node is VS Code's Electron). */
  env?: Record<string, string>;
}

export interface RunSessionOptions {
  launch: TrainerLaunch;
  /** Absolute path of the *.lora.yaml. */
  configPath: string;
  /** Continue from the latest checkpoint in the output folder. */
  resume?: boolean;
  /** The output folder the validated config names, known before the trainer says `started`. */
  outputDir?: string;
  /** Overrides the config's `backend` (the loraStudio.backend setting), undefined to keep it. */
  backend?: string;
}

export interface RunHistory {
  started?: StartedEvent;
  progress: ProgressEvent[];
  samples: SampleEvent[];
  checkpoints: CheckpointEvent[];
  warnings: string[];
  error?: ErrorEvent;
  finished?: FinishedEvent;
  /** The last phase event (validating, saving, …). */
  phase?: PhaseEvent;
  validationLosses: ValidationLossEvent[];
}

export interface RunExit {
  state: 'completed' | 'stopped' | 'failed';
  /** What a person reads: why it failed, or what it produced. */
  message: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: ErrorEvent;
  finished?: FinishedEvent;
}

/** Lines of stderr kept to explain a crash that sent no `error` event. */
const STDERR_TAIL_LINES = 20;

export class RunSession {
  readonly configPath: string;
  readonly name: string;
  readonly history: RunHistory = { progress: [], samples: [], checkpoints: [], warnings: [], validationLosses: [] };
  readonly onEvent = new Emitter<TrainerEvent>();
  /** stderr lines, and stdout lines that are not protocol events. */
  readonly onLog = new Emitter<string>();
  readonly onState = new Emitter<RunState>();
  /** Resolves when the process is gone, never rejects. */
  readonly done: Promise<RunExit>;

  private child: ChildProcessWithoutNullStreams | undefined;
  private stateValue: RunState = 'starting';
  private stopRequested = false;
  private readonly stderrTail: string[] = [];
  private resolveDone!: (e: RunExit) => void;

  constructor(readonly options: RunSessionOptions) {
    this.configPath = path.resolve(options.configPath);
    this.name = path.basename(this.configPath).replace(/\.lora\.ya?ml$/i, '').replace(/\.ya?ml$/i, '');
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  get state(): RunState {
    return this.stateValue;
  }

  /** The run's output folder: as the trainer announced it, or as the validated config named it. */
  get outputDir(): string | undefined {
    return this.history.started?.outputDir ?? this.options.outputDir;
  }

  get live(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The command line, for the log: what a person would type to do the same on a terminal. */
  get commandLine(): string[] {
    const { launch, resume, backend } = this.options;
    return [
      launch.nodePath,
      ...(launch.nodeArgs ?? []),
      launch.trainerPath,
      'train',
      this.configPath,
      ...(resume ? ['--resume_from_checkpoint=latest'] : []),
      ...(backend ? [`--backend=${backend}`] : []),
    ];
  }

  start(): this {
    if (this.child) throw new Error('RunSession.start: already started');
    const [command, ...args] = this.commandLine;
    const child = spawn(command, args, {
      // Relative paths in the config are relative to the config file; run there so logs read naturally too.
      cwd: path.dirname(this.configPath),
      env: { ...process.env, ...this.options.launch.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
    });
    this.child = child;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    splitLines(child.stdout, (line) => this.handleStdoutLine(line));
    splitLines(child.stderr, (line) => {
      this.stderrTail.push(line);
      if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
      this.onLog.fire(line);
    });
    // A trainer that exits before reading stdin must not crash the host with EPIPE.
    child.stdin.on('error', () => undefined);
    let spawnError: Error | undefined;
    child.on('error', (e) => (spawnError = e));
    child.on('close', (code, signal) => this.handleExit(code, signal, spawnError));
    return this;
  }

  /** Sends a protocol command; false when the process is gone. */
  send(command: TrainerCommand): boolean {
    if (!this.live || !this.child?.stdin.writable) return false;
    this.child.stdin.write(TRAINER_COMMANDS.encode(command));
    return true;
  }

  /** Asks the trainer to save a checkpoint and exit (it answers `finished` with reason 'stopped'). */
  stop(): Promise<RunExit> {
    if (this.live && !this.stopRequested) {
      this.stopRequested = true;
      this.send({ type: 'stop' });
      this.setState('stopping');
    }
    return this.done;
  }

  /**
   * Stops cleanly (checkpoint first) but within a deadline: when the window closes there is only so much
   * time. After `graceMs` the process gets SIGTERM, and SIGKILL a little later.
   */
  async stopWithin(graceMs: number): Promise<RunExit> {
    void this.stop();
    const timer = (ms: number) => new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref());
    if ((await Promise.race([this.done, timer(graceMs)])) !== 'timeout') return this.done;
    this.child?.kill('SIGTERM');
    if ((await Promise.race([this.done, timer(2000)])) !== 'timeout') return this.done;
    this.child?.kill('SIGKILL');
    return this.done;
  }

  private handleStdoutLine(line: string): void {
    const read = TRAINER_EVENTS.read(line);
    if (!read) {
      if (line.trim()) this.onLog.fire(line);
      return;
    }
    if (!read.ok) {
      // A bad event is logged and ignored: the run goes on, and the log says which field was wrong.
      this.onLog.fire(`ignored a line from the trainer: ${read.problem}`);
      return;
    }
    const event = read.message;
    this.record(event);
    this.onEvent.fire(event);
  }

  private record(event: TrainerEvent): void {
    const h = this.history;
    switch (event.type) {
      case 'started':
        h.started = event;
        if (this.stateValue === 'starting') this.setState('running');
        break;
      case 'progress':
        h.progress.push(event);
        break;
      case 'sample':
        h.samples.push(event);
        break;
      case 'checkpoint':
        h.checkpoints = h.checkpoints.filter((c) => !event.removed.includes(c.path));
        h.checkpoints.push(event);
        break;
      case 'warning':
        h.warnings.push(event.message);
        break;
      case 'error':
        h.error = event;
        break;
      case 'finished':
        h.finished = event;
        break;
      case 'phase':
        h.phase = event;
        break;
      case 'validation_loss':
        h.validationLosses.push(event);
        break;
    }
  }

  private handleExit(code: number | null, signal: NodeJS.Signals | null, spawnError: Error | undefined): void {
    const { finished, error } = this.history;
    let exit: RunExit;
    if (spawnError) {
      exit = { state: 'failed', code, signal, message: `Could not start the trainer (${this.options.launch.nodePath}): ${spawnError.message}` };
    } else if (code === 0 && finished) {
      const lora = finished.outputs.lora ?? finished.outputs.checkpoint;
      exit =
        finished.reason === 'stopped'
          ? { state: 'stopped', code, signal, finished, message: `Stopped at step ${finished.step}${finished.outputs.checkpoint ? `; checkpoint ${finished.outputs.checkpoint}` : ''}` }
          : { state: 'completed', code, signal, finished, message: `Finished ${finished.step} steps${lora ? `: ${lora}` : ''}` };
    } else {
      exit = { state: 'failed', code, signal, error, message: this.failureMessage(code, signal, error) };
    }
    this.setState(exit.state);
    this.resolveDone(exit);
  }

  private failureMessage(code: number | null, signal: NodeJS.Signals | null, error: ErrorEvent | undefined): string {
    if (error) return error.hint ? `${error.message} ${error.hint}` : error.message;
    const how = signal ? `was killed (${signal})` : code === 0 ? 'exited without finishing' : `exited with code ${code}`;
    // Node's own crash report ends with "Node.js v20…"; the line naming the error says more.
    const lines = this.stderrTail.map((l) => l.trim()).filter((l) => l && !/^Node\.js v\d/.test(l));
    const why = [...lines].reverse().find((l) => /\b\w*Error\b|\berror\b/.test(l)) ?? lines.at(-1);
    return `The trainer ${how}${why ? `: ${why}` : ''}`;
  }

  private setState(state: RunState): void {
    if (state === this.stateValue) return;
    this.stateValue = state;
    this.onState.fire(state);
  }
}
