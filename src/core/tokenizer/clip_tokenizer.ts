// CLIP's byte-level BPE tokenizer, behaving exactly like transformers' CLIPTokenizer (the `tokenizers`
// pipeline that transformers 5 uses, and that its slow Python tokenizer agrees with on real prompts):
//
//   split out special tokens → normalize (NFC, whitespace runs → " ", lower-case) → pre-tokenize with
//   CLIP's regex → bytes → byte-level characters → BPE with "</w>" on the last character of a word →
//   <|startoftext|> ids <|endoftext|> → truncate to model_max_length (eos kept) → pad.
//
// It loads from a tokenizer folder holding vocab.json + merges.txt, or tokenizer.json, or both
// (tokenizer.json wins when both are there, as in transformers). Pure TypeScript: no tfjs here.
import { FileRefusedError, READ_LIMITS, readRegularText } from '../io/safe_read.js';
import fs from 'node:fs';
import path from 'node:path';

export class TokenizerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenizerError';
  }
}

/** The files a tokenizer is built from, already parsed. */
export interface ClipTokenizerData {
  /** Token string → id, including the special tokens. */
  readonly vocab: ReadonlyMap<string, number>;
  /** Merge rules in priority order (first = applied first), each a pair of symbols. */
  readonly merges: readonly (readonly [string, string])[];
  /** Tokens matched verbatim in the raw text before normalization (the special tokens). */
  readonly addedTokens: readonly string[];
  readonly bosToken: string;
  readonly eosToken: string;
  readonly unkToken: string;
  readonly padToken: string;
  readonly modelMaxLength: number;
  /** Where the data came from, for error messages. */
  readonly source: string;
}

// Unicode White_Space: what Oniguruma's \s means in `tokenizers` (JS's \s differs on U+0085 and U+FEFF).
const WS = '\\p{White_Space}';
// CLIP's pre-tokenizer pattern (tokenizer.json's Split, also the slow tokenizer's `pat`), with \s as above.
const CLIP_PATTERN = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^${WS}\\p{L}\\p{N}]+`,
  'gu',
);
const WHITESPACE_RUN = new RegExp(`[${WS}]+`, 'gu');
const END_OF_WORD = '</w>';
/** CLIP's context length, used when tokenizer_config.json gives no sensible model_max_length. */
const CLIP_CONTEXT_LENGTH = 77;
const CACHE_LIMIT = 10_000;
/** Longest word (in UTF-8 bytes) given to BPE: each token is at most a few bytes, so this is well past 77 tokens. */
const MAX_WORD_CHARS = 2048;

/**
 * GPT-2's reversible byte → printable character table: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100 onwards, so every byte string is a string of vocabulary characters.
 */
function bytesToUnicode(): string[] {
  const table: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : next++);
  }
  return table;
}
const BYTE_CHARS = bytesToUnicode();
const utf8 = new TextEncoder();

export class CLIPTokenizer {
  readonly vocab: ReadonlyMap<string, number>;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly unkTokenId: number;
  readonly modelMaxLength: number;
  /** "a b" → rank; lower ranks merge first. */
  private readonly mergeRanks = new Map<string, number>();
  /** Special tokens, longest first so that one that is a prefix of another cannot win. */
  private readonly addedTokens: string[];
  private readonly cache = new Map<string, number[]>();

  constructor(readonly data: ClipTokenizerData) {
    this.vocab = data.vocab;
    const id = (token: string, role: string) => {
      const v = data.vocab.get(token);
      if (v === undefined) throw new TokenizerError(`${data.source}: the ${role} token ${JSON.stringify(token)} is not in the vocabulary`);
      return v;
    };
    this.bosTokenId = id(data.bosToken, 'bos');
    this.eosTokenId = id(data.eosToken, 'eos');
    this.padTokenId = id(data.padToken, 'pad');
    this.unkTokenId = id(data.unkToken, 'unk');
    this.modelMaxLength = data.modelMaxLength;
    if (this.modelMaxLength < 2) throw new TokenizerError(`${data.source}: model_max_length ${this.modelMaxLength} leaves no room for bos and eos`);
    data.merges.forEach(([a, b], rank) => {
      const key = `${a} ${b}`;
      if (!this.mergeRanks.has(key)) this.mergeRanks.set(key, rank);
    });
    this.addedTokens = [...new Set(data.addedTokens)].filter((t) => t.length > 0).sort((a, b) => b.length - a.length);
    for (const t of this.addedTokens) id(t, 'added');
  }

  /**
   * Reads a tokenizer folder (diffusers' `tokenizer/`): tokenizer.json, or vocab.json + merges.txt, plus
   * tokenizer_config.json / special_tokens_map.json for the special tokens and model_max_length.
   */
  static fromPretrained(dir: string): CLIPTokenizer {
    const has = (f: string) => fs.existsSync(path.join(dir, f));
    if (has('tokenizer.json')) return CLIPTokenizer.fromTokenizerJson(dir);
    if (has('vocab.json') && has('merges.txt')) return CLIPTokenizer.fromVocabAndMerges(dir);
    throw new TokenizerError(`${dir}: no tokenizer files — expected tokenizer.json, or vocab.json and merges.txt (the tokenizer/ folder of a diffusers model)`);
  }

  /** Builds from vocab.json + merges.txt (the slow tokenizer's files). */
  static fromVocabAndMerges(dir: string): CLIPTokenizer {
    const vocabFile = path.join(dir, 'vocab.json');
    const mergesFile = path.join(dir, 'merges.txt');
    const vocabJson = readJsonFile(vocabFile) as Record<string, number>;
    if (typeof vocabJson !== 'object' || vocabJson === null || Array.isArray(vocabJson)) throw new TokenizerError(`${vocabFile}: expected an object mapping tokens to ids`);
    const merges = parseMerges(readText(mergesFile), mergesFile);
    return new CLIPTokenizer({ vocab: new Map(Object.entries(vocabJson)), merges, ...specialTokens(dir, []), source: dir });
  }

  /** Builds from tokenizer.json (the `tokenizers` file); its model must be CLIP's BPE. */
  static fromTokenizerJson(dir: string): CLIPTokenizer {
    const file = path.join(dir, 'tokenizer.json');
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const json = readJsonFile(file) as any;
    const model = json?.model;
    if (model?.type !== 'BPE' || typeof model.vocab !== 'object') throw new TokenizerError(`${file}: expected a BPE model (model.type "BPE" with vocab and merges), got ${JSON.stringify(model?.type)}`);
    if ((model.end_of_word_suffix ?? '') !== END_OF_WORD) {
      throw new TokenizerError(`${file}: the BPE model's end_of_word_suffix is ${JSON.stringify(model.end_of_word_suffix)}, not "${END_OF_WORD}" — this is not a CLIP tokenizer`);
    }
    // Merges are either "a b" strings (older files) or [a, b] pairs (tokenizers ≥ 0.20).
    const merges = (model.merges as (string | [string, string])[]).map((m, i): [string, string] => {
      const pair = typeof m === 'string' ? m.split(' ') : m;
      if (!Array.isArray(pair) || pair.length !== 2) throw new TokenizerError(`${file}: merge #${i} is malformed: ${JSON.stringify(m)}`);
      return [pair[0], pair[1]];
    });
    const added = Array.isArray(json.added_tokens) ? (json.added_tokens as { content: string }[]).map((t) => t.content) : [];
    const vocab = new Map<string, number>(Object.entries(model.vocab as Record<string, number>));
    for (const t of (json.added_tokens ?? []) as { content: string; id: number }[]) if (!vocab.has(t.content)) vocab.set(t.content, t.id);
    const special = specialTokens(dir, added);
    return new CLIPTokenizer({ vocab, merges, ...special, unkToken: model.unk_token ?? special.unkToken, source: dir });
  }

  /** `<|startoftext|>` ids `<|endoftext|>`, truncated to modelMaxLength with eos kept last, then padded to it. */
  encode(text: string): number[] {
    const ids = this.encodeUnpadded(text);
    const max = this.modelMaxLength;
    // transformers truncates the text's tokens to max − 2 and then adds bos/eos, so eos always ends it.
    const out = ids.length > max ? ids.slice(0, max - 1).concat(this.eosTokenId) : ids;
    while (out.length < max) out.push(this.padTokenId);
    return out;
  }

  /** `<|startoftext|>` ids `<|endoftext|>`, neither truncated nor padded. */
  encodeUnpadded(text: string): number[] {
    const ids = this.tokenize(text);
    ids.unshift(this.bosTokenId);
    ids.push(this.eosTokenId);
    return ids;
  }

  /** Several prompts, each padded/truncated to modelMaxLength, as one row-major [texts.length, modelMaxLength] array. */
  batchEncode(texts: readonly string[]): Int32Array {
    const max = this.modelMaxLength;
    const out = new Int32Array(texts.length * max);
    texts.forEach((t, i) => out.set(this.encode(t), i * max));
    return out;
  }

  /** The text's token ids, without bos/eos. */
  tokenize(text: string): number[] {
    const ids: number[] = [];
    for (const segment of this.splitAddedTokens(text)) {
      if (segment.added) {
        ids.push(this.vocab.get(segment.text)!);
        continue;
      }
      for (const word of normalize(segment.text).match(CLIP_PATTERN) ?? []) {
        // A word longer than MAX_WORD_CHARS gives more tokens than modelMaxLength keeps: its tail would be
        // truncated anyway, and BPE on it costs time quadratic in its length.
        for (const id of this.bpe(toByteChars(word).slice(0, MAX_WORD_CHARS))) ids.push(id);
      }
    }
    return ids;
  }

  /** Cuts the raw text around verbatim occurrences of the special tokens (they are never normalized). */
  private splitAddedTokens(text: string): { text: string; added: boolean }[] {
    const out: { text: string; added: boolean }[] = [];
    let start = 0;
    let plain = 0;
    while (start < text.length && this.addedTokens.length) {
      const hit = this.addedTokens.find((t) => text.startsWith(t, start));
      if (hit) {
        if (plain < start) out.push({ text: text.slice(plain, start), added: false });
        out.push({ text: hit, added: true });
        start += hit.length;
        plain = start;
      } else {
        start++;
      }
    }
    if (plain < text.length) out.push({ text: text.slice(plain), added: false });
    return out;
  }

  /** BPE over one pre-tokenized word (already in byte characters), "</w>" marking its end. */
  private bpe(word: string): number[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    let symbols = [...word];
    symbols[symbols.length - 1] += END_OF_WORD;
    // Repeatedly merge the adjacent pair with the lowest rank, every occurrence left to right. (Equivalent to
    // tokenizers' priority queue: a merge's result only forms pairs ranked after the merge itself.)
    for (;;) {
      let best = Infinity;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const r = this.mergeRanks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (r !== undefined && r < best) best = r;
      }
      if (best === Infinity) break;
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && this.mergeRanks.get(`${symbols[i]} ${symbols[i + 1]}`) === best) {
          merged.push(symbols[i] + symbols[i + 1]);
          i++;
        } else {
          merged.push(symbols[i]);
        }
      }
      symbols = merged;
    }
    const ids = symbols.map((s) => this.vocab.get(s) ?? this.unkTokenId);
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, ids);
    return ids;
  }
}

/**
 * CLIP's normalizer: NFC, every whitespace run → one space, lower-case. Lower-casing is per code point,
 * as `tokenizers` does it (so a final capital sigma becomes σ, not the context-dependent ς of toLowerCase).
 */
function normalize(text: string): string {
  let lower = '';
  for (const ch of text.normalize('NFC').replace(WHITESPACE_RUN, ' ')) lower += ch.toLowerCase();
  return lower;
}

function toByteChars(word: string): string {
  let s = '';
  for (const b of utf8.encode(word)) s += BYTE_CHARS[b];
  return s;
}

/** bos/eos/unk/pad and model_max_length from tokenizer_config.json (or special_tokens_map.json), with CLIP's defaults. */
function specialTokens(dir: string, added: readonly string[]): Omit<ClipTokenizerData, 'vocab' | 'merges' | 'source'> {
  const read = (f: string): Record<string, unknown> => (fs.existsSync(path.join(dir, f)) ? (readJsonFile(path.join(dir, f)) as Record<string, unknown>) : {});
  const config = read('tokenizer_config.json');
  const map = read('special_tokens_map.json');
  // A token is either a string or an AddedToken object {content, …}.
  const token = (key: string, fallback: string): string => {
    const v = config[key] ?? map[key];
    if (typeof v === 'string') return v;
    if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
    return fallback;
  };
  const bosToken = token('bos_token', '<|startoftext|>');
  const eosToken = token('eos_token', '<|endoftext|>');
  const unkToken = token('unk_token', '<|endoftext|>');
  const padToken = token('pad_token', '<|endoftext|>');
  const decoder = config.added_tokens_decoder as Record<string, { content?: string }> | undefined;
  const fromConfig = decoder ? Object.values(decoder).flatMap((t) => (typeof t?.content === 'string' ? [t.content] : [])) : [];
  // transformers writes model_max_length = 1e30 when a tokenizer has no limit; CLIP's positions stop at 77.
  const m = Number(config.model_max_length);
  const modelMaxLength = Number.isInteger(m) && m > 0 && m <= 1_000_000 ? m : CLIP_CONTEXT_LENGTH;
  return { bosToken, eosToken, unkToken, padToken, modelMaxLength, addedTokens: [...added, ...fromConfig, bosToken, eosToken] };
}

/** merges.txt: an optional `#version` line, then one "a b" merge per line in priority order. */
export function parseMerges(text: string, source: string): [string, string][] {
  const merges: [string, string][] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line === '' || (i === 0 && line.startsWith('#version'))) return;
    const parts = line.split(' ');
    if (parts.length !== 2) throw new TokenizerError(`${source}:${i + 1}: expected two symbols separated by one space, got ${JSON.stringify(line)}`);
    merges.push([parts[0], parts[1]]);
  });
  return merges;
}

function readText(file: string): string {
  try {
    return readRegularText(file, READ_LIMITS.tokenizer, 'a tokenizer file');
  } catch (e) {
    if (e instanceof FileRefusedError) throw new TokenizerError(e.message);
    throw new TokenizerError(`${file}: cannot read (${(e as Error).message})`);
  }
}

function readJsonFile(file: string): unknown {
  const text = readText(file);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`${file}: invalid JSON (${(e as Error).message})`);
  }
}
