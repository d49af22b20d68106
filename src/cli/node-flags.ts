/**
 * V8 flags every launcher of the engine passes to Node: bin/nudge.js's shebang (`npx nudge`,
 * `./bin/nudge.js`), `npm start` and the Dockerfile's entrypoint. tests/unit/node-flags.test.ts
 * checks that each carries them, and bench:pipeline runs its measured processes with them.
 *
 * --max-semi-space-size=32: V8's young generation twice its default (2 x 32 MB instead of
 * 2 x 16). A lane's batch (its decoded events and states) lives across two Redis round trips;
 * with the default, scavenges came often enough that much of it survived two of them and was
 * promoted, and the old generation grew to several times its live size between mark-compacts.
 * Interleaved drains of 240,000 events (bench:pipeline --variants floor,core,drain --rounds 1,
 * three flag settings in turn, twice): peak RSS of the state core 399 / 397 MB without the flag
 * against 365 / 354 with it, full engine 403 / 409 against 381 / 373; CPU per event within
 * the machine's noise (state core 13.7 / 11.4 against 13.3 / 11.9 µs). 64 MB gave no more.
 * Setting it from inside the process (v8.setFlagsFromString) does not resize a heap already
 * made, hence the launchers.
 */
export const ENGINE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];
