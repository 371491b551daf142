// Lint: typescript-eslint's recommended rules, and the architecture's import boundaries (docs/DESIGN.md,
// "Shape of the code"): every arrow points inward, towards src/core/config and src/protocol.
import tseslint from 'typescript-eslint';

/** Imports a folder may not make, as regular expressions over the import specifier. */
const forbid = (...regexes) =>
  regexes.map(([regex, message]) => ({ regex, message }));

const TFJS = ['^@tensorflow/', 'tfjs and native packages load only in core/engine, training and cli'];
const SHARP = ['^sharp$', 'image decoding belongs to core/io and training'];
const VSCODE = ['^vscode$', 'only src/extension talks to VS Code'];

const BOUNDARIES = [
  // core: the engine, models, schedulers, LoRA, io, tokenizer, config and pipeline; no product around it.
  { files: ['src/core/**'], patterns: forbid(VSCODE,
    ['(^|/)(training|cli|protocol|extension|server|webview)/', 'src/core imports only src/core']) },
  // core/config: the run-config schema the language server and the extension load: no tensors.
  { files: ['src/core/config/**'], patterns: forbid(VSCODE, TFJS, SHARP,
    ['^\\.\\./(engine|models|pipeline|schedulers|lora|tokenizer)/', 'core/config stays light: it may import core/io and itself only'],
    ['(^|/)(training|cli|protocol|extension|server|webview)/', 'src/core imports only src/core']) },
  // protocol: message types and their framing, shared by every process and bundle.
  { files: ['src/protocol/**'], patterns: forbid(VSCODE, TFJS, SHARP,
    ['^\\.\\./(?!core/config/)', 'src/protocol imports only itself and src/core/config']) },
  { files: ['src/training/**'], patterns: forbid(VSCODE,
    ['(^|/)(cli|extension|server|webview)/', 'src/training imports src/core and src/protocol only']) },
  { files: ['src/cli/**'], patterns: forbid(VSCODE,
    ['(^|/)(extension|server|webview)/', 'src/cli imports src/core, src/training and src/protocol only']) },
  // Both may also import core/io/safe_read.js: the one safe read of files from someone else's repository.
  { files: ['src/extension/**'], patterns: forbid(TFJS, SHARP,
    ['(^|/)(core/(?!config/|io/safe_read\\.js$)|training/|cli/|server/|webview/)', 'src/extension imports src/core/config, src/core/io/safe_read and src/protocol only (the trainer runs as a child process)']) },
  { files: ['src/server/**'], patterns: forbid(VSCODE, TFJS, SHARP,
    ['(^|/)(core/(?!config/|io/safe_read\\.js$)|training/|cli/|extension/|webview/)', 'src/server imports src/core/config, src/core/io/safe_read and src/protocol only']) },
  { files: ['webview/**'], patterns: forbid(VSCODE, TFJS, SHARP,
    ['(^|/)src/(?!protocol/)', 'webview code imports only src/protocol (types and pure helpers)']) },
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', '.device/**', 'test-output/**', 'test/fixtures/**', 'examples/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'warn',
    },
  },
  ...BOUNDARIES.map(({ files, patterns }) => ({ files, rules: { 'no-restricted-imports': ['error', { patterns }] } })),
  // The webview bundles take protocol *types*; values only from the pure helpers, so the message schemas
  // (TypeBox) and their validator (ajv) stay out of the browser bundles.
  { files: ['webview/**'], rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: [
    { regex: '(^|/)src/protocol/(?!format\\.js$)', allowTypeImports: true, message: 'webview code imports protocol types only (`import type`); value helpers live in src/protocol/format.ts' },
  ] }] } },
);
