// The messages between the extension host and the training dashboard webview, typed once and imported by
// both sides (src/extension/dashboard_panel.ts and webview/dashboard/main.ts). The webview imports the
// types only (eslint enforces it), so the schema library and ajv stay out of its bundle; what the page
// sends back is checked against DASHBOARD_MESSAGES before the extension acts on it.
import { message, messages, Type, type MessageOf } from './messages.js';
import type {
  CheckpointEvent,
  ErrorEvent,
  FinishedEvent,
  PhaseEvent,
  ProgressEvent,
  SampleEvent,
  StartedEvent,
  ValidationLossEvent,
} from './training.js';

/** Where a run stands, as the dashboard and the status bar show it. */
export type RunState = 'starting' | 'running' | 'stopping' | 'completed' | 'stopped' | 'failed' | 'restored';

/** A validation image, with the URI the webview may load it from (asWebviewUri of `path`). */
export interface DashboardSample extends Omit<SampleEvent, 'v' | 'type'> {
  src: string;
}

/** One point of the loss/lr curves. Restored history may lack the throughput fields. */
export type DashboardPoint = Pick<ProgressEvent, 'step' | 'loss' | 'lr'> & Partial<Omit<ProgressEvent, 'type' | 'v' | 'step' | 'loss' | 'lr'>>;

export interface DashboardRun {
  title: string;
  outputDir: string;
  configPath?: string;
  /** The run config's text as it was when the run started (or as it is on disk when restored). */
  configText?: string;
  state: RunState;
  /** A trainer process is attached (so Stop makes sense). */
  live: boolean;
  /** Resume makes sense: not live, a config is known and a checkpoint exists. */
  canResume: boolean;
}

export interface DashboardHistory {
  started?: Omit<StartedEvent, 'v'>;
  points: DashboardPoint[];
  totalSteps?: number;
  samples: DashboardSample[];
  checkpoints: Omit<CheckpointEvent, 'v' | 'type' | 'removed'>[];
  warnings: string[];
  error?: Omit<ErrorEvent, 'v'>;
  finished?: Omit<FinishedEvent, 'v'>;
  /** What the trainer does now, when not a training step (validating, saving). */
  phase?: DashboardPhase;
  /** The loss on the held-out split (validation_split), plotted beside the training loss. */
  validationLosses?: DashboardValidationLoss[];
}

export type DashboardPhase = Omit<PhaseEvent, 'v' | 'type'>;
export type DashboardValidationLoss = Omit<ValidationLossEvent, 'v' | 'type'>;

/** Extension → webview. */
export type ToDashboard =
  /** Everything at once: on the webview's `ready`, after a reload, or when a new run replaces the old one. */
  | { type: 'reset'; run: DashboardRun; history: DashboardHistory }
  | { type: 'progress'; point: DashboardPoint }
  | { type: 'sample'; sample: DashboardSample }
  | { type: 'checkpoint'; step: number; path: string; removed: string[] }
  | { type: 'warning'; message: string }
  | { type: 'error'; error: Omit<ErrorEvent, 'v'> }
  | { type: 'finished'; finished: Omit<FinishedEvent, 'v'> }
  | { type: 'phase'; phase: DashboardPhase }
  | { type: 'validationLoss'; point: DashboardValidationLoss }
  | { type: 'run'; run: DashboardRun };

/** Webview → extension. Paths sent back are checked by the extension against the run's output folder. */
export const DASHBOARD_MESSAGES = messages('dashboard message', [
  message('ready', {}),
  message('stop', {}),
  message('resume', {}),
  /** "Generate with this checkpoint": a checkpoint-<step> folder or a LoRA .safetensors file. */
  message('generate', { weights: Type.String() }),
  message('openFile', { path: Type.String() }),
  message('openConfig', {}),
  message('showLog', {}),
]);
export type FromDashboard = MessageOf<typeof DASHBOARD_MESSAGES>;

/** What the webview keeps with vscode.setState, so the panel serializer can rebuild it after a reload. */
export interface DashboardPersistedState {
  outputDir: string;
  configPath?: string;
  title: string;
  /** The loss chart's smoothing weight, as the user left the slider. */
  smoothing?: number;
}

export const DASHBOARD_VIEW_TYPE = 'loraStudio.dashboard';

/** The Runs view's "Compare Runs" page: the loss curves of several runs, overlaid. Extension → webview. */
export interface CompareRun {
  title: string;
  outputDir: string;
  points: Pick<DashboardPoint, 'step' | 'loss'>[];
}
export type ToCompare = { type: 'runs'; runs: CompareRun[] };
export const COMPARE_VIEW_TYPE = 'loraStudio.compareRuns';
