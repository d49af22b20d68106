/**
 * In-process concurrency per channel: at most `permits` sends of a channel at once in this
 * worker process. FIFO, so jobs of a channel start in the order BullMQ handed them over.
 */
export class ChannelPermits {
  private free: number;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly permits: number) {
    if (!(permits >= 1)) throw new RangeError(`a channel needs a concurrency of at least 1, got ${permits}`);
    this.free = permits;
  }

  acquire(): Promise<void> {
    if (this.free > 0 && this.waiters.length === 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.free++;
  }

  inUse(): number {
    return this.permits - this.free;
  }
}
