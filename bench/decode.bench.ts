/**
 * One question: what does turning Kafka bytes into a usable event cost, per event?
 *
 * Variants, same run, same 200k distinct encoded events (4-entry props map, every field set):
 *   - raw:       the generated nudge.v1.AppEvent.decode alone (the floor we build on),
 *   - decode:    decodeEvent (size check, try/catch, Long -> number, null-prototype props),
 *   - validate:  validateEvent alone, on the already-decoded events,
 *   - parse:     parseEvent = decodeEvent + validateEvent (the consumer's hot path).
 * `raw` runs last: it decodes into a different object shape than decodeEvent's target, and
 * running it first would make the shared decode function polymorphic for the other two.
 *
 * Run: `npx tsx bench/decode.bench.ts` (prints a table, writes bench/results/decode.json).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { decodeEvent, encodeEvent, type AppEvent } from '../src/contract/event.js';
import { nudge } from '../src/contract/gen/event.js';
import { DEFAULT_EVENT_LIMITS, parseEvent, validateEvent } from '../src/contract/validate.js';

const EVENTS = 200_000;
const ROUNDS = 7;
const NOW = 1767225600000;

function makeEvents(n: number): Buffer[] {
  const out: Buffer[] = [];
  const zones = ['Asia/Shanghai', 'Europe/Berlin', 'America/New_York', 'UTC'];
  for (let i = 0; i < n; i++) {
    const props = Object.create(null) as Record<string, string>;
    props['page'] = i % 3 === 0 ? 'loan_detail' : 'home';
    props['amount_band'] = '1k-5k';
    props['ab'] = i % 2 === 0 ? 'A' : 'B';
    props['source'] = 'push';
    const e: AppEvent = {
      eventId: `01JGZ5W8Q4V3M2N1P0${String(i).padStart(8, '0')}`,
      userId: `u-${(i * 7919) % 50_000}`,
      name: i % 5 === 0 ? 'transfer_started' : 'page_view',
      timeMs: NOW + i,
      channel: 'app',
      props,
      value: (i % 1000) + 0.5,
      tz: zones[i % zones.length] as string,
      deviceId: `dev-${(i * 31) % 100_000}`,
      sentMs: NOW + i + 120,
    };
    out.push(Buffer.from(encodeEvent(e)));
  }
  return out;
}

interface Row {
  variant: string;
  nsPerEventMedian: number;
  nsPerEventBest: number;
}

function measure<T>(variant: string, inputs: T[], fn: (b: T) => unknown): Row {
  const samples: number[] = [];
  let sink = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < inputs.length; i++) if (fn(inputs[i] as T) !== undefined) sink++;
    samples.push(Number(process.hrtime.bigint() - start) / inputs.length);
  }
  if (sink === 0) throw new Error('nothing decoded');
  // Round 0 includes JIT warm-up; drop it.
  const warm = samples.slice(1).sort((a, b) => a - b);
  return {
    variant,
    nsPerEventMedian: Math.round(warm[Math.floor(warm.length / 2)] as number),
    nsPerEventBest: Math.round(warm[0] as number),
  };
}

export async function runDecodeBench(): Promise<Row[]> {
  const inputs = makeEvents(EVENTS);
  const check = parseEvent(inputs[0] as Buffer, DEFAULT_EVENT_LIMITS, NOW);
  if (!check.ok) throw new Error(`bench event is invalid: ${check.rejection.code}`);
  const rows = [
    measure('decode (decodeEvent)', inputs, (b) => decodeEvent(b)),
    measure('parse (decode + validate)', inputs, (b) => parseEvent(b, DEFAULT_EVENT_LIMITS, NOW)),
  ];
  // Decoded afterwards: 200k live events in the heap would slow the GC of the runs above.
  const decoded = inputs.map((b) => {
    const r = decodeEvent(b);
    if (!r.ok) throw new Error('bench event did not decode');
    return r.event;
  });
  rows.push(measure('validate (validateEvent)', decoded, (e) => validateEvent(e, DEFAULT_EVENT_LIMITS, NOW) ?? 0));
  decoded.length = 0;
  rows.push(measure('raw generated decode', inputs, (b) => nudge.v1.AppEvent.decode(b)));
  const bytes = inputs.reduce((s, b) => s + b.length, 0) / inputs.length;
  process.stdout.write(`\nEvent decode, ${EVENTS} events of ~${Math.round(bytes)} bytes (4 props), node ${process.version}\n`);
  process.stdout.write(`${'variant'.padEnd(28)}${'median ns/event'.padStart(17)}${'best ns/event'.padStart(15)}\n`);
  for (const r of rows) {
    process.stdout.write(`${r.variant.padEnd(28)}${String(r.nsPerEventMedian).padStart(17)}${String(r.nsPerEventBest).padStart(15)}\n`);
  }
  const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'results');
  await mkdir(dir, { recursive: true });
  await writeFile(
    path.join(dir, 'decode.json'),
    `${JSON.stringify({ events: EVENTS, rounds: ROUNDS, avgBytes: Math.round(bytes), node: process.version, rows }, null, 2)}\n`,
  );
  return rows;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runDecodeBench().catch((err: unknown) => {
    process.stderr.write(`decode bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
