// Completion of keys (documented, with defaults, never a key already in the file) and of values: enum
// values, booleans, list items, and folders relative to the config for path keys.
import fs from 'node:fs';
import path from 'node:path';
import { CompletionItemKind, InsertTextFormat, MarkupKind, type CompletionItem } from 'vscode-languageserver';
import { resolveConfigPath } from '../core/config/disk_checks.js';
import { modelSource } from '../core/config/model_source.js';
import { LORA_FILE, listCheckpoints } from '../core/config/run_folder.js';
import { METADATA_FILE, isImageFile } from '../core/config/dataset_files.js';
import type { Range } from '../core/config/problems.js';
import { describeExpected, formatValue, KEY_SPECS, keyDocumentation, RUN_CONFIG_KEYS, type KeySpec } from '../core/config/schema.js';
import type { CheckedDocument } from './checker.js';
import { cursorContext } from './cursor.js';

export interface CompletionOptions {
  snippets: boolean;
}

export function complete(doc: CheckedDocument, lines: readonly string[], pos: { line: number; character: number }, opts: CompletionOptions): CompletionItem[] {
  const ctx = cursorContext(lines, pos);
  switch (ctx.kind) {
    case 'key':
      return keyItems(doc, pos.line, ctx.range, ctx.hasColon, opts);
    case 'value': {
      const spec = KEY_SPECS.get(ctx.key);
      return spec ? valueItems(doc, spec, ctx.prefix, ctx.range) : [];
    }
    case 'item': {
      const spec = KEY_SPECS.get(ctx.key);
      return spec?.type === 'list' ? spec.values!.map((v, i) => enumItem(spec, v, ctx.range, i)) : [];
    }
    default:
      return [];
  }
}

function keyItems(doc: CheckedDocument, line: number, range: Range, hasColon: boolean, opts: CompletionOptions): CompletionItem[] {
  // Keys on other lines are taken; the one being typed on this line may be replaced.
  const taken = new Set(doc.analysis.entries.filter((e) => e.keyRange.start.line !== line).map((e) => e.key));
  return RUN_CONFIG_KEYS.filter((s) => !taken.has(s.key)).map((spec, i) => {
    const item: CompletionItem = {
      label: spec.key,
      kind: CompletionItemKind.Property,
      detail: spec.required ? `required · ${describeExpected(spec)}` : `default ${formatValue(spec.default)} · ${spec.summary}`,
      documentation: { kind: MarkupKind.Markdown, value: keyDocumentation(spec) },
      // Schema order groups related keys; required ones first.
      sortText: `${spec.required ? '0' : '1'}${String(i).padStart(3, '0')}`,
      filterText: spec.key,
    };
    if (hasColon) {
      item.textEdit = { range, newText: spec.key };
    } else if (opts.snippets) {
      item.textEdit = { range, newText: `${spec.key}: ${valueSnippet(spec)}` };
      item.insertTextFormat = InsertTextFormat.Snippet;
    } else {
      item.textEdit = { range, newText: `${spec.key}: ${spec.placeholder ?? formatValue(spec.default)}` };
    }
    return item;
  });
}

function valueSnippet(spec: KeySpec): string {
  const esc = (s: string) => s.replace(/[$}\\,|]/g, (c) => `\\${c}`);
  if (spec.type === 'boolean') return spec.default ? '${1|true,false|}' : '${1|false,true|}';
  if (spec.type === 'enum') {
    const values = [...spec.values!];
    if (spec.nullable) values.unshift('null');
    const first = formatValue(spec.default);
    const ordered = [first, ...values.filter((v) => v !== first)];
    return `\${1|${ordered.map(esc).join(',')}|}`;
  }
  return `\${1:${esc(spec.placeholder ?? formatValue(spec.default))}}`;
}

function enumItem(spec: KeySpec, value: string, range: Range, i: number): CompletionItem {
  const isDefault = formatValue(spec.default) === value || (Array.isArray(spec.default) && (spec.default as readonly string[]).includes(value));
  return {
    label: value,
    kind: CompletionItemKind.EnumMember,
    detail: isDefault ? 'default' : undefined,
    documentation: spec.valueDocs?.[value],
    textEdit: { range, newText: value },
    sortText: String(i).padStart(3, '0'),
    preselect: isDefault || undefined,
  };
}

function valueItems(doc: CheckedDocument, spec: KeySpec, prefix: string, range: Range): CompletionItem[] {
  switch (spec.type) {
    case 'enum': {
      const items = spec.values!.map((v, i) => enumItem(spec, v, range, i));
      if (spec.nullable) items.push({ label: 'null', kind: CompletionItemKind.Keyword, detail: spec.nullMeans, textEdit: { range, newText: 'null' }, sortText: '999' });
      return items;
    }
    case 'boolean':
      return ['true', 'false'].map((v) => ({
        label: v,
        kind: CompletionItemKind.Keyword,
        detail: String(spec.default) === v ? 'default' : undefined,
        textEdit: { range, newText: v },
      }));
    case 'list': {
      const combos = [[spec.values![0]], [...spec.values!], ...spec.values!.slice(1).map((v) => [v])];
      return combos.map((c, i) => ({ label: formatValue(c), kind: CompletionItemKind.Value, textEdit: { range, newText: formatValue(c) }, sortText: String(i) }));
    }
    case 'string':
      if (spec.path && doc.baseDir) return pathItems(doc, spec, prefix, range);
      return defaultItem(spec, range);
    default:
      return defaultItem(spec, range);
  }
}

function defaultItem(spec: KeySpec, range: Range): CompletionItem[] {
  if (spec.required || spec.default === null) return spec.nullable ? [{ label: 'null', kind: CompletionItemKind.Keyword, detail: spec.nullMeans, textEdit: { range, newText: 'null' } }] : [];
  const text = formatValue(spec.default);
  return [{ label: text, kind: CompletionItemKind.Value, detail: 'default', textEdit: { range, newText: text } }];
}

const MAX_FOLDER_ITEMS = 200;

/** Folders beside what has been typed (`./exa` lists ./), marked when they look like what the key wants. */
function pathItems(doc: CheckedDocument, spec: KeySpec, prefix: string, range: Range): CompletionItem[] {
  const baseDir = doc.baseDir!;
  const items: CompletionItem[] = [];
  if (spec.path === 'checkpoint') {
    items.push({ label: 'latest', kind: CompletionItemKind.Keyword, detail: 'the highest checkpoint-<step> in output_dir', textEdit: { range, newText: 'latest' }, sortText: '0' });
    const outputDir = resolveConfigPath(doc.analysis.effective.output_dir, baseDir);
    for (const c of listCheckpoints(outputDir).reverse()) {
      const rel = relativeForConfig(baseDir, c.path);
      items.push({ label: rel, kind: CompletionItemKind.Folder, detail: 'checkpoint in output_dir', textEdit: { range, newText: rel }, sortText: `1${rel}` });
    }
  }
  const slash = Math.max(prefix.lastIndexOf('/'), prefix.lastIndexOf('\\'));
  const typedDir = slash >= 0 ? prefix.slice(0, slash + 1) : '';
  const dir = resolveConfigPath(typedDir || '.', baseDir);
  let names: fs.Dirent[];
  try {
    names = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return items;
  }
  // A base model may also be one file: the whole checkpoints beside the typed path (headers only).
  if (spec.path === 'model') {
    for (const d of names.filter((n) => n.isFile() && /\.safetensors$/i.test(n.name)).slice(0, MAX_FOLDER_ITEMS)) {
      const source = modelSource(path.join(dir, d.name));
      if (source.kind !== 'single-file') continue;
      const text = `${typedDir || './'}${d.name}`;
      items.push({ label: text, kind: CompletionItemKind.File, detail: source.label, textEdit: { range, newText: text }, sortText: `2${d.name}` });
    }
  }
  // A LoRA file to start from: the .safetensors files beside the typed path.
  if (spec.path === 'lora') {
    for (const d of names.filter((n) => n.isFile() && /\.safetensors$/i.test(n.name)).slice(0, MAX_FOLDER_ITEMS)) {
      const text = `${typedDir || './'}${d.name}`;
      items.push({ label: text, kind: CompletionItemKind.File, detail: 'safetensors file', textEdit: { range, newText: text }, sortText: `2${d.name}` });
    }
  }
  const folders = names.filter((d) => d.isDirectory() && !d.name.startsWith('.') && d.name !== 'node_modules').slice(0, MAX_FOLDER_ITEMS);
  for (const d of folders) {
    const full = path.join(dir, d.name);
    const what = describeFolder(full, spec);
    const text = `${typedDir || './'}${d.name}`;
    items.push({
      label: text,
      kind: CompletionItemKind.Folder,
      detail: what,
      textEdit: { range, newText: text },
      // Folders that fit the key come first.
      sortText: `${what ? '2' : '3'}${d.name}`,
      // Typing on through the folder lists what is inside it.
      command: { title: 'Suggest', command: 'editor.action.triggerSuggest' },
    });
  }
  return items;
}

function describeFolder(dir: string, spec: KeySpec): string | undefined {
  try {
    if (spec.path === 'model') {
      const source = modelSource(dir);
      if (source.kind === 'folder') return 'diffusers model';
      if (source.kind === 'single-file') return source.label;
    }
    if (spec.path === 'dataset') {
      const names = fs.readdirSync(dir);
      const images = names.filter(isImageFile).length;
      if (images) return `${images} image${images === 1 ? '' : 's'}${names.includes(METADATA_FILE) ? ` + ${METADATA_FILE}` : ''}`;
    }
    if (spec.path === 'output' && fs.existsSync(path.join(dir, LORA_FILE))) return 'holds a trained LoRA';
  } catch {
    // unreadable folder: no description
  }
  return undefined;
}

function relativeForConfig(baseDir: string, p: string): string {
  const rel = path.relative(baseDir, p).split(path.sep).join('/');
  return rel.startsWith('.') ? rel : `./${rel}`;
}
