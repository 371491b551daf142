// The run-config file name, in one place and without `vscode` (so tests read it): the pattern, the glob,
// the save dialogs' filter, and how a save dialog's answer becomes a `*.lora.yaml`.

/** `*.lora.yaml` or `*.lora.yml`. */
export const RUN_CONFIG_FILE = /\.lora\.ya?ml$/i;
export const RUN_CONFIG_GLOB = '**/*.lora.{yaml,yml}';

/**
 * The save dialogs' filter. Extensions with one dot only: a dialog compares the typed name's last extension
 * (`.yaml`) with the filter's, so a `lora.yaml` filter made VS Code's own dialog append it to a name that
 * already ended in `.lora.yaml` (`x.lora.yaml.lora.yaml`). withRunConfigExtension adds the `.lora`.
 */
export const RUN_CONFIG_SAVE_FILTERS: Record<string, string[]> = { 'LoRA run config': ['yaml', 'yml'] };

/** A save dialog's answer made a run config: `x` and `x.yaml` become `x.lora.yaml`; a doubled suffix is undone. */
export function withRunConfigExtension(file: string): string {
  const once = file.replace(/(\.lora\.ya?ml)(\.lora\.ya?ml)+$/i, '$1');
  return RUN_CONFIG_FILE.test(once) ? once : once.replace(/(\.ya?ml)?$/i, '.lora.yaml');
}
