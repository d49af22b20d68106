import type { UserState } from '../state/user-state.js';

/**
 * The states a lane itself committed last, so the next batch of the lane skips the MGET and the
 * JSON.parse for the users it holds (a user active in one batch is likely in the next).
 *
 * Why this is safe: a lane is the only writer of its users' states while its epoch is current
 * (DESIGN §5): batches of a lane run one after the other, and every write to them goes through
 * the lane's own commit, fenced by the epoch. So what the lane committed last is what Redis
 * holds — as long as the lane is not replaced, and every commit is known to have landed. The
 * owner (`Lanes`) therefore:
 *   - makes a new cache for each claim (a lane (re)assigned starts empty: another owner may
 *     have written in between),
 *   - puts states in only after a commit Redis answered `committed`,
 *   - clears it on a fence rejection (stale epoch, already applied) and on any failed I/O
 *     attempt (a commit whose reply was lost may or may not have landed).
 * Cached states are never mutated: a lane with a cache has the state step copy a loaded state
 * before it changes it (LaneSteps.decideBatch in lane-steps.ts).
 *
 * Bounded: at most `maxUsers` states (least recently used leave first), so memory stays flat
 * whatever the number of users.
 */
export class LaneStateCache {
  private readonly states = new Map<string, UserState>();

  constructor(private readonly maxUsers: number) {}

  /** 0 when the cache is off. */
  get capacity(): number {
    return Math.max(0, this.maxUsers);
  }

  get size(): number {
    return this.states.size;
  }

  /**
   * Splits `userIds` into the states held here (into `into`) and the ids to load from Redis.
   * A hit moves the user to the most recent end.
   */
  take(userIds: readonly string[], into: Map<string, UserState | undefined>): string[] {
    const missing: string[] = [];
    for (const id of userIds) {
      const s = this.states.get(id);
      if (s === undefined) {
        missing.push(id);
        continue;
      }
      this.states.delete(id);
      this.states.set(id, s);
      into.set(id, s);
    }
    return missing;
  }

  /** Records states Redis acknowledged as committed. */
  putCommitted(states: ReadonlyMap<string, UserState>): void {
    if (this.maxUsers <= 0) return;
    for (const [id, s] of states) {
      this.states.delete(id);
      this.states.set(id, s);
    }
    let over = this.states.size - this.maxUsers;
    if (over <= 0) return;
    for (const id of this.states.keys()) {
      this.states.delete(id);
      if (--over === 0) break;
    }
  }

  clear(): void {
    this.states.clear();
  }
}
