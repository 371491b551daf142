// The run config's public face: what the trainer, the CLI, the language server and the extension import.
export type { RunConfig, LrSchedulerName, PredictionType, SaveFormat } from './run_config.js';
export {
  RUN_CONFIG_KEYS,
  KEY_SPECS,
  GUIDE_ONLY_KEYS,
  defaultRunConfig,
  describeExpected,
  describeRange,
  formatValue,
  keyDocumentation,
  runConfigJsonSchema,
  type KeySpec,
} from './schema.js';
export { formatProblems, summarizeProblems, hasErrors, type Problem, type Fix, type Range, type Position, type Severity } from './problems.js';
export { validateRunConfigText, analyzeRunConfigText, completeProblems, type Analysis, type ValidationResult } from './validate.js';
export { loadRunConfig, loadRunConfigWithOverrides, requireRunConfig, checkAnalysis, diskProblems, resolveRunConfigPaths, RunConfigError, type LoadedRunConfig, type LoadOptions } from './load.js';
export { configFromFlags, parseFlags, type FlagOptions } from './flags.js';
export { importAccelerateCommand } from './import_command.js';
export {
  checkRunConfigOnDisk,
  listCheckpoints,
  resolveCheckpoint,
  resolveConfigPath,
  stepOf,
  LORA_WEIGHTS_FILE,
  type DiskReport,
  type DiskFinding,
  type DatasetSummary,
  type ModelSummary,
} from './disk_checks.js';
export { runLength, type RunLength, type RunFacts } from './cross_checks.js';
