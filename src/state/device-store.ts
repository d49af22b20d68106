import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { parseSignupMember, signupMember, type DevicePlan, type NewSignup, type StoredSignup } from './device-signups.js';
import { deviceSignupsKey } from './keys.js';

const ADD_SIGNUP_LUA = readFileSync(new URL('./add-signup.lua', import.meta.url), 'utf8');

interface AddSignupCommand {
  nudgeAddSignup(key: string, member: string, at: number, keepForMs: number, maxPerDevice: number): unknown;
}

/** A recorded sign-up with where it was applied: what the lane writes after its step. */
export interface SignupWrite extends Omit<NewSignup, 'event'> {
  partition: number;
  offset: number;
}

/**
 * The Redis edge of device sign-ups (device-signups.ts): the sets a batch reads before its step,
 * and the sign-ups it recorded, written after. Each device set is one key; a batch's reads and
 * writes go in one pipeline each (a standalone Redis; on a Cluster they would go per key).
 */
export class DeviceSignupStore {
  constructor(
    private readonly redis: Redis,
    private readonly namespace: string,
    private readonly topic: string,
  ) {
    if (!(redis as unknown as Partial<AddSignupCommand>).nudgeAddSignup) {
      redis.defineCommand('nudgeAddSignup', { lua: ADD_SIGNUP_LUA, numberOfKeys: 1 });
    }
  }

  /** The plan's device sets, each within its time range, by time. */
  async read(plan: DevicePlan): Promise<Map<string, StoredSignup[]>> {
    const p = this.redis.pipeline();
    const sets = [...plan.keys()];
    for (const set of sets) {
      const { from, to } = plan.get(set)!;
      p.zrangebyscore(this.key(set), bound(from), bound(to), 'WITHSCORES');
    }
    const replies = await exec(p);
    const out = new Map<string, StoredSignup[]>();
    sets.forEach((set, i) => {
      const flat = replies[i] as string[];
      const entries: StoredSignup[] = [];
      for (let k = 1; k < flat.length; k += 2) entries.push(parseSignupMember(flat[k - 1] as string, Number(flat[k])));
      out.set(set, entries);
    });
    return out;
  }

  /** Adds the sign-ups (NX: a re-run adds nothing) and keeps each set bounded. */
  async write(signups: readonly SignupWrite[]): Promise<void> {
    const p = this.redis.pipeline();
    const cmd = p as unknown as AddSignupCommand;
    for (const s of signups) cmd.nudgeAddSignup(this.key(s.set), signupMember(s), s.at, s.spec.keepForMs, s.spec.maxPerDevice);
    await exec(p);
  }

  private key(set: string): string {
    return deviceSignupsKey(this.namespace, this.topic, set);
  }
}

function bound(x: number): string {
  return x === Number.NEGATIVE_INFINITY ? '-inf' : x === Number.POSITIVE_INFINITY ? '+inf' : String(x);
}

async function exec(p: ReturnType<Redis['pipeline']>): Promise<unknown[]> {
  const replies = (await p.exec()) ?? [];
  for (const [err] of replies) if (err) throw err;
  return replies.map(([, v]) => v);
}
