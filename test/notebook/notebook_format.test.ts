// The *.loranb file format and the cell language: round trips, stable text, no image bytes on disk,
// line-exact problems, and how a cell expands into images.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from '../helpers/fixtures.js';
import { formatNotebookFile, parseNotebookFile, NotebookFormatError, type NotebookFile } from '../../src/extension/notebook/notebook_format.js';
import { cellText, parseCell, planCell, CELL_KEYS } from '../../src/extension/notebook/cell_spec.js';
import type { GenerationOutput } from '../../src/protocol/generation_output.js';

const output = (data?: string): GenerationOutput => ({
  v: 1,
  runId: 'cell2-20261128-101500-000',
  layout: 'compare',
  status: 'done',
  settings: { prompt: 'a red circle', negativePrompt: '', model: '../model', scheduler: 'dpmpp-2m', steps: 20, guidance: 5, width: 64, height: 64, loras: [{ file: 'out/lora.safetensors', scale: 0.8 }] },
  columns: 2,
  rows: 1,
  images: [
    { file: 'shapes.outputs/a-0-seed3.png', seed: 3, loras: [{ file: 'out/lora.safetensors', scale: 0 }], row: 0, column: 0, label: 'without LoRA', seconds: 1.23456, data },
    { file: 'shapes.outputs/a-1-seed3.png', seed: 3, loras: [{ file: 'out/lora.safetensors', scale: 0.8 }], row: 0, column: 1, label: 'with LoRA', seconds: 1.5, data },
  ],
  sheet: 'shapes.outputs/a-sheet.png',
  planned: 2,
  seconds: 2.7345,
});

const notebook = (data?: string): NotebookFile => ({
  cells: [
    { kind: 'markdown', source: '# Shapes\n\nTwo lines of *notes*.', outputs: [] },
    { kind: 'generation', source: 'prompt: a red circle\nmodel: ../model\nloras:\n  - file: out/lora.safetensors\n    scale: 0.8\nseed: 3\ncompare: true', outputs: [output(data)] },
    { kind: 'generation', source: 'prompt: "quoted: text"\n', outputs: [] },
  ],
});

test('round trip: parse(format(nb)) keeps cells and outputs; image bytes never reach the file', () => {
  const bytes = Buffer.alloc(3000, 7).toString('base64');
  const text = formatNotebookFile(notebook(bytes));
  assert.ok(!text.includes(bytes.slice(0, 100)), 'no base64 image data in the file');
  assert.ok(text.length < 2500, `small file (${text.length} chars)`);
  const back = parseNotebookFile(text);
  const expected = notebook(undefined);
  // Seconds are rounded to 1/100 s in the file.
  expected.cells[1].outputs[0].images[0].seconds = 1.23;
  expected.cells[1].outputs[0].seconds = 2.73;
  assert.deepEqual(back, JSON.parse(JSON.stringify(expected)));
  assert.equal(formatNotebookFile(back), text, 'format is a fixed point: saving an unchanged notebook changes nothing');
});

test('the file reads and diffs well: literal blocks, fixed key order, one line per changed setting', () => {
  const text = formatNotebookFile(notebook());
  assert.match(text, /^# LoRA Studio inference notebook/);
  assert.match(text, /\n {2}- markdown: \|-\n {6}# Shapes\n\n {6}Two lines of \*notes\*\.\n/);
  assert.match(text, /\n {2}- generation: \|-\n {6}prompt: a red circle\n {6}model: \.\.\/model\n/);
  assert.match(text, /\n {2}- generation: \|\n {6}prompt: "quoted: text"\n/, 'a trailing newline is kept with `|`');
  assert.match(formatNotebookFile({ cells: [{ kind: 'generation', source: 'prompt: x', outputs: [] }] }), /- generation: \|-\n {6}prompt: x\n/, 'a one-line cell is a block too');
  assert.match(formatNotebookFile({ cells: [{ kind: 'generation', source: 'prompt: x', outputs: [output()] }] }), /\n {10}- \{file: shapes\.outputs\/a-0-seed3\.png, seed: 3, .*\}\n/, 'one line per image');
  // Keys of an output in the same order whatever order the object had.
  const shuffled = output();
  const reordered = Object.fromEntries(Object.entries(shuffled).reverse()) as unknown as GenerationOutput;
  reordered.settings = Object.fromEntries(Object.entries(shuffled.settings).reverse()) as unknown as GenerationOutput['settings'];
  const a = formatNotebookFile({ cells: [{ kind: 'generation', source: 'prompt: x', outputs: [shuffled] }] });
  const b = formatNotebookFile({ cells: [{ kind: 'generation', source: 'prompt: x', outputs: [reordered] }] });
  assert.equal(a, b);
  const keys = [...a.matchAll(/^(?: {6}- | {8})(\w+):/gm)].map((m) => m[1]);
  assert.deepEqual(keys, ['v', 'runId', 'layout', 'status', 'settings', 'columns', 'rows', 'images', 'sheet', 'planned', 'seconds']);
  // Changing the prompt of a cell is a one-line change of its source.
  const changed = notebook();
  changed.cells[1].source = changed.cells[1].source.replace('a red circle', 'a blue circle');
  changed.cells[1].outputs = notebook().cells[1].outputs;
  const diff = formatNotebookFile(changed).split('\n').filter((l, i) => l !== text.split('\n')[i]);
  assert.deepEqual(diff, ['      prompt: a blue circle']);
});

test('empty text is an empty notebook; malformed files fail with a sentence', () => {
  assert.deepEqual(parseNotebookFile(''), { cells: [] });
  assert.throws(() => parseNotebookFile('cells: [\n'), (e: Error) => e instanceof NotebookFormatError && /not valid YAML at line \d/.test(e.message));
  assert.throws(() => parseNotebookFile('loranb: 7\ncells: []'), /format version 7; this LoRA Studio reads version 1/);
  assert.throws(() => parseNotebookFile('cells:\n  - code: x'), /cells\[0\] has neither `markdown:` nor `generation:` \(keys: code\)/);
  // Outputs that do not look like generation outputs are dropped: they are a cache of a run, not content.
  assert.deepEqual(parseNotebookFile('cells:\n  - generation: "prompt: x"\n    outputs: [{foo: 1}]').cells[0].outputs, []);
});

test('the example notebook parses, and every cell in it is valid', () => {
  const file = path.join(REPO, 'examples/shapes.loranb');
  const nb = parseNotebookFile(fs.readFileSync(file, 'utf8'));
  const gen = nb.cells.filter((c) => c.kind === 'generation');
  assert.ok(gen.length >= 3);
  for (const c of gen) assert.deepEqual(parseCell(c.source).problems, [], c.source);
  assert.equal(formatNotebookFile(nb), fs.readFileSync(file, 'utf8'), 'the example is in canonical form');
});

test('cell language: values, defaults and problems with lines', () => {
  const ok = parseCell('prompt: a red circle\nnegative_prompt: blurry\nloras:\n  - file: a.safetensors\n    scale: 0.5\n  - b.safetensors\nseed: [1, 2]\nbatch: 2\nsteps: 4\nguidance: 1');
  assert.deepEqual(ok.spec, {
    prompt: 'a red circle',
    negativePrompt: 'blurry',
    model: undefined,
    loras: [{ file: 'a.safetensors', scale: 0.5 }, { file: 'b.safetensors', scale: 1 }],
    scheduler: 'dpmpp-2m',
    steps: 4,
    guidance: 1,
    seeds: [1, 2],
    width: undefined,
    height: undefined,
    batch: 2,
    compare: false,
    sweep: undefined,
  });
  const bad = parseCell('prompt: x\nscheduler: dpm\nwidth: 30\nseed: -1\nloras:\n  - file: a\n    weight: 2\ncompare: yes please\n');
  assert.deepEqual(
    bad.problems.map((p) => `${p.line}: ${p.message}`),
    [
      '1: scheduler must be one of ddim, euler, dpmpp-2m, pndm, got "dpm" — did you mean "ddim"?',
      '3: seed must be an integer ≥ 0 or a list of them, got -1',
      '5: a LoRA entry has `file` and `scale` only, not "weight"',
      '7: compare must be true or false, got "yes please"',
      '2: width must be an integer ≥ 8 and a multiple of 8, got 30',
    ],
  );
  assert.deepEqual(parseCell('steps: 3').problems.map((p) => p.message), ['the cell needs a `prompt: …` line']);
  assert.deepEqual(parseCell('prompt: x\nsweep: [0, 1]').problems.map((p) => [p.line, p.message]), [[1, 'sweep needs at least one LoRA: add `loras:`']]);
  assert.match(parseCell('prompt: [unclosed').problems[0].message, /^not valid YAML/);
  assert.ok(CELL_KEYS.every((k) => k.doc && k.detail), 'every key is documented for completion');
});

test('a cell expands into images: seeds × batch; compare pairs; a sweep row per scale', () => {
  const resolve = (p: string) => `/nb/${p}`;
  const seedless = () => 42;
  const grid = planCell(parseCell('prompt: x\nseed: [5, 9]\nbatch: 3\nloras: [l.safetensors]').spec!, resolve, seedless);
  assert.equal(grid.layout, 'grid');
  assert.deepEqual(grid.images.map((i) => i.seed), [5, 6, 7, 9, 10, 11]);
  assert.deepEqual([grid.columns, grid.rows], [4, 2]);
  assert.deepEqual(grid.images[5], { seed: 11, loras: [{ file: '/nb/l.safetensors', scale: 1 }], row: 1, column: 1, label: '' });
  assert.deepEqual(planCell(parseCell('prompt: x').spec!, resolve, seedless).images.map((i) => i.seed), [42], 'no seed: a random one');

  const cmp = planCell(parseCell('prompt: x\nseed: [1, 2]\ncompare: true\nloras: [{file: l.safetensors, scale: 0.7}]').spec!, resolve, seedless);
  assert.deepEqual(
    cmp.images.map((i) => [i.seed, i.loras[0].scale, i.row, i.column, i.label]),
    [[1, 0, 0, 0, 'without LoRA'], [1, 0.7, 0, 1, 'with LoRA'], [2, 0, 1, 0, 'without LoRA'], [2, 0.7, 1, 1, 'with LoRA']],
  );

  const sw = planCell(parseCell('prompt: x\nseed: [1, 2]\nsweep: [0, 1.5]\nloras: [a.safetensors, {file: b.safetensors, scale: 0.3}]').spec!, resolve, seedless);
  assert.deepEqual([sw.layout, sw.columns, sw.rows, sw.sweepLora], ['sweep', 2, 2, 'a.safetensors']);
  assert.deepEqual(
    sw.images.map((i) => [i.row, i.column, i.seed, i.loras.map((l) => l.scale).join('/')]),
    [[0, 0, 1, '0/0.3'], [0, 1, 2, '0/0.3'], [1, 0, 1, '1.5/0.3'], [1, 1, 2, '1.5/0.3']],
    'the sweep varies the first LoRA; the others keep their scale',
  );
});

test('cellText writes settings that parse back to the same settings', () => {
  const settings = { prompt: 'a red: circle', negativePrompt: 'true', model: '../m', loras: [{ file: 'x y.safetensors', scale: 0.25 }], scheduler: 'euler', steps: 8, guidance: 4.5, seed: 12, width: 64, height: 48 };
  const spec = parseCell(cellText(settings)).spec!;
  assert.deepEqual(
    { prompt: spec.prompt, negativePrompt: spec.negativePrompt, model: spec.model, loras: spec.loras, scheduler: spec.scheduler, steps: spec.steps, guidance: spec.guidance, seed: spec.seeds?.[0], width: spec.width, height: spec.height },
    settings,
  );
});
