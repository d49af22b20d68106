/**
 * Keeps a label to a fixed number of distinct values: past `max`, new values count as `other`.
 *
 * The state pollers take some label values (decision reasons, variants) from Redis hash fields.
 * The engine writes those fields from fixed sets, but a hash written by another version or by
 * hand must not be able to grow a metric's series without bound (STYLE.md habit 9).
 */
export class BoundedLabel {
  private readonly seen = new Set<string>();

  constructor(private readonly max: number) {}

  value(raw: string): string {
    if (this.seen.has(raw)) return raw;
    if (this.seen.size >= this.max) return OTHER;
    this.seen.add(raw);
    return raw;
  }
}

export const OTHER = 'other';
