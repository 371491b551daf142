// The parts of VS Code's notebook renderer API (the `vscode-notebook-renderer` types) this renderer uses,
// written out so the bundle needs no extra package. See
// https://code.visualstudio.com/api/extension-guides/notebook#notebook-renderer

export interface OutputItem {
  /** The output's id. */
  readonly id: string;
  readonly mime: string;
  readonly metadata: unknown;
  text(): string;
  json(): unknown;
  data(): Uint8Array;
}

export interface Disposable {
  dispose(): void;
}

export interface RendererContext<TState = unknown> {
  /** Present when the renderer's manifest entry has `requiresMessaging` other than "never" and the host can deliver. */
  postMessage?(message: unknown): void;
  onDidReceiveMessage?(listener: (message: unknown) => void): Disposable;
  getState(): TState | undefined;
  setState(state: TState): void;
  readonly workspace: { readonly isTrusted: boolean };
}

export interface RendererApi {
  renderOutputItem(outputItem: OutputItem, element: HTMLElement, signal?: AbortSignal): void | Promise<void>;
  disposeOutputItem?(id?: string): void;
}

export type ActivationFunction = (context: RendererContext) => RendererApi | Promise<RendererApi>;
