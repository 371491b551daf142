// Rewrites the key and enum lists of syntaxes/lora-yaml.tmLanguage.json from the run-config schema
// (test/server/grammar.test.ts fails when they differ): npx tsx scripts/generate-grammar-keys.ts
import fs from 'node:fs';
import path from 'node:path';
import { GUIDE_ONLY_KEYS, RUN_CONFIG_KEYS } from '../src/core/config/schema.js';

const file = path.join(import.meta.dirname, '..', 'syntaxes', 'lora-yaml.tmLanguage.json');
const grammar = JSON.parse(fs.readFileSync(file, 'utf8'));
const [known, ignored] = grammar.repository['key-name'].patterns;
known.match = `^(?:${RUN_CONFIG_KEYS.map((s) => s.key).join('|')})$`;
ignored.match = `^(?:${GUIDE_ONLY_KEYS.map((k) => k.key).join('|')})$`;
const enums = [...new Set(RUN_CONFIG_KEYS.flatMap((s) => [...(s.values ?? [])]))];
const enumRule = grammar.repository['enum-value'];
enumRule.match = enumRule.match.replace(/\(\?:(.*?)\)/, `(?:${enums.join('|')})`);
fs.writeFileSync(file, JSON.stringify(grammar, null, 2) + '\n');
