/**
 * A FIFO counting semaphore: the bound on batches in flight. FIFO matters: two batches of one
 * partition must enter their lane in the order the source read them.
 */
export class Semaphore {
  private available: number;
  private readonly waiters: Array<() => void> = [];

  constructor(permits: number) {
    if (!(permits >= 1)) throw new RangeError('a semaphore needs at least one permit');
    this.available = permits;
  }

  acquire(): Promise<void> {
    if (this.available > 0 && this.waiters.length === 0) {
      this.available--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.available++;
  }

  inUse(permits: number): number {
    return permits - this.available;
  }

  waiting(): number {
    return this.waiters.length;
  }
}
