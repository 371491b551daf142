// The Runs view's line for each run, read from the output folder: status, step, best loss, LoRA files.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { configOutputDir, describeRun, summarizeRun } from '../../src/extension/run_summary.js';

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-summary-'));
after(() => fs.rmSync(TMP, { recursive: true, force: true }));

test('a run folder: stopped with a checkpoint, then completed with its LoRA; output_dir read from the config', () => {
  const out = path.join(TMP, 'out', 'run-a');
  fs.mkdirSync(path.join(out, 'checkpoint-2'), { recursive: true });
  fs.writeFileSync(path.join(out, 'checkpoint-2', 'pytorch_lora_weights.safetensors'), 'x');
  const rows = [0.5, 0.2, 0.3].map((loss, i) => JSON.stringify({ step: i + 1, epoch: 0, loss, lr: 1e-4, elapsed_seconds: i }));
  fs.writeFileSync(path.join(out, 'metrics.jsonl'), rows.join('\n') + '\n');
  const stopped = summarizeRun(out, undefined, 10);
  assert.equal(describeRun(stopped), 'stopped · step 3/10 · best loss 0.2000');
  assert.deepEqual(stopped.loras.map((l) => l.label), ['checkpoint-2/pytorch_lora_weights.safetensors']);
  fs.writeFileSync(path.join(out, 'pytorch_lora_weights.safetensors'), 'x');
  const done = summarizeRun(out);
  assert.equal(done.status, 'completed');
  assert.deepEqual(done.loras.map((l) => l.label), ['pytorch_lora_weights.safetensors', 'checkpoint-2/pytorch_lora_weights.safetensors']);
  assert.equal(describeRun(summarizeRun(path.join(TMP, 'nothing'))), 'not trained');
  assert.equal(summarizeRun(out, 'running').status, 'running');
  // output_dir relative to the config file, and outside the workspace is fine.
  const cfg = path.join(TMP, 'cfg', 'a.lora.yaml');
  fs.mkdirSync(path.dirname(cfg));
  fs.writeFileSync(cfg, 'pretrained_model_name_or_path: m\ntrain_data_dir: d\noutput_dir: ../out/run-a\n');
  assert.equal(configOutputDir(cfg), out);
});
