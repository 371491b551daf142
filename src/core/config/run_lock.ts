// The lock on a run's folder (`output_dir/.lora-studio.lock`, RUN_LOCK_FILE in run_folder.ts): one run at a
// time writes checkpoints, metrics and LoRA files there. The file says who holds it — pid, host, when the
// run started, and the process's own start time, so a pid reused by another process after a crash or a
// container restart is not taken for the run.
//
// Taking it: the holder's JSON is written to a private temporary file, then hard-linked to the lock's name
// (link fails when the name exists: no two runs both create it, and the lock never exists half-written).
// A lock whose process is gone (same host, pid dead or now a different process) is stale: it is moved
// aside by one rename, checked to be the very lock judged stale (not one a third run took meanwhile), and
// replaced. A lock from another host cannot be checked and is treated as held; the message says so.
// Light (node fs/os/path only): the trainer takes it; the extension and the Runs view may read it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { RUN_LOCK_FILE, makeDirs } from './run_folder.js';

/** What the lock file holds. */
export interface RunLockHolder {
  readonly pid: number;
  readonly host: string;
  /** When the run took the lock (ISO 8601, UTC). */
  readonly since: string;
  /** Linux: the process's start time in clock ticks after boot (/proc/<pid>/stat field 22) and the boot id, to tell a reused pid. */
  readonly procStart?: string;
  /** What the holder is: "lora-studio train run.lora.yaml". */
  readonly command?: string;
  /** Tells this lock apart from a later one by the same pid. */
  readonly nonce: string;
}

export class RunLockedError extends Error {
  constructor(
    readonly outputDir: string,
    readonly holder: RunLockHolder,
    readonly lockFile: string,
  ) {
    super(`${outputDir} is in use by another run: ${describeHolder(holder)}`);
    this.name = 'RunLockedError';
  }

  /** What the person can do about it. */
  get hint(): string {
    return this.holder.host === os.hostname()
      ? `wait for that run to finish or stop it (kill ${this.holder.pid}), or choose another output_dir`
      : `it runs on another machine (${this.holder.host}), so it cannot be checked from here: stop it there, or delete ${this.lockFile} if that run is gone, or choose another output_dir`;
  }
}

/** "pid 4242 on host-a (lora-studio train x.lora.yaml), since 2026-12-02 01:52:10 UTC". */
export function describeHolder(h: RunLockHolder): string {
  const since = h.since.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC');
  return `pid ${h.pid} on ${h.host}${h.command ? ` (${h.command})` : ''}, since ${since}`;
}

export interface RunLock {
  readonly file: string;
  readonly holder: RunLockHolder;
  /** The stale lock this one replaced (its process was gone), if any. */
  readonly tookOverFrom?: RunLockHolder;
  /** Removes the lock if it is still this one's. */
  release(): void;
}

/** Linux: "<starttime ticks>@<boot id>" of a live process; undefined elsewhere or when it is gone. */
function processStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return `${fields[19]}@${boot}`;
  } catch {
    return undefined;
  }
}

/** Whether the process that wrote `h` is still running (on this host; another host's is assumed alive). */
export function holderAlive(h: RunLockHolder): boolean {
  if (h.host !== os.hostname()) return true;
  try {
    process.kill(h.pid, 0);
  } catch (e) {
    // EPERM: it exists but belongs to another user.
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (h.procStart === undefined) return true;
  const now = processStart(h.pid);
  return now === undefined || now === h.procStart;
}

/** The lock of `outputDir` as it is on disk: undefined when there is none; `unreadable` for a damaged file. */
export function readRunLock(outputDir: string): RunLockHolder | 'unreadable' | undefined {
  return parseLock(path.join(outputDir, RUN_LOCK_FILE));
}

function parseLock(file: string): RunLockHolder | 'unreadable' | undefined {
  let text: string;
  try {
    const st = fs.lstatSync(file);
    if (!st.isFile() || st.size > 64 * 1024) return 'unreadable';
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return 'unreadable';
  }
  try {
    const h = JSON.parse(text) as Partial<RunLockHolder>;
    if (Number.isInteger(h.pid) && typeof h.host === 'string' && typeof h.since === 'string' && typeof h.nonce === 'string') return h as RunLockHolder;
  } catch {
    /* not JSON */
  }
  return 'unreadable';
}

export interface AcquireOptions {
  /** Recorded in the lock for the message another run gets. */
  readonly command?: string;
  /** Told when a stale lock is taken over (the trainer warns with it). */
  readonly onTakeOver?: (message: string, stale: RunLockHolder | undefined) => void;
}

/** Takes the lock of `outputDir` (created if missing). Throws RunLockedError when a live run holds it. */
export function acquireRunLock(outputDir: string, o: AcquireOptions = {}): RunLock {
  makeDirs(outputDir);
  const file = path.join(outputDir, RUN_LOCK_FILE);
  const holder: RunLockHolder = {
    pid: process.pid,
    host: os.hostname(),
    since: new Date().toISOString(),
    procStart: processStart(process.pid),
    command: o.command,
    nonce: crypto.randomBytes(8).toString('hex'),
  };
  const text = JSON.stringify(holder) + '\n';
  let tookOverFrom: RunLockHolder | undefined;
  // Each pass either takes the lock, finds it held, or removes one stale lock; a few passes settle any race.
  for (let attempt = 0; attempt < 5; attempt++) {
    if (linkNew(file, text)) {
      const lock: RunLock = { file, holder, tookOverFrom, release: () => releaseIfOurs(file, holder.nonce) };
      return lock;
    }
    const current = parseLock(file);
    if (current === undefined) continue; // released meanwhile
    if (current !== 'unreadable' && holderAlive(current)) throw new RunLockedError(outputDir, current, file);
    // Stale (or damaged: a lock is written whole by link, so a damaged one was not written by a run).
    if (current === 'unreadable' && !fs.lstatSync(file, { throwIfNoEntry: false })?.isFile()) {
      throw new Error(`${file} is not a lock file (a folder or a link is in its place); remove it, then run again`);
    }
    const aside = `${file}.stale-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    try {
      fs.renameSync(file, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    const moved = parseLock(aside);
    if (current !== 'unreadable' && (moved === 'unreadable' || moved?.nonce !== current.nonce)) {
      // A third run replaced the stale lock between our read and our rename: put its lock back.
      try {
        fs.linkSync(aside, file);
      } catch {
        /* someone holds the name again; the next pass reads it */
      }
      fs.rmSync(aside, { force: true });
      continue;
    }
    fs.rmSync(aside, { force: true });
    if (current !== 'unreadable') {
      tookOverFrom = current;
      o.onTakeOver?.(`took over the lock of ${outputDir} left by a run that is no longer running (${describeHolder(current)})`, current);
    } else {
      o.onTakeOver?.(`replaced the damaged lock file ${file} (not written by a run)`, undefined);
    }
  }
  const current = parseLock(file);
  if (current && current !== 'unreadable') throw new RunLockedError(outputDir, current, file);
  throw new Error(`could not take the lock ${file}: other runs keep replacing it`);
}

/** Creates `file` holding `text` only if no file of that name exists (write a private file, then link it). */
function linkNew(file: string, text: string): boolean {
  const tmp = `${file}.${process.pid}-${crypto.randomBytes(4).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, text, { flag: 'wx' });
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
    // A file system without hard links (FAT, some network shares): exclusive create, then write.
    try {
      fs.writeFileSync(file, text, { flag: 'wx' });
      return true;
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e2;
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

function releaseIfOurs(file: string, nonce: string): void {
  const h = parseLock(file);
  if (h && h !== 'unreadable' && h.nonce === nonce) fs.rmSync(file, { force: true });
}
