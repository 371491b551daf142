// The notebook's entries in package.json agree with the ids the code uses (a renamed id would leave the
// notebook without serializer, renderer or grammar, silently).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from '../helpers/fixtures.js';
import { GENERATION_MIME, NOTEBOOK_TYPE, RENDERER_ID } from '../../src/protocol/generation_output.js';
import { CELL_LANGUAGE_ID } from '../../src/extension/notebook/cell_spec.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as any;

test('package.json contributes the notebook type, renderer, cell language and command the code registers', () => {
  const c = pkg.contributes;
  assert.ok(pkg.activationEvents.includes(`onNotebook:${NOTEBOOK_TYPE}`));
  assert.deepEqual(c.notebooks.find((n: { type: string }) => n.type === NOTEBOOK_TYPE)?.selector, [{ filenamePattern: '*.loranb' }]);
  const renderer = c.notebookRenderer.find((r: { id: string }) => r.id === RENDERER_ID);
  assert.deepEqual(renderer?.mimeTypes, [GENERATION_MIME]);
  assert.equal(renderer.requiresMessaging, 'optional');
  assert.equal(renderer.entrypoint, './dist/webview/renderer.js');
  assert.match(fs.readFileSync(path.join(REPO, 'scripts/build.mjs'), 'utf8'), /outfile: 'dist\/webview\/renderer\.js'.*format: 'esm'/, 'the build makes the renderer entrypoint as an ES module');
  assert.ok(c.languages.some((l: { id: string }) => l.id === CELL_LANGUAGE_ID));
  const grammar = c.grammars.find((g: { language: string }) => g.language === CELL_LANGUAGE_ID);
  const grammarFile = JSON.parse(fs.readFileSync(path.join(REPO, grammar.path), 'utf8'));
  assert.equal(grammar.scopeName, grammarFile.scopeName);
  assert.deepEqual(c.commands.find((x: { command: string }) => x.command === 'loraStudio.newNotebook'), { command: 'loraStudio.newNotebook', title: 'New Inference Notebook', category: 'LoRA' });
  assert.match(fs.readFileSync(path.join(REPO, 'src/extension/notebook/index.ts'), 'utf8'), /NEW_NOTEBOOK_COMMAND = 'loraStudio\.newNotebook'/);
});
