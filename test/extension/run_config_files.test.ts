// The save dialogs' answer becomes a *.lora.yaml exactly once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RUN_CONFIG_SAVE_FILTERS, withRunConfigExtension } from '../../src/extension/run_config_files.js';

test('save dialogs: a name typed with or without the extension ends in .lora.yaml once', () => {
  // VS Code's dialog appends the filter's extension when the typed name's last extension is not one of
  // them; `lora.yaml` (two dots) never matched `.yaml`, which doubled the suffix.
  for (const exts of Object.values(RUN_CONFIG_SAVE_FILTERS)) for (const e of exts) assert.ok(!e.includes('.'), `filter extension ${e} has a dot`);
  assert.equal(withRunConfigExtension('/w/x'), '/w/x.lora.yaml');
  assert.equal(withRunConfigExtension('/w/x.yaml'), '/w/x.lora.yaml');
  assert.equal(withRunConfigExtension('/w/x.lora.yaml'), '/w/x.lora.yaml');
  assert.equal(withRunConfigExtension('/w/x.lora.yml'), '/w/x.lora.yml');
  assert.equal(withRunConfigExtension('/w/x.lora.yaml.lora.yaml'), '/w/x.lora.yaml');
});
