import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { it } from 'vitest';

/** Where `name` is on the PATH, or null. */
export function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not in this directory
    }
  }
  return null;
}

/**
 * Gate for tests that need Debian's `prometheus` package (prometheus and promtool). Present:
 * returns true and the tests run. Missing on CI (`CI=true`, where `.ci/run` installs it):
 * registers a failing test, because a silently skipped check is no check. Missing elsewhere:
 * prints a loud warning and returns false, so the caller's `describe.runIf` skips.
 */
export function prometheusBinaries(binaries: readonly string[], what: string): boolean {
  const missing = binaries.filter((b) => onPath(b) === null);
  if (missing.length === 0) return true;
  const fix = 'install Debian\'s prometheus package (apt-get install prometheus), which provides /usr/bin/prometheus and /usr/bin/promtool';
  if (process.env.CI === 'true') {
    it(`has ${missing.join(' and ')} on the PATH for ${what}`, () => {
      throw new Error(`${missing.join(' and ')} not found on the PATH; .ci/run should ${fix}`);
    });
  } else {
    console.warn(`\n!!! SKIPPED: ${what}: ${missing.join(' and ')} not on the PATH. To run these tests, ${fix}. (On CI this fails.)\n`);
  }
  return false;
}
