// The cell language's TextMate grammar (syntaxes/loranb-cell.tmLanguage.json): its key list is the cell
// language's (cell_spec.ts), and sample lines get the scopes a theme colours. The grammar's regexes use
// only syntax JavaScript shares with Oniguruma, so a small line tokenizer following TextMate's rule
// (earliest match wins, ties to the first rule) stands in for VS Code's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from '../helpers/fixtures.js';
import { CELL_KEYS } from '../../src/extension/notebook/cell_spec.js';

interface Rule {
  match?: string;
  begin?: string;
  end?: string;
  name?: string;
  include?: string;
  patterns?: Rule[];
  captures?: Record<string, Rule>;
}
const grammar = JSON.parse(fs.readFileSync(path.join(REPO, 'syntaxes/loranb-cell.tmLanguage.json'), 'utf8')) as { scopeName: string; patterns: Rule[]; repository: Record<string, Rule> };

function flatten(rules: Rule[]): Rule[] {
  return rules.flatMap((r) => (r.include ? flatten(grammar.repository[r.include.slice(1)].patterns ?? [grammar.repository[r.include.slice(1)]]) : [r]));
}

/** Tokens of one line as [text, scope], whitespace dropped. */
function tokenize(line: string, rules: Rule[] = grammar.patterns): [string, string][] {
  const out: [string, string][] = [];
  const flat = flatten(rules);
  let pos = 0;
  while (pos < line.length) {
    let best: { rule: Rule; m: RegExpExecArray } | undefined;
    for (const rule of flat) {
      const source = rule.match ?? (rule.begin ? `${rule.begin}(?:[^${rule.end}\\\\]|\\\\.)*${rule.end}` : undefined);
      if (!source) continue;
      const re = new RegExp(source, 'g');
      re.lastIndex = pos;
      let m: RegExpExecArray | null;
      while ((m = re.exec(line)) && m[0] === '' && re.lastIndex < line.length) re.lastIndex++;
      if (m && m[0] !== '' && (!best || m.index < best.m.index)) best = { rule, m };
    }
    if (!best) break;
    const { rule, m } = best;
    // A named rule is one token of its scope (the captures inside it only refine it).
    if (rule.captures && !rule.name) {
      for (const [group, capture] of Object.entries(rule.captures)) {
        const text = m[Number(group)];
        if (!text) continue;
        if (capture.patterns) out.push(...tokenize(text, capture.patterns));
        else out.push([text, capture.name!]);
      }
    } else out.push([m[0], rule.name!]);
    pos = m.index + m[0].length;
  }
  return out.filter(([t]) => t.trim());
}

test('the grammar knows exactly the cell language keys', () => {
  assert.equal(grammar.scopeName, 'source.lora-generation');
  const alternation = JSON.stringify(grammar.repository['top-key']).match(/\^\(([a-z_|]*loras[a-z_|]*)\)/)?.[1];
  assert.deepEqual(alternation?.split('|').sort(), CELL_KEYS.map((k) => k.key).sort());
  const schedulers = CELL_KEYS.find((k) => k.key === 'scheduler')!.values!;
  assert.ok(JSON.stringify(grammar).includes(`(${schedulers.join('|')})`), 'scheduler values match');
});

test('sample lines get the expected scopes', () => {
  assert.deepEqual(tokenize('prompt: a red circle, on white # note'), [
    ['prompt', 'keyword.other.key.lora-generation'],
    [':', 'punctuation.separator.key-value.lora-generation'],
    ['a red circle, on white', 'string.unquoted.prompt.lora-generation'],
    ['# note', 'comment.line.number-sign.lora-generation'],
  ]);
  assert.deepEqual(tokenize('scheduler: dpmpp-2m'), [
    ['scheduler', 'keyword.other.key.lora-generation'],
    [':', 'punctuation.separator.key-value.lora-generation'],
    ['dpmpp-2m', 'support.constant.scheduler.lora-generation'],
  ]);
  assert.deepEqual(tokenize('seed: [0, 1.5]').map(([t, s]) => `${t}=${s.split('.')[0]}`), ['seed=keyword', ':=punctuation', '[=punctuation', '0=constant', ',=punctuation', '1.5=constant', ']=punctuation']);
  assert.deepEqual(tokenize('compare: true').at(-1), ['true', 'constant.language.boolean.lora-generation']);
  assert.deepEqual(tokenize('shceduler: ddim')[0], ['shceduler', 'invalid.illegal.unknown-key.lora-generation']);
  assert.deepEqual(tokenize('  - file: out/pytorch_lora_weights.safetensors'), [
    ['-', 'punctuation.definition.list.item.lora-generation'],
    ['file', 'variable.other.key.lora-generation'],
    [':', 'punctuation.separator.key-value.lora-generation'],
    ['out/pytorch_lora_weights.safetensors', 'string.unquoted.path.lora-generation'],
  ]);
  assert.deepEqual(tokenize('    scale: 0.8'), [
    ['scale', 'variable.other.key.lora-generation'],
    [':', 'punctuation.separator.key-value.lora-generation'],
    ['0.8', 'constant.numeric.lora-generation'],
  ]);
  assert.deepEqual(tokenize('  - lora.safetensors').at(-1), ['lora.safetensors', 'string.unquoted.path.lora-generation']);
  assert.deepEqual(tokenize('negative_prompt: "blurry: bad"').at(-1), ['"blurry: bad"', 'string.quoted.double.lora-generation']);
});
