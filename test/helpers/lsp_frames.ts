// Bytes through the language server's FrameGuard into vscode-jsonrpc's StreamMessageReader, in-process, as
// over stdio: what the guard refused, which frames it let pass, and what the reader made of them.
import { PassThrough } from 'node:stream';
import { StreamMessageReader } from 'vscode-languageserver/node';
import { FrameGuard } from '../../src/server/frame_guard.js';

export interface FramesOutcome {
  /** The reader's messages, in order. */
  messages: unknown[];
  /** What the guard refused (its sentence); undefined when it let everything pass. */
  refused?: string;
  /** What the reader reported, in order. */
  readerErrors: string[];
  /** Each frame the guard let pass: its header's bytes (with the blank line) and its body's length. */
  frames: { headerBytes: number; bodyBytes: number }[];
}

/** Feeds bytes (in the given chunks) and ends the stream; resolves once the reader has decoded what it got. */
export function readFrames(chunks: (string | Uint8Array)[]): Promise<FramesOutcome> {
  return new Promise((resolve) => {
    const out: FramesOutcome = { messages: [], readerErrors: [], frames: [] };
    const input = new PassThrough();
    const guard = new FrameGuard(
      (p) => (out.refused ??= p),
      (headerBytes, bodyBytes) => out.frames.push({ headerBytes, bodyBytes }),
    );
    const reader = new StreamMessageReader(input.pipe(guard));
    reader.onError((e) => out.readerErrors.push(e.message));
    // A body cut short would otherwise re-arm a 10 s "partial message" timer forever and keep the test alive.
    reader.partialMessageTimeout = 0;
    // Done when the guard has passed the last byte on; bodies are decoded asynchronously (promises behind a
    // semaphore): let those settle then.
    guard.on('end', () => void drain().then(() => resolve(out)));
    reader.listen((m) => out.messages.push(m));
    for (const c of chunks) input.write(c);
    input.end();
  });
}

async function drain(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

/** A frame as vscode-jsonrpc's writer makes it. */
export const frame = (body: string): string => `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
