// The TextMate grammar of *.lora.yaml: its key lists match the schema, and its rules scope lines as
// intended (known keys, ignored diffusers flags, other keys; values; comments). The patterns use only
// syntax that Oniguruma and JavaScript read alike, so they are exercised here with RegExp.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { GUIDE_ONLY_KEYS, RUN_CONFIG_KEYS } from '../../src/core/config/schema.js';
import { REPO } from './lsp_client.js';

interface Rule {
  match?: string;
  begin?: string;
  end?: string;
  name?: string;
  patterns?: Rule[];
}
const grammar = JSON.parse(fs.readFileSync(path.join(REPO, 'syntaxes/lora-yaml.tmLanguage.json'), 'utf8')) as { scopeName: string; repository: Record<string, Rule> };
const repo = grammar.repository;

/** The alternation inside ^(?:a|b|c)$. */
function alternation(rule: Rule): string[] {
  const m = /^\^\(\?:(.*)\)\$$/.exec(rule.match!);
  assert.ok(m, rule.match);
  return m[1].split('|');
}

/** The scope the key-name rules give a key. */
function keyScope(key: string): string {
  for (const r of repo['key-name'].patterns!) if (new RegExp(r.match!).test(key)) return r.name!;
  return '';
}

/** The first value rule (in the grammar's order) that matches the whole value text. */
function valueScope(value: string): string | undefined {
  for (const inc of repo.value.patterns!) {
    const rule = repo[(inc as { include: string }).include.slice(1)];
    const rules = rule.begin || rule.match ? [rule] : rule.patterns!;
    for (const r of rules) {
      const re = new RegExp(r.match ?? r.begin!, 'y');
      const m = re.exec(value);
      if (m && (r.begin || m[0].length === value.length)) return r.name;
    }
  }
  return undefined;
}

test('the grammar highlights exactly the schema keys as known, and the ignored diffusers flags as deprecated', () => {
  assert.equal(grammar.scopeName, 'source.lora-yaml');
  const [known, ignored] = repo['key-name'].patterns!;
  assert.deepEqual(alternation(known), RUN_CONFIG_KEYS.map((s) => s.key), 'regenerate the key lists: npx tsx scripts/generate-grammar-keys.ts');
  assert.deepEqual(alternation(ignored), GUIDE_ONLY_KEYS.map((g) => g.key));
  const enums = /\(\?:(.*?)\)/.exec(repo['enum-value'].match!)![1].split('|');
  assert.deepEqual(enums.sort(), [...new Set(RUN_CONFIG_KEYS.flatMap((s) => [...(s.values ?? [])]))].sort());
});

test('lines are scoped as YAML with known keys marked', () => {
  const entry = new RegExp(repo.entry.begin!);
  const key = (line: string) => keyScope(entry.exec(line)![1]);
  assert.equal(key('learning_rate: 1e-4'), 'support.type.property-name.lora-key.lora-yaml entity.name.tag.yaml');
  assert.equal(key('mixed_precision: fp16'), 'invalid.deprecated.lora-ignored-key.lora-yaml entity.name.tag.yaml');
  assert.equal(key('learnig_rate: 1e-4'), 'entity.name.tag.yaml');
  assert.equal(key('rank_extra: 1'), 'entity.name.tag.yaml', 'a known key as a prefix is not a known key');
  assert.equal(entry.exec('  nested: 1'), null);
  assert.ok(new RegExp(repo['block-scalar-entry'].begin!).test('validation_prompt: |'));

  assert.equal(valueScope('1e-4'), 'constant.numeric.yaml');
  assert.equal(valueScope('512'), 'constant.numeric.yaml');
  assert.equal(valueScope('true'), 'constant.language.boolean.yaml');
  assert.equal(valueScope('~'), 'constant.language.null.yaml');
  assert.equal(valueScope('cosine'), 'support.constant.lora-value.lora-yaml');
  assert.equal(valueScope('./models/cosine'), 'string.unquoted.plain.out.yaml');
  assert.equal(valueScope('a red circle'), 'string.unquoted.plain.out.yaml');
  assert.equal(valueScope('"quoted"'), 'string.quoted.double.yaml');
  assert.equal(valueScope('[diffusers, kohya]'), 'meta.flow-sequence.yaml');
  assert.equal(valueScope('# note'), 'comment.line.number-sign.yaml');
});
