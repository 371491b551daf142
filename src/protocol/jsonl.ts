// The one framing of the processes' protocols (trainer ↔ host: training.ts; inference worker ↔ host:
// inference.ts): one JSON object per line, UTF-8, `\n`-terminated, each with the protocol version `v`.
// `v` belongs to the framing, not to the message definitions: `encode` stamps it, `read` checks it — a
// line of another version is refused with both versions named, never half-understood — and then checks the
// message against its definition (messages.ts). A line without `v` (typed by a person or a script) is
// read as the current version. Lines that are not JSON objects are not messages: the reader decides what
// they are (a stray log line on a process's stdout, a bare word typed at the trainer).
import type { Checked, Messages } from './messages.js';
import type { Static, TObject } from '@sinclair/typebox';

/** A message with its protocol version, as it travels and as the receiver sees it. */
export type Versioned<T> = T & { v: number };

/** A message as its sender writes it (no `v`). */
export type Sent<J> = J extends JsonLines<infer S> ? Static<S> : never;
/** A message as its receiver reads it (with `v`). */
export type Received<J> = Versioned<Sent<J>>;

/** One direction of a JSON-lines protocol: the messages that travel on it and the version both ends speak. */
export class JsonLines<S extends TObject> {
  constructor(
    /** What the protocol is called in a version mismatch: "training", "inference". */
    readonly protocol: string,
    readonly version: number,
    readonly messages: Messages<S>,
  ) {}

  /** One message as a line, `v` stamped, with the trailing newline. */
  encode(m: Static<S>): string {
    return JSON.stringify({ ...m, v: this.version }) + '\n';
  }

  /**
   * One received line → the message (with `v`), or what is wrong with it. Undefined for a line that is not
   * a JSON object (blank, or text not starting with `{`), which is not meant as a message.
   */
  read(line: string): Checked<Versioned<Static<S>>> | undefined {
    const s = line.trim();
    if (!s.startsWith('{')) return undefined;
    let o: unknown;
    try {
      o = JSON.parse(s);
    } catch (e) {
      return { ok: false, problem: `${this.messages.noun} is not JSON (${(e as Error).message}): ${s.slice(0, 80)}` };
    }
    return this.check(o);
  }

  /** A parsed message (with or without `v`) → the message with `v`, or what is wrong with it. */
  check(value: unknown): Checked<Versioned<Static<S>>> {
    if (!value || typeof value !== 'object' || Array.isArray(value)) return { ok: false, problem: `${this.messages.noun} must be a JSON object` };
    const { v = this.version, ...body } = value as Record<string, unknown>;
    if (v !== this.version) {
      return {
        ok: false,
        id: typeof body.id === 'string' ? body.id : undefined,
        problem: `${this.messages.noun} speaks version ${JSON.stringify(v)} of the ${this.protocol} protocol, this side speaks version ${this.version}; use the extension and the lora-studio CLI of the same release`,
      };
    }
    const checked = this.messages.check(body);
    return checked.ok ? { ok: true, message: { ...checked.message, v: this.version } } : checked;
  }

  /** A whole captured stream (a process's stdout): its messages in order, the problems of bad lines, and the lines that were not messages. */
  readAll(text: string): { messages: Versioned<Static<S>>[]; problems: string[]; other: string[] } {
    const out = { messages: [] as Versioned<Static<S>>[], problems: [] as string[], other: [] as string[] };
    for (const line of text.split('\n')) {
      const r = this.read(line);
      if (!r) {
        if (line.trim()) out.other.push(line);
      } else if (r.ok) out.messages.push(r.message);
      else out.problems.push(r.problem);
    }
    return out;
  }
}

/**
 * Splits a byte stream into `\n`-terminated lines (a trailing `\r` dropped) of at most `maxBytes` bytes. A
 * longer line is reported once, when it passes the cap, and then dropped chunk by chunk up to its end:
 * never held whole, never parsed, so a 50 MB line costs no more memory than its chunks.
 */
export class LineSplitter {
  private parts: Uint8Array[] = [];
  private held = 0;
  private dropping = false;
  private readonly decoder = new TextDecoder();

  constructor(
    readonly maxBytes: number,
    private readonly onLine: (line: string) => void,
    private readonly onTooLong: () => void,
  ) {}

  push(chunk: Uint8Array): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      const piece = chunk.subarray(start, nl < 0 ? chunk.length : nl);
      if (!this.dropping && this.held + piece.length > this.maxBytes) {
        this.dropping = true;
        this.parts = [];
        this.held = 0;
        this.onTooLong();
      } else if (!this.dropping && piece.length) {
        this.parts.push(piece);
        this.held += piece.length;
      }
      if (nl < 0) return;
      this.endLine();
      start = nl + 1;
    }
  }

  /** The stream ended: a last line without `\n` is still a line. */
  end(): void {
    if (this.held) this.endLine();
    this.dropping = false;
  }

  private endLine(): void {
    if (this.dropping) {
      this.dropping = false;
      return;
    }
    const bytes = new Uint8Array(this.held);
    let at = 0;
    for (const p of this.parts) {
      bytes.set(p, at);
      at += p.length;
    }
    this.parts = [];
    this.held = 0;
    const line = this.decoder.decode(bytes);
    this.onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
  }
}
