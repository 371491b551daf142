// What a generation cell outputs, and the messages between the notebook renderer and the extension.
// Imported by the controller, the serializer and the renderer (webview/renderer imports the types only).
// What the renderer sends is checked against RENDERER_MESSAGES before the extension acts on it.
import type { LoraRef } from './inference.js';
import { message, messages, Type, type MessageOf } from './messages.js';
import type { InferenceScheduler } from '../core/config/generation.js';

export const NOTEBOOK_TYPE = 'lora-studio-notebook';
export const GENERATION_MIME = 'application/vnd.lora-studio.generation+json';
export const RENDERER_ID = 'lora-studio.generation-renderer';

/** The settings every image of a cell shares (paths as written in the cell, relative to the notebook). */
export interface GenerationSettings {
  prompt: string;
  negativePrompt: string;
  model: string;
  scheduler: InferenceScheduler;
  steps: number;
  guidance: number;
  width: number;
  height: number;
  /** The cell's LoRAs at the scales the cell gives them. */
  loras: LoraRef[];
}

export interface OutputImage {
  /** The PNG, relative to the notebook's folder with forward slashes (absolute for untitled notebooks). */
  file: string;
  seed: number;
  /** The LoRAs this image was made with (paths as in the cell); scale 0 means left out. */
  loras: LoraRef[];
  row: number;
  column: number;
  label: string;
  seconds: number;
  /** Base64 PNG bytes, present in memory after a run, never written into the notebook file. */
  data?: string;
}

export interface GenerationOutput {
  v: 1;
  /** Unique per run of a cell (the prefix of its PNG files): how the renderer names an output to the extension. */
  runId: string;
  layout: 'grid' | 'compare' | 'sweep';
  status: 'running' | 'done' | 'cancelled' | 'failed';
  settings: GenerationSettings;
  columns: number;
  rows: number;
  /** For a sweep: the LoRA whose scale varies (as written in the cell) and the scales of the rows. */
  sweep?: { lora: string; scales: number[] };
  images: OutputImage[];
  /** All images in one PNG (the `image/png` item VS Code shows without the renderer), like `file`. */
  sheet?: string;
  /** The sheet's base64 PNG bytes, in memory only (for the `image/png` item, not the renderer). */
  sheetData?: string;
  /** Images the cell asked for (more than `images.length` while running or after a cancel). */
  planned: number;
  seconds: number;
  /** While running: "image 2/4 · step 7/20", "loading model…". */
  progress?: string;
  /** Why it stopped early. */
  error?: string;
}

/** Renderer → extension (through renderer messaging); `runId` names the output. */
export const RENDERER_MESSAGES = messages('renderer message', [
  /** Images of a reopened notebook are files: ask for their bytes. */
  message('loadImages', { requestId: Type.String(), runId: Type.String(), files: Type.Array(Type.String()) }),
  /** The sweep slider: make the sweep's seed at this scale of its LoRA. */
  message('sweepScale', { requestId: Type.String(), runId: Type.String(), scale: Type.Number(), seed: Type.Integer({ minimum: 0 }) }),
  message('copySettings', { runId: Type.String(), image: Type.Integer({ minimum: 0 }) }),
  message('saveImage', { runId: Type.String(), image: Type.Integer({ minimum: 0 }) }),
]);
export type RendererToExtension = MessageOf<typeof RENDERER_MESSAGES>;

/** Extension → renderer. */
export type ExtensionToRenderer =
  | { type: 'images'; requestId: string; images: Record<string, string | null> }
  | { type: 'sweepProgress'; requestId: string; step: number; steps: number }
  | { type: 'sweepImage'; requestId: string; scale: number; seed: number; png: string }
  | { type: 'sweepError'; requestId: string; message: string };

/** The output without image bytes: what the notebook file keeps. */
export function withoutImageData(o: GenerationOutput): GenerationOutput {
  const { sheetData: _sheetData, ...rest } = o;
  return { ...rest, images: o.images.map(({ data: _data, ...image }) => image) };
}
