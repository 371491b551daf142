import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { ControlRequests, MemoryEventSink, StreamEventSink, listenForCommands } from '../../src/training/events.js';
import { TRAINER_EVENTS } from '../../src/protocol/training.js';

test('commands on stdin: protocol JSON and bare words set requests; unknown lines give a warning', async () => {
  const input = new PassThrough();
  const req = new ControlRequests();
  const sink = new MemoryEventSink();
  const stop = listenForCommands(input, req, sink);
  input.write('{"type":"checkpoint"}\nsample\n  \nfly away\n');
  await new Promise((r) => setImmediate(r));
  assert.equal(req.take('checkpoint'), true);
  assert.equal(req.take('checkpoint'), false, 'one-shot');
  assert.equal(req.take('sample'), true);
  assert.equal(req.stop, false);
  assert.equal(sink.events.length, 1);
  assert.equal(sink.events[0].type, 'warning');
  assert.deepEqual(TRAINER_EVENTS.check(sink.events[0]), { ok: true, message: sink.events[0] });
  input.write('{"type":"stop"}\n');
  await new Promise((r) => setImmediate(r));
  assert.equal(req.stop, true);
  stop();
});

test('events are JSON lines with the protocol version, and the checker catches malformed ones', () => {
  const chunks: string[] = [];
  const out = new PassThrough();
  out.on('data', (d) => chunks.push(String(d)));
  const sink = new StreamEventSink(out, new PassThrough());
  sink.emit({ type: 'checkpoint', step: 3, path: '/o/checkpoint-3', removed: [] });
  sink.emit({ type: 'error', code: 'nan_loss', message: 'the loss became NaN', hint: 'lower the lr' });
  const lines = chunks.join('').split('\n').filter(Boolean);
  assert.equal(lines.length, 2);
  for (const l of lines) {
    const e = TRAINER_EVENTS.read(l);
    assert.ok(e?.ok, JSON.stringify(e));
    assert.equal(e.message.v, 1);
  }
  // The checker is not a rubber stamp.
  assert.equal(TRAINER_EVENTS.check({ type: 'progress', v: 1, step: 'x' }).ok, false);
  assert.equal(TRAINER_EVENTS.check({ type: 'error', v: 1, code: 'oops', message: 'm' }).ok, false);
  assert.equal(TRAINER_EVENTS.check({ type: 'finished', v: 1, reason: 'completed', step: 1, elapsedSeconds: 1, outputs: { samples: [] } }).ok, false);
});
