import { fork, type ChildProcess } from 'node:child_process';
import { onCleanup } from './services.js';

/**
 * Each measured variant runs in its own Node process, forked from the bench file itself: its
 * CPU time (process.cpuUsage) and peak RSS are then its own — not the producer's, not the
 * previous variant's heap — and no variant runs on code the JIT warmed up for another.
 * Parent and child talk over the IPC channel with small typed messages.
 */
export interface Message {
  type: string;
}

const INPUT_ENV = 'NUDGE_BENCH_CHILD';

export class BenchChild {
  private readonly child: ChildProcess;
  private readonly inbox: Message[] = [];
  private readonly waiters: Array<{ type: string; resolve: (m: Message) => void; reject: (e: Error) => void }> = [];
  private exit: string | null = null;
  readonly exited: Promise<void>;

  constructor(file: string, input: unknown, options: { execArgv?: string[] } = {}) {
    this.child = fork(file, [], {
      // tsx's loader flags are in execArgv; the child needs them to run TypeScript.
      execArgv: [...process.execArgv, ...(options.execArgv ?? [])],
      env: { ...process.env, [INPUT_ENV]: JSON.stringify(input) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    onCleanup(async () => {
      if (this.exit === null) this.child.kill('SIGKILL');
    });
    this.child.on('message', (m: Message) => {
      const i = this.waiters.findIndex((w) => w.type === m.type);
      if (i >= 0) this.waiters.splice(i, 1)[0]?.resolve(m);
      else this.inbox.push(m);
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exit = signal ? `signal ${signal}` : `code ${code}`;
        for (const w of this.waiters.splice(0)) w.reject(new Error(`bench child exited (${this.exit}) before sending '${w.type}'`));
        resolve();
      });
    });
  }

  send(message: Message & Record<string, unknown>): void {
    this.child.send(message);
  }

  /** The next message of this type; rejects if the child exits first or after `timeoutMs`. */
  next<T extends Message>(type: string, timeoutMs: number): Promise<T> {
    const queued = this.inbox.findIndex((m) => m.type === type);
    if (queued >= 0) return Promise.resolve(this.inbox.splice(queued, 1)[0] as T);
    if (this.exit !== null) return Promise.reject(new Error(`bench child exited (${this.exit}) before sending '${type}'`));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.findIndex((w) => w.resolve === done);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`bench child sent no '${type}' within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const done = (m: Message): void => {
        clearTimeout(timer);
        resolve(m as T);
      };
      this.waiters.push({ type, resolve: done, reject: (e) => (clearTimeout(timer), reject(e)) });
    });
  }

  async close(): Promise<void> {
    if (this.exit === null) {
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
      await this.exited;
      clearTimeout(timer);
    }
  }
}

/** In a forked variant: its input; null in the parent. */
export function childInput<T>(): T | null {
  const raw = process.env[INPUT_ENV];
  if (raw === undefined) return null;
  // A parent that died (Ctrl-C, crash) closes the channel: do not linger as an orphan.
  process.once('disconnect', () => process.exit(1));
  return JSON.parse(raw) as T;
}

export function toParent(message: Message): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!process.send) return reject(new Error('not a forked bench child'));
    process.send(message, undefined, {}, (err) => (err ? reject(err) : resolve()));
  });
}

/** Calls `fn` for each message of this type from the parent. */
export function fromParent<T extends Message>(type: string, fn: (m: T) => void): void {
  process.on('message', (m: Message) => {
    if (m.type === type) fn(m as T);
  });
}

/** Ends a child after its result is sent: librdkafka threads could otherwise keep it alive. */
export function exitChild(code = 0): void {
  process.removeAllListeners('disconnect');
  process.disconnect?.();
  process.exit(code);
}
