// Splits pasted shell text into commands and words the way a POSIX shell would, for the few things a
// training recipe uses: quotes, backslash escapes, line continuations (`\`, and `^`/`` ` `` from Windows
// shells), comments, `;`/`&&`/newline between commands, `export NAME=value`, `NAME=value cmd` prefixes
// and `$NAME`/`${NAME}`/`${NAME:-default}` expansion. Nothing is executed.

export interface ShellCommand {
  /** Words after assignments and expansion. */
  words: string[];
  /** `NAME=value` assignments written before the command word (its environment). */
  env: Record<string, string>;
  /** Variables used but never set in the pasted text (left as written). */
  unresolved: string[];
}

interface Segment {
  text: string;
  quote: 'none' | 'single' | 'double';
}
type RawWord = Segment[];

/** Commands in order; assignments-only lines (`export MODEL_NAME=…`) set variables for the later ones and are not returned. */
export function parseShell(text: string, env: Record<string, string> = {}): ShellCommand[] {
  const vars: Record<string, string> = { ...env };
  const out: ShellCommand[] = [];
  for (const statement of tokenize(joinContinuations(text))) {
    const unresolved: string[] = [];
    const words = statement.map((w) => expand(w, vars, unresolved));
    let i = 0;
    const isExport = words[0] === 'export';
    if (isExport) i = 1;
    const assigned: Record<string, string> = {};
    while (i < words.length && /^[A-Za-z_]\w*=/.test(words[i])) {
      const eq = words[i].indexOf('=');
      assigned[words[i].slice(0, eq)] = words[i].slice(eq + 1);
      i++;
    }
    if (i >= words.length) {
      Object.assign(vars, assigned);
      continue;
    }
    out.push({ words: words.slice(i), env: assigned, unresolved: [...new Set(unresolved)] });
  }
  return out;
}

function joinContinuations(text: string): string {
  return text.replace(/\\\r?\n/g, ' ').replace(/(^|\s)[\^`]\r?\n/g, '$1 ');
}

/** Statements of raw words, split at newlines, `;`, `&&`, `||`, `|`, `&`. */
function tokenize(text: string): RawWord[][] {
  const statements: RawWord[][] = [];
  let words: RawWord[] = [];
  let word: RawWord | undefined;
  const push = (text: string, quote: Segment['quote']) => {
    word ??= [];
    word.push({ text, quote });
  };
  const endWord = () => {
    if (word) words.push(word);
    word = undefined;
  };
  const endStatement = () => {
    endWord();
    if (words.length) statements.push(words);
    words = [];
  };
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (ch === '\n' || ch === ';' || ch === '|' || ch === '&') {
      endStatement();
      i++;
    } else if (ch === ' ' || ch === '\t' || ch === '\r') {
      endWord();
      i++;
    } else if (ch === '#' && !word) {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (ch === "'") {
      const end = text.indexOf("'", i + 1);
      const stop = end < 0 ? text.length : end;
      push(text.slice(i + 1, stop), 'single');
      i = stop + 1;
    } else if (ch === '"') {
      let s = '';
      i++;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1])) {
          s += text[i + 1];
          i += 2;
        } else s += text[i++];
      }
      push(s, 'double');
      i++;
    } else if (ch === '\\' && i + 1 < text.length) {
      push(text[i + 1], 'single');
      i += 2;
    } else {
      let s = '';
      while (i < text.length && !` \t\r\n;|&'"\\`.includes(text[i])) s += text[i++];
      push(s, 'none');
    }
  }
  endStatement();
  return statements;
}

function expand(word: RawWord, vars: Record<string, string>, unresolved: string[]): string {
  return word
    .map((seg) =>
      seg.quote === 'single'
        ? seg.text
        : seg.text.replace(/\$(?:\{([A-Za-z_]\w*)(?::?-([^}]*))?\}|([A-Za-z_]\w*))/g, (m, braced: string, dflt: string | undefined, bare: string) => {
            const name = braced ?? bare;
            if (name in vars) return vars[name];
            if (dflt !== undefined) return dflt;
            unresolved.push(name);
            return m;
          }),
    )
    .join('');
}
