export interface WakeLoopOptions {
  /** Longest idle wait between passes when nothing calls `wake()`. */
  intervalMs: number;
  /** First wait after a failed pass; doubles per consecutive failure (with jitter) up to `maxBackoffMs`. */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Told about each failed pass, with how many failed in a row and the wait before the next. */
  onError(err: unknown, consecutive: number, delayMs: number): void;
}

/**
 * Runs `pass` again and again: at once when it reports more work, when `wake()` is called, or
 * after `intervalMs` of quiet; after a failure, with exponential backoff (Redis down must not
 * become a busy loop). A `wake()` during a pass makes the loop run once more right after it, so
 * no notification is lost between reading and sleeping.
 */
export class WakeLoop {
  private running: Promise<void> | undefined;
  private stopped = false;
  private woken = false;
  private interrupt: (() => void) | undefined;

  constructor(
    private readonly pass: () => Promise<boolean>,
    private readonly o: WakeLoopOptions,
  ) {}

  start(): void {
    if (this.running !== undefined) return;
    this.stopped = false;
    this.running = this.run();
  }

  wake(): void {
    this.woken = true;
    this.interrupt?.();
  }

  /** Stops after the current pass; resolves when the loop has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.interrupt?.();
    await this.running;
    this.running = undefined;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      this.woken = false;
      let more = false;
      try {
        more = await this.pass();
        failures = 0;
      } catch (err) {
        failures++;
        const envelope = Math.min(this.o.maxBackoffMs, this.o.initialBackoffMs * 2 ** Math.min(failures - 1, 30));
        const delay = Math.round(envelope * (0.5 + Math.random() * 0.5));
        this.o.onError(err, failures, delay);
        // A wake() must not cut a backoff short: every commit would then hammer a Redis that is down.
        await this.sleep(delay, false);
        continue;
      }
      if (more || this.woken) continue;
      await this.sleep(this.o.intervalMs, true);
    }
  }

  private sleep(ms: number, wakeable: boolean): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.interrupt = () => {
        if (wakeable || this.stopped) {
          this.interrupt = undefined;
          done();
        }
      };
    });
  }
}
