#!/usr/bin/env -S node --max-semi-space-size=32
// The `nudge` command. Sources are TypeScript; tsx compiles them on load (esbuild, no type
// check), so a fresh clone runs with no build step and stack traces point at the .ts files.
// The V8 flags in the first line are the engine's (src/cli/node-flags.ts says why; env -S splits
// them, as GNU and BSD env do).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
