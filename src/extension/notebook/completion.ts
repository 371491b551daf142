// Completion and hover for generation cells: the keys (with snippets and documentation from cell_spec.ts,
// the language's one definition) and the values of keys that have a fixed set.
import * as vscode from 'vscode';
import { CELL_KEYS, CELL_LANGUAGE_ID } from './cell_spec.js';

export function registerCellLanguageFeatures(): vscode.Disposable {
  const selector: vscode.DocumentSelector = { language: CELL_LANGUAGE_ID };
  return vscode.Disposable.from(
    vscode.languages.registerCompletionItemProvider(selector, { provideCompletionItems }, ':', ' '),
    vscode.languages.registerHoverProvider(selector, { provideHover }),
  );
}

/** Exported for tests of the completion logic with a fake document. */
export function provideCompletionItems(doc: vscode.TextDocument, pos: vscode.Position): vscode.CompletionItem[] {
  const before = doc.lineAt(pos.line).text.slice(0, pos.character);
  const valueOf = /^([a-z_]+):\s*(\S*)$/.exec(before);
  if (valueOf) {
    const key = CELL_KEYS.find((k) => k.key === valueOf[1]);
    return (key?.values ?? []).map((v) => {
      const item = new vscode.CompletionItem(v, vscode.CompletionItemKind.EnumMember);
      item.range = new vscode.Range(pos.line, pos.character - valueOf[2].length, pos.line, pos.character);
      return item;
    });
  }
  // Keys only at the start of a line (not inside the `loras:` list).
  if (!/^[a-z_]*$/.test(before)) return [];
  const present = new Set(
    doc
      .getText()
      .split('\n')
      .map((l) => /^([a-z_]+):/.exec(l)?.[1])
      .filter((k): k is string => !!k),
  );
  return CELL_KEYS.filter((k) => !present.has(k.key) || k.key === before).map((k, i) => {
    const item = new vscode.CompletionItem(k.key, vscode.CompletionItemKind.Property);
    item.detail = k.detail;
    item.documentation = new vscode.MarkdownString(k.doc);
    item.insertText = new vscode.SnippetString(`${k.key}: ${k.snippet}`);
    item.range = new vscode.Range(pos.line, 0, pos.line, pos.character);
    // The keys' own order (prompt first), not alphabetical.
    item.sortText = String(i).padStart(2, '0');
    return item;
  });
}

function provideHover(doc: vscode.TextDocument, pos: vscode.Position): vscode.Hover | undefined {
  const m = /^([a-z_]+):/.exec(doc.lineAt(pos.line).text);
  if (!m || pos.character > m[1].length) return undefined;
  const key = CELL_KEYS.find((k) => k.key === m[1]);
  return key ? new vscode.Hover(new vscode.MarkdownString(`**${key.key}** — ${key.detail}\n\n${key.doc}`), new vscode.Range(pos.line, 0, pos.line, m[1].length)) : undefined;
}
