// The CLIP tokenizer every Stable Diffusion family uses, from the vocabulary bundled with LoRA Studio
// (assets/clip-tokenizer/: CLIP's vocab.json and merges.txt, gzipped; its README says where they come from).
// A single-file checkpoint carries no tokenizer; the family's bundled config (standard_configs/*.json,
// `tokenizer` / `tokenizer_2`) gives what differs between them: the pad token ("<|endoftext|>" for CLIP
// ViT-L, "!" for OpenCLIP's) and model_max_length. As transformers does, every special token (bos, eos,
// pad) is matched whole in the text before BPE.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { CLIPTokenizer, TokenizerError, parseMerges } from './clip_tokenizer.js';

const ASSET_DIR = ['assets', 'clip-tokenizer'];
const BOS = '<|startoftext|>';
const EOS = '<|endoftext|>';

/** The folder holding the bundled files: assets/clip-tokenizer of the tree this module runs from (src/… under tsx, dist/ when bundled). */
export function bundledTokenizerDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, ...ASSET_DIR);
    if (fs.existsSync(path.join(candidate, 'vocab.json.gz'))) return candidate;
    dir = path.dirname(dir);
  }
  throw new TokenizerError(`the bundled CLIP tokenizer (${ASSET_DIR.join('/')}/vocab.json.gz) is missing from this installation: reinstall LoRA Studio, or name a diffusers folder of the model's family as pretrained_model_config (CLI --model-config)`);
}

let vocabulary: { vocab: ReadonlyMap<string, number>; merges: readonly (readonly [string, string])[]; dir: string } | undefined;

function load(): NonNullable<typeof vocabulary> {
  if (vocabulary) return vocabulary;
  const dir = bundledTokenizerDir();
  const read = (f: string) => gunzipSync(fs.readFileSync(path.join(dir, f))).toString('utf8');
  const vocab = new Map(Object.entries(JSON.parse(read('vocab.json.gz')) as Record<string, number>));
  vocabulary = { vocab, merges: parseMerges(read('merges.txt.gz'), path.join(dir, 'merges.txt.gz')), dir };
  return vocabulary;
}

/** A CLIP tokenizer from the bundled vocabulary with a family's tokenizer settings (`pad_token`, `model_max_length`). */
export function bundledClipTokenizer(settings: Record<string, unknown>, family: string): CLIPTokenizer {
  const { vocab, merges, dir } = load();
  const padToken = typeof settings.pad_token === 'string' ? settings.pad_token : EOS;
  const modelMaxLength = Number.isInteger(settings.model_max_length) ? (settings.model_max_length as number) : 77;
  return new CLIPTokenizer({ vocab, merges, addedTokens: [BOS, EOS, padToken], bosToken: BOS, eosToken: EOS, unkToken: EOS, padToken, modelMaxLength, source: `${dir} (bundled, ${family})` });
}
