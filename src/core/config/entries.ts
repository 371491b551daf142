// One `key: value` of a run config, wherever it came from (a YAML line or a command-line flag), with the
// places the editor needs: where the key and the value are, and what to delete to remove the line.
import type { Range } from './problems.js';

export interface Entry {
  key: string;
  /** The value as JavaScript sees it (YAML resolved, or a flag's string converted by the key's type). */
  value: unknown;
  keyRange: Range;
  /** The value; an empty range right after the colon when there is none. */
  valueRange: Range;
  /** The whole line(s) of the entry, end of line included: deleting this removes the key. */
  removeRange: Range;
  /** The value as written, for scalars ("1e-4", "'4'", "yes"). */
  source?: string;
  /** The scalar was quoted, so YAML read it as a string. */
  quoted?: boolean;
  /** List items (YAML sequences). */
  items?: { range: Range; source?: string }[];
  /** A later entry sets the same key (the last one wins, as in YAML loaders and argparse). */
  overridden?: boolean;
}

/** How problems name a key: `rank` in YAML, `--rank` on the command line. */
export interface Naming {
  readonly kind: 'yaml' | 'flags';
  name(key: string): string;
}

export const YAML_NAMING: Naming = { kind: 'yaml', name: (k) => `\`${k}\`` };
export const FLAG_NAMING: Naming = { kind: 'flags', name: (k) => `\`--${k}\`` };
