// The import boundaries of docs/DESIGN.md ("Shape of the code") are enforced by eslint's
// no-restricted-imports (eslint.config.js). A wrong-way import in each room must fail the lint; the
// allowed arrows must pass. The texts are linted as if they were files at those paths.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ESLint } from 'eslint';

const eslint = new ESLint();

async function boundaryErrors(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return result.messages.filter((m) => m.ruleId === 'no-restricted-imports' || m.ruleId === '@typescript-eslint/no-restricted-imports').map((m) => m.message);
}

const WRONG_WAY: [string, string][] = [
  ['src/core/config/x.ts', "import { initBackend } from '../engine/backend.js';"],
  ['src/core/config/x.ts', "import * as tf from '@tensorflow/tfjs';"],
  ['src/core/models/x.ts', "import { train } from '../../training/loop.js';"],
  ['src/core/pipeline/x.ts', "import type { TrainerEvent } from '../../protocol/training.js';"],
  ['src/protocol/x.ts', "import { ops } from '../core/engine/ops.js';"],
  ['src/training/x.ts', "import { main } from '../cli/main.js';"],
  ['src/cli/x.ts', "import { activate } from '../extension/extension.js';"],
  ['src/extension/x.ts', "import { UNet2DConditionModel } from '../core/models/unet_2d_condition.js';"],
  ['src/extension/notebook/x.ts', "import { train } from '../../training/loop.js';"],
  ['src/server/x.ts', "import * as vscode from 'vscode';"],
  ['src/server/x.ts', "import { readSafetensors } from '../core/io/safetensors.js';"],
  ['src/extension/x.ts', "import { readPng } from '../core/io/png.js';"],
  ['webview/dashboard/x.ts', "import { RUN_CONFIG_KEYS } from '../../src/core/config/schema.js';"],
  // Protocol values would bundle the message schemas and ajv into the page.
  ['webview/dashboard/x.ts', "import { DASHBOARD_MESSAGES } from '../../src/protocol/dashboard.js';"],
];

const ALLOWED: [string, string][] = [
  ['src/extension/x.ts', "import { validateRunConfigText } from '../core/config/validate.js';"],
  ['src/extension/x.ts', "import type { TrainerEvent } from '../protocol/training.js';"],
  ['src/server/x.ts', "import { RUN_CONFIG_KEYS } from '../core/config/schema.js';"],
  ['src/extension/notebook/x.ts', "import { readRegularFile } from '../../core/io/safe_read.js';"],
  ['src/server/x.ts', "import { READ_LIMITS } from '../core/io/safe_read.js';"],
  ['src/core/config/x.ts', "import { readSafetensorsHeader } from '../io/safetensors.js';"],
  ['src/training/x.ts', "import { ops } from '../core/engine/ops.js';"],
  ['src/cli/x.ts', "import { train } from '../training/loop.js';"],
  ['src/protocol/x.ts', "import type { RunConfig } from '../core/config/run_config.js';"],
  ['webview/dashboard/x.ts', "import type { DashboardMessage } from '../../src/protocol/dashboard.js';"],
  ['webview/dashboard/x.ts', "import { formatLoss } from '../../src/protocol/format.js';"],
];

test('a wrong-way import fails the lint in every room', async () => {
  for (const [file, code] of WRONG_WAY) {
    const errors = await boundaryErrors(file, code);
    assert.equal(errors.length, 1, `${file}: ${code} should be refused`);
  }
});

test('the arrows the design allows pass the lint', async () => {
  for (const [file, code] of ALLOWED) assert.deepEqual(await boundaryErrors(file, code), [], `${file}: ${code}`);
});
