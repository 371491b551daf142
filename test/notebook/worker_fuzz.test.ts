// Seeded property-based fuzzing of the inference worker's requests (issue 18), in-process with a stand-in
// model on the cpu backend: whatever a line holds — any JSON, or a generate request with random sizes,
// file names, ids and sheets — the worker never throws, every request with an id gets exactly one final
// answer, and no file is written outside outDir. The case count is printed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import * as tf from '@tensorflow/tfjs';
import { InferenceWorker, type LoadedModel } from '../../src/cli/worker.js';
import { WORKER_MESSAGES, type WorkerMessage } from '../../src/protocol/inference.js';

await tf.setBackend('cpu');

test('fuzz: random request lines are each answered once; nothing is written outside outDir', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'worker-fuzz-'));
  const modelDir = path.join(root, 'model');
  const outDir = path.join(root, 'a', 'out');
  fs.mkdirSync(modelDir);
  fs.writeFileSync(path.join(modelDir, 'model_index.json'), '{}');
  const model: LoadedModel = {
    width: 16,
    height: 16,
    sizeMultiple: 8,
    readLora: (file) => assert.fail(`no LoRA file exists, yet ${file} was read`),
    generate: async (o) => tf.fill([1, o.height ?? 16, o.width ?? 16, 3], 0.5) as tf.Tensor4D,
    dispose: () => undefined,
  };
  const sent: WorkerMessage[] = [];
  const worker = new InferenceWorker((m) => sent.push(JSON.parse(WORKER_MESSAGES.encode(m))), { name: 'cpu' }, async () => model, () => undefined);

  const name = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('../../x.png', '..', '.', '/etc/x.png', 'a/b.png', 'ok.png', '..\\x.png'));
  const generate = fc.record(
    {
      type: fc.constant('generate'),
      id: fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom('../../evil', '/abs', '..')),
      model: fc.constant(modelDir),
      prompt: fc.string({ maxLength: 20 }),
      width: fc.oneof(fc.integer({ min: -8, max: 64 }), fc.constant(4096)),
      height: fc.oneof(fc.integer({ min: -8, max: 64 }), fc.constant(4096)),
      outDir: fc.constant(outDir),
      jobs: fc.array(fc.record({ seed: fc.nat(5), loras: fc.constant([]), fileName: name }, { requiredKeys: ['seed', 'loras'] }), { maxLength: 2 }),
      sheet: fc.record({ columns: fc.integer({ min: 0, max: 3 }), fileName: name }, { requiredKeys: ['columns'] }),
      steps: fc.oneof(fc.integer({ min: -1, max: 3 }), fc.double()),
    },
    { requiredKeys: ['type', 'id', 'model', 'prompt', 'jobs'] },
  );
  const line = fc.oneof(
    { weight: 4, arbitrary: generate.map((g) => JSON.stringify(g)) },
    { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  );
  let cases = 0;
  let answered = 0;
  await fc.assert(
    fc.asyncProperty(line, async (text) => {
      cases++;
      sent.length = 0;
      worker.handleLine(text);
      await worker.idle();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      const id = parsed && typeof parsed === 'object' && 'id' in parsed && typeof parsed.id === 'string' ? parsed.id : undefined;
      const finals = sent.filter((m) => ['done', 'error', 'cancelled', 'status'].includes(m.type));
      if (text.trim() && id !== undefined && (parsed as { type?: unknown }).type === 'generate') {
        assert.equal(finals.filter((m) => 'id' in m && m.id === id).length, 1, `one final answer to ${text}: ${JSON.stringify(sent)}`);
        answered++;
      }
      for (const m of sent) if (m.type === 'image' || m.type === 'sheet') assert.equal(path.dirname(m.file!), outDir, `written inside outDir: ${m.file}`);
    }),
    { seed: 18, numRuns: 200 },
  );
  const outside = (fs.readdirSync(root, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(root, f)).isFile() && !path.join(root, f).startsWith(outDir + path.sep) && f !== path.join('model', 'model_index.json'));
  assert.deepEqual(outside, [], 'no file outside outDir');
  console.log(`worker request fuzz: ${cases} cases (seed 18), ${answered} generate requests each answered once`);
  worker.dispose();
  fs.rmSync(root, { recursive: true, force: true });
});
