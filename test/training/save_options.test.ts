// kohya's three saving options, end to end through `train`: `save_precision: fp16` halves both LoRA files
// (every tensor F16, the values the fp32 run would have written, rounded), `output_name` names the kohya
// copy, and `no_metadata` leaves the training metadata out of both files. One 2-step run per precision on
// the tiny-sd fixture, same seed, so the fp16 file can be compared with the fp32 one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, FIXTURES, MODEL_DIR } from '../helpers/fixtures.js';
import { configFromFlags } from '../../src/core/config/flags.js';
import { initBackend } from '../../src/core/engine/backend.js';
import type { BackendName } from '../../src/core/config/run_config.js';
import { train } from '../../src/training/loop.js';
import { MemoryEventSink } from '../../src/training/events.js';
import { SafetensorsFile } from '../../src/core/io/safetensors.js';

const BACKEND = (process.env.LORA_STUDIO_BACKEND ?? 'wasm') as BackendName;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'save-options-'));

async function run(out: string, flags: string[]) {
  const loaded = configFromFlags(
    [`--pretrained_model_name_or_path=${MODEL_DIR}`, `--train_data_dir=${path.join(FIXTURES, 'dataset')}`, `--output_dir=${out}`, '--resolution=64', '--train_batch_size=2', '--rank=4', '--seed=3', '--lr_warmup_steps=0', '--max_train_steps=2', '--learning_rate=1e-2', `--backend=${BACKEND}`, ...flags],
    { cwd: REPO },
  );
  assert.ok(loaded.config, loaded.problems.map((p) => p.message).join('\n'));
  const r = await train({ config: loaded.config!, events: new MemoryEventSink() });
  assert.equal(r.status, 'completed');
  return r;
}

test('save_precision fp16 + output_name + no_metadata: F16 files of half the size, the kohya copy named, no training metadata', async () => {
  await initBackend(BACKEND);
  const full = await run(path.join(tmp, 'full'), []);
  const half = await run(path.join(tmp, 'half'), ['--save_precision=fp16', '--output_name=my-style', '--no_metadata']);

  // output_name names the kohya copy (and no copy under the folder's name is written).
  assert.equal(half.outputs?.kohya, path.join(tmp, 'half', 'my-style.safetensors'));
  assert.ok(!fs.existsSync(path.join(tmp, 'half', 'half.safetensors')));
  for (const [kind, a, b] of [['diffusers', full.outputs!.lora!, half.outputs!.lora!], ['kohya', full.outputs!.kohya!, half.outputs!.kohya!]] as const) {
    const f32 = SafetensorsFile.open(a);
    const f16 = SafetensorsFile.open(b);
    assert.deepEqual(f16.names().sort(), f32.names().sort(), kind);
    let worst = 0;
    for (const name of f32.names()) {
      assert.equal(f16.info(name).dtype, 'F16', `${kind} ${name}`);
      // The same run's weights, rounded to half precision: within half a unit in the last place of f16
      // (relative 2^-11), plus f16's subnormal spacing (2^-24) for values near zero.
      const x = f32.readFloat32(name);
      const y = f16.readFloat32(name);
      for (let i = 0; i < x.length; i++) {
        const err = Math.abs(x[i] - y[i]);
        assert.ok(err <= Math.abs(x[i]) * 2 ** -11 + 2 ** -24, `${kind} ${name}[${i}]: ${y[i]} is not ${x[i]} rounded to f16`);
        worst = Math.max(worst, err);
      }
    }
    assert.ok(worst > 0, `${kind}: the fp16 file holds rounded values, not the fp32 ones`);
    // Half the bytes of tensor data (the header is a few kB either way).
    const data = (f: SafetensorsFile) => f.names().reduce((n, k) => n + f.info(k).byteLength, 0);
    assert.equal(data(f16) * 2, data(f32), kind);
    // no_metadata: none of the training record (sd-scripts' ss_*, ModelSpec, LoRA Studio's own); the fp32
    // run's files have it.
    const recorded = (f: SafetensorsFile) => Object.keys(f.metadata).filter((k) => /^(ss_|sshs_|modelspec\.|lora_studio\.)/.test(k));
    assert.deepEqual(recorded(f16), [], `${kind}: ${JSON.stringify(f16.metadata)}`);
    assert.ok(recorded(f32).length > 0, kind);
    f32.close();
    f16.close();
  }
});
