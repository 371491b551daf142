// The language server's framing (issue 18: "9 bad frames leave it silent forever"), in-process: the bytes
// go through the server's FrameGuard into vscode-jsonrpc's StreamMessageReader, as over stdio. Every bad
// frame is reported (the server then closes the connection, hostile.test.ts) or, when its body is JSON but
// no message, delivered (vscode-jsonrpc answers it with a logMessage); never a wait that nothing ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { StreamMessageReader } from 'vscode-languageserver/node';
import { FrameGuard, MAX_HEADER_BYTES } from '../../src/server/frame_guard.js';

interface Outcome {
  messages: unknown[];
  /** What the guard or the reader reported; undefined when nothing was wrong. */
  problem?: string;
}

/** Feeds bytes (in the given chunks) and ends the stream; resolves once the reader has closed. */
function read(chunks: (string | Uint8Array)[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Outcome = { messages: [] };
    const input = new PassThrough();
    const guard = new FrameGuard((p) => (out.problem ??= `guard: ${p}`));
    const reader = new StreamMessageReader(input.pipe(guard));
    reader.onError((e) => (out.problem ??= `reader: ${e.message}`));
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

const frame = (body: string) => `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
const SENTINEL = { jsonrpc: '2.0', method: 'sentinel' };

test('each bad frame is reported, or delivered when it is JSON; a good frame after a JSON non-message still arrives', async () => {
  const reported: Record<string, string> = {
    'body not JSON': 'Content-Length: 7\r\n\r\n{"a": }',
    'no Content-Length': 'Content-Type: text/plain\r\n\r\n{}',
    'Content-Length not a number': 'Content-Length: abc\r\n\r\n{}',
    'negative Content-Length': 'Content-Length: -5\r\n\r\n{}',
    'Content-Length of a terabyte': 'Content-Length: 999999999999\r\n\r\n{}',
    'header line without a colon': 'garbage without header\r\n\r\n',
    'empty body': 'Content-Length: 0\r\n\r\n',
    'header that never ends': 'Content-Length: 10\r\n' + 'x'.repeat(MAX_HEADER_BYTES + 100),
  };
  for (const [what, bytes] of Object.entries(reported)) {
    const o = await read([bytes, frame(JSON.stringify(SENTINEL))]);
    assert.ok(o.problem, `${what}: nothing reported (${JSON.stringify(o.messages)})`);
  }
  // JSON that is no JSON-RPC message: delivered (the connection answers "neither a response nor a notification"), and the next frame too.
  for (const body of ['{}', '5', '[]', '"x"']) {
    const o = await read([frame(body), frame(JSON.stringify(SENTINEL))]);
    assert.equal(o.problem, undefined, body);
    assert.deepEqual(o.messages.at(-1), SENTINEL, `${body}: the next frame arrives`);
  }
  // A frame split anywhere, even inside "\r\n\r\n", is read whole.
  const whole = Buffer.from(frame(JSON.stringify(SENTINEL)) + frame(JSON.stringify(SENTINEL)));
  for (let cut = 1; cut < whole.length; cut += 3) {
    const o = await read([whole.subarray(0, cut), whole.subarray(cut)]);
    assert.deepEqual([o.problem, o.messages.length], [undefined, 2], `cut at ${cut}`);
  }
});
