// `lora-studio --version` says package.json's version: read from package.json when run from source (tsx),
// compiled into the bundle by scripts/build.mjs (the bundle never looks for package.json).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { REPO } from '../helpers/fixtures.js';
import { LORA_STUDIO_VERSION } from '../../src/core/config/version.js';

const PACKAGE_VERSION = (JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

test('from source, the version is package.json’s', () => {
  assert.equal(LORA_STUDIO_VERSION, PACKAGE_VERSION);
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), '--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), PACKAGE_VERSION);
});

test('the bundled CLI has package.json’s version compiled in', () => {
  // Built inside the repository (the bundle's external packages resolve from node_modules) but three
  // folders down, where the unbundled fallback's `../../../package.json` does not exist.
  const outdir = path.join('test-output', `version-${process.pid}`, 'a', 'b');
  try {
    const build = spawnSync(process.execPath, ['scripts/build.mjs', '--only=cli.mjs', `--outdir=${outdir}`], { cwd: REPO, encoding: 'utf8' });
    assert.equal(build.status, 0, build.stderr);
    const bundle = path.join(REPO, outdir, 'cli.mjs');
    assert.ok(!fs.existsSync(path.resolve(path.dirname(bundle), '../../../package.json')), 'the fallback would fail here');
    const r = spawnSync(process.execPath, [bundle, '--version'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), PACKAGE_VERSION);
  } finally {
    fs.rmSync(path.join(REPO, 'test-output', `version-${process.pid}`), { recursive: true, force: true });
  }
});
