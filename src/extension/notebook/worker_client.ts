// The extension's side of the inference worker: one `lora-studio worker` child process, started on first
// use and kept, so the model stays loaded between cells. Requests are answered by id; a worker that dies
// fails its pending requests with its last stderr lines, and the next request starts a fresh one.
// No `vscode` import, so it is tested in plain node against the real worker.
import { spawn, type ChildProcess } from 'node:child_process';
import {
  INFERENCE_PROTOCOL_VERSION,
  isFinalMessage,
  WORKER_MESSAGES,
  WORKER_REQUESTS,
  type ErrorMessage,
  type GenerateRequest,
  type ReadyMessage,
  type StatusRequest,
  type UnloadRequest,
  type WorkerMessage,
  type WorkerRequest,
} from '../../protocol/inference.js';
import type { TrainerLaunch } from '../run_session.js';
import { Emitter, errorMessage, splitLines } from '../util.js';

export interface WorkerClientOptions {
  launch: TrainerLaunch;
  /** `--backend` for the worker; undefined lets it choose (auto). */
  backend?: string;
  /** Working directory of the worker process. */
  cwd?: string;
}

type FinalMessage = Extract<WorkerMessage, { type: 'done' | 'cancelled' | 'error' | 'status' }>;

interface Pending {
  onMessage?: (m: WorkerMessage) => void;
  resolve: (m: FinalMessage) => void;
}

const STDERR_TAIL_LINES = 20;

/** The answer a request gets when the worker could not give one (it is gone, or never started). */
const internalError = (id: string, message: string): ErrorMessage => ({ type: 'error', v: INFERENCE_PROTOCOL_VERSION, id, code: 'internal', message });
/** How long `dispose` lets the worker finish before it is killed. */
const SHUTDOWN_GRACE_MS = 2000;

export class WorkerClient {
  /** Every message from the worker (after the request's own listener saw it). */
  readonly onMessage = new Emitter<WorkerMessage>();
  /** stderr lines and stray stdout lines. */
  readonly onLog = new Emitter<string>();
  private child: ChildProcess | undefined;
  private ready: Promise<ReadyMessage> | undefined;
  private readonly pending = new Map<string, Pending>();
  private stderrTail: string[] = [];
  private nextId = 1;
  private disposed = false;

  constructor(private readonly options: WorkerClientOptions) {}

  /** The worker process id, while one runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** A request id unique within this client. */
  newId(prefix = 'r'): string {
    return `${prefix}${this.nextId++}-${Date.now().toString(36)}`;
  }

  /** Starts the worker if none runs; resolves with its `ready` message. */
  start(): Promise<ReadyMessage> {
    if (this.disposed) return Promise.reject(new Error('the inference worker client was disposed'));
    if (this.ready) return this.ready;
    const { launch, backend, cwd } = this.options;
    const args = [...(launch.nodeArgs ?? []), launch.trainerPath, 'worker', ...(backend ? ['--backend', backend] : [])];
    const child = spawn(launch.nodePath, args, { cwd, env: { ...process.env, ...launch.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    this.stderrTail = [];
    this.ready = new Promise<ReadyMessage>((resolve, reject) => {
      splitLines(child.stdout!, (line) => {
        const read = WORKER_MESSAGES.read(line);
        if (!read) return line.trim() && this.onLog.fire(line);
        // A bad message is logged and ignored; the request it may have belonged to goes on.
        if (!read.ok) return this.onLog.fire(`ignored a line from the inference worker: ${read.problem}`);
        const m = read.message;
        if (m.type === 'ready') resolve(m);
        this.dispatch(m);
      });
      splitLines(child.stderr!, (line) => {
        this.stderrTail.push(line);
        if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
        this.onLog.fire(line);
      });
      const gone = (why: string) => {
        if (this.child !== child) return;
        this.child = undefined;
        this.ready = undefined;
        const tail = this.stderrTail.filter((l) => l.trim()).slice(-8).join('\n');
        const message = `the inference worker ${why}${tail ? `:\n${tail}` : ''}`;
        reject(new Error(message));
        for (const [id, p] of [...this.pending]) {
          this.pending.delete(id);
          p.resolve(internalError(id, message));
        }
      };
      child.on('error', (e) => gone(`could not start (${launch.nodePath}: ${e.message})`));
      // 'close', not 'exit': it comes after the last stdout line, which may be the answer to a request.
      child.on('close', (code, signal) => gone(signal ? `was stopped (${signal})` : `exited with code ${code}`));
    });
    // Nobody may be awaiting `ready` when the worker fails to start; the pending requests carry the error.
    this.ready.catch(() => undefined);
    return this.ready;
  }

  /** Sends a request; resolves with its final message (done, cancelled, error or status). Never rejects. */
  async request(r: GenerateRequest | StatusRequest | UnloadRequest, onMessage?: (m: WorkerMessage) => void): Promise<FinalMessage> {
    const final = new Promise<FinalMessage>((resolve) => this.pending.set(r.id, { onMessage, resolve }));
    try {
      await this.start();
      this.write(r);
    } catch (e) {
      const p = this.pending.get(r.id);
      this.pending.delete(r.id);
      p?.resolve(internalError(r.id, errorMessage(e)));
    }
    return final;
  }

  /** Asks the worker to stop a request; its promise then resolves with `cancelled`. */
  cancel(id: string): void {
    if (this.pending.has(id) && this.child) this.write({ type: 'cancel', id });
  }

  /** Lets the worker finish and exit; kills it if it takes too long. */
  async dispose(): Promise<void> {
    this.disposed = true;
    const child = this.child;
    if (!child) return;
    for (const id of this.pending.keys()) this.write({ type: 'cancel', id });
    this.write({ type: 'shutdown' });
    child.stdin?.end();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        child.kill();
        resolve();
      }, SHUTDOWN_GRACE_MS);
      child.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private write(r: WorkerRequest): void {
    const stdin = this.child?.stdin;
    if (stdin && !stdin.destroyed) stdin.write(WORKER_REQUESTS.encode(r));
  }

  private dispatch(m: WorkerMessage): void {
    const id = 'id' in m ? m.id : undefined;
    const p = id !== undefined ? this.pending.get(id) : undefined;
    if (p) {
      try {
        p.onMessage?.(m);
      } catch (e) {
        console.error(e);
      }
      if (isFinalMessage(m)) {
        this.pending.delete(id!);
        p.resolve(m);
      }
    }
    this.onMessage.fire(m);
  }
}
