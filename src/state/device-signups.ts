import { createHash } from 'node:crypto';
import type { AppEvent } from '../contract/event.js';
import { matches, type DeviceSignupSpec, type StateSpec } from './spec.js';
import type { UserState } from './user-state.js';

/**
 * Sign-ups per device, across users (referral anti-abuse, DOMAIN: "many sign-ups from one
 * device in a short time must be caught"). One device's users live on different partitions,
 * so no lane's atomic commit can count them: each device has its own sorted set outside the
 * lanes, one member per sign-up naming where it was applied (partition, offset, user), scored
 * by its time.
 *
 * A batch with an event that can trigger a journey with a `deviceSignups` condition reads the
 * sets of those users' devices before it is decided; the step then counts, for each event:
 * - sign-ups applied by other lanes (whatever their progress; see docs/config.md);
 * - sign-ups of this lane at or below its fence (committed before this batch);
 * - sign-ups this batch applied before the event, from its own walk (DeviceSignupView).
 * Entries of this lane above its fence (written by an attempt that crashed, was fenced off or
 * was cut differently) are left out: the walk re-applies those before the event, and one
 * after it never counts, however the batches were cut. After the step, the sign-ups it
 * recorded (not those of poisoned events) are written, before the batch's commit: a crash in
 * between writes the same members again (ZADD NX).
 */

/**
 * A device in keys and stored state: a SHA-256 hash. Pseudonymous, not anonymous: a device id
 * with little entropy (an IMEI) can be found again by hashing candidates (docs/security.md).
 */
export function deviceHash(deviceId: string): string {
  return createHash('sha256').update(deviceId).digest('hex').slice(0, 32);
}

/** A device's sign-ups of one definition, as a map key: `${definition}/${deviceHash}`. */
export function deviceSetId(definition: string, hash: string): string {
  return `${definition}/${hash}`;
}

/** One sign-up as stored: where it was applied, so a lane can tell its own uncommitted ones. */
export interface StoredSignup {
  partition: number;
  offset: number;
  userId: string;
  at: number;
}

export function signupMember(s: Omit<StoredSignup, 'at'>): string {
  return `${s.partition}:${s.offset}:${s.userId}`;
}

export function parseSignupMember(member: string, at: number): StoredSignup {
  const a = member.indexOf(':');
  const b = member.indexOf(':', a + 1);
  return { partition: Number(member.slice(0, a)), offset: Number(member.slice(a + 1, b)), userId: member.slice(b + 1), at };
}

/** The device sets a batch reads, with the time range its deciding users' windows cover. */
export type DevicePlan = Map<string, { from: number; to: number }>;

/** A sign-up the step recorded in a user's state: written to its device set after the step. */
export interface NewSignup {
  set: string;
  spec: DeviceSignupSpec;
  userId: string;
  at: number;
  /** The sign-up event, to find its offset (the step sees events, not offsets). */
  eventId: string;
  /** The event object itself, as the step was given it: found by identity, no lookup by id. */
  event: AppEvent;
}

/** The device sets read for a batch, and the lane that reads them (see the module comment). */
export interface DeviceSignupReads {
  sets: ReadonlyMap<string, readonly StoredSignup[]>;
  partition: number;
  /** The lane's fence when the batch was read: its sign-ups at or below it are committed. */
  fence: number;
}

/**
 * The device sets a batch must read, or null: those of the users whose events can trigger a
 * journey counting them (their recorded sign-up's window, or the whole set for a sign-up in
 * this batch). Reading a set too many costs a little; reading one too few would count 0.
 */
export function planDeviceSignups(events: readonly AppEvent[], loaded: ReadonlyMap<string, UserState | undefined>, spec: StateSpec): DevicePlan | null {
  if (spec.deviceSignups.length === 0) return null;
  const triggers = triggerNames(spec);
  let deciders: Set<string> | null = null;
  for (const e of events) if (triggers.has(e.name)) (deciders ??= new Set()).add(e.userId);
  if (deciders === null) return null;
  const plan: DevicePlan = new Map();
  const want = (set: string, from: number, to: number) => {
    const r = plan.get(set);
    plan.set(set, r === undefined ? { from, to } : { from: Math.min(r.from, from), to: Math.max(r.to, to) });
  };
  for (const d of spec.deviceSignups) {
    for (const userId of deciders) {
      const own = loaded.get(userId)?.signups?.[d.name];
      if (own !== undefined) want(deviceSetId(d.name, own[0]), own[1] - d.withinMs, own[1] + d.withinMs);
    }
    for (const e of events) {
      if (!deciders.has(e.userId) || e.deviceId === '' || loaded.get(e.userId)?.signups?.[d.name] !== undefined || !matches(d.filter, e)) continue;
      want(deviceSetId(d.name, deviceHash(e.deviceId)), Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY);
    }
  }
  return plan.size === 0 ? null : plan;
}

/** The reads as one decide call walks its events: its own sign-ups join once applied. */
export class DeviceSignupView {
  private readonly applied = new Map<string, Array<[string, number]>>();

  constructor(private readonly reads: DeviceSignupReads) {}

  /** The step recorded `userId`'s sign-up at `at` on `set`. */
  apply(set: string, userId: string, at: number): void {
    let list = this.applied.get(set);
    if (list === undefined) this.applied.set(set, (list = []));
    list.push([userId, at]);
  }

  /** Sign-up times on the device as of the event being decided, ascending; undefined = not read. */
  times(set: string): number[] | undefined {
    const stored = this.reads.sets.get(set);
    if (stored === undefined) return undefined;
    const users = new Set<string>();
    const out: number[] = [];
    for (const s of stored) {
      if (s.partition === this.reads.partition && s.offset > this.reads.fence) continue;
      if (!users.has(s.userId)) out.push(s.at);
      users.add(s.userId);
    }
    for (const [userId, at] of this.applied.get(set) ?? []) {
      if (!users.has(userId)) out.push(at);
      users.add(userId);
    }
    return out.sort((a, b) => a - b);
  }
}

/**
 * Records `e` as the user's sign-up for each definition it is the first match of (in place),
 * tells the batch's view, and lists it to be written after the step.
 */
export function recordSignup(s: UserState, e: AppEvent, t: number, spec: StateSpec, view: DeviceSignupView | undefined, out: NewSignup[]): void {
  if (e.deviceId === '') return;
  for (const d of spec.deviceSignups) {
    if (s.signups?.[d.name] !== undefined || !matches(d.filter, e)) continue;
    const set = deviceSetId(d.name, deviceHash(e.deviceId));
    // A new object: the loaded state's may be shared with the caller (copy-on-write).
    s.signups = { ...s.signups, [d.name]: [set.slice(d.name.length + 1), t] };
    view?.apply(set, e.userId, t);
    out.push({ set, spec: d, userId: e.userId, at: t, eventId: e.eventId, event: e });
  }
}

// Event names that can trigger a journey with a deviceSignups condition, per compiled spec.
const TRIGGERS = new WeakMap<StateSpec, ReadonlySet<string>>();

function triggerNames(spec: StateSpec): ReadonlySet<string> {
  let names = TRIGGERS.get(spec);
  if (names === undefined) {
    const out = new Set<string>();
    for (const j of spec.rules?.journeys ?? []) {
      if (!j.conditions.some((c) => c.kind === 'deviceSignups')) continue;
      const t = j.trigger;
      // The config refuses a deviceSignups condition on any other trigger (journey-references.ts).
      if (t.type === 'event' || t.type === 'firstTime') for (const n of t.match.names) out.add(n);
    }
    TRIGGERS.set(spec, (names = out));
  }
  return names;
}
