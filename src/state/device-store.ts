import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { signupKey, type DevicePlan, type DeviceSignupReads } from './device-signups.js';
import { deviceSignupsKey } from './keys.js';

const ADD_SIGNUP_LUA = readFileSync(new URL('./add-signup.lua', import.meta.url), 'utf8');

interface AddSignupCommand {
  nudgeAddSignup(key: string, userId: string, at: number, keepForMs: number, maxPerDevice: number): unknown;
}

/**
 * The Redis edge of device sign-ups (device-signups.ts): one pipeline per batch that needs it,
 * the batch's new sign-ups first, then the device sets the batch's deciding events read, so a
 * sign-up in the same batch is counted. Each device set is its own key (its own Cluster slot):
 * a user's sign-up is written by the user's lane, and a device's users are on many lanes.
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

  /** Writes the plan's sign-ups and reads its device sets (see DeviceSignupReads). */
  async apply(plan: DevicePlan): Promise<DeviceSignupReads> {
    const p = this.redis.pipeline();
    const cmd = p as unknown as AddSignupCommand;
    for (const w of plan.writes) cmd.nudgeAddSignup(deviceSignupsKey(this.namespace, this.topic, w.set), w.userId, w.at, w.spec.keepForMs, w.spec.maxPerDevice);
    const sets = [...plan.reads.keys()];
    for (const set of sets) p.zrange(deviceSignupsKey(this.namespace, this.topic, set), '0', '-1', 'WITHSCORES');
    const replies = (await p.exec()) ?? [];
    for (const [err] of replies) if (err) throw err;
    const out = new Map<string, Array<[string, number]>>();
    sets.forEach((set, i) => {
      const flat = replies[plan.writes.length + i]?.[1] as string[];
      const entries: Array<[string, number]> = [];
      for (let k = 1; k < flat.length; k += 2) entries.push([flat[k - 1] as string, Number(flat[k])]);
      out.set(set, entries);
    });
    return { sets: out, written: new Set(plan.writes.map((w) => signupKey(w.set, w.userId))) };
  }
}
