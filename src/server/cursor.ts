// What the cursor is on, read from the line's text rather than the YAML tree: while someone types, the file
// is usually broken, and completion must still work. Run configs are flat (`key: value` at column 0,
// plus the items of one list), so the line tells enough.
import type { Position, Range } from '../core/config/problems.js';

export type CursorContext =
  /** Typing a key at the start of a line. `hasColon`: the line already has `: value` after the key. */
  | { kind: 'key'; prefix: string; range: Range; hasColon: boolean }
  /** After `key:`. `range` covers the value as written (comment excluded). */
  | { kind: 'value'; key: string; prefix: string; range: Range }
  /** An item of a list value (block `- x` under the key, or inside `[a, b]`). */
  | { kind: 'item'; key: string; prefix: string; range: Range }
  | { kind: 'none' };

const KEY_RE = /^[A-Za-z_][\w.-]*/;

export function cursorContext(lines: readonly string[], pos: Position): CursorContext {
  const line = lines[pos.line] ?? '';
  const before = line.slice(0, pos.character);
  const none: CursorContext = { kind: 'none' };
  if (/^\s*#/.test(before)) return none;

  // Block list item: "  - diff|" under "save_formats:".
  const item = /^(\s*)-\s*/.exec(line);
  if (item && pos.character >= item[0].length) {
    const owner = ownerKey(lines, pos.line);
    if (!owner) return none;
    const valueEnd = valueEndOf(line, item[0].length);
    return { kind: 'item', key: owner, prefix: line.slice(item[0].length, pos.character), range: lineRange(pos.line, item[0].length, Math.max(valueEnd, pos.character)) };
  }

  const colon = line.indexOf(':');
  if (colon < 0 || pos.character <= colon) {
    // Column 0 only: run configs have no nested keys.
    if (!/^[\w.-]*$/.test(before)) return none;
    const word = KEY_RE.exec(line)?.[0] ?? '';
    return { kind: 'key', prefix: before, range: lineRange(pos.line, 0, Math.max(word.length, pos.character)), hasColon: colon >= 0 };
  }
  const key = KEY_RE.exec(line)?.[0];
  if (!key || key.length !== line.slice(0, colon).trimEnd().length) return none;
  let start = colon + 1;
  while (start < line.length && line[start] === ' ') start++;
  if (pos.character < start) start = pos.character;
  const end = Math.max(valueEndOf(line, start), pos.character);
  const value = line.slice(start, pos.character);
  // Inside a flow list: "[diffusers, ko|".
  const bracket = value.lastIndexOf('[');
  if (bracket >= 0 && !value.includes(']')) {
    const sep = Math.max(value.lastIndexOf(','), bracket) + 1;
    let itemStart = start + sep;
    while (line[itemStart] === ' ' && itemStart < pos.character) itemStart++;
    let itemEnd = pos.character;
    while (itemEnd < line.length && !/[,\]\s#]/.test(line[itemEnd])) itemEnd++;
    return { kind: 'item', key, prefix: line.slice(itemStart, pos.character), range: lineRange(pos.line, itemStart, itemEnd) };
  }
  return { kind: 'value', key, prefix: value, range: lineRange(pos.line, start, end) };
}

/** The top-level key whose block a line belongs to (the nearest line above at column 0). */
function ownerKey(lines: readonly string[], line: number): string | undefined {
  for (let l = line - 1; l >= 0; l--) {
    const t = lines[l];
    if (!t.trim() || /^\s/.test(t) || t.startsWith('#') || t.startsWith('-')) continue;
    const m = /^([A-Za-z_][\w.-]*)\s*:\s*(#.*)?$/.exec(t);
    return m?.[1];
  }
  return undefined;
}

/** End of a plain value on the line: before a ` #` comment and trailing blanks. */
function valueEndOf(line: string, start: number): number {
  const hash = line.indexOf(' #', start - 1);
  const end = hash >= 0 ? hash : line.length;
  return start + line.slice(start, end).trimEnd().length;
}

function lineRange(line: number, start: number, end: number): Range {
  return { start: { line, character: start }, end: { line, character: end } };
}
