/**
 * Records the wire-compatibility fixtures in tests/fixtures/events/: for each event below, the
 * encoded bytes (<name>.bin) and the expected decoded fields (<name>.json).
 *
 * Run once, when a fixture is added: `npx tsx scripts/record-fixtures.ts`. Existing files are
 * never overwritten (pass --force to do it anyway), because the point of the fixtures is that
 * bytes recorded by an older build keep decoding to the same fields after every later change to
 * proto/ or src/contract/. Re-recording after a schema change would hide exactly the break the
 * fixtures exist to catch.
 *
 * The .json is written from the literal objects below, not from decoding the .bin, so the test
 * compares the decoder against values a person wrote down.
 */
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeEvent, type AppEvent } from '../src/contract/event.js';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../tests/fixtures/events');

function props(entries: Record<string, string>): Record<string, string> {
  return Object.assign(Object.create(null) as Record<string, string>, entries);
}

const FIXTURES: Record<string, AppEvent> = {
  // Only the required fields.
  minimal: {
    eventId: 'evt-min-0001',
    userId: 'user-42',
    name: 'signup',
    timeMs: 1767225600000, // 2026-01-01T00:00:00.000Z
    channel: '',
    props: props({}),
    value: 0,
    tz: '',
    deviceId: '',
    sentMs: 0,
  },
  login: {
    eventId: '01JGZ5W8Q4V3M2N1P0RSTUVWXY',
    userId: 'u-1001',
    name: 'login',
    timeMs: 1767261600123, // 2026-01-01T10:00:00.123Z
    channel: 'app',
    props: props({}),
    value: 0,
    tz: '',
    deviceId: '',
    sentMs: 0,
  },
  // Every field set.
  transfer_started_props: {
    eventId: 'b3f1c2d4-5e6f-4a1b-9c8d-7e6f5a4b3c2d',
    userId: 'u-2002',
    name: 'transfer_started',
    timeMs: 1767346200500, // 2026-01-02T09:30:00.500Z
    channel: 'mini_program',
    props: props({ page: 'transfer_form', amount_band: '1k-5k', ab_bucket: 'B', source: 'push' }),
    value: 2500.75,
    tz: 'Asia/Shanghai',
    deviceId: 'dev-7f3a9c',
    sentMs: 1767346201000, // 500 ms after the event time
  },
  // Non-ASCII text (3- and 4-byte UTF-8), a negative value and a __proto__ prop key.
  unicode_props: {
    eventId: 'evt-uni-0001',
    userId: 'u-3003',
    name: 'page_view',
    timeMs: 1767225600001,
    channel: 'web',
    // A computed key: a literal `__proto__: ...` would set the prototype instead of a key.
    props: props({ city: '上海', emoji: '🎉', ['__proto__']: 'plain data' }),
    value: -12.5,
    tz: 'Europe/Berlin',
    deviceId: '',
    sentMs: 0,
  },
};

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

async function main(): Promise<void> {
  const force = process.argv.includes('--force');
  await mkdir(dir, { recursive: true });
  for (const [name, event] of Object.entries(FIXTURES)) {
    const bin = path.join(dir, `${name}.bin`);
    const json = path.join(dir, `${name}.json`);
    if (!force && ((await exists(bin)) || (await exists(json)))) {
      process.stdout.write(`kept ${name} (exists; --force overwrites)\n`);
      continue;
    }
    await writeFile(bin, encodeEvent(event));
    await writeFile(json, `${JSON.stringify(event, null, 2)}\n`);
    process.stdout.write(`wrote ${name}.bin and ${name}.json\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`record-fixtures failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
