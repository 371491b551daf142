// Hover: a key's documentation, default and range (the same text as completion), a value's meaning for
// enums, and what the disk checks found for path keys (image and caption counts, checkpoints).
import path from 'node:path';
import { MarkupKind, type Hover } from 'vscode-languageserver';
import { LORA_FILE } from '../core/config/run_folder.js';
import type { Entry } from '../core/config/entries.js';
import type { Position, Range } from '../core/config/problems.js';
import { GUIDE_ONLY, KEY_SPECS, keyDocumentation } from '../core/config/schema.js';
import { runLength } from '../core/config/cross_checks.js';
import type { CheckedDocument } from './checker.js';

export function hover(doc: CheckedDocument, pos: Position): Hover | null {
  const entry = doc.analysis.entries.find((e) => contains(e.keyRange, pos) || contains(e.valueRange, pos) || e.items?.some((it) => contains(it.range, pos)));
  if (!entry) return null;
  const onValue = !contains(entry.keyRange, pos);
  const guide = GUIDE_ONLY.get(entry.key);
  if (guide) return markdown(`**\`${entry.key}\`** — a diffusers flag that LoRA Studio ${guide.severity === 'error' ? 'does not support' : 'ignores'}: ${guide.reason}.`, entry.keyRange);
  const spec = KEY_SPECS.get(entry.key);
  if (!spec) return null;
  if (onValue && spec.valueDocs) {
    const item = entry.items?.find((it) => contains(it.range, pos));
    const v = item ? item.source : typeof entry.value === 'string' ? entry.value : undefined;
    const doc_ = v !== undefined ? spec.valueDocs[v] : undefined;
    if (doc_) return markdown(`\`${spec.key}: ${v}\` — ${doc_}`, item?.range ?? entry.valueRange);
  }
  const extra = diskNotes(doc, entry);
  return markdown(keyDocumentation(spec) + (extra.length ? `\n\n---\n\n${extra.join('\n\n')}` : ''), onValue ? entry.valueRange : entry.keyRange);
}

/** What the disk checks and the run's length say about this key's value. */
function diskNotes(doc: CheckedDocument, e: Entry): string[] {
  const d = doc.disk;
  const notes: string[] = [];
  if (d?.dataset && e.key === 'train_data_dir') {
    notes.push(`This dataset: ${d.dataset.images} images, ${d.dataset.captions} captions (${d.dataset.captionSource}).`);
  }
  if (d?.model && e.key === 'pretrained_model_name_or_path') {
    notes.push(`This model: ${d.model.pipeline}${d.model.nativeResolution ? `, trained at ${d.model.nativeResolution} px` : ''}.`);
  }
  if (d && e.key === 'output_dir' && d.checkpoints.length) notes.push(`Checkpoints here: ${d.checkpoints.map((c) => path.basename(c.path)).join(', ')}.`);
  if (d && e.key === 'output_dir' && d.findings.some((f) => f.key === 'output_dir' && f.message.includes(LORA_FILE))) notes.push(`Holds a trained LoRA (${LORA_FILE}).`);
  if (['max_train_steps', 'num_train_epochs', 'train_batch_size', 'gradient_accumulation_steps'].includes(e.key) && !doc.analysis.invalid.has(e.key)) {
    const len = runLength(doc.analysis.effective, d?.facts.numExamples);
    if (len) notes.push(`This run: ${len.steps} optimizer steps${len.epochs ? `, ${len.epochs} epochs` : ''} (${len.explain}).`);
  }
  return notes;
}

function markdown(value: string, range: Range): Hover {
  return { contents: { kind: MarkupKind.Markdown, value }, range };
}

function contains(r: Range, p: Position): boolean {
  const afterStart = p.line > r.start.line || (p.line === r.start.line && p.character >= r.start.character);
  const beforeEnd = p.line < r.end.line || (p.line === r.end.line && p.character <= r.end.character);
  return afterStart && beforeEnd;
}
