// Property-based fuzzing (fast-check), seeded and bounded so each property takes a few seconds and is the
// same on every run; each prints how many cases it ran. What must hold for any input:
//
//   safetensors reader   a clear SafetensorsError/FileRefusedError naming the file, or a file whose every
//                        tensor reads back with the values its header promises — never another exception
//                        (a RangeError is an out-of-range read), never a hang
//   run-config loader    problems (with ranges inside the text) or a config — never an exception
//   language server      diagnostics, completion, hover and code actions for any text and position — never
//                        an exception
//   server on mutations  a real config (examples/) mutated — aliases, anchors, billion laughs, deep nesting,
//   of a real config     huge numbers, binary, lines moved or cut — through the checker (with its disk checks),
//                        completion, hover and code actions: an answer for every request, never an exception,
//                        each case within a time bound
//   LoRA key parsing     a classification, never an exception; every key the writers produce parses back
//                        to its module and part
//   protocol framing     any line: a message, a problem sentence, or "not a message" — never an exception;
//                        what `encode` writes `read` gives back
//   LSP framing          any bytes in any chunks through the server's FrameGuard into vscode-jsonrpc's reader:
//                        the reader delivers exactly the JSON bodies of the frames the guard counted (never
//                        a header error of its own, so never a frame the guard did not see), and what a
//                        client writes is never refused
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { encodeSafetensors, SafetensorsFile, SafetensorsError } from '../../src/core/io/safetensors.js';
import { FileRefusedError } from '../../src/core/io/safe_read.js';
import { analyzeRunConfigText } from '../../src/core/config/validate.js';
import { checkAnalysis } from '../../src/core/config/load.js';
import { RUN_CONFIG_KEYS } from '../../src/core/config/schema.js';
import { ConfigChecker, toDiagnostic } from '../../src/server/checker.js';
import { complete } from '../../src/server/completion.js';
import { hover } from '../../src/server/hover.js';
import { codeActions } from '../../src/server/code_actions.js';
import { parseLoraKey, kohyaName, diffusersKeys } from '../../src/core/lora/formats.js';
import { TRAINER_EVENTS, TRAINER_COMMANDS } from '../../src/protocol/training.js';
import { WORKER_REQUESTS, WORKER_MESSAGES } from '../../src/protocol/inference.js';
import { readFrames } from '../helpers/lsp_frames.js';

const SEED = 17;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-'));

/** Runs an async property with the fixed seed and case count, and prints the count. */
async function checkAsync<T>(name: string, arb: fc.Arbitrary<T>, predicate: (v: T) => Promise<void>, numRuns: number): Promise<void> {
  let cases = 0;
  await fc.assert(
    fc.asyncProperty(arb, async (v) => {
      cases++;
      await predicate(v);
    }),
    { seed: SEED, numRuns, endOnFailure: true },
  );
  console.log(`# fuzz ${name}: ${cases} cases passed (seed ${SEED})`);
}

/** Runs a property with the fixed seed and case count, and prints the count. */
function check<T>(name: string, arb: fc.Arbitrary<T>, predicate: (v: T) => void, numRuns: number): void {
  let cases = 0;
  fc.assert(
    fc.property(arb, (v) => {
      cases++;
      predicate(v);
    }),
    { seed: SEED, numRuns, endOnFailure: true },
  );
  console.log(`# fuzz ${name}: ${cases} cases passed (seed ${SEED})`);
}

// ---- safetensors ------------------------------------------------------------------------------------------

const VALID = encodeSafetensors(
  new Map([
    ['unet.a.lora.down.weight', { shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) }],
    ['unet.a.lora.up.weight', { shape: [3, 2], data: new Float32Array([-1, -2, -3, -4, -5, -6]) }],
    ['b', { shape: [4], data: new Float32Array([0.5, 0.25, 0.125, 0]) }],
  ]),
  { format: 'pt', note: 'x' },
);
const HEADER_END = 8 + Number(VALID.readBigUInt64LE(0));

/** One damage to the valid file: bytes changed (mostly in the header), cut short, a header length, a whole new header. */
const damaged: fc.Arbitrary<Buffer> = fc.oneof(
  fc.array(fc.tuple(fc.nat({ max: HEADER_END + 40 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }).map((edits) => {
    const b = Buffer.from(VALID);
    for (const [at, v] of edits) if (at < b.length) b[at] = v;
    return b;
  }),
  fc.nat({ max: VALID.length }).map((n) => VALID.subarray(0, n)),
  fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.integer({ min: HEADER_END - 16, max: HEADER_END + 16 }).map((n) => BigInt(Math.max(0, n - 8)))).map((len) => {
    const b = Buffer.from(VALID);
    b.writeBigUInt64LE(len, 0);
    return b;
  }),
  fc
    .dictionary(
      fc.oneof(fc.constantFrom('__metadata__', '__proto__', 'constructor', 'b'), fc.string({ maxLength: 8 })),
      fc.oneof(
        fc.record({
          dtype: fc.oneof(fc.constantFrom('F32', 'F16', 'BF16', 'I64', 'U8', 'BOOL', 'F64', '__proto__', 'toString'), fc.string({ maxLength: 4 })),
          shape: fc.array(fc.oneof(fc.nat({ max: 8 }), fc.integer(), fc.double(), fc.constant(2 ** 53 + 2)), { maxLength: 4 }),
          data_offsets: fc.tuple(fc.oneof(fc.nat({ max: 120 }), fc.integer()), fc.oneof(fc.nat({ max: 120 }), fc.integer())),
        }),
        fc.jsonValue({ maxDepth: 2 }),
      ),
      { maxKeys: 4 },
    )
    .chain((header) =>
      fc.nat({ max: 128 }).map((dataBytes) => {
        const json = Buffer.from(JSON.stringify(header));
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(BigInt(json.length));
        return Buffer.concat([len, json, Buffer.alloc(dataBytes, 7)]);
      }),
    ),
);

test('fuzz: the safetensors reader gives a clear error or a sound file for any damage', () => {
  const file = path.join(tmp, 'x.safetensors');
  let refused = 0;
  check(
    'safetensors reader',
    damaged,
    (bytes) => {
      fs.writeFileSync(file, bytes);
      let f: SafetensorsFile | undefined;
      try {
        f = SafetensorsFile.open(file);
        for (const [name, info] of f.tensors) {
          const values = f.readFloat32(name);
          const count = info.shape.reduce((a, b) => a * b, 1);
          assert.equal(values.length, count, `${name}: ${values.length} values for shape ${info.shape}`);
        }
      } catch (e) {
        if (!(e instanceof SafetensorsError || e instanceof FileRefusedError)) throw e;
        assert.ok(e.message.includes(file), `the error names the file: ${e.message}`);
        refused++;
      } finally {
        f?.close();
      }
    },
    1000,
  );
  assert.ok(refused > 100, `most damage is refused (${refused} of 1000)`);
});

// ---- run configs and the language server ---------------------------------------------------------------

const KEYS = RUN_CONFIG_KEYS.map((s) => s.key);
/** YAML-ish text: real keys with odd values, aliases, anchors, tags, flow collections, stray unicode. */
const configText: fc.Arbitrary<string> = fc
  .array(
    fc.oneof(
      fc.tuple(fc.constantFrom(...KEYS), fc.oneof(
        fc.constantFrom('*a', '&a 1', '!!binary AAAA', '[1, [2, [3', '{a: 1', '~', 'null', '.nan', '-.inf', '0x10', '1e400', '18446744073709551617', '"\\u0000"', "'", '|', '>-', 'yes', '<<: *a'),
        fc.string({ maxLength: 12 }),
        fc.double().map(String),
        fc.integer().map(String),
      )).map(([k, v]) => `${k}: ${v}`),
      fc.string({ maxLength: 30 }),
      fc.constantFrom('---', '...', '- item', '  indented: x', '\t tab: 1', '# comment', '? complex key', ': value', '%YAML 1.2', '&anchor', 'a: &x [*x]'),
    ),
    { maxLength: 12 },
  )
  .map((lines) => lines.join('\n'));

test('fuzz: the run-config loader returns problems or a config for any text', () => {
  const file = path.join(tmp, 'fuzz.lora.yaml');
  check(
    'run-config loader',
    configText,
    (text) => {
      const loaded = checkAnalysis(analyzeRunConfigText(text), file, tmp);
      assert.ok(Array.isArray(loaded.problems));
      const lines = text.split('\n').length;
      for (const p of loaded.problems) {
        assert.ok(typeof p.message === 'string' && p.message.length > 0);
        assert.ok(p.range.start.line >= 0 && p.range.end.line <= lines, `range ${JSON.stringify(p.range)} inside ${lines} lines`);
      }
      if (loaded.config) assert.ok(!loaded.problems.some((p) => p.severity === 'error'));
    },
    250,
  );
});

test('fuzz: the language server answers diagnostics, completion, hover and code actions for any text', () => {
  const checker = new ConfigChecker();
  const uri = pathToFileURL(path.join(tmp, 'server.lora.yaml')).toString();
  let version = 0;
  check(
    'language server',
    fc.tuple(configText, fc.nat({ max: 14 }), fc.nat({ max: 40 })),
    ([text, line, character]) => {
      const doc = checker.check(uri, ++version, text);
      const diagnostics = doc.problems.map(toDiagnostic);
      for (const d of diagnostics) assert.ok(typeof d.message === 'string' && d.message.length > 0);
      const lines = text.split('\n');
      const pos = { line, character };
      complete(doc, lines, pos, { snippets: version % 2 === 0 });
      hover(doc, pos);
      codeActions(doc, { start: pos, end: pos });
      checker.prune([doc]);
    },
    200,
  );
});

// A real run config, mutated line by line: what a cloned repository's config can hold.
const EXAMPLE = path.resolve('examples/tiny-shapes.lora.yaml');
const EXAMPLE_LINES = fs.readFileSync(EXAMPLE, 'utf8').split('\n');
const laughs = (levels: number) =>
  Array.from({ length: levels }, (_, i) => (i === 0 ? 'l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]' : `l${i}: &l${i} [${Array(9).fill(`*l${i - 1}`).join(', ')}]`)).join('\n');
const hostileValue: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('*a', '&a 5', '&a [*a]', '*undefined_alias', '<<: *a', '!!binary AAAA', '!!python/object:os.system', '!custom x', '1e400', '-1e400', '18446744073709551617', '9007199254740993', '0x7fffffffffffffffff', '0o7777777777777777777777', '.inf', '.nan', '-0', '~', '"\\u0000"', '"\\uD800"', '\uFEFF', '\u2028', "'unterminated", '"unterminated', '|', '>-', '? x', '[', '{', ']', '}', '- - - -'),
  fc.nat({ max: 3000 }).map((n) => '['.repeat(n) + ']'.repeat(n % 2 ? n : 0)),
  fc.nat({ max: 1500 }).map((n) => '{a: '.repeat(n) + '1' + '}'.repeat(n)),
  fc.nat({ max: 500 }).map((n) => '9'.repeat(n)),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.nat({ max: 80_000 }).map((n) => 'x'.repeat(n)),
);
/** One edit of the config's lines (data, so a counterexample prints). */
type ConfigEdit = { op: 'value' | 'insert' | 'delete' | 'copy' | 'prefix' | 'cut'; at: number; v: string; n: number };
const configEdit: fc.Arbitrary<ConfigEdit> = fc.oneof(
  fc.record({ op: fc.constant('value' as const), at: fc.nat(), v: hostileValue, n: fc.constant(0) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), v: fc.oneof(hostileValue, fc.constantFrom(laughs(9), 'a: &a\n  - *a', '---\nrank: 4\n---', '%YAML 1.1\n---', 'rank: 4\nrank: 8', `${'  '.repeat(40)}deep: 1`)), n: fc.constant(0) }),
  fc.record({ op: fc.constantFrom('delete' as const, 'copy' as const), at: fc.nat(), v: fc.constant(''), n: fc.nat() }),
  fc.record({ op: fc.constant('prefix' as const), at: fc.nat(), v: fc.constantFrom('  ', '\t', '- ', '? ', '# '), n: fc.constant(0) }),
  fc.record({ op: fc.constant('cut' as const), at: fc.nat(), v: fc.constant(''), n: fc.nat({ max: 60 }) }),
);
function applyEdit(lines: string[], { op, at, v, n }: ConfigEdit): void {
  const i = at % lines.length;
  if (op === 'value') {
    const colon = lines[i].indexOf(':');
    lines[i] = colon > 0 ? `${lines[i].slice(0, colon + 1)} ${v}` : v;
  } else if (op === 'insert') lines.splice(at % (lines.length + 1), 0, v);
  else if (op === 'delete') {
    if (lines.length > 1) lines.splice(i, 1);
  } else if (op === 'copy') lines.splice(n % (lines.length + 1), 0, lines[i]);
  else if (op === 'prefix') lines[i] = v + lines[i];
  else lines[i] = lines[i].slice(0, n);
}
/**
 * Slowest case allowed. Cases take 1–200 ms at load 23 on 2 cores (the slowest: 1500 levels of `{a: ` nesting,
 * 2 s; 64 kB of `[` alone, the most the text cap lets through, 2.4 s), and time grows linearly with the text;
 * 10 s leaves room for a loaded CI and still fails an expansion that grows exponentially.
 */
const CASE_LIMIT_MS = 10_000;

test('fuzz: the language server answers every request on mutations of a real config, each in bounded time', () => {
  const checker = new ConfigChecker();
  const uri = pathToFileURL(EXAMPLE).toString();
  let version = 0;
  let slowest = 0;
  let refusedAsTooBig = 0;
  check(
    'language server on mutated configs',
    fc.tuple(fc.array(configEdit, { minLength: 1, maxLength: 5 }), fc.nat(), fc.nat({ max: 120 })),
    ([edits, line, character]) => {
      const edited = [...EXAMPLE_LINES];
      for (const edit of edits) applyEdit(edited, edit);
      const text = edited.join('\n');
      const lines = text.split('\n');
      const pos = { line: line % (lines.length + 1), character };
      const t0 = performance.now();
      const doc = checker.check(uri, ++version, text);
      const items = complete(doc, lines, pos, { snippets: version % 2 === 0 });
      const h = hover(doc, pos);
      const actions = codeActions(doc, { start: { line: 0, character: 0 }, end: { line: lines.length, character: 0 } });
      const ms = performance.now() - t0;
      slowest = Math.max(slowest, ms);
      assert.ok(ms < CASE_LIMIT_MS, `${ms.toFixed(0)} ms for a ${text.length}-character config`);
      assert.ok(Array.isArray(items) && Array.isArray(actions));
      assert.ok(h === null || h.contents !== undefined);
      const diagnostics = doc.problems.map(toDiagnostic);
      for (const d of diagnostics) {
        assert.ok(typeof d.message === 'string' && d.message.length > 0);
        assert.ok(d.range.start.line >= 0 && d.range.end.line <= lines.length, `range ${JSON.stringify(d.range)} inside ${lines.length} lines`);
      }
      if (text.length > 64 * 1024) {
        assert.ok(diagnostics.length > 0, 'a config over the cap is refused');
        refusedAsTooBig++;
      }
      checker.prune([doc]);
    },
    200,
  );
  console.log(`# fuzz language server on mutated configs: slowest case ${slowest.toFixed(1)} ms, ${refusedAsTooBig} over the size cap`);
});

// ---- LoRA keys ---------------------------------------------------------------------------------------------

const modulePath = fc
  .array(fc.oneof(fc.constantFrom('down_blocks', 'up_blocks', 'mid_block', 'attentions', 'transformer_blocks', 'attn1', 'attn2', 'to_q', 'to_k', 'to_v', 'proj_in'), fc.nat({ max: 3 }).map(String)), { minLength: 2, maxLength: 8 })
  .map((parts) => parts.join('.'));

test('fuzz: LoRA key parsing classifies any key; the keys the writers produce parse back', () => {
  check(
    'LoRA key parsing (any string)',
    fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 40 }), modulePath.map((p) => `lora_unet_${p}`), modulePath.map((p) => `unet.${p}.lora.up.weight`)),
    (key) => {
      const r = parseLoraKey(key);
      assert.ok(r.kind === 'lora' || r.kind === 'unsupported' || r.kind === 'unknown');
      if (r.kind === 'lora') assert.ok(r.module.length > 0 && ['down', 'up', 'alpha', 'magnitude'].includes(r.part), JSON.stringify(r));
      if (r.kind === 'unsupported') assert.ok(r.what.length > 0);
    },
    3000,
  );
  check(
    'LoRA key parsing (written keys)',
    modulePath,
    (p) => {
      const { down, up } = diffusersKeys(p);
      for (const [key, part] of [[down, 'down'], [up, 'up'], [`${kohyaName(p)}.lora_down.weight`, 'down'], [`${kohyaName(p)}.lora_up.weight`, 'up']] as const) {
        const r = parseLoraKey(key);
        assert.ok(r.kind === 'lora' && r.part === part && r.component === 'unet', `${key}: ${JSON.stringify(r)}`);
        if (r.naming === 'dotted') assert.equal(r.module, p);
        else assert.equal(r.module, kohyaName(p).slice('lora_unet_'.length));
      }
    },
    500,
  );
});

// ---- protocol framing (jsonl.ts) ---------------------------------------------------------------------------

const PROTOCOLS = { TRAINER_EVENTS, TRAINER_COMMANDS, WORKER_REQUESTS, WORKER_MESSAGES };
const line: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc
    .record({
      type: fc.oneof(fc.constantFrom('progress', 'stop', 'generate', 'error', 'status', 'started', '__proto__', 'constructor'), fc.string({ maxLength: 8 })),
      v: fc.oneof(fc.constant(1), fc.jsonValue({ maxDepth: 1 })),
      id: fc.oneof(fc.string({ maxLength: 6 }), fc.integer()),
      step: fc.oneof(fc.integer(), fc.double(), fc.constant(2 ** 64 + 1)),
      extra: fc.jsonValue({ maxDepth: 2 }),
    }, { requiredKeys: ['type'] })
    .map((o) => JSON.stringify(o)),
  fc.string({ maxLength: 20 }).map((s) => `{${s}`),
);

test('fuzz: the JSON-lines framing answers any line with a message, a problem or "not a message"', () => {
  for (const [name, p] of Object.entries(PROTOCOLS)) {
    check(
      `protocol framing ${name}`,
      line,
      (l) => {
        const r = p.read(l);
        if (r === undefined) {
          assert.ok(!l.trim().startsWith('{'), `a line starting with { is read: ${l}`);
          return;
        }
        if (r.ok) {
          // A message read back is one this side would send: encoding it reads back the same.
          const { v: _v, ...body } = r.message as Record<string, unknown>;
          const again = p.read(p.encode(body as never));
          assert.ok(again?.ok, `re-encoded message refused: ${again && !again.ok ? again.problem : ''}`);
          assert.deepEqual(again.message, r.message);
        } else assert.ok(typeof r.problem === 'string' && r.problem.length > 0);
      },
      400,
    );
  }
});

// ---- the language server's LSP framing (server/frame_guard.ts in front of vscode-jsonrpc) ------------------

/** A part of the byte stream: a frame as a client writes it, or something broken. */
interface Part {
  bytes: Buffer;
  /** A frame a client could write (its body need not be JSON: that is the reader's to report). */
  clientFrame: boolean;
}
const body: fc.Arbitrary<string> = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
  fc.record({ jsonrpc: fc.constant('2.0'), method: fc.string({ unit: 'grapheme', maxLength: 10 }), id: fc.nat() }).map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 12 }),
);
const clientHeaders = [
  (n: number) => `Content-Length: ${n}`,
  (n: number) => `content-length:${n}`,
  (n: number) => `Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: ${n}`,
  (n: number) => `Content-Length: ${n}\r\nContent-Type: application/json`,
];
const clientFrame: fc.Arbitrary<Part> = fc
  .tuple(fc.nat({ max: clientHeaders.length - 1 }), body)
  .map(([h, b]) => ({ bytes: Buffer.from(`${clientHeaders[h](Buffer.byteLength(b))}\r\n\r\n${b}`), clientFrame: true }));
/** Bytes vscode-jsonrpc's reader reads leniently or not at all, glued into a header. */
const GLUE = ['Content-Length: 38', 'Content-Length: 2\r\n', '\r', '\n', '\r\n', ' ', ':', '+', '-', '0', '9', 'abc', '\u00b5', '\u00ba', '\u00b0', '\t', '\r\n\r\n', 'Content-Length: 999999999999\r\n\r\n'];
const damagedFrame: fc.Arbitrary<Part> = fc
  .tuple(clientFrame, fc.array(fc.tuple(fc.nat({ max: 60 }), fc.oneof(fc.constantFrom(...GLUE), fc.constant(''), fc.string({ unit: 'binary', maxLength: 3 }))), { minLength: 1, maxLength: 3 }))
  .map(([f, edits]) => {
    let bytes = f.bytes;
    for (const [at, glue] of edits) {
      const i = Math.min(at, bytes.indexOf('\r\n\r\n') + 4);
      // '' deletes the byte at i; anything else is inserted there (latin1: the glue's code points are its bytes).
      bytes = Buffer.concat([bytes.subarray(0, i), Buffer.from(glue, 'latin1'), bytes.subarray(glue ? i : i + 1)]);
    }
    return { bytes, clientFrame: false };
  });
const stray: fc.Arbitrary<Part> = fc.oneof(fc.uint8Array({ maxLength: 24 }), fc.constantFrom(...GLUE).map((g) => Buffer.from(g, 'latin1'))).map((b) => ({ bytes: Buffer.from(b), clientFrame: false }));
const stream = fc.tuple(
  fc.array(fc.oneof({ weight: 3, arbitrary: clientFrame }, { weight: 2, arbitrary: damagedFrame }, { weight: 1, arbitrary: stray }), { minLength: 1, maxLength: 6 }),
  fc.array(fc.nat(), { maxLength: 4 }),
);

test('fuzz: any bytes through the FrameGuard reach vscode-jsonrpc as exactly the frames the guard counted', async () => {
  let refused = 0;
  let delivered = 0;
  await checkAsync(
    'LSP framing',
    stream,
    async ([parts, cuts]) => {
      const input = Buffer.concat(parts.map((p) => p.bytes));
      const at = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
      const chunks = [0, ...at].map((from, k) => input.subarray(from, [...at, input.length][k])).filter((c) => c.length);
      const o = await readFrames(chunks);
      // The frames the guard counted, cut from the input: their JSON bodies are what the reader must deliver,
      // in order, and the others are its only errors.
      const expected: unknown[] = [];
      let notJson = 0;
      let offset = 0;
      for (const f of o.frames) {
        assert.equal(input.toString('latin1', offset + f.headerBytes - 4, offset + f.headerBytes), '\r\n\r\n', `frame at ${offset} ends its header`);
        const b = input.subarray(offset + f.headerBytes, offset + f.headerBytes + f.bodyBytes);
        offset += f.headerBytes + f.bodyBytes;
        if (b.length < f.bodyBytes) break;
        try {
          expected.push(JSON.parse(new TextDecoder().decode(b)));
        } catch {
          notJson++;
        }
      }
      assert.deepEqual(o.messages, expected, `the reader delivers the guard's frames (refused: ${o.refused})`);
      assert.equal(o.readerErrors.length, notJson, `the reader's only errors are bodies that are not JSON: ${o.readerErrors.join(' | ')}`);
      if (o.refused !== undefined) assert.ok(o.refused.length > 10, o.refused);
      if (parts.every((p) => p.clientFrame)) {
        assert.equal(o.refused, undefined, 'what a client writes is never refused');
        assert.equal(o.frames.length, parts.length);
      }
      if (o.refused !== undefined) refused++;
      delivered += o.messages.length;
    },
    400,
  );
  console.log(`# fuzz LSP framing: ${refused} of 400 streams refused by the guard, ${delivered} messages delivered`);
  assert.ok(refused > 40 && refused < 360, `both outcomes are exercised (${refused} refused)`);
  assert.ok(delivered > 200, `${delivered} messages delivered`);
});
