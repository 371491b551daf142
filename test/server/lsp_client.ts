// A minimal LSP client for tests and the benchmark: spawns the real server over stdio and speaks the real
// protocol (vscode-languageserver-protocol), recording published diagnostics and dynamic registrations.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CodeActionRequest,
  CompletionRequest,
  createProtocolConnection,
  DidChangeTextDocumentNotification,
  DidChangeWatchedFilesNotification,
  DidCloseTextDocumentNotification,
  DidOpenTextDocumentNotification,
  ExitNotification,
  HoverRequest,
  InitializedNotification,
  InitializeRequest,
  PublishDiagnosticsNotification,
  RegistrationRequest,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
  type CodeAction,
  type CompletionItem,
  type CompletionList,
  type Diagnostic,
  type FileChangeType,
  type Hover,
  type Position,
  type ProtocolConnection,
  type PublishDiagnosticsParams,
  type Range,
  type Registration,
} from 'vscode-languageserver-protocol/node';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Waiter {
  uri: string;
  accept: (p: PublishDiagnosticsParams) => boolean;
  resolve: (p: PublishDiagnosticsParams) => void;
}

export class LspTestClient {
  readonly published: PublishDiagnosticsParams[] = [];
  readonly registrations: Registration[] = [];
  private waiters: Waiter[] = [];
  private versions = new Map<string, number>();

  private constructor(
    readonly proc: ChildProcess,
    readonly conn: ProtocolConnection,
  ) {
    conn.onNotification(PublishDiagnosticsNotification.type, (p) => {
      this.published.push(p);
      for (const w of [...this.waiters]) {
        if (w.uri === p.uri && w.accept(p)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(p);
        }
      }
    });
    conn.onRequest(RegistrationRequest.type, (params) => {
      this.registrations.push(...params.registrations);
    });
  }

  /**
   * Starts `node --import tsx src/server/server.ts --stdio` and initializes it. LORA_STUDIO_SERVER=dist/server.cjs
   * runs the same tests against the bundle the extension ships.
   */
  static async start(initializationOptions: Record<string, unknown> = { debounceMs: 20 }): Promise<LspTestClient> {
    const bundle = process.env.LORA_STUDIO_SERVER;
    const args = bundle ? [path.resolve(REPO, bundle), '--stdio'] : ['--import', 'tsx', path.join(REPO, 'src/server/server.ts'), '--stdio'];
    const proc = spawn(process.execPath, args, { cwd: REPO, stdio: ['pipe', 'pipe', 'inherit'] });
    const conn = createProtocolConnection(new StreamMessageReader(proc.stdout!), new StreamMessageWriter(proc.stdin!));
    const client = new LspTestClient(proc, conn);
    conn.listen();
    await conn.sendRequest(InitializeRequest.type, {
      processId: process.pid,
      rootUri: null,
      initializationOptions,
      capabilities: {
        textDocument: {
          completion: { completionItem: { snippetSupport: true } },
          hover: { contentFormat: ['markdown'] },
          codeAction: { codeActionLiteralSupport: { codeActionKind: { valueSet: ['quickfix'] } } },
          publishDiagnostics: { versionSupport: true },
        },
        workspace: { didChangeWatchedFiles: { dynamicRegistration: true, relativePatternSupport: true } },
      },
    });
    await conn.sendNotification(InitializedNotification.type, {});
    return client;
  }

  /** Resolves with the next diagnostics published for uri that satisfy accept (default: any). */
  nextDiagnostics(uri: string, accept: (p: PublishDiagnosticsParams) => boolean = () => true, timeoutMs = 20_000): Promise<PublishDiagnosticsParams> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no diagnostics for ${uri} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        uri,
        accept,
        resolve: (p) => {
          clearTimeout(timer);
          resolve(p);
        },
      });
    });
  }

  /** Polls until the predicate holds (the server's own requests, such as registrations, arrive asynchronously). */
  async until(predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > end) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async open(uri: string, text: string): Promise<Diagnostic[]> {
    this.versions.set(uri, 1);
    const next = this.nextDiagnostics(uri, (p) => p.version === 1);
    await this.conn.sendNotification(DidOpenTextDocumentNotification.type, { textDocument: { uri, languageId: 'lora-yaml', version: 1, text } });
    return (await next).diagnostics;
  }

  /** Replaces the whole text (a full-content change) and waits for the diagnostics of the new version. */
  async replace(uri: string, text: string): Promise<Diagnostic[]> {
    return this.edit(uri, [{ text }]);
  }

  async edit(uri: string, contentChanges: ({ text: string } | { range: Range; text: string })[]): Promise<Diagnostic[]> {
    const version = (this.versions.get(uri) ?? 0) + 1;
    this.versions.set(uri, version);
    const next = this.nextDiagnostics(uri, (p) => p.version === version);
    await this.conn.sendNotification(DidChangeTextDocumentNotification.type, { textDocument: { uri, version }, contentChanges });
    return (await next).diagnostics;
  }

  async close(uri: string): Promise<void> {
    await this.conn.sendNotification(DidCloseTextDocumentNotification.type, { textDocument: { uri } });
  }

  async filesChanged(changes: { uri: string; type: FileChangeType }[]): Promise<void> {
    await this.conn.sendNotification(DidChangeWatchedFilesNotification.type, { changes });
  }

  async completion(uri: string, position: Position): Promise<CompletionItem[]> {
    const r = (await this.conn.sendRequest(CompletionRequest.type, { textDocument: { uri }, position })) as CompletionItem[] | CompletionList | null;
    return Array.isArray(r) ? r : (r?.items ?? []);
  }

  async hover(uri: string, position: Position): Promise<Hover | null> {
    return this.conn.sendRequest(HoverRequest.type, { textDocument: { uri }, position });
  }

  async codeActions(uri: string, range: Range, diagnostics: Diagnostic[] = []): Promise<CodeAction[]> {
    const r = await this.conn.sendRequest(CodeActionRequest.type, { textDocument: { uri }, range, context: { diagnostics } });
    return (r ?? []) as CodeAction[];
  }

  async stop(): Promise<void> {
    try {
      await this.conn.sendRequest(ShutdownRequest.type);
      await this.conn.sendNotification(ExitNotification.type);
    } catch {
      // already gone
    }
    this.conn.dispose();
    await new Promise<void>((resolve) => {
      if (this.proc.exitCode !== null) return resolve();
      const t = setTimeout(() => {
        this.proc.kill();
        resolve();
      }, 3000);
      this.proc.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
