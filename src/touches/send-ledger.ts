import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { touchKeys, type TouchKeys } from './keys.js';
import { withTouchScripts } from './scripts.js';

export type LeaseOutcome =
  /** The lease is ours; call the provider. `takeover`: an earlier attempt's lease ran out mid-send. */
  | { kind: 'acquired'; lease: string; takeover: boolean }
  | { kind: 'sent' }
  | { kind: 'busy' }
  | { kind: 'ambiguous' };

const CODES: Record<number, LeaseOutcome['kind']> = { 1: 'acquired', 2: 'acquired', [-1]: 'sent', [-2]: 'busy', [-3]: 'ambiguous' };

/**
 * The send ledger: one Redis entry per touch id, checked and taken before a provider is called,
 * so a job that runs again (a stalled job, a retry after the provider answered, a re-added job
 * after its BullMQ record aged out) does not send twice.
 *
 *   (none) --begin--> sending|<lease until>|<owner> --markSent--> sent
 *                          |  release (provider said "not delivered") -> (none)
 *                          |  lease runs out (the worker died mid-send) -> the next begin
 *                          |  takes it over and the caller decides: resend with the same
 *                          |  idempotency key, or markAmbiguous (at most once)
 *
 * The window it cannot close: the provider accepted and the worker died before `markSent`
 * (one Redis round trip). Whether such a touch is sent again is the adapter's `idempotent`
 * flag. And an acknowledged `sent` can be lost with Redis itself (AOF everysec: ~1 s).
 */
export class SendLedger {
  private readonly redis: ReturnType<typeof withTouchScripts>;
  private readonly keys: TouchKeys;

  constructor(
    redis: Redis,
    namespace: string,
    /** How long a touch is remembered; keep it longer than completed jobs are kept. */
    private readonly ttlMs: number,
  ) {
    this.redis = withTouchScripts(redis);
    this.keys = touchKeys(namespace);
  }

  async isSent(touchId: string): Promise<boolean> {
    const v = await this.redis.get(this.keys.ledger(touchId));
    return v !== null && v.startsWith('sent|');
  }

  /** Takes the send lease for `leaseMs` (longer than one send can take). */
  async begin(touchId: string, leaseMs: number): Promise<LeaseOutcome> {
    const [code, value] = await this.redis.nudgeBeginSend(this.keys.ledger(touchId), Math.ceil(leaseMs), this.ttlMs, randomUUID());
    const kind = CODES[Number(code)];
    if (kind === undefined) throw new Error(`beginSend returned an unknown code ${code}`);
    if (kind === 'acquired') return { kind, lease: value, takeover: Number(code) === 2 };
    return { kind } as LeaseOutcome;
  }

  async markSent(touchId: string, at: number): Promise<void> {
    await this.redis.set(this.keys.ledger(touchId), `sent|${at}`, 'PX', this.ttlMs);
  }

  async markAmbiguous(touchId: string, at: number): Promise<void> {
    await this.redis.set(this.keys.ledger(touchId), `ambiguous|${at}`, 'PX', this.ttlMs);
  }

  /** Gives the lease back (the provider said "not delivered"); a later attempt's lease is left alone. */
  async release(touchId: string, lease: string): Promise<void> {
    await this.redis.nudgeReleaseSend(this.keys.ledger(touchId), lease);
  }
}
