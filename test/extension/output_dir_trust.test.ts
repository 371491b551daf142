// output_dir outside the workspace and home (issue 18: "`output_dir: ~/../../etc` wrote into /etc"): the
// extension asks first (outputDirQuestion decides), the CLI says where it writes (writesToLine).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { outputDirQuestion } from '../../src/extension/output_dir_trust.js';
import { writesToLine } from '../../src/cli/train.js';
import { resolveConfigPath } from '../../src/core/config/disk_checks.js';

const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'out-trust-')));
const home = path.join(tmp, 'home');
const ws = path.join(tmp, 'work');
const elsewhere = path.join(tmp, 'elsewhere');
for (const d of [home, ws, elsewhere]) fs.mkdirSync(d);
const config = path.join(ws, 'a.lora.yaml');

test('the extension asks before writing outside the workspace and home, naming the real path; allowed once per config and path', () => {
  const opts = { workspaceFolders: [ws], home };
  assert.equal(outputDirQuestion(config, path.join(ws, 'out'), opts), undefined, 'inside the workspace');
  assert.equal(outputDirQuestion(config, path.join(home, 'runs/new/out'), opts), undefined, 'inside home (not yet created)');
  // `~/../../etc` as the trainer resolves it, with this home.
  const etc = path.resolve(home, '../../etc');
  const q = outputDirQuestion(config, etc, opts);
  assert.ok(q, 'outside both: asked');
  assert.equal(q.realDir, etc);
  assert.ok(q.message.includes(etc), q.message);
  assert.equal(outputDirQuestion(config, path.resolve(ws, '../../x'), opts)?.realDir, path.resolve(ws, '../../x'), '../../ from the config');
  // A symlink in the workspace to a folder outside it: asked, naming where it really leads.
  fs.symlinkSync(elsewhere, path.join(ws, 'link'));
  const viaLink = outputDirQuestion(config, path.join(ws, 'link/out'), opts);
  assert.equal(viaLink?.realDir, path.join(elsewhere, 'out'));
  assert.ok(viaLink.message.includes(`output_dir ${path.join(ws, 'link/out')}`), viaLink.message);
  // Allowed for this config and this folder: not asked again; another folder or another config is.
  const allowed = { [config]: etc };
  assert.equal(outputDirQuestion(config, etc, { ...opts, allowed }), undefined);
  assert.ok(outputDirQuestion(config, path.join(elsewhere, 'y'), { ...opts, allowed }));
  assert.ok(outputDirQuestion(path.join(ws, 'b.lora.yaml'), etc, { ...opts, allowed }));
  // A home of / would trust every folder: it is not counted.
  assert.ok(outputDirQuestion(config, etc, { workspaceFolders: [ws], home: '/' }));
});

test('the CLI says where it writes before it writes, and when that is outside the config folder and home', () => {
  const saved = process.env.HOME;
  process.env.HOME = home;
  try {
    assert.equal(os.homedir(), home);
    const etc = resolveConfigPath('~/../../etc', ws);
    assert.equal(writesToLine(etc, ws), `lora-studio train: writes to ${etc} — outside ${ws} and your home folder`);
    assert.equal(writesToLine(path.join(ws, 'out'), ws), `lora-studio train: writes to ${path.join(ws, 'out')}`);
    assert.equal(writesToLine(resolveConfigPath('~/runs/out', ws), ws), `lora-studio train: writes to ${path.join(home, 'runs/out')}`);
    assert.equal(writesToLine(path.join(ws, 'link/out'), ws), `lora-studio train: writes to ${path.join(elsewhere, 'out')} — outside ${ws} and your home folder`);
  } finally {
    process.env.HOME = saved;
  }
});
