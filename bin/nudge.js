#!/usr/bin/env -S node --max-semi-space-size=32
// The `nudge` command. Sources are TypeScript; tsx compiles them on load (esbuild, no type
// check), so a fresh clone runs with no build step and stack traces point at the .ts files.
// The V8 flags in the first line are the engine's (src/cli/node-flags.ts says why). `env -S` splits
// them: GNU coreutils 8.30+ (Debian 10+), macOS and FreeBSD; not BusyBox (Alpine), where `node
// --max-semi-space-size=32 bin/nudge.js ...` starts it (the Dockerfile does that).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
