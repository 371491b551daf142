// What package.json contributes, named once for the code (no `vscode` import): the command ids (registered
// in one loop by Ctx from the factories in commands.ts), the settings Ctx reads, and the `when`-clause
// context key. test/extension/manifest.test.ts checks package.json against these.

export const COMMANDS = {
  train: 'loraStudio.train',
  newRunConfig: 'loraStudio.newRunConfig',
  stop: 'loraStudio.stop',
  resume: 'loraStudio.resume',
  openDashboard: 'loraStudio.openDashboard',
  showLog: 'loraStudio.showLog',
  generateImage: 'loraStudio.generateImage',
  importCommand: 'loraStudio.importCommand',
  newNotebook: 'loraStudio.newNotebook',
  compareRuns: 'loraStudio.compareRuns',
  refreshRuns: 'loraStudio.refreshRuns',
  openExample: 'loraStudio.openExample',
  openDataset: 'loraStudio.openDataset',
} as const;

/** The activity-bar container and its Runs view (package.json `viewsContainers`, `views`). */
export const VIEW_CONTAINER = 'loraStudio';
export const RUNS_VIEW = 'loraStudio.runs';
/** The getting-started walkthrough (package.json `walkthroughs`), `<publisher>.<name>#<id>` when opened. */
export const WALKTHROUGH = 'loraStudio.gettingStarted';

export type CommandName = keyof typeof COMMANDS;

/** The settings section and its keys (`loraStudio.backend`, …). */
export const SETTINGS_SECTION = 'loraStudio';
export const SETTINGS = {
  backend: 'backend',
  nodePath: 'nodePath',
  defaultOutputFolder: 'defaultOutputFolder',
} as const;

/** The one name users see: package.json displayName, every command's category, the settings title, output channels. */
export const PRODUCT_NAME = 'LoRA Studio';

/** The output channels, named one way ("LoRA Studio: …", as the Output panel's list sorts them together). */
export const OUTPUT_CHANNELS = {
  trainer: `${PRODUCT_NAME}: Trainer`,
  inference: `${PRODUCT_NAME}: Inference`,
  languageServer: `${PRODUCT_NAME}: Language Server`,
} as const;

/** True while a run trains: the editor title shows Stop instead of Train (package.json `menus`). */
export const TRAINING_CONTEXT_KEY = 'loraStudio.training';
