// The language server driven over stdio with the real protocol: published diagnostics (exact ranges and
// messages), completion, hover, quick fixes, re-checks when watched files change, custom requests.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { Diagnostic, MarkupContent, TextEdit, WorkspaceEdit } from 'vscode-languageserver-protocol';
import { loadRunConfig } from '../../src/core/config/load.js';
import { ImportCommandRequest, RunConfigSummaryRequest } from '../../src/protocol/language_server.js';
import { LspTestClient, REPO } from './lsp_client.js';

const FIXTURES = path.join(REPO, 'test/server/fixtures');
const uriOf = (file: string) => pathToFileURL(file).href;
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lsp-'));
let client: LspTestClient;

before(async () => {
  client = await LspTestClient.start({ debounceMs: 20 });
});
after(async () => {
  await client.stop();
  fs.rmSync(TMP, { recursive: true, force: true });
});

type Row = [number, number, number, number, number | undefined, string];
const messageText = (m: Diagnostic['message']): string => (typeof m === 'string' ? m : m.value);
const rows = (ds: Diagnostic[]): Row[] => ds.map((d) => [d.range.start.line, d.range.start.character, d.range.end.line, d.range.end.character, d.severity, messageText(d.message)]);

/** Applies a workspace edit's changes for one document to its text. */
function applyEdits(text: string, edits: TextEdit[]): string {
  const lines = text.split('\n');
  const offset = (p: { line: number; character: number }) => lines.slice(0, p.line).reduce((n, l) => n + l.length + 1, 0) + p.character;
  for (const e of [...edits].sort((a, b) => offset(b.range.start) - offset(a.range.start))) text = text.slice(0, offset(e.range.start)) + e.newText + text.slice(offset(e.range.end));
  return text;
}

test('diagnostics for every kind of mistake: exact ranges, severities, messages — the same as the trainer', async () => {
  const file = path.join(FIXTURES, 'mistakes.lora.yaml');
  const text = fs.readFileSync(file, 'utf8');
  const diags = await client.open(uriOf(file), text);
  const missing = path.join(REPO, 'examples/tiny-shapes/dataset-missing');
  assert.deepEqual(rows(diags), [
    [2, 16, 2, 61, 1, `\`train_data_dir\`: folder not found: ${missing}`],
    [3, 0, 3, 12, 1, 'unknown key `learnig_rate` — did you mean `learning_rate`?'],
    [4, 6, 4, 7, 1, '`rank` must be an integer ≥ 1, got 0'],
    [5, 12, 5, 15, 1, '`resolution` must be an integer ≥ 8 and a multiple of 8, got 500'],
    [6, 14, 6, 19, 1, '`lr_scheduler` must be one of `linear`, `cosine`, `cosine_with_restarts`, `polynomial`, `constant`, `constant_with_warmup`, got `cosin` — did you mean `cosine`?'],
    [7, 13, 7, 16, 1, '`center_crop` must be true or false, got `yes` — YAML 1.2 reads `yes` as text; write `true`'],
    [9, 21, 9, 24, 2, '`checkpointing_steps` is 500 but the run has 100 steps (max_train_steps = 100): no checkpoint will be saved — use at most 100'],
    [10, 0, 10, 15, 2, '`mixed_precision` is ignored: training runs in float32 (TensorFlow.js has no float16/bfloat16 tensors); fp16 model files are converted at load'],
    [11, 15, 11, 21, 1, '`learning_rate` must be a number > 0, got "1e-4" — a number in quotes is text; remove the quotes'],
    [12, 26, 12, 30, 1, '`save_formats` entries must be `diffusers` or `kohya`, got `koya` — did you mean `kohya`?'],
    [13, 0, 13, 16, 1, 'missing `:` after `random_flip` — write `random_flip: true`'],
  ]);
  assert.ok(diags.every((d) => d.source === 'lora-studio'));
  // One code path: the trainer's loadRunConfig finds exactly these.
  const trainer = loadRunConfig(file).problems;
  assert.deepEqual(
    diags.map((d) => [d.range, d.message]),
    trainer.map((p) => [p.range, p.message]),
  );
});

test('quick fixes repair every mistake that has one; what the repaired values reveal is reported next', async () => {
  const file = path.join(FIXTURES, 'mistakes.lora.yaml');
  const uri = uriOf(file);
  let text = fs.readFileSync(file, 'utf8');
  const unknown = await client.codeActions(uri, { start: { line: 3, character: 2 }, end: { line: 3, character: 2 } });
  assert.deepEqual(
    unknown.map((a) => [a.title, a.kind, a.isPreferred, a.diagnostics?.[0].message]),
    [['Change to `learning_rate`', 'quickfix', true, 'unknown key `learnig_rate` — did you mean `learning_rate`?']],
  );
  const clamp = await client.codeActions(uri, { start: { line: 4, character: 6 }, end: { line: 4, character: 7 } });
  assert.deepEqual(clamp.map((a) => [a.title, (a.edit as WorkspaceEdit).changes![uri]]), [['Change to 1', [{ range: { start: { line: 4, character: 6 }, end: { line: 4, character: 7 } }, newText: '1' }]]]);
  // Apply every fix offered for the whole file.
  const all = await client.codeActions(uri, { start: { line: 0, character: 0 }, end: { line: 14, character: 0 } });
  assert.equal(all.length, 10);
  text = applyEdits(
    text,
    all.flatMap((a) => (a.edit as WorkspaceEdit).changes![uri]),
  );
  const after = await client.replace(uri, text);
  assert.deepEqual(
    after.map((d) => d.message),
    [
      `\`train_data_dir\`: folder not found: ${path.join(REPO, 'examples/tiny-shapes/dataset-missing')}`,
      // resolution 500 became 504, lr_scheduler cosin became cosine, learnig_rate became learning_rate:
      '`resolution`: the model was trained at 64 px; training at 504 px works but may need more steps',
      'the warmup (`lr_warmup_steps` = 500, the default) is not shorter than the run: the run has 100 steps (max_train_steps = 100), so the learning rate never reaches 1e-4 — use about 10 (10 %)',
      '`learning_rate` is set twice (first on line 4); remove one of them',
    ],
  );
  await client.close(uri);
});

test('a sound config: only the dataset count; a missing required key is offered as a fix', async () => {
  const file = path.join(FIXTURES, 'good.lora.yaml');
  const uri = uriOf(file);
  const text = fs.readFileSync(file, 'utf8');
  assert.deepEqual(rows(await client.open(uri, text)), [[2, 16, 2, 60, 4, '`train_data_dir`: 16 images, 16 captions (metadata.jsonl)']]);
  // Delete the train_data_dir line with an incremental edit.
  const diags = await client.edit(uri, [{ range: { start: { line: 2, character: 0 }, end: { line: 3, character: 0 } }, text: '' }]);
  assert.deepEqual(rows(diags), [[1, 0, 1, 29, 1, 'no training data: set `train_data_dir` (a folder of images with captions) or `dataset_name` (a Hub dataset)']]);
  const [add] = await client.codeActions(uri, diags[0].range, diags);
  assert.equal(add.title, 'Add `train_data_dir`');
  assert.deepEqual((add.edit as WorkspaceEdit).changes![uri], [{ range: { start: { line: 9, character: 0 }, end: { line: 9, character: 0 } }, newText: 'train_data_dir: ./dataset\n' }]);
  await client.close(uri);
});

test("a resolution outside the bucket range (enable_bucket) is an error on resolution, as the trainer's, fixed by moving the bound", async () => {
  const file = path.join(FIXTURES, 'buckets.lora.yaml'); // never written: relative paths resolve as for good.lora.yaml
  const uri = uriOf(file);
  const good = fs.readFileSync(path.join(FIXTURES, 'good.lora.yaml'), 'utf8'); // resolution: 64 on line 4
  const errors = async (text: string) => (await client.replace(uri, text)).filter((d) => d.severity === 1);
  const fixOf = async (d: Diagnostic) => {
    const [a] = await client.codeActions(uri, d.range, [d]);
    return { title: a.title, edits: (a.edit as WorkspaceEdit).changes![uri] };
  };
  await client.open(uri, good);

  // A bound that is written: the fix changes it in place.
  const written = `${good}enable_bucket: true\nmin_bucket_reso: 128\n`;
  const [below] = await errors(written);
  assert.deepEqual(rows([below]), [[3, 12, 3, 14, 1, "`resolution` 64 is below the bucket range `min_bucket_reso` 128 … `max_bucket_reso` 1024 — set `min_bucket_reso` to 64 or less (kohya's defaults: 256 ≤ 512 ≤ 1024)"]]);
  const inPlace = await fixOf(below);
  assert.deepEqual(inPlace, { title: 'Set min_bucket_reso to 64', edits: [{ range: { start: { line: 11, character: 17 }, end: { line: 11, character: 20 } }, newText: '64' }] });
  assert.deepEqual(await errors(applyEdits(written, inPlace.edits)), []);

  // The default bound (256): the fix adds the key after enable_bucket; the trainer's loader finds the same error.
  const absent = `${good}enable_bucket: true\n`;
  const [byDefault] = await errors(absent);
  assert.equal(messageText(byDefault.message), "`resolution` 64 is below the bucket range `min_bucket_reso` 256 … `max_bucket_reso` 1024 — set `min_bucket_reso` to 64 or less (kohya's defaults: 256 ≤ 512 ≤ 1024)");
  const added = await fixOf(byDefault);
  assert.equal(applyEdits(absent, added.edits), `${good}enable_bucket: true\nmin_bucket_reso: 64\n`);
  fs.writeFileSync(path.join(TMP, 'buckets.lora.yaml'), absent.replace(/: (\.\.\/\S+)/g, (_, rel: string) => `: ${path.resolve(FIXTURES, rel)}`));
  assert.deepEqual(loadRunConfig(path.join(TMP, 'buckets.lora.yaml')).problems.filter((p) => p.severity === 'error').map((p) => p.message), [byDefault.message]);

  // Above the range.
  const [above] = await errors(absent.replace('resolution: 64', 'resolution: 2048'));
  assert.equal(messageText(above.message), "`resolution` 2048 is above the bucket range `min_bucket_reso` 256 … `max_bucket_reso` 1024 — set `max_bucket_reso` to 2048 or more (kohya's defaults: 256 ≤ 512 ≤ 1024)");
  assert.equal((await fixOf(above)).title, 'Set max_bucket_reso to 2048');
  // Without enable_bucket the bucket keys do nothing: no error.
  assert.deepEqual(await errors(`${good}min_bucket_reso: 128\n`), []);
  await client.close(uri);
});

test('completion: keys not yet present, with documentation and defaults; enum, boolean, list and folder values', async () => {
  const file = path.join(FIXTURES, 'good.lora.yaml');
  const uri = uriOf(file);
  const text = fs.readFileSync(file, 'utf8') + '\nlr_\ncenter_crop: \nsave_formats: [diffusers, ]\ntrain_data_dir: ../../../examples/tiny-shapes/\nnetwork_weights: ../../fixtures/tiny-sd/\n';
  await client.open(uri, text);
  const lines = text.split('\n');
  const at = (prefix: string, col?: number) => {
    const line = lines.findIndex((l) => (prefix === 'lr_' ? l === prefix : l.startsWith(prefix)));
    return { line, character: col ?? lines[line].length };
  };

  const keys = await client.completion(uri, at('lr_'));
  const labels = keys.map((k) => k.label);
  assert.ok(labels.includes('lr_warmup_steps') && labels.includes('seed'));
  for (const present of ['rank', 'resolution', 'lr_scheduler', 'pretrained_model_name_or_path']) assert.ok(!labels.includes(present), `${present} is already in the file`);
  const warm = keys.find((k) => k.label === 'lr_warmup_steps')!;
  assert.equal(warm.detail, 'default 500 · Steps over which the learning rate ramps up from 0.');
  assert.match((warm.documentation as MarkupContent).value, /^\*\*`lr_warmup_steps`\*\*.*\n\ntype: integer · default: `500` · range: 0 ≤ lr_warmup_steps/);
  assert.deepEqual(warm.textEdit, { range: { start: at('lr_', 0), end: at('lr_') }, newText: 'lr_warmup_steps: ${1:500}' });
  assert.equal(keys.find((k) => k.label === 'prediction_type')!.textEdit!.newText, 'prediction_type: ${1|null,epsilon,v_prediction|}');

  const sched = await client.completion(uri, at('lr_scheduler'));
  assert.deepEqual(sched.map((k) => k.label), ['linear', 'cosine', 'cosine_with_restarts', 'polynomial', 'constant', 'constant_with_warmup']);
  assert.equal(sched[0].documentation, 'warm up, then decrease linearly to 0 at the last step');
  assert.deepEqual(sched[0].textEdit, { range: { start: { line: 7, character: 14 }, end: { line: 7, character: 22 } }, newText: 'linear' });

  assert.deepEqual((await client.completion(uri, at('center_crop'))).map((k) => [k.label, k.detail]), [['true', undefined], ['false', 'default']]);
  const listPos = at('save_formats', 'save_formats: [diffusers, '.length);
  assert.deepEqual((await client.completion(uri, listPos)).map((k) => k.label), ['diffusers', 'kohya']);

  const folders = await client.completion(uri, at('train_data_dir: ../../../examples'));
  const corner = folders.find((k) => k.label === '../../../examples/tiny-shapes/dataset-corner')!;
  assert.equal(corner.detail, '16 images + metadata.jsonl');
  assert.ok(folders.some((k) => k.label === '../../../examples/tiny-shapes/model'));
  // network_weights: the LoRA files beside the typed path.
  const loras = await client.completion(uri, at('network_weights: ../../fixtures/tiny-sd/'));
  assert.deepEqual(loras.filter((k) => k.detail === 'safetensors file').map((k) => k.label), ['../../fixtures/tiny-sd/lora_kohya.safetensors']);
  await client.close(uri);
});

test('hover: documentation, default and range of a key; an enum value; what the disk checks found', async () => {
  const file = path.join(FIXTURES, 'good.lora.yaml');
  const uri = uriOf(file);
  await client.open(uri, fs.readFileSync(file, 'utf8'));
  const rank = await client.hover(uri, { line: 8, character: 2 });
  const md = (rank!.contents as MarkupContent).value;
  assert.match(md, /^\*\*`rank`\*\* — The LoRA rank r\.\n\ntype: integer · default: `4` · range: 1 ≤ rank\n\nThe dimension of the LoRA update matrices\./);
  assert.deepEqual(rank!.range, { start: { line: 8, character: 0 }, end: { line: 8, character: 4 } });
  const value = await client.hover(uri, { line: 7, character: 16 });
  assert.equal((value!.contents as MarkupContent).value, '`lr_scheduler: constant` — the same rate throughout; ignores lr_warmup_steps');
  const data = await client.hover(uri, { line: 2, character: 3 });
  assert.match((data!.contents as MarkupContent).value, /This dataset: 16 images, 16 captions \(metadata\.jsonl\)\.$/);
  const steps = await client.hover(uri, { line: 5, character: 3 });
  assert.match((steps!.contents as MarkupContent).value, /This run: 20 optimizer steps, 5 epochs \(max_train_steps = 20\)\.$/);
  assert.equal(await client.hover(uri, { line: 0, character: 3 }), null);
  await client.close(uri);
});

test('files that the disk checks read are watched; a change re-checks the config', async () => {
  const dataset = path.join(TMP, 'data');
  fs.mkdirSync(dataset);
  fs.copyFileSync(path.join(REPO, 'test/fixtures/tiny-sd/dataset/img0.png'), path.join(dataset, 'a.png'));
  fs.writeFileSync(path.join(dataset, 'a.txt'), 'a red circle');
  const file = path.join(TMP, 'watch.lora.yaml');
  const text = `pretrained_model_name_or_path: ${path.join(REPO, 'test/fixtures/tiny-sd/model')}\ntrain_data_dir: ./data\nresolution: 64\nmax_train_steps: 4\n`;
  fs.writeFileSync(file, text);
  const uri = uriOf(file);
  assert.deepEqual((await client.open(uri, text)).map((d) => d.message), ['`train_data_dir`: 1 image, 1 caption (.txt files)']);
  type Watchers = { watchers: { globPattern: { baseUri: string; pattern: string } }[] };
  const watchesData = () =>
    client.registrations.some(
      (r) => r.method === 'workspace/didChangeWatchedFiles' && (r.registerOptions as Watchers).watchers.some((w) => w.globPattern.baseUri === uriOf(TMP) && w.globPattern.pattern === 'data/**'),
    );
  await client.until(watchesData);

  fs.copyFileSync(path.join(REPO, 'test/fixtures/tiny-sd/dataset/img1.png'), path.join(dataset, 'b.png'));
  const next = client.nextDiagnostics(uri);
  await client.filesChanged([{ uri: uriOf(path.join(dataset, 'b.png')), type: 1 }]);
  assert.deepEqual((await next).diagnostics.map((d) => d.message), ['`train_data_dir`: 1 image has no .txt caption beside it: b.png', '`train_data_dir`: 2 images, 1 caption (.txt files)']);
  await client.close(uri);
});

test('broken text mid-typing: diagnostics stay exact and completion still answers', async () => {
  const uri = uriOf(path.join(TMP, 'broken.lora.yaml'));
  const diags = await client.open(uri, 'rank: [4\nlearning_rate: "1e-4\n  - :\n\t\t:::\n');
  // Only the syntax errors: keys a broken line may have swallowed are not reported missing.
  assert.deepEqual(rows(diags), [
    [1, 0, 1, 1, 1, 'YAML: flow sequence in block collection must be sufficiently indented and end with a ]'],
    [4, 0, 4, 0, 1, 'YAML: missing closing "quote — strings that start with a quote must end with the same quote'],
  ]);
  const items = await client.completion(uri, { line: 4, character: 0 });
  assert.ok(items.length > 30);
  await client.close(uri);
});

test('custom requests: importCommand and runConfigSummary', async () => {
  const imported = await client.conn.sendRequest(ImportCommandRequest, {
    command: 'accelerate launch train_text_to_image_lora.py \\\n  --pretrained_model_name_or_path=./sd15 --train_data_dir=./pics --rank=0',
  });
  assert.match(imported.text, /^rank: 0 {2}# The LoRA rank r\.$/m);
  assert.deepEqual(imported.problems.map((p) => [p.severity, p.message]), [
    ['info', "the run's length is not set: without `max_train_steps` or `num_train_epochs` it lasts 100 epochs (diffusers' default)"],
    ['error', '`rank` must be an integer ≥ 1, got 0'],
  ]);

  const file = path.join(FIXTURES, 'good.lora.yaml');
  await client.open(uriOf(file), fs.readFileSync(file, 'utf8'));
  const summary = await client.conn.sendRequest(RunConfigSummaryRequest, { uri: uriOf(file) });
  assert.deepEqual(summary, {
    uri: uriOf(file),
    errors: 0,
    warnings: 0,
    totalSteps: 20,
    epochs: 5,
    dataset: { dir: path.join(REPO, 'examples/tiny-shapes/dataset-corner'), images: 16, captions: 16, captionSource: 'metadata.jsonl' },
    outputDir: path.join(FIXTURES, 'out-never-written'),
    hasFinishedLora: false,
    checkpoints: [],
  });
  const cleared = client.nextDiagnostics(uriOf(file));
  await client.close(uriOf(file));
  assert.deepEqual((await cleared).diagnostics, []);
});
