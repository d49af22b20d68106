#!/usr/bin/env node
// The `nudge` command. Sources are TypeScript; tsx compiles them on load (esbuild, no type
// check), so a fresh clone runs with no build step and stack traces point at the .ts files.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
