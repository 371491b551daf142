// package.json agrees with the ids the code uses: a command contributed but not registered does nothing
// from the palette, one registered but not contributed cannot be found there, a renamed notebook type or
// renderer id leaves the notebook without serializer or renderer — all silently. The ids come from their
// one home (src/extension/manifest.ts, src/protocol); commands.ts's factories must cover every id in
// COMMANDS (`satisfies Record<CommandName, …>`: the compiler checks that side).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from '../helpers/fixtures.js';
import { GENERATION_MIME, NOTEBOOK_TYPE, RENDERER_ID } from '../../src/protocol/generation_output.js';
import { DASHBOARD_VIEW_TYPE } from '../../src/protocol/dashboard.js';
import { CELL_LANGUAGE_ID } from '../../src/extension/notebook/cell_spec.js';
import { COMMANDS, OUTPUT_CHANNELS, PRODUCT_NAME, SETTINGS, SETTINGS_SECTION, TRAINING_CONTEXT_KEY } from '../../src/extension/manifest.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as any;

test('package.json contributes the notebook type, renderer, cell language and command the code registers', () => {
  const c = pkg.contributes;
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
  assert.deepEqual(c.commands.find((x: { command: string }) => x.command === COMMANDS.newNotebook), { command: 'loraStudio.newNotebook', title: 'New Inference Notebook', category: 'LoRA Studio' });
});

test('package.json contributes exactly the commands the extension registers, and its menus name only those', () => {
  const contributed = (pkg.contributes.commands as { command: string; title: string; category: string }[]).map((x) => x.command);
  assert.deepEqual([...contributed].sort(), Object.values(COMMANDS).sort());
  for (const x of pkg.contributes.commands) assert.ok(x.title && x.category === PRODUCT_NAME, `${x.command} has a title in the ${PRODUCT_NAME} category (got ${x.category})`);
  const menus = Object.values(pkg.contributes.menus as Record<string, { command: string; when?: string }[]>).flat();
  for (const m of menus) assert.ok(contributed.includes(m.command), `menu entry ${m.command} is a contributed command`);
  // The editor title swaps Train for Stop on the context key the extension sets.
  assert.ok(menus.some((m) => m.command === COMMANDS.stop && m.when?.includes(TRAINING_CONTEXT_KEY)));
  assert.ok(menus.some((m) => m.command === COMMANDS.train && m.when?.includes(`!${TRAINING_CONTEXT_KEY}`)));
});

test('one name everywhere: the extension, every command category, the settings title and each output channel say "LoRA Studio"', () => {
  assert.equal(PRODUCT_NAME, 'LoRA Studio');
  assert.equal(pkg.displayName, PRODUCT_NAME);
  assert.equal(pkg.contributes.configuration.title, PRODUCT_NAME);
  assert.deepEqual(new Set(pkg.contributes.commands.map((x: { category: string }) => x.category)), new Set([PRODUCT_NAME]));
  for (const name of Object.values(OUTPUT_CHANNELS)) assert.ok(name.startsWith(`${PRODUCT_NAME}: `), name);
});

test('package.json contributes exactly the settings the extension reads', () => {
  const contributed = Object.keys(pkg.contributes.configuration.properties).sort();
  assert.deepEqual(contributed, Object.values(SETTINGS).map((k) => `${SETTINGS_SECTION}.${k}`).sort());
});

test('activationEvents lists only what VS Code (engines ≥ 1.74) does not infer from the contributions', () => {
  // Since 1.74 VS Code adds onCommand for contributed commands, onLanguage for contributed languages,
  // onNotebookSerializer for contributed notebook types and onRenderer for contributed renderers.
  const [major, minor] = /(\d+)\.(\d+)/.exec(pkg.engines.vscode)!.slice(1).map(Number);
  assert.ok(major > 1 || minor >= 74, `engines.vscode ${pkg.engines.vscode} is at least 1.74`);
  const inferred = [
    ...Object.values(COMMANDS).map((id) => `onCommand:${id}`),
    ...pkg.contributes.languages.map((l: { id: string }) => `onLanguage:${l.id}`),
    ...pkg.contributes.notebooks.flatMap((n: { type: string }) => [`onNotebook:${n.type}`, `onNotebookSerializer:${n.type}`]),
    ...pkg.contributes.notebookRenderer.map((r: { id: string }) => `onRenderer:${r.id}`),
  ];
  for (const e of pkg.activationEvents) assert.ok(!inferred.includes(e), `${e} is inferred: drop it`);
  assert.ok(!pkg.activationEvents.includes('*'), 'no `*` activation');
  // Not inferred: a workspace holding a run config (the language client and the Train button), and a
  // dashboard restored after a reload (the panel serializer has no contribution point).
  assert.deepEqual(pkg.activationEvents, ['workspaceContains:**/*.lora.yaml', `onWebviewPanel:${DASHBOARD_VIEW_TYPE}`]);
});
