// The trainer's side of the protocol (src/protocol/training.ts, framed by src/protocol/jsonl.ts): events as JSON lines on stdout, human-readable logs on
// stderr, commands read from stdin, and SIGINT/SIGTERM treated as a `stop` (save a checkpoint, exit 0).
// Requests are only flags here; the loop acts on them between optimizer steps, where state is consistent.
import readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { TRAINER_COMMANDS, TRAINER_EVENTS, type TrainerCommand, type TrainerEvent, type TrainerEventInput } from '../protocol/training.js';

/** An event as the trainer writes it (the protocol version is added on encoding). */
export type EventInput = TrainerEventInput;

export interface EventSink {
  emit(e: EventInput): void;
  /** A human-readable line for the log (stderr). */
  log(message: string): void;
}

/** Protocol events on one stream (stdout), logs on another (stderr). */
export class StreamEventSink implements EventSink {
  constructor(
    private readonly out: Writable = process.stdout,
    private readonly err: Writable = process.stderr,
  ) {}

  emit(e: EventInput): void {
    this.out.write(TRAINER_EVENTS.encode(e));
  }

  log(message: string): void {
    this.err.write(message.endsWith('\n') ? message : message + '\n');
  }
}

/** Keeps events in memory (tests, and callers that drive the trainer as a library). */
export class MemoryEventSink implements EventSink {
  readonly events: TrainerEvent[] = [];
  readonly logs: string[] = [];

  emit(e: EventInput): void {
    this.events.push(JSON.parse(TRAINER_EVENTS.encode(e)) as TrainerEvent);
  }

  log(message: string): void {
    this.logs.push(message);
  }
}

/** Fans one event out to several sinks (the protocol stream and, say, a terminal progress bar). */
export class TeeEventSink implements EventSink {
  private readonly sinks: EventSink[];
  constructor(...sinks: EventSink[]) {
    this.sinks = sinks;
  }
  emit(e: EventInput): void {
    for (const s of this.sinks) s.emit(e);
  }
  log(message: string): void {
    for (const s of this.sinks) s.log(message);
  }
}

/** What the host has asked for since the loop last looked. */
export class ControlRequests {
  stop = false;
  checkpoint = false;
  sample = false;
  /** Why the stop was asked for (for the log). */
  stopReason = '';

  apply(c: TrainerCommand, reason = 'stop command'): void {
    if (c.type === 'stop') {
      this.stop = true;
      this.stopReason ||= reason;
    } else if (c.type === 'checkpoint') this.checkpoint = true;
    else this.sample = true;
  }

  /** Reads and clears a one-shot request. */
  take(kind: 'checkpoint' | 'sample'): boolean {
    const v = this[kind];
    this[kind] = false;
    return v;
  }
}

/**
 * Reads commands from `input` (stdin): protocol JSON lines ({"type":"stop"}), or for a person at a
 * terminal the bare words stop / checkpoint / sample. Returns a function that stops listening.
 */
export function listenForCommands(input: Readable, requests: ControlRequests, sink: EventSink): () => void {
  const rl = readline.createInterface({ input, terminal: false });
  rl.on('line', (line) => {
    const word = line.trim().toLowerCase();
    if (!word) return;
    const read = TRAINER_COMMANDS.read(line);
    const cmd = read?.ok ? read.message : !read && (word === 'stop' || word === 'checkpoint' || word === 'sample') ? ({ type: word } as TrainerCommand) : undefined;
    if (!cmd) {
      const why = read && !read.ok ? read.problem : 'unknown command';
      sink.emit({ type: 'warning', code: 'unknown_command', message: `ignored a line on stdin (${why}): ${line.trim().slice(0, 200)}` });
      return;
    }
    sink.log(`received command: ${cmd.type}`);
    requests.apply(cmd);
  });
  // A host that closes our stdin has not asked us to stop; keep training.
  return () => {
    rl.close();
    input.pause();
    (input as Readable & { unref?: () => void }).unref?.();
  };
}

/**
 * SIGINT / SIGTERM: the first asks for a stop (checkpoint, then exit 0); a second one while that is in
 * progress exits at once with the signal's conventional status. Returns a function that uninstalls.
 */
export function handleStopSignals(requests: ControlRequests, sink: EventSink, exit: (code: number) => never = process.exit): () => void {
  const handlers = new Map<NodeJS.Signals, () => void>();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    const h = () => {
      if (requests.stop) {
        sink.log(`${sig} again: exiting without waiting for the checkpoint`);
        exit(sig === 'SIGINT' ? 130 : 143);
      }
      sink.log(`${sig}: saving a checkpoint, then stopping (send it again to exit at once)`);
      requests.apply({ type: 'stop' }, sig);
    };
    handlers.set(sig, h);
    process.on(sig, h);
  }
  return () => {
    for (const [sig, h] of handlers) process.off(sig, h);
  };
}
