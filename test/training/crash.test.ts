// Crash safety shown, not assumed (issue 17): the real trainer (`lora-studio train`) is SIGKILLed at ≥ 20
// seeded random moments — during steps (a random delay after training starts or after a step) and inside
// its writes (paused at a random stage of its atomic writes: half a checkpoint file written, a file in
// place, an old checkpoint moved aside for deletion, half a final LoRA file) — each run resuming from
// `latest` where the last one died. After every kill: each `checkpoint-*` present loads with all a resume
// reads (and the next run resumes from the newest), each LoRA file present parses as a LoRA, the crashed
// run's lock is taken over with a message naming its pid. At the end the weights equal, bit for bit, those
// of the same run done without interruption. Then a full disk: a checkpoint that does not fit leaves the
// previous one intact and says how much space it needed (a write probe that fails as ENOSPC, and a real
// 1 MB tmpfs where this machine lets the test mount one).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, FIXTURES, MODEL_DIR } from '../helpers/fixtures.js';
import { loadRunConfig } from '../../src/core/config/load.js';
import { initBackend } from '../../src/core/engine/backend.js';
import type { BackendName } from '../../src/core/config/run_config.js';
import { train } from '../../src/training/loop.js';
import { MemoryEventSink } from '../../src/training/events.js';
import { loadCheckpoint, saveCheckpoint, DiskFullError } from '../../src/training/checkpoints.js';
import { checkResumedWeights } from '../../src/training/finite_guard.js';
import { listCheckpoints, listFinalLoraFiles, setWriteProbe, LORA_FILE, CHECKPOINT_FILES } from '../../src/core/config/run_folder.js';
import { readAllFloat32 } from '../../src/core/io/safetensors.js';
import { readLoraFile } from '../../src/core/lora/lora_file.js';
import { loraTargetsFromUnetWeights } from '../../src/core/lora/formats.js';
import { readMetrics } from '../../src/training/metrics.js';
import { TRAINER_EVENTS, type TrainerEvent } from '../../src/protocol/training.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'crash-'));
const backend = process.env.LORA_STUDIO_BACKEND ?? 'wasm';
const KILLS = 20;
const SEED = 2026;

/** mulberry32: a small seeded generator, so every moment is the same on every run of the test. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The bundled CLI when it is newer than every source file (npm test builds first), else the sources through tsx (slower to start). */
function trainerCommand(): string[] {
  const dist = path.join(REPO, 'dist/cli.mjs');
  const built = fs.statSync(dist, { throwIfNoEntry: false })?.mtimeMs ?? 0;
  const newest = (dir: string): number =>
    Math.max(0, ...fs.readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(path.join(dir, e.name)) : fs.statSync(path.join(dir, e.name)).mtimeMs)));
  return built > newest(path.join(REPO, 'src')) ? [dist] : ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts')];
}
const TRAINER = trainerCommand();

// Tiny on purpose: the tiny-sd fixture at 32 px, batch 1 over its 2 images, a checkpoint every step and
// only the last 2 kept (so deletions happen too), both LoRA formats written at the end of each run.
function writeConfig(dir: string, overrides: Record<string, string> = {}): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'run.lora.yaml');
  let text = `pretrained_model_name_or_path: ${MODEL_DIR}
train_data_dir: ${path.join(FIXTURES, 'dataset')}
output_dir: out
resolution: 32
train_batch_size: 1
rank: 2
seed: 3
learning_rate: 1.0e-3
lr_warmup_steps: 0
max_train_steps: 1000
checkpointing_steps: 1
checkpoints_total_limit: 2
resume_from_checkpoint: latest
backend: ${backend}
`;
  for (const [k, v] of Object.entries(overrides)) text = text.replace(new RegExp(`^${k}:.*$`, 'm'), `${k}: ${v}`);
  fs.writeFileSync(file, text);
  return file;
}

interface Run {
  proc: ChildProcess;
  events: TrainerEvent[];
  stderr: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves at the first event or stderr line that matches (never, if the run ends first). */
  when(match: (e: TrainerEvent | undefined, line: string | undefined) => boolean): Promise<void>;
}

function startTrainer(config: string, args: string[], env: Record<string, string> = {}): Run {
  const proc = spawn(process.execPath, [...TRAINER, 'train', config, ...args], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const waiters: ((e: TrainerEvent | undefined, line: string | undefined) => void)[] = [];
  const run: Run = {
    proc,
    events: [],
    stderr: '',
    exited: new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal }))),
    when: (match) => new Promise((resolve) => waiters.push((e, l) => match(e, l) && resolve())),
  };
  const lines = (stream: NodeJS.ReadableStream, each: (line: string) => void) => {
    let buf = '';
    stream.on('data', (d) => {
      buf += String(d);
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        each(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
  };
  lines(proc.stdout!, (line) => {
    const r = TRAINER_EVENTS.read(line);
    if (r && !r.ok) assert.fail(`a bad event line: ${r.problem}`);
    if (!r?.ok) return;
    run.events.push(r.message);
    for (const w of waiters) w(r.message, undefined);
  });
  lines(proc.stderr!, (line) => {
    run.stderr += line + '\n';
    for (const w of waiters) w(undefined, line);
  });
  return run;
}

/** Everything a resume reads, for every checkpoint-* present; every LoRA file present parses as a LoRA. */
function checkFolder(out: string, targets: ReturnType<typeof loraTargetsFromUnetWeights>, where: string): number[] {
  const steps: number[] = [];
  let fingerprint: string | undefined;
  for (const c of listCheckpoints(out)) {
    const cp = loadCheckpoint(c.path);
    assert.equal(cp.step, c.step, `${where}: ${c.path} says step ${cp.step}`);
    assert.equal(cp.optimizer.step, c.step, `${where}: ${c.path}'s optimizer step`);
    checkResumedWeights(c.path, cp.lora);
    assert.equal(cp.lora.size, targets.length, `${where}: ${c.path} has a LoRA for every target`);
    const print = JSON.stringify(cp.state.fingerprint);
    assert.ok(fingerprint === undefined || fingerprint === print, `${where}: ${c.path} was made with other settings`);
    fingerprint = print;
    readLoraFile(path.join(c.path, CHECKPOINT_FILES.lora), targets);
    steps.push(c.step);
  }
  for (const f of listFinalLoraFiles(out)) readLoraFile(f, targets);
  // metrics.jsonl: one row per step, in order, up to the newest step done.
  const rows = readMetrics(path.join(out, 'metrics.jsonl')).map((r) => r.step);
  assert.deepEqual(rows, Array.from({ length: rows.length }, (_, i) => i + 1), `${where}: metrics.jsonl rows ${rows}`);
  return steps;
}

test(`SIGKILL at ${KILLS} seeded random moments (steps and writes): every checkpoint resumes, every LoRA parses, the end is bit-identical`, async () => {
  const random = seeded(SEED);
  const dir = path.join(tmp, 'killed');
  const config = writeConfig(dir);
  const out = path.join(dir, 'out');
  const targets = loraTargetsFromUnetWeights([path.join(MODEL_DIR, 'unet', 'diffusion_pytorch_model.safetensors')]);
  const moments: string[] = [];
  let lastPid: number | undefined;
  let target = 0;
  for (let run = 0; moments.length < KILLS; run++) {
    assert.ok(run < KILLS + 8, `only ${moments.length} kills landed in ${run} runs: ${moments.join('; ')}`);
    const latest = listCheckpoints(out).at(-1)?.step ?? 0;
    // Two more steps each run, then the final LoRA files: every kind of write happens in every run.
    target = latest + 2;
    const duringWrite = random() < 0.5;
    // A run writes: its metrics (on resume), per checkpoint 3 files × (half, done) + 1 deletion (once 2 are kept), and 2 final LoRA files × 2.
    const nth = 1 + Math.floor(random() * (latest ? 20 : 17));
    const delayMs = Math.floor(random() * 400);
    const afterStep = latest + Math.floor(random() * 2); // the moment the delay starts: training begins, or step `latest + 1` is done
    const t = startTrainer(config, [`--max_train_steps=${target}`], duringWrite ? { LORA_STUDIO_TEST_PAUSE_WRITE: String(nth) } : {});
    let moment: string | undefined;
    if (duringWrite) {
      void t.when((_, line) => !!line?.startsWith('test: paused at write')).then(() => {
        moment = t.stderr.split('\n').find((l) => l.startsWith('test: paused'))!.replace(out + '/', '');
        t.proc.kill('SIGKILL');
      });
    } else {
      void t.when((e) => (afterStep === latest ? e?.type === 'phase' && e.phase === 'training' : e?.type === 'progress' && e.step === afterStep)).then(() => {
        setTimeout(() => {
          moment = `${delayMs} ms after ${afterStep === latest ? 'training began' : `step ${afterStep}`}`;
          t.proc.kill('SIGKILL');
        }, delayMs);
      });
    }
    const { code, signal } = await t.exited;
    if (lastPid !== undefined) {
      // The run before was killed: its lock is stale, taken over with a warning that names it.
      const w = t.events.find((e) => e.type === 'warning' && e.code === 'stale_lock');
      assert.ok(w && w.type === 'warning' && w.message.includes(`(pid ${lastPid} on ${os.hostname()}`), `run ${run}: ${JSON.stringify(w)}\n${t.stderr}`);
    }
    if (signal === 'SIGKILL') {
      moments.push(moment ?? 'killed');
      lastPid = t.proc.pid;
    } else {
      // The moment fell after the run's end (it finished first): fine, the folder must be sound all the same.
      assert.equal(code, 0, `run ${run} failed:\n${t.stderr}`);
      assert.ok(t.events.some((e) => e.type === 'finished'));
      lastPid = undefined;
    }
    checkFolder(out, targets, `after run ${run} (${moment ?? 'not killed'})`);
  }
  console.log(`# ${moments.length} SIGKILLs: ${moments.join('; ')}`);
  assert.ok(moments.filter((m) => m.startsWith('test: paused')).length >= 5, 'several kills landed inside writes');
  assert.ok(moments.filter((m) => m.includes(' ms after ')).length >= 5, 'several kills landed during steps');

  // Finish in this process from `latest`, and compare with the same run done in one go.
  await initBackend(backend as BackendName);
  const resumed = loadRunConfig(config);
  const last = await train({ config: { ...resumed.config!, max_train_steps: target }, events: new MemoryEventSink() });
  assert.equal(last.status, 'completed');
  const straightDir = path.join(tmp, 'straight');
  const straight = loadRunConfig(writeConfig(straightDir));
  const s = await train({ config: { ...straight.config!, max_train_steps: target, resume_from_checkpoint: null }, events: new MemoryEventSink() });
  assert.equal(s.status, 'completed');
  const a = readAllFloat32(path.join(straightDir, 'out', LORA_FILE)).tensors;
  const b = readAllFloat32(path.join(out, LORA_FILE)).tensors;
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
  for (const [k, v] of a) assert.deepEqual(b.get(k)!.data, v.data, `${k} differs from the uninterrupted run`);
  checkFolder(out, targets, 'at the end');
  // What the killed runs left half-written (hidden temporaries, their locks) is gone after a run that ends.
  assert.deepEqual(fs.readdirSync(out).filter((f) => f.startsWith('.')), []);
});

test('a full disk in the middle of a checkpoint write: the previous checkpoint is intact, the error says how much space it needed', async () => {
  const out = path.join(tmp, 'full');
  const lora = new Map([['a', { down: new Float32Array(64).fill(0.5), up: new Float32Array(64).fill(0.25), rank: 2, inFeatures: 32, outFeatures: 32 }]]);
  const optimizer = { step: 1, expAvg: new Map([['a.lora.down.weight', new Float32Array(64)]]), expAvgSq: new Map([['a.lora.down.weight', new Float32Array(64)]]) };
  const state = (step: number) => ({ format: 'lora-studio-checkpoint' as const, version: 1, globalStep: step, epoch: 0, batchInEpoch: step, seed: 1, rng: { key: [1, 2], counter: [0, 0] } as never, rank: 2, alpha: 2, numExamples: 4, elapsedSeconds: 1, fingerprint: {} });
  const first = saveCheckpoint(out, { lora, optimizer: { ...optimizer }, state: state(1) });
  const before = new Map(fs.readdirSync(first).map((f) => [f, fs.readFileSync(path.join(first, f))]));

  // The disk fills up halfway through the optimizer file of checkpoint-2.
  setWriteProbe((stage, file) => {
    if (stage === 'partial' && path.basename(file) === CHECKPOINT_FILES.optimizer) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  });
  try {
    assert.throws(
      () => saveCheckpoint(out, { lora, optimizer: { ...optimizer, step: 2 }, state: state(2) }),
      (e: unknown) => {
        assert.ok(e instanceof DiskFullError, String(e));
        // The three files of checkpoint-2, as encoded: what the disk would have had to hold.
        assert.ok(e.neededBytes > 2 * 64 * 4 * 2 && e.neededBytes < 8192, String(e.neededBytes));
        assert.match(e.message, new RegExp(`^checkpoint ${path.join(out, 'checkpoint-2')}: not written: the disk is full \\(it needs \\d+(\\.\\d)? KiB, .* is free\\); the earlier checkpoints are untouched$`));
        return true;
      },
    );
  } finally {
    setWriteProbe(undefined);
  }
  assert.deepEqual(listCheckpoints(out).map((c) => c.step), [1]);
  assert.deepEqual(fs.readdirSync(out).filter((f) => f !== 'checkpoint-1'), [], 'no half-written folder or file is left');
  for (const [f, bytes] of before) assert.ok(fs.readFileSync(path.join(first, f)).equals(bytes), `${f} of checkpoint-1 changed`);
  assert.equal(loadCheckpoint(first).step, 1);
});

/** Whether this machine lets an unprivileged user namespace mount a tmpfs (Linux with user namespaces). */
const canMountTmpfs = (() => {
  if (process.platform !== 'linux') return false;
  const probe = path.join(tmp, 'probe-mnt');
  fs.mkdirSync(probe);
  return spawnSync('unshare', ['-rm', 'sh', '-c', `mount -t tmpfs -o size=64k tmpfs ${probe}`], { stdio: 'ignore' }).status === 0;
})();

test('a real full disk (a 1 MB tmpfs): the trainer stops with the space needed, and the checkpoint before is intact', { skip: !canMountTmpfs && 'cannot mount a tmpfs here (needs unshare -rm and user namespaces)' }, async () => {
  const dir = path.join(tmp, 'tmpfs');
  // rank 8: a checkpoint is ~0.6 MB of LoRA weights and AdamW moments (48 targets × 5760 values per rank × 12
  // bytes), so the first fits the 1 MB tmpfs and the second does not.
  const config = writeConfig(dir, { rank: '8', checkpoints_total_limit: 'null' });
  const mnt = path.join(dir, 'out');
  const copy = path.join(dir, 'copy');
  fs.mkdirSync(mnt);
  fs.mkdirSync(copy);
  const node = [process.execPath, ...TRAINER, 'train', config, '--max_train_steps=3'].map((a) => `'${a}'`).join(' ');
  // Inside a private mount namespace: the tmpfs exists only for the trainer; its contents are copied out for the checks.
  const script = `mount -t tmpfs -o size=1m tmpfs '${mnt}' && ${node} > '${dir}/events.jsonl' 2> '${dir}/stderr.txt'; rc=$?; cp -a '${mnt}/.' '${copy}/'; exit $rc`;
  const r = spawnSync('unshare', ['-rm', 'sh', '-c', script], { cwd: REPO, encoding: 'utf8' });
  const stderr = fs.readFileSync(path.join(dir, 'stderr.txt'), 'utf8');
  assert.equal(r.status, 1, `exit ${r.status}\n${stderr}`);
  const events = TRAINER_EVENTS.readAll(fs.readFileSync(path.join(dir, 'events.jsonl'), 'utf8')).messages;
  const err = events.find((e) => e.type === 'error');
  assert.ok(err && err.type === 'error' && err.code === 'io', stderr);
  assert.match(err.message, /^checkpoint \S+checkpoint-(\d+): not written: the disk is full \(it needs \d+(\.\d)? (KiB|MiB), \d+(\.\d)? (B|KiB|MiB) is free\); the earlier checkpoints are untouched$/);
  assert.match(err.hint ?? '', /free space/);
  const failedStep = Number(/checkpoint-(\d+):/.exec(err.message)![1]);
  const kept = listCheckpoints(copy).map((c) => c.step);
  assert.ok(failedStep >= 2 && kept.length >= 1 && kept.at(-1) === failedStep - 1, `failed at ${failedStep}, kept ${kept}`);
  for (const c of listCheckpoints(copy)) assert.equal(loadCheckpoint(c.path).step, c.step);
  assert.deepEqual(fs.readdirSync(copy).filter((f) => f.startsWith('.checkpoint-')), [], 'no half-written checkpoint left behind');
});
