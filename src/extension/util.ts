// Small helpers for the extension's plain-node modules (no `vscode` import).
import type { Readable } from 'node:stream';

export interface Disposable {
  dispose(): void;
}

/** A typed event source, shaped like vscode.EventEmitter so the two read alike. */
export class Emitter<T> {
  private listeners = new Set<(value: T) => void>();

  on(listener: (value: T) => void): Disposable {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  fire(value: T): void {
    // A throwing listener (a UI bug) must not break the session or the other listeners.
    for (const l of [...this.listeners]) {
      try {
        l(value);
      } catch (e) {
        console.error(e);
      }
    }
  }
}

/** Calls `onLine` for every complete line of a text stream (and the last partial line at its end). */
export function splitLines(stream: Readable, onLine: (line: string) => void): void {
  let rest = '';
  stream.on('data', (chunk: string | Buffer) => {
    rest += chunk.toString();
    let i: number;
    while ((i = rest.indexOf('\n')) >= 0) {
      onLine(rest.slice(0, i).replace(/\r$/, ''));
      rest = rest.slice(i + 1);
    }
  });
  stream.on('end', () => {
    if (rest) onLine(rest);
    rest = '';
  });
}

/** The message of anything thrown (an Error's message, or the value as text). */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
