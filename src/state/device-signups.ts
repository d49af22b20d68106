import { createHash } from 'node:crypto';
import type { AppEvent } from '../contract/event.js';
import { matches, type DeviceSignupSpec, type StateSpec } from './spec.js';
import type { UserState } from './user-state.js';

/**
 * Sign-ups per device, across users (referral anti-abuse, DOMAIN: "many sign-ups from one
 * device in a short time must be caught"). One device's users live on different partitions,
 * so no lane's atomic commit can count them: each device has its own sorted set (user id ->
 * sign-up time) outside the lanes, written before the batch's state is decided (ZADD NX of a
 * user's first sign-up, so a re-run of the batch after a crash adds nothing new) and read for
 * the users whose events can trigger a journey with a `deviceSignups` condition.
 *
 * The count is exact for sign-ups applied before the deciding event, whichever lane applied
 * them. A lane far ahead of another (a cold replay of a backlog) can decide before the other
 * lane applied a sign-up of the same device in the window: that sign-up is then not counted.
 */

/** A device in keys and stored state: a hash, so no device identifier is stored or logged. */
export function deviceHash(deviceId: string): string {
  return createHash('sha256').update(deviceId).digest('hex').slice(0, 32);
}

/** A device's sign-ups of one definition, as a map key: `${definition}/${deviceHash}`. */
export function deviceSetId(definition: string, hash: string): string {
  return `${definition}/${hash}`;
}

export interface SignupWrite {
  /** deviceSetId of the device. */
  set: string;
  spec: DeviceSignupSpec;
  device: string;
  userId: string;
  at: number;
}

export interface DevicePlan {
  /** Sign-ups to add before deciding (first per user and definition; nothing recorded yet). */
  writes: SignupWrite[];
  /** Device sets to read: of users whose events can trigger a journey counting them. */
  reads: Map<string, { spec: DeviceSignupSpec; device: string }>;
}

/**
 * Device sets read for a batch (deviceSetId -> [user id, sign-up time] by time), and which of
 * their sign-ups this batch wrote (`signupKey`): those are in Redis already, written before the
 * batch was decided, but count for an event only once the step has applied them — a sign-up
 * later in the partition than the deciding event must not count, however the batches were cut.
 */
export interface DeviceSignupReads {
  sets: ReadonlyMap<string, ReadonlyArray<readonly [string, number]>>;
  written: ReadonlySet<string>;
}

export function signupKey(set: string, userId: string): string {
  return `${set}\n${userId}`;
}

/** The reads as one decide call walks its events: the batch's sign-ups join once applied. */
export class DeviceSignupView {
  private readonly applied = new Set<string>();

  constructor(private readonly reads: DeviceSignupReads) {}

  /** The step recorded `userId`'s sign-up on `set`. */
  apply(set: string, userId: string): void {
    this.applied.add(signupKey(set, userId));
  }

  /** Sign-up times on the device as of the event being decided, ascending; undefined = not read. */
  times(set: string): number[] | undefined {
    const entries = this.reads.sets.get(set);
    if (entries === undefined) return undefined;
    const out: number[] = [];
    for (const [user, at] of entries) {
      const key = signupKey(set, user);
      if (!this.reads.written.has(key) || this.applied.has(key)) out.push(at);
    }
    return out;
  }
}

/**
 * What a batch needs from the device sets, or null when nothing: walks the events as
 * `applyEvents` will (duplicates of recent ids and events later than allowedLatenessMs change
 * nothing; future times are clamped), so a sign-up is written exactly when the step records it
 * in the user's state (tests/unit/device-signups.test.ts checks the two agree).
 */
export function planDeviceSignups(
  events: readonly AppEvent[],
  loaded: ReadonlyMap<string, UserState | undefined>,
  streamTime: number,
  now: number,
  spec: StateSpec,
): DevicePlan | null {
  if (spec.deviceSignups.length === 0) return null;
  const triggers = triggerNames(spec);
  // Most batches hold neither a sign-up nor a deciding event: no walk, no allocation for them
  // (the full walk below on every batch was 1.3% of the engine's CPU at 10,000 events/s).
  if (!events.some((e) => triggers.has(e.name) || (e.deviceId !== '' && spec.deviceSignups.some((d) => matches(d.filter, e))))) return null;
  const writes: SignupWrite[] = [];
  const reads: DevicePlan['reads'] = new Map();
  // Per user: sign-ups taken in this batch (definition -> set id), and the batch's event ids.
  const taken = new Map<string, Map<string, string>>();
  const seenIds = new Map<string, Set<string>>();
  let stream = streamTime;
  for (const e of events) {
    const state = loaded.get(e.userId);
    let ids = seenIds.get(e.userId);
    if (ids === undefined) seenIds.set(e.userId, (ids = new Set()));
    if (ids.has(e.eventId) || (state !== undefined && state.recentIds.includes(e.eventId))) continue;
    ids.add(e.eventId);
    if (e.timeMs < stream - spec.allowedLatenessMs) continue;
    let t = e.timeMs;
    if (t > now + spec.maxFutureSkewMs) t = now;
    else if (t > stream) stream = t;

    let mine = taken.get(e.userId);
    for (const d of spec.deviceSignups) {
      if (e.deviceId === '' || state?.signups?.[d.name] !== undefined || mine?.has(d.name) || !matches(d.filter, e)) continue;
      const device = deviceHash(e.deviceId);
      const set = deviceSetId(d.name, device);
      if (mine === undefined) taken.set(e.userId, (mine = new Map()));
      mine.set(d.name, set);
      writes.push({ set, spec: d, device, userId: e.userId, at: t });
    }
    if (triggers.has(e.name)) {
      for (const d of spec.deviceSignups) {
        const recorded = state?.signups?.[d.name];
        const set = recorded !== undefined ? deviceSetId(d.name, recorded[0]) : mine?.get(d.name);
        if (set !== undefined && !reads.has(set)) reads.set(set, { spec: d, device: set.slice(d.name.length + 1) });
      }
    }
  }
  return writes.length === 0 && reads.size === 0 ? null : { writes, reads };
}

/**
 * Records `e` as the user's sign-up for each definition it is the first match of (in place),
 * and tells the batch's view that the sign-up is applied.
 */
export function recordSignup(s: UserState, e: AppEvent, t: number, spec: StateSpec, view: DeviceSignupView | undefined): void {
  if (e.deviceId === '') return;
  for (const d of spec.deviceSignups) {
    if (s.signups?.[d.name] !== undefined || !matches(d.filter, e)) continue;
    const device = deviceHash(e.deviceId);
    // A new object: the loaded state's may be shared with the caller (copy-on-write).
    s.signups = { ...s.signups, [d.name]: [device, t] };
    view?.apply(deviceSetId(d.name, device), e.userId);
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
