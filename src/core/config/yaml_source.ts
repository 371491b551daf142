// Reads a run config's YAML text into entries with exact positions, and its syntax errors as problems.
// Parsing is lenient: a line without a colon (`rank 4`) is reported and then blanked, so one typo does not
// swallow the next key into a multi-line "implicit key" and the rest of the file is still checked.
import { parseDocument, isMap, isScalar, isSeq, isNode, type Document, type Node, type Pair, type YAMLError } from 'yaml';
import type { Entry } from './entries.js';
import { problem, type Position, type Problem, type Range } from './problems.js';
import { KEY_SPECS } from './schema.js';

export class LineIndex {
  /** Offset of the first character of each line. */
  readonly starts: number[] = [0];

  constructor(readonly text: string) {
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) this.starts.push(i + 1);
  }

  get lineCount(): number {
    return this.starts.length;
  }

  position(offset: number): Position {
    offset = Math.max(0, Math.min(offset, this.text.length));
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo, character: offset - this.starts[lo] };
  }

  offset(p: Position): number {
    if (p.line >= this.starts.length) return this.text.length;
    return Math.min(this.starts[p.line] + p.character, this.lineEnd(p.line));
  }

  range(start: number, end: number): Range {
    return { start: this.position(start), end: this.position(end) };
  }

  /** Offset of the end of a line's content (before \r\n or \n). */
  lineEnd(line: number): number {
    let end = line + 1 < this.starts.length ? this.starts[line + 1] - 1 : this.text.length;
    if (end > this.starts[line] && this.text.charCodeAt(end - 1) === 13) end--;
    return end;
  }

  lineText(line: number): string {
    return this.text.slice(this.starts[line], this.lineEnd(line));
  }

  /** The line's text without leading/trailing blanks, as a range (for problems about a whole line). */
  trimmedLineRange(line: number): Range {
    const t = this.lineText(line);
    const lead = t.length - t.trimStart().length;
    return { start: { line, character: lead }, end: { line, character: t.trimEnd().length } };
  }
}

export interface YamlSource {
  lines: LineIndex;
  entries: Entry[];
  /** Syntax errors and a top level that is not a mapping. */
  problems: Problem[];
}

const MAX_RECOVERY_PASSES = 4;
/** Aliases a value may expand (`*a`): a run config needs few or none; a "billion laughs" text needs millions. */
const MAX_ALIAS_COUNT = 20;

/**
 * The longest run config read, in characters. Real ones are a few kB; YAML parsing of a pathological text (thousands of keys) costs about 0.2 s per 10 kB
 * here, so the language server keeps answering within a second on any file a cloned repository holds.
 */
export const MAX_CONFIG_CHARS = 64 * 1024;

export function readYamlSource(text: string): YamlSource {
  const problems: Problem[] = [];
  if (text.length > MAX_CONFIG_CHARS) {
    // Not indexed past its first line: the one problem sits there.
    const lines = new LineIndex(text.slice(0, Math.min(text.length, 1 + (text.indexOf('\n') >>> 0))));
    const size = text.length >= 1024 * 1024 ? `${(text.length / 1024 / 1024).toFixed(1)} MB` : `${Math.round(text.length / 1024)} kB`;
    problems.push(
      problem({
        code: 'read',
        severity: 'error',
        range: lines.trimmedLineRange(0),
        message: `this file holds ${size}, over the ${MAX_CONFIG_CHARS / 1024} kB limit for a run config (a real one is a few kB of \`key: value\` lines): it is not checked`,
      }),
    );
    return { lines, entries: [], problems };
  }
  const lines = new LineIndex(text);
  let working = text;
  let doc: Document.Parsed = parseDocument(working, { prettyErrors: false, uniqueKeys: false });
  for (let pass = 0; pass < MAX_RECOVERY_PASSES; pass++) {
    const blanked = new Set<number>();
    for (const e of doc.errors) {
      const keyWithoutColon =
        e.code === 'MULTILINE_IMPLICIT_KEY' || e.code === 'BLOCK_AS_IMPLICIT_KEY' || (e.code === 'MISSING_CHAR' && /^Implicit map keys need to be followed/.test(e.message));
      if (!keyWithoutColon) continue;
      const first = lines.position(e.pos[0]).line;
      const last = lines.position(e.pos[1]).line;
      for (let l = first; l <= last; l++) {
        const t = lines.lineText(l);
        if (t.trim() && !t.trim().startsWith('#') && !t.includes(':') && !blanked.has(l)) {
          blanked.add(l);
          problems.push(missingColon(lines, l));
        }
      }
    }
    if (!blanked.size) break;
    const chars = working.split('');
    for (const l of blanked) for (let o = lines.starts[l]; o < lines.lineEnd(l); o++) chars[o] = ' ';
    working = chars.join('');
    doc = parseDocument(working, { prettyErrors: false, uniqueKeys: false });
  }
  for (const e of doc.errors) if (e.code !== 'DUPLICATE_KEY') problems.push(syntaxProblem(lines, e));
  for (const w of doc.warnings) problems.push({ ...syntaxProblem(lines, w), severity: 'warning' });

  const entries: Entry[] = [];
  const contents = doc.contents;
  if (contents && !isMap(contents)) {
    const [s, e] = contents.range;
    const what = isSeq(contents) ? 'a list' : isScalar(contents) ? 'a single value' : 'something else';
    problems.push(
      problem({
        code: 'not-a-mapping',
        severity: 'error',
        range: lines.range(s, e),
        message: `a run config is a mapping of \`key: value\` lines (for example \`rank: 4\`), but this file holds ${what}`,
      }),
    );
  } else if (isMap(contents)) {
    const seen = new Map<string, Entry>();
    for (const pair of contents.items as Pair<unknown, unknown>[]) {
      const entry = toEntry(doc, lines, pair, problems);
      if (!entry) continue;
      const before = seen.get(entry.key);
      if (before) {
        before.overridden = true;
        problems.push(
          problem({
            key: entry.key,
            code: 'duplicate-key',
            severity: 'error',
            range: entry.keyRange,
            message: `\`${entry.key}\` is set twice (first on line ${before.keyRange.start.line + 1}); remove one of them`,
            fix: { title: `Remove this \`${entry.key}\` line`, edit: { range: entry.removeRange, newText: '' } },
          }),
        );
      }
      seen.set(entry.key, entry);
      entries.push(entry);
    }
  }
  return { lines, entries, problems };
}

function toEntry(doc: Document.Parsed, lines: LineIndex, pair: Pair<unknown, unknown>, problems: Problem[]): Entry | undefined {
  const keyNode = pair.key;
  if (!isScalar(keyNode) || !keyNode.range) {
    if (isNode(keyNode) && keyNode.range) {
      problems.push(
        problem({ code: 'syntax', severity: 'error', range: lines.range(keyNode.range[0], keyNode.range[1]), message: 'keys must be plain names such as `rank`' }),
      );
    }
    return undefined;
  }
  const key = String(keyNode.value);
  const keyRange = lines.range(keyNode.range[0], keyNode.range[1]);
  const valueNode = isNode(pair.value) ? (pair.value as Node) : undefined;
  // An empty value sits right after the colon.
  const colon = lines.text.indexOf(':', keyNode.range[1]);
  const valueStart = valueNode?.range ? valueNode.range[0] : colon >= 0 ? colon + 1 : keyNode.range[1];
  const valueEnd = valueNode?.range ? valueNode.range[1] : valueStart;
  let value: unknown = null;
  if (valueNode) {
    try {
      value = valueNode.toJS(doc, { maxAliasCount: MAX_ALIAS_COUNT });
    } catch (e) {
      // An alias with no anchor (`rank: *a`) or one that expands too far (a "billion laughs" text).
      const [s, end] = valueNode.range ?? [valueStart, valueEnd];
      const unresolved = /Unresolved alias/.test((e as Error).message);
      problems.push(
        problem({
          key: KEY_SPECS.has(key) ? key : undefined,
          code: 'syntax',
          severity: 'error',
          range: lines.range(s, end),
          message: unresolved
            ? `YAML: ${lines.text.slice(s, Math.min(end, s + 40)).trim()} is an alias with no anchor (\`&name\`) before it — write the value itself`
            : `YAML: \`${key}\` expands its aliases more than ${MAX_ALIAS_COUNT} times — write the value itself`,
        }),
      );
      return undefined;
    }
  }
  const entry: Entry = {
    key,
    value: value === undefined ? null : value,
    keyRange,
    valueRange: lines.range(valueStart, valueEnd),
    removeRange: removeRange(lines, keyNode.range[0], valueNode?.range ? valueNode.range[2] : valueEnd),
  };
  if (isScalar(valueNode)) {
    entry.source = lines.text.slice(valueStart, valueEnd);
    entry.quoted = valueNode.type === 'QUOTE_DOUBLE' || valueNode.type === 'QUOTE_SINGLE';
  } else if (isSeq(valueNode)) {
    entry.items = valueNode.items.map((it) => {
      const r = isNode(it) && it.range ? it.range : [valueStart, valueEnd];
      return { range: lines.range(r[0], r[1]), source: isScalar(it) ? lines.text.slice(r[0], r[1]) : undefined };
    });
  }
  return entry;
}

/** From the start of the key's line to the start of the line after the value. */
function removeRange(lines: LineIndex, keyStart: number, valueEnd: number): Range {
  const startLine = lines.position(keyStart).line;
  // nodeEnd may sit at the start of the next line (after the newline): step back onto the value's line.
  const endOffset = valueEnd > keyStart && lines.text[valueEnd - 1] === '\n' ? valueEnd - 1 : valueEnd;
  const endLine = lines.position(endOffset).line;
  const end = endLine + 1 < lines.lineCount ? { line: endLine + 1, character: 0 } : lines.position(lines.text.length);
  return { start: { line: startLine, character: 0 }, end };
}

function missingColon(lines: LineIndex, line: number): Problem {
  const range = lines.trimmedLineRange(line);
  const text = lines.lineText(line).trim();
  const m = /^([A-Za-z_][\w.-]*)(\s+(.*))?$/.exec(text);
  if (!m) return problem({ code: 'syntax', severity: 'error', range, message: 'this line is not a `key: value` pair: it has no `:`' });
  const [, word, , rest] = m;
  const known = KEY_SPECS.has(word);
  const keyEnd = { line, character: range.start.character + word.length };
  return problem({
    key: known ? word : undefined,
    code: 'syntax',
    severity: 'error',
    range,
    message: rest ? `missing \`:\` after \`${word}\` — write \`${word}: ${rest}\`` : `\`${word}\` has no \`:\` — write \`${word}: <value>\``,
    fix: { title: `Insert \`:\` after \`${word}\``, edit: { range: { start: keyEnd, end: rest ? { line, character: keyEnd.character + 1 } : keyEnd }, newText: ': ' } },
  });
}

const FRIENDLY: Partial<Record<string, string>> = {
  TAB_AS_INDENT: 'tabs are not allowed as indentation in YAML — indent with spaces',
  MISSING_CHAR: '',
  MULTIPLE_DOCS: 'a run config is one YAML document: remove the second `---` and what follows, or merge it into the first',
  BAD_INDENT: '',
  UNEXPECTED_TOKEN: '',
};

function syntaxProblem(lines: LineIndex, e: YAMLError): Problem {
  const [s, end] = e.pos;
  // yaml's message may end with " at line X, column Y:" and a source excerpt: the range says where.
  let message = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
  message = FRIENDLY[e.code] || message.charAt(0).toLowerCase() + message.slice(1);
  if (e.code === 'MISSING_CHAR' && /quote/.test(message)) message += ' — strings that start with a quote must end with the same quote';
  const range = lines.range(s, Math.max(end, s));
  const p = problem({ code: 'syntax', severity: 'error', range, message: `YAML: ${message}` });
  if (e.code === 'TAB_AS_INDENT') p.fix = { title: 'Replace the tab with spaces', edit: { range, newText: '  ' } };
  return p;
}
