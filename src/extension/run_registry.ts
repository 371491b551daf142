// The runs this window has started: several may go at once, one per run config. No `vscode` import.
import path from 'node:path';
import type { RunExit, RunSession } from './run_session.js';
import { Emitter } from './util.js';

export class RunRegistry {
  private readonly sessions: RunSession[] = [];
  /** A session was added (the UI attaches its status bar item and notification). */
  readonly onAdded = new Emitter<RunSession>();

  /** Adds a session not yet started; refuses a second live run of the same config (same output folder). */
  add(session: RunSession): RunSession {
    const running = this.forConfig(session.configPath);
    if (running?.live || running?.state === 'starting') {
      throw new Error(`${path.basename(session.configPath)} is already training. Stop it first, or open its dashboard.`);
    }
    if (running) this.sessions.splice(this.sessions.indexOf(running), 1);
    this.sessions.push(session);
    this.onAdded.fire(session);
    return session;
  }

  /** The latest session of a config, live or not. */
  forConfig(configPath: string): RunSession | undefined {
    const p = path.resolve(configPath);
    return [...this.sessions].reverse().find((s) => s.configPath === p);
  }

  forOutputDir(outputDir: string): RunSession | undefined {
    const p = path.resolve(outputDir);
    return [...this.sessions].reverse().find((s) => s.outputDir !== undefined && path.resolve(s.outputDir) === p);
  }

  all(): readonly RunSession[] {
    return this.sessions;
  }

  active(): RunSession[] {
    return this.sessions.filter((s) => s.live || s.state === 'starting');
  }

  /** Stops every live run, each saving a checkpoint first, within one shared deadline. */
  stopAll(graceMs: number): Promise<RunExit[]> {
    return Promise.all(this.active().map((s) => s.stopWithin(graceMs)));
  }
}
