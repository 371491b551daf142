// VS Code's side of the *.loranb format (notebook_format.ts does the work). Outputs come back from the
// file as the generation item alone, naming PNG files: a serializer is not told where the notebook is,
// so the renderer asks the extension for the images (renderer_host.ts), which knows.
import * as vscode from 'vscode';
import { CELL_LANGUAGE_ID } from './cell_spec.js';
import { GENERATION_MIME, type GenerationOutput } from '../../protocol/generation_output.js';
import { formatNotebookFile, parseNotebookFile, type NotebookFileCell } from './notebook_format.js';

export class LoraNotebookSerializer implements vscode.NotebookSerializer {
  deserializeNotebook(content: Uint8Array): vscode.NotebookData {
    const file = parseNotebookFile(new TextDecoder().decode(content));
    // A new, empty file starts with one cell to type into.
    const cells = file.cells.length ? file.cells : [{ kind: 'generation' as const, source: '', outputs: [] }];
    return new vscode.NotebookData(cells.map(toCellData));
  }

  serializeNotebook(data: vscode.NotebookData): Uint8Array {
    const cells: NotebookFileCell[] = data.cells.map((c) => ({
      kind: c.kind === vscode.NotebookCellKind.Markup ? 'markdown' : 'generation',
      source: c.value,
      outputs: (c.outputs ?? []).flatMap((o) => o.items.filter((i) => i.mime === GENERATION_MIME).map((i) => JSON.parse(new TextDecoder().decode(i.data)) as GenerationOutput)),
    }));
    return new TextEncoder().encode(formatNotebookFile({ cells }));
  }
}

function toCellData(c: NotebookFileCell): vscode.NotebookCellData {
  if (c.kind === 'markdown') return new vscode.NotebookCellData(vscode.NotebookCellKind.Markup, c.source, 'markdown');
  const cell = new vscode.NotebookCellData(vscode.NotebookCellKind.Code, c.source, CELL_LANGUAGE_ID);
  cell.outputs = c.outputs.map((o) => new vscode.NotebookCellOutput([vscode.NotebookCellOutputItem.json(o, GENERATION_MIME)]));
  return cell;
}
