// The output_dir lock (src/core/config/run_lock.ts): a second run is refused and told who holds the folder;
// a lock left by a process that is gone (dead pid, or a pid now used by another process) is taken over with
// a message; another host's lock is never taken; a damaged lock file is replaced; and of four processes
// racing for one stale lock, exactly one gets it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO } from '../helpers/fixtures.js';
import { acquireRunLock, readRunLock, RunLockedError, describeHolder, type RunLockHolder } from '../../src/core/config/run_lock.js';
import { RUN_LOCK_FILE } from '../../src/core/config/run_folder.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'run-lock-'));
let n = 0;
const freshDir = () => path.join(tmp, `out-${n++}`);

/** The pid of a process that has exited (so nothing runs under it now, barring reuse within milliseconds). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

function writeLock(dir: string, h: Partial<RunLockHolder>): void {
  fs.mkdirSync(dir, { recursive: true });
  const holder = { pid: 1, host: os.hostname(), since: '2026-12-01T10:00:00.000Z', nonce: 'n0', ...h };
  fs.writeFileSync(path.join(dir, RUN_LOCK_FILE), JSON.stringify(holder));
}

test('a second run on a held folder is refused, told the pid and since when; release frees it', () => {
  const dir = freshDir();
  const lock = acquireRunLock(dir, { command: 'lora-studio train a.lora.yaml' });
  const onDisk = readRunLock(dir);
  assert.ok(onDisk && onDisk !== 'unreadable');
  assert.equal(onDisk.pid, process.pid);
  assert.equal(onDisk.host, os.hostname());
  assert.ok(Math.abs(Date.parse(onDisk.since) - Date.now()) < 60_000, onDisk.since);

  const err = (() => {
    try {
      acquireRunLock(dir);
    } catch (e) {
      return e;
    }
    assert.fail('the second acquire was not refused');
  })();
  assert.ok(err instanceof RunLockedError);
  assert.equal(err.holder.pid, process.pid);
  const since = onDisk.since.slice(0, 19).replace('T', ' ');
  assert.ok(err.message.includes(`pid ${process.pid} on ${os.hostname()} (lora-studio train a.lora.yaml), since ${since} UTC`), err.message);
  assert.match(err.hint, new RegExp(`kill ${process.pid}`));

  lock.release();
  assert.equal(readRunLock(dir), undefined);
  acquireRunLock(dir).release();
  // No temporary files left beside the lock.
  assert.deepEqual(fs.readdirSync(dir), []);
});

test('a lock left by a dead process is taken over, with a message naming it', () => {
  const dir = freshDir();
  const pid = deadPid();
  writeLock(dir, { pid, since: '2026-12-01T10:00:00.000Z', command: 'lora-studio train old.lora.yaml' });
  const messages: string[] = [];
  const lock = acquireRunLock(dir, { onTakeOver: (m) => messages.push(m) });
  assert.equal(lock.tookOverFrom?.pid, pid);
  assert.equal(messages.length, 1);
  assert.equal(messages[0], `took over the lock of ${dir} left by a run that is no longer running (pid ${pid} on ${os.hostname()} (lora-studio train old.lora.yaml), since 2026-12-01 10:00:00 UTC)`);
  const now = readRunLock(dir);
  assert.ok(now && now !== 'unreadable' && now.pid === process.pid);
  lock.release();
});

test('a pid that is alive but is another process now (its start time differs) is stale', { skip: process.platform !== 'linux' && 'needs /proc' }, () => {
  const dir = freshDir();
  // Our own pid is alive, but the lock says it was started at another moment: a reused pid.
  writeLock(dir, { pid: process.pid, procStart: '1@not-this-boot' });
  const lock = acquireRunLock(dir);
  assert.equal(lock.tookOverFrom?.pid, process.pid);
  lock.release();
  // The same pid with the right start time is this very process: held.
  const mine = acquireRunLock(dir);
  assert.throws(() => acquireRunLock(dir), RunLockedError);
  mine.release();
});

test('another host\'s lock is never taken over: the message says where it runs and how to clear it', () => {
  const dir = freshDir();
  writeLock(dir, { pid: deadPid(), host: 'gpu-box-7' });
  assert.throws(
    () => acquireRunLock(dir),
    (e: unknown) => e instanceof RunLockedError && /on gpu-box-7/.test(e.message) && e.hint.includes('another machine (gpu-box-7)') && e.hint.includes(path.join(dir, RUN_LOCK_FILE)),
  );
});

test('a damaged lock file is replaced; a folder in its place is refused, naming it', () => {
  for (const damage of ['text', 'folder'] as const) {
    const dir = freshDir();
    fs.mkdirSync(dir, { recursive: true });
    if (damage === 'text') fs.writeFileSync(path.join(dir, RUN_LOCK_FILE), '{"pid": 12');
    else fs.mkdirSync(path.join(dir, RUN_LOCK_FILE));
    const messages: string[] = [];
    if (damage === 'folder') {
      // A folder cannot be renamed over by a file: refused with the path, not silently ignored.
      assert.throws(() => acquireRunLock(dir, { onTakeOver: (m) => messages.push(m) }), new RegExp(RUN_LOCK_FILE.replace('.', '\\.')));
      continue;
    }
    const lock = acquireRunLock(dir, { onTakeOver: (m) => messages.push(m) });
    assert.match(messages[0], /replaced the damaged lock file/);
    lock.release();
  }
});

test('four processes racing for one stale lock: exactly one gets it, the others are told its pid', async () => {
  const dir = freshDir();
  writeLock(dir, { pid: deadPid() });
  const script = `
    import { acquireRunLock, RunLockedError } from ${JSON.stringify(path.join(REPO, 'src/core/config/run_lock.ts'))};
    try {
      const lock = acquireRunLock(process.argv[1]);
      process.stdout.write('got ' + process.pid + '\\n');
      // Hold it until the parent has seen every answer (stdin closes).
      process.stdin.resume();
      process.stdin.on('end', () => { lock.release(); process.exit(0); });
    } catch (e) {
      process.stdout.write((e instanceof RunLockedError ? 'held ' + e.holder.pid : 'error ' + e.message) + '\\n');
      process.exit(0);
    }`;
  const children = Array.from({ length: 4 }, () => spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir], { cwd: REPO, stdio: ['pipe', 'pipe', 'inherit'] }));
  const answers = await Promise.all(
    children.map(
      (c) =>
        new Promise<string>((resolve) => {
          let out = '';
          c.stdout!.on('data', (d) => {
            out += String(d);
            if (out.includes('\n')) resolve(out.trim());
          });
        }),
    ),
  );
  for (const c of children) c.stdin!.end();
  await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.on('exit', r)))));
  const winners = answers.filter((a) => a.startsWith('got '));
  assert.equal(winners.length, 1, answers.join('\n'));
  const winner = Number(winners[0].slice(4));
  for (const a of answers.filter((x) => !x.startsWith('got '))) assert.equal(a, `held ${winner}`, answers.join('\n'));
  assert.equal(readRunLock(dir), undefined, 'the winner released it');
});

test('describeHolder', () => {
  assert.equal(describeHolder({ pid: 7, host: 'h', since: '2026-12-02T01:02:03.456Z', nonce: 'x' }), 'pid 7 on h, since 2026-12-02 01:02:03 UTC');
});

test('an output_dir that cannot be made fails at once, naming the folder: under /proc (where Node\'s recursive mkdir spins forever) and under a file', { skip: !fs.existsSync('/proc/self') && 'needs /proc' }, () => {
  const file = path.join(tmp, 'a-file');
  fs.writeFileSync(file, '');
  const script = `
    import { acquireRunLock } from ${JSON.stringify(path.join(REPO, 'src/core/config/run_lock.ts'))};
    for (const dir of process.argv.slice(1)) {
      try { acquireRunLock(dir); process.stdout.write('made ' + dir + '\\n'); }
      catch (e) { process.stdout.write(e.code + ' ' + e.message + '\\n'); }
    }`;
  // A child with a deadline: the hang this guards against is synchronous and would stall this process.
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, '/proc/lora-studio-test/out', path.join(file, 'out')], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.signal, null, `the child hung and was killed; it said: ${r.stdout}${r.stderr}`);
  assert.deepEqual(r.stdout.trim().split('\n'), [
    "ENOENT ENOENT: no such file or directory, mkdir '/proc/lora-studio-test'",
    `ENOTDIR ENOTDIR: not a directory, mkdir '${path.join(file, 'out')}'`,
  ]);
});
