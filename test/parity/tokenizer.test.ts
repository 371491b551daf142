// CLIP tokenizer vs transformers' CLIPTokenizer: MANIFEST.json `files.tokenizer` holds prompts (unicode,
// emoji, odd whitespace, contractions, one longer than 77 tokens) with transformers' padded/truncated
// input_ids and its unpadded ids. Ids are integers: the match must be exact, from either file format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLIPTokenizer } from '../../src/core/tokenizer/clip_tokenizer.js';
import { FIXTURE_DIR, MODEL_DIR, manifest } from '../helpers/fixtures.js';

const DIR = path.join(MODEL_DIR, 'tokenizer');
const golden = manifest().files.tokenizer as { prompts: string[]; input_ids?: number[][]; unpadded?: number[][] };
// An SDXL fixture's golden holds input_ids_1/_2 for its two tokenizers (sdxl.test.ts checks them).
const GOLDEN = golden.input_ids && golden.unpadded ? {} : { skip: `${FIXTURE_DIR}: MANIFEST files.tokenizer has no input_ids/unpadded` };
// The formats this fixture's tokenizer/ folder has.
const formats = ([
  ['vocab.json + merges.txt', ['vocab.json', 'merges.txt'], () => CLIPTokenizer.fromVocabAndMerges(DIR)],
  ['tokenizer.json', ['tokenizer.json'], () => CLIPTokenizer.fromTokenizerJson(DIR)],
] as const).filter(([, files]) => files.every((f) => fs.existsSync(path.join(DIR, f)))).map(([name, , load]) => [name, load] as const);

for (const [format, load] of formats) {
  test(`every MANIFEST prompt matches transformers exactly (${format})`, GOLDEN, () => {
    const tok = load();
    assert.ok(golden.prompts.length > 0);
    golden.prompts.forEach((prompt, i) => {
      assert.deepEqual(tok.encodeUnpadded(prompt), golden.unpadded![i], `unpadded ids of ${JSON.stringify(prompt)}`);
      assert.deepEqual(tok.encode(prompt), golden.input_ids![i], `input_ids of ${JSON.stringify(prompt)}`);
    });
  });
}

test('batchEncode lays the padded rows out row-major', GOLDEN, () => {
  const tok = CLIPTokenizer.fromPretrained(DIR);
  const batch = tok.batchEncode(golden.prompts);
  assert.equal(batch.length, golden.prompts.length * tok.modelMaxLength);
  assert.deepEqual([...batch], golden.input_ids!.flat());
});

test('both file formats give identical ids beyond the MANIFEST prompts', formats.length === 2 ? {} : { skip: `${DIR} has one tokenizer file format` }, () => {
  const [a, b] = formats.map(([, load]) => load());
  const texts = [
    'ΟΔΟΣ Σ naïve café Ǆ İstanbul', // per-code-point lower-casing, NFC
    'e\u0301 \u0085 \u00a0 \u3000 x\ufeffy', // combining accent, unusual whitespace
    'a<|endoftext|>b <|startoftext|>', // special tokens written in the text
    'ÿ\u0000\u007f\u{10ffff} 💡🔥🔥 ½ ⅓ ²', // bytes that map outside Latin-1, numbers that are not digits
    'word '.repeat(120),
  ];
  for (const t of texts) assert.deepEqual(a.encodeUnpadded(t), b.encodeUnpadded(t), JSON.stringify(t));
});

test('special tokens in the text are kept whole; truncation keeps eos last', () => {
  const tok = CLIPTokenizer.fromPretrained(DIR);
  const plain = tok.encodeUnpadded('a cat');
  const withEos = tok.encodeUnpadded('a<|endoftext|>cat');
  assert.deepEqual(withEos, [plain[0], plain[1], tok.eosTokenId, ...plain.slice(2)]);
  const long = tok.encode('cat '.repeat(200));
  assert.equal(long.length, tok.modelMaxLength);
  assert.equal(long[0], tok.bosTokenId);
  assert.equal(long[long.length - 1], tok.eosTokenId);
  assert.deepEqual(long.slice(1, -1), tok.encodeUnpadded('cat '.repeat(200)).slice(1, tok.modelMaxLength - 1));
});

test('a folder without tokenizer files is a clear error', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clip-tok-'));
  try {
    assert.throws(() => CLIPTokenizer.fromPretrained(dir), /no tokenizer files — expected tokenizer\.json, or vocab\.json and merges\.txt/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
