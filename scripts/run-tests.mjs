#!/usr/bin/env node
// Runs every test file under test/ (or those given) with Node's test runner, TypeScript through tsx.
// Each file runs in its own process, so each can pick its tfjs backend.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
const roots = args.length ? args : ['test'];
const files = [];
const walk = (p) => {
  if (fs.statSync(p).isDirectory()) {
    for (const f of fs.readdirSync(p).sort()) if (f !== 'fixtures' && f !== 'node_modules') walk(path.join(p, f));
  } else if (/\.test\.(ts|mts)$/.test(p)) files.push(p);
};
roots.forEach(walk);
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
