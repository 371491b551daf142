// The renderer host answers `loadImages` (and reads a sweep's model and LoRAs) only for paths inside the
// notebook's folder or the workspace: a .loranb's outputs are written by whoever wrote the file.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { containedPath, namedInside } from '../../src/extension/notebook/notebook_paths.js';

test('containedPath: inside the notebook folder yes; ../../../etc/passwd, /root/.bashrc and a symlink out, no', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-nb-paths-'));
  try {
    const nb = path.join(tmp, 'ws');
    fs.mkdirSync(path.join(nb, 'shapes.outputs'), { recursive: true });
    fs.writeFileSync(path.join(nb, 'shapes.outputs/a.png'), 'png');
    fs.symlinkSync('/etc/passwd', path.join(nb, 'shapes.outputs/link.png'));
    assert.equal(containedPath('shapes.outputs/a.png', nb, [nb]), fs.realpathSync(path.join(nb, 'shapes.outputs/a.png')));
    assert.equal(containedPath('../../../etc/passwd', nb, [nb]), undefined);
    assert.equal(containedPath('/root/.bashrc', nb, [nb]), undefined);
    assert.equal(containedPath('/etc/passwd', nb, [nb]), undefined);
    assert.equal(containedPath('shapes.outputs/link.png', nb, [nb]), undefined, 'a symlink pointing out of the folder');
    assert.equal(containedPath('missing.png', nb, [nb]), undefined);
    // A second root (a workspace folder) admits its own files.
    const other = path.join(tmp, 'other');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'm.safetensors'), 'x');
    assert.equal(containedPath(path.join(other, 'm.safetensors'), nb, [nb]), undefined);
    assert.ok(containedPath(path.join(other, 'm.safetensors'), nb, [nb, other]));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('namedInside (a sweep\'s model and LoRAs): a model folder linked into the workspace is accepted; ../ and absolute paths out are not', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-nb-named-'));
  try {
    const ws = path.join(tmp, 'ws');
    const models = path.join(tmp, 'models', 'tiny-shapes');
    fs.mkdirSync(ws);
    fs.mkdirSync(models, { recursive: true });
    fs.symlinkSync(models, path.join(ws, 'tiny-shapes'));
    assert.ok(namedInside('tiny-shapes/model', ws, [ws]), 'the linked model folder, as the e2e workspace and many users have it');
    assert.equal(containedPath('tiny-shapes', ws, [ws]), undefined, 'while a file read back to the webview must really lie inside');
    assert.ok(!namedInside('../models/tiny-shapes/model', ws, [ws]));
    assert.ok(!namedInside('/etc', ws, [ws]));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
