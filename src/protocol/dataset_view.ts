// The messages between the extension host and the Dataset view webview (src/extension/dataset_panel.ts and
// webview/dataset/main.ts). The webview imports the types only; what it sends back is checked against
// DATASET_MESSAGES before the extension writes a caption.
import { message, messages, Type, type MessageOf } from './messages.js';
import type { DatasetView } from '../core/config/dataset_view.js';

export const DATASET_VIEW_TYPE = 'loraStudio.dataset';

/** Extension → webview: the folder as read (each image with the URI the page may load it from), or the result of a save. */
export type ToDatasetView =
  | { type: 'dataset'; view: Omit<DatasetView, 'images'> & { images: (DatasetView['images'][number] & { src: string })[] } }
  | { type: 'saved'; name: string; file: string }
  | { type: 'saveFailed'; name: string; error: string };

/** Webview → extension. */
export const DATASET_MESSAGES = messages('dataset view message', [message('ready', {}), message('saveCaption', { name: Type.String(), caption: Type.String() })]);
export type FromDatasetView = MessageOf<typeof DATASET_MESSAGES>;
