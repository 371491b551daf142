// Benchmark (not a test): how long the run-config language server takes to answer on a 500-line config,
// measured over stdio with the real protocol, from sending a notification/request to receiving the result.
//   node --import tsx scripts/bench-server.ts            (the TypeScript sources through tsx)
//   LORA_STUDIO_SERVER=dist/server.cjs node --import tsx scripts/bench-server.ts   (the shipped bundle)
// Cases: a documented 500-line config (every key with its documentation as comments) and a broken one
// (500 lines of typos, missing colons and bad values). Edits are timed with the server's debounce set to 0
// and, separately, at the default 50 ms that coalesces keystrokes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatValue, RUN_CONFIG_KEYS } from '../src/core/config/schema.js';
import { LspTestClient, REPO } from '../test/server/lsp_client.js';

const ROUNDS = Number(process.env.ROUNDS ?? 30);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-bench-'));

function documentedConfig(lines: number): string {
  const out: string[] = [];
  const values: Record<string, string> = {
    pretrained_model_name_or_path: path.join(REPO, 'examples/tiny-shapes/model'),
    train_data_dir: path.join(REPO, 'examples/tiny-shapes/dataset-corner'),
    resolution: '64',
    max_train_steps: '600',
    output_dir: './bench-out',
    validation_prompt: 'a red circle',
  };
  for (const s of RUN_CONFIG_KEYS) {
    out.push(`# ${s.summary}`);
    for (const para of s.description.split('\n')) for (let i = 0; i < para.length; i += 100) out.push(`# ${para.slice(i, i + 100)}`);
    out.push(`${s.key}: ${values[s.key] ?? formatValue(s.default)}`, '');
  }
  let i = 0;
  while (out.length < lines) out.push(`# padding comment ${i++}: notes about this run, kept with the config`);
  return out.slice(0, lines).join('\n') + '\n';
}

function brokenConfig(lines: number): string {
  const out: string[] = [];
  const keys = RUN_CONFIG_KEYS.map((s) => s.key);
  for (let i = 0; out.length < lines; i++) {
    const k = keys[i % keys.length];
    switch (i % 5) {
      case 0:
        out.push(`${k.slice(0, -1)}x_${i}: 1`); // unknown key with a near miss
        break;
      case 1:
        out.push(`${k}_${i} value`); // missing colon
        break;
      case 2:
        out.push(`rank_${i}: -${i}`);
        break;
      case 3:
        out.push(`lr_schedulr_${i}: cosin`);
        break;
      default:
        out.push(`# comment ${i}`);
    }
  }
  return out.join('\n') + '\n';
}

function stats(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return `median ${q(0.5).toFixed(1)} ms, p95 ${q(0.95).toFixed(1)} ms, max ${s.at(-1)!.toFixed(1)} ms (n=${s.length})`;
}

async function time(f: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await f();
  return performance.now() - t;
}

async function bench(label: string, text: string, debounceMs: number): Promise<void> {
  const client = await LspTestClient.start({ debounceMs });
  try {
    const opens: number[] = [];
    const edits: number[] = [];
    const completions: number[] = [];
    const hovers: number[] = [];
    let diagCount = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const uri = pathToFileURL(path.join(dir, `${label}-${debounceMs}-${r}.lora.yaml`)).href;
      opens.push(await time(async () => (diagCount = (await client.open(uri, text)).length)));
      // Change one value in the middle of the file, as a keystroke would.
      const lines = text.split('\n');
      const mid = lines.findIndex((l, i) => i > lines.length / 3 && /^[a-z_]+: \S/.test(l));
      const line = mid >= 0 ? mid : 0;
      const col = lines[line].length;
      edits.push(await time(() => client.edit(uri, [{ range: { start: { line, character: col }, end: { line, character: col } }, text: '0' }])));
      completions.push(await time(() => client.completion(uri, { line: lines.length - 1, character: 0 })));
      hovers.push(await time(() => client.hover(uri, { line, character: 1 })));
      await client.close(uri);
    }
    console.log(`${label} (${text.split('\n').length - 1} lines, ${diagCount} diagnostics), debounce ${debounceMs} ms:`);
    console.log(`  open → diagnostics:   ${stats(opens)}`);
    console.log(`  edit → diagnostics:   ${stats(edits)}`);
    console.log(`  completion:           ${stats(completions)}`);
    console.log(`  hover:                ${stats(hovers)}`);
  } finally {
    await client.stop();
  }
}

try {
  console.log(`server: ${process.env.LORA_STUDIO_SERVER ?? 'src/server/server.ts (tsx)'}; ${os.cpus().length} CPUs, node ${process.version}`);
  await bench('documented', documentedConfig(500), 0);
  await bench('broken', brokenConfig(500), 0);
  await bench('documented', documentedConfig(500), 50);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
