// The language server for run configs (`*.lora.yaml`, language id `lora-yaml`): diagnostics with exact
// ranges, completion, hover and quick fixes, from the one run-config definition in src/core/config/.
// Transport from the command line: --stdio or --node-ipc (vscode-languageserver reads it).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  createConnection,
  DidChangeWatchedFilesNotification,
  StreamMessageReader,
  StreamMessageWriter,
  ProposedFeatures,
  TextDocuments,
  TextDocumentSyncKind,
  type Disposable,
  type FileSystemWatcher,
  type InitializeResult,
} from 'vscode-languageserver/node';
import { TextDocument } from 'vscode-languageserver-textdocument';
import { importAccelerateCommand } from '../core/config/import_command.js';
import { runLength } from '../core/config/cross_checks.js';
import { resolveConfigPath } from '../core/config/disk_checks.js';
import { problem, ZERO_RANGE } from '../core/config/problems.js';
import { LORA_FILE } from '../core/config/run_folder.js';
import { LORA_STUDIO_VERSION } from '../core/config/version.js';
import { analyzeRunConfigText, validateRunConfigText } from '../core/config/validate.js';
import { codeActions } from './code_actions.js';
import { ConfigChecker, toDiagnostic, type CheckedDocument } from './checker.js';
import { complete } from './completion.js';
import { FrameGuard } from './frame_guard.js';
import { hover } from './hover.js';
import { ImportCommandRequest, RunConfigSummaryRequest, type LoraServerInitOptions, type RunConfigSummary } from '../protocol/language_server.js';

// Over stdio the frames are read here, so a malformed one (no Content-Length, a body that is not JSON, a
// header that never ends, a length over the cap) closes the connection with a message on stderr instead of
// leaving the reader waiting on a broken stream forever. A body that is JSON but no message ({}, 5, null)
// is answered by vscode-jsonrpc with a logMessage, and the server goes on.
const stdio = process.argv.includes('--stdio');
const malformed = (problem: string): never => {
  process.stderr.write(`lora-studio language server: malformed message from the client (${problem}); closing the connection\n`);
  process.exit(1);
};
const reader = stdio ? new StreamMessageReader(process.stdin.pipe(new FrameGuard(malformed))) : undefined;
const connection = reader ? createConnection(ProposedFeatures.all, reader, new StreamMessageWriter(process.stdout)) : createConnection(ProposedFeatures.all);
reader?.onError((e) => malformed(e.message));
const documents = new TextDocuments(TextDocument);
const checker = new ConfigChecker();
const checked = new Map<string, CheckedDocument>();
const timers = new Map<string, NodeJS.Timeout>();

let debounceMs = 50;
let snippets = false;
let dynamicWatch = false;
let relativePatterns = false;
let watchRegistration: Promise<Disposable> | undefined;
let registeredWatch = '';

connection.onInitialize((params): InitializeResult => {
  const caps = params.capabilities;
  snippets = !!caps.textDocument?.completion?.completionItem?.snippetSupport;
  dynamicWatch = !!caps.workspace?.didChangeWatchedFiles?.dynamicRegistration;
  relativePatterns = !!caps.workspace?.didChangeWatchedFiles?.relativePatternSupport;
  const opts = (params.initializationOptions ?? {}) as LoraServerInitOptions;
  if (typeof opts.debounceMs === 'number' && opts.debounceMs >= 0) debounceMs = opts.debounceMs;
  return {
    capabilities: {
      textDocumentSync: TextDocumentSyncKind.Incremental,
      completionProvider: { triggerCharacters: [':', '/', ' ', '[', ','] },
      hoverProvider: true,
      codeActionProvider: { codeActionKinds: ['quickfix'] },
    },
    serverInfo: { name: 'lora-studio-run-config', version: LORA_STUDIO_VERSION },
  };
});

/**
 * Checks now and publishes; keeps the result for completion, hover and code actions. Whatever a file holds,
 * the server lives: an unexpected error becomes a diagnostic on the first line (and is logged).
 */
function checkNow(doc: TextDocument): CheckedDocument {
  clearTimeout(timers.get(doc.uri));
  timers.delete(doc.uri);
  let result: CheckedDocument;
  try {
    const text: unknown = doc.getText();
    if (typeof text !== 'string') throw new Error(`the document's text is ${typeof text}, not a string`);
    result = checker.check(doc.uri, doc.version, text);
  } catch (e) {
    connection.console.error(`checking ${doc.uri} failed: ${(e as Error).stack ?? String(e)}`);
    result = { uri: doc.uri, version: doc.version, analysis: analyzeRunConfigText(''), problems: [problem({ code: 'read', severity: 'error', range: ZERO_RANGE, message: `LoRA Studio could not check this file: ${(e as Error).message}` })] };
  }
  checked.set(doc.uri, result);
  void connection.sendDiagnostics({ uri: doc.uri, version: doc.version, diagnostics: result.problems.map(toDiagnostic) });
  checker.prune(checked.values());
  updateWatchers();
  return result;
}

function checkSoon(doc: TextDocument, delay = debounceMs): void {
  clearTimeout(timers.get(doc.uri));
  timers.set(
    doc.uri,
    setTimeout(() => {
      const current = documents.get(doc.uri);
      if (current) checkNow(current);
    }, delay),
  );
}

/** The result for the document as it is now (checking at once when an edit is still waiting). */
function current(uri: string): CheckedDocument | undefined {
  const doc = documents.get(uri);
  if (!doc) return undefined;
  const c = checked.get(uri);
  return c && c.version === doc.version ? c : checkNow(doc);
}

documents.onDidOpen((e) => checkNow(e.document));
documents.onDidChangeContent((e) => {
  // onDidOpen also fires a content change; the check it made is current.
  if (checked.get(e.document.uri)?.version !== e.document.version) checkSoon(e.document);
});
documents.onDidClose((e) => {
  clearTimeout(timers.get(e.document.uri));
  timers.delete(e.document.uri);
  checked.delete(e.document.uri);
  void connection.sendDiagnostics({ uri: e.document.uri, diagnostics: [] });
});

connection.onDidChangeWatchedFiles((params) => {
  const paths = params.changes.filter((c) => c.uri.startsWith('file:')).map((c) => fileURLToPath(c.uri));
  if (!checker.filesChanged(paths)) return;
  for (const doc of documents.all()) checkSoon(doc, Math.max(debounceMs, 100));
});

/** Asks the client to watch every folder the disk checks read (model, dataset, output, checkpoint), outside the workspace too. */
function updateWatchers(): void {
  if (!dynamicWatch) return;
  const dirs = checker.watchedPaths();
  const signature = dirs.join('\n');
  if (signature === registeredWatch) return;
  registeredWatch = signature;
  const watchers: FileSystemWatcher[] = [];
  for (const dir of dirs) {
    const parent = path.dirname(dir);
    const name = path.basename(dir);
    if (relativePatterns) {
      const baseUri = pathToFileURL(parent).href;
      watchers.push({ globPattern: { baseUri, pattern: name } }, { globPattern: { baseUri, pattern: `${name}/**` } });
    } else {
      const glob = dir.split(path.sep).join('/');
      watchers.push({ globPattern: glob }, { globPattern: `${glob}/**` });
    }
  }
  const previous = watchRegistration;
  watchRegistration = connection.client.register(DidChangeWatchedFilesNotification.type, { watchers });
  void previous?.then((d) => d.dispose()).catch(() => undefined);
  watchRegistration.catch(() => undefined);
}

connection.onCompletion((params) => {
  const doc = documents.get(params.textDocument.uri);
  const c = current(params.textDocument.uri);
  if (!doc || !c) return [];
  const lines = doc.getText().split(/\r?\n/);
  return complete(c, lines, params.position, { snippets });
});

connection.onHover((params) => {
  const c = current(params.textDocument.uri);
  return c ? hover(c, params.position) : null;
});

connection.onCodeAction((params) => {
  const c = current(params.textDocument.uri);
  return c ? codeActions(c, params.range, params.context.only) : [];
});

connection.onRequest(ImportCommandRequest, (params) => {
  const text = importAccelerateCommand(params.command);
  const problems = validateRunConfigText(text).problems.map((p) => ({ severity: p.severity, message: p.message, line: p.line }));
  return { text, problems };
});

connection.onRequest(RunConfigSummaryRequest, (params): RunConfigSummary | null => {
  const c = current(params.uri);
  if (!c) return null;
  const len = c.analysis.invalid.size ? undefined : runLength(c.analysis.effective, c.disk?.facts.numExamples);
  const outputDir = c.baseDir ? resolveConfigPath(c.analysis.effective.output_dir, c.baseDir) : undefined;
  return {
    uri: c.uri,
    errors: c.problems.filter((p) => p.severity === 'error').length,
    warnings: c.problems.filter((p) => p.severity === 'warning').length,
    totalSteps: len?.steps,
    epochs: len?.epochs,
    dataset: c.disk?.dataset && { dir: c.disk.dataset.dir, images: c.disk.dataset.images, captions: c.disk.dataset.captions, captionSource: c.disk.dataset.captionSource },
    outputDir,
    hasFinishedLora: outputDir ? fs.existsSync(path.join(outputDir, LORA_FILE)) : undefined,
    checkpoints: c.disk?.checkpoints.map((k) => k.path) ?? [],
  };
});

documents.listen(connection);
connection.listen();
