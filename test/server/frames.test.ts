// The language server's framing (issue 18: "9 bad frames leave it silent forever"), in-process: the bytes
// go through the server's FrameGuard into vscode-jsonrpc's StreamMessageReader, as over stdio. Every bad
// frame is reported (the server then closes the connection, hostile.test.ts) or, when its body is JSON but
// no message, delivered (vscode-jsonrpc answers it with a logMessage); never a wait that nothing ends. The
// seeded property over any bytes is in test/fuzz/properties.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_HEADER_BYTES } from '../../src/server/frame_guard.js';
import { frame, readFrames } from '../helpers/lsp_frames.js';

const SENTINEL = { jsonrpc: '2.0', method: 'sentinel' };
const problemOf = (o: Awaited<ReturnType<typeof readFrames>>) => o.refused ?? o.readerErrors[0];

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
    const o = await readFrames([bytes, frame(JSON.stringify(SENTINEL))]);
    assert.ok(problemOf(o), `${what}: nothing reported (${JSON.stringify(o.messages)})`);
  }
  // JSON that is no JSON-RPC message: delivered (the connection answers "neither a response nor a notification"), and the next frame too.
  for (const body of ['{}', '5', '[]', '"x"']) {
    const o = await readFrames([frame(body), frame(JSON.stringify(SENTINEL))]);
    assert.equal(problemOf(o), undefined, body);
    assert.deepEqual(o.messages.at(-1), SENTINEL, `${body}: the next frame arrives`);
  }
  // A frame split anywhere, even inside "\r\n\r\n", is read whole.
  const whole = Buffer.from(frame(JSON.stringify(SENTINEL)) + frame(JSON.stringify(SENTINEL)));
  for (let cut = 1; cut < whole.length; cut += 3) {
    const o = await readFrames([whole.subarray(0, cut), whole.subarray(cut)]);
    assert.deepEqual([problemOf(o), o.messages.length], [undefined, 2], `cut at ${cut}`);
  }
});

test('headers vscode-jsonrpc reads leniently are refused by the guard, so the two never count a different body (the fuzz counterexample)', async () => {
  const body = JSON.stringify(SENTINEL);
  const good = frame(body);
  // What vscode-jsonrpc 10's reader makes of each on its own: parseInt("38Content-Length: 38") is 38; the last
  // Content-Length wins; "\r\r\n\r\n" does not end its header; 'ascii' decoding turns 0xB5 into '5'.
  const lenient: Record<string, Buffer> = {
    '"Content-Length: 38" glued to a valid frame': Buffer.from(`Content-Length: 38${good}`),
    'a number with letters after it': Buffer.from(`Content-Length: ${body.length}abc\r\n\r\n${body}`),
    'two Content-Length lines': Buffer.from(`Content-Length: 2\r\n${good}`),
    'an extra CR before the blank line': Buffer.from(`Content-Length: ${body.length}\r\r\n\r\n${body}`),
    'a bare LF inside the header': Buffer.from(`X-A: 1\nContent-Length: ${body.length}\r\n\r\n${body}`),
    'a space before the colon': Buffer.from(`Content-Length : ${body.length}\r\n\r\n${body}`),
    'a byte over 0x7F in the header': Buffer.concat([Buffer.from('Content-Length: 3'), Buffer.from([0xb5]), Buffer.from(`\r\n\r\n${body}`)]),
    'a plus sign': Buffer.from(`Content-Length: +${body.length}\r\n\r\n${body}`),
    'an empty line first': Buffer.from(`\r\n${good}`),
  };
  for (const [what, bytes] of Object.entries(lenient)) {
    const o = await readFrames([bytes, good]);
    assert.ok(o.refused, `${what}: the guard let it pass (${JSON.stringify(o)})`);
    assert.deepEqual(o.messages, [], `${what}: nothing reaches the reader after a refused header`);
  }
  // The bypass this closes: the glued header counted as a 0-byte body made the guard read the real body as
  // the next header, so a terabyte Content-Length after it went through and the reader waited for it.
  const o = await readFrames([`Content-Length: 38${good}`, 'Content-Length: 999999999999\r\n\r\n{}']);
  assert.match(o.refused ?? '', /not a decimal number: "38Content-Length: \d+"/);
  // Every header an LSP client writes still passes: Content-Length alone, any case and spacing, with Content-Type.
  for (const header of [`Content-Length: ${body.length}`, `content-length:${body.length}`, `Content-Length:\t${body.length}\t`, `Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: ${body.length}`]) {
    const r = await readFrames([`${header}\r\n\r\n${body}`, good]);
    assert.deepEqual([r.refused, r.readerErrors, r.messages], [undefined, [], [SENTINEL, SENTINEL]], header);
  }
});
