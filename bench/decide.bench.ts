/**
 * One question: what does the pure decide step (applyEvents: windows, activity increments,
 * lifecycle, behaviour state, journey rules) cost per event on realistic batches, and how much
 * of that is the behaviour config and how much the journeys?
 *
 * Variants, same run, same events: the built-in defaults (two activity metrics and the
 * lifecycle, `loadConfig({ defaultsOnly: true })`), the shipped config/nudge.yaml without its
 * journeys (plus counters, a sum, a streak, traits, breakdowns) and with them (rules and the
 * policy gate evaluated per event; the events are days old, past maxTriggerAge, so the rules run
 * but event triggers do not fire: the cost of a backfill). The events are 300k deliveries of seeded synthetic
 * banking traffic over 3 days, in arrival order, in batches of 1,000 as one lane would see them.
 * States carry over from batch to batch in memory, as Redis would hand them back (without the
 * JSON round trip, which belongs to the commit and load steps), and are given to the step to
 * change in place, as the lanes do (applyEvents' `owned`). A round replays every batch from
 * empty state; round 1 warms the JIT and is dropped; the table shows the median of the rest.
 *
 *   npm run bench:decide -- [--events 300000] [--batch 1000] [--rounds 5]
 * No services needed. Prints one table; writes bench/results/decide.json.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { decodeEvent, encodeEvent, type AppEvent } from '../src/contract/event.js';
import { loadConfig } from '../src/config/load.js';
import { compileStateSpec } from '../src/engine/state-spec.js';
import { applyEvents } from '../src/state/decide.js';
import type { StateSpec } from '../src/state/spec.js';
import type { UserState } from '../src/state/user-state.js';
import { TrafficGenerator } from '../src/tools/loadgen/traffic.js';
import { cpuMicros } from './support/measure.js';
import { finishMeta, fmtInt, formatTable, loadLine, median, progress, runMeta, writeResult } from './support/report.js';

const THIS_FILE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(THIS_FILE), '..');
const ZONE = 'Asia/Shanghai';
const DAY_MS = 86_400_000;

function makeBatches(events: number, batch: number, users: number, seed: number, startMs: number): AppEvent[][] {
  const gen = new TrafficGenerator({ seed, users, ratePerSec: events / (3 * 86_400), startMs, reportingTimeZone: ZONE });
  const out: AppEvent[][] = [];
  let current: AppEvent[] = [];
  for (let i = 0; i < events; i++) {
    // Through the wire format, as a lane gets them: decoded strings are flat, the generator's
    // are concatenations that every comparison (the duplicate check) must flatten first, which
    // made that check look like the step's largest cost; and props is a null-prototype map.
    const decoded = decodeEvent(encodeEvent(gen.next().event));
    if (!decoded.ok) throw new Error(`the generator made an event that does not decode: ${decoded.rejection.message}`);
    current.push(decoded.event);
    if (current.length === batch) {
      out.push(current);
      current = [];
    }
  }
  if (current.length > 0) out.push(current);
  return out;
}

/**
 * One replay of all batches from empty state; returns the CPU time (not wall time: the machine is
 * shared, and a descheduled thread would count as slow code) per event spent in applyEvents,
 * including the GC it causes.
 */
function replay(batches: AppEvent[][], spec: StateSpec, now: number): { nsPerEvent: number; users: number } {
  const states = new Map<string, UserState>();
  let streamTime = 0;
  let events = 0;
  let ns = 0;
  for (const batch of batches) {
    const loaded = new Map<string, UserState | undefined>();
    for (const e of batch) if (!loaded.has(e.userId)) loaded.set(e.userId, states.get(e.userId));
    const t = cpuMicros();
    // Owned, as the lanes run it: the states are the previous batch's, given away to this one.
    const result = applyEvents(batch, loaded, streamTime, now, spec, undefined, true);
    ns += (cpuMicros() - t) * 1000;
    for (const [user, s] of result.states) states.set(user, s);
    streamTime = result.streamTime;
    events += batch.length;
  }
  return { nsPerEvent: ns / events, users: states.size };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      events: { type: 'string' },
      batch: { type: 'string', default: '1000' },
      rounds: { type: 'string', default: '5' },
      users: { type: 'string', default: '50000' },
      seed: { type: 'string', default: '20260301' },
    },
  });
  const events = Number(values.events ?? process.env.BENCH_EVENTS ?? 300_000);
  const batchSize = Number(values.batch);
  const rounds = Math.max(2, Number(values.rounds));
  const meta = runMeta();
  const now = Date.now();
  progress(`generating ${fmtInt(events)} events...`);
  const batches = makeBatches(events, batchSize, Number(values.users), Number(values.seed), now - 4 * DAY_MS);
  const shipped = compileStateSpec(loadConfig({ file: path.join(REPO, 'config', 'nudge.yaml'), env: {} }));
  const variants: Array<{ name: string; spec: StateSpec }> = [
    { name: 'defaults (activity + lifecycle)', spec: compileStateSpec(loadConfig({ defaultsOnly: true, env: { NUDGE_REPORTING_TZ: ZONE } })) },
    { name: 'nudge.yaml without journeys', spec: { ...shipped, rules: undefined } },
    { name: 'nudge.yaml (+ journeys, policy)', spec: shipped },
  ];
  const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]));
  let users = 0;
  // Interleaved rounds: a burst of load from other work on the machine hits both variants.
  for (let r = 0; r < rounds; r++) {
    for (const v of variants) {
      const res = replay(batches, v.spec, now);
      users = res.users;
      if (r > 0) samples.get(v.name)?.push(res.nsPerEvent);
    }
    progress(`round ${r + 1}/${rounds} done`);
  }
  const rows = variants.map((v) => {
    const s = samples.get(v.name) ?? [];
    const ns = median(s);
    return { variant: v.name, nsPerEventMedian: Math.round(ns), nsPerEventBest: Math.round(Math.min(...s)), eventsPerSec: 1e9 / ns, samples: s.map(Math.round) };
  });
  const finalMeta = finishMeta(meta);
  process.stdout.write(
    `\nDecide step (applyEvents), ${fmtInt(events)} events in batches of ${fmtInt(batchSize)}, ${fmtInt(users)} users, ${rounds - 1} measured rounds\n` +
      `${formatTable(
        ['variant', 'median CPU ns/event', 'best ns/event', 'events/s (one core)'],
        rows.map((r) => [r.variant, fmtInt(r.nsPerEventMedian), fmtInt(r.nsPerEventBest), fmtInt(r.eventsPerSec)]),
      )}\n${loadLine(finalMeta)}\n`,
  );
  const file = await writeResult('decide', { bench: 'decide', meta: finalMeta, options: { events, batchSize, rounds, users }, rows });
  progress(`wrote ${path.relative(REPO, file)}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`[bench] decide bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
