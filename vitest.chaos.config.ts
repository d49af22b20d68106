import { defineConfig } from 'vitest/config';

// The reliability gauntlet (issue 6): crashes, restarts, rebalances, hostile and poison input.
// Slow (minutes per file), so not in `npm test`; `.ci/run` runs it after `npm test`.
// One file at a time: each kills and restarts processes and measures stalls and memory, which a
// second test competing for the machine's two cores would distort.
export default defineConfig({
  test: {
    include: ['tests/chaos/**/*.test.ts'],
    globalSetup: ['tests/support/global-setup.ts'],
    testTimeout: 600_000,
    hookTimeout: 300_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    reporters: ['default', './tests/support/summary-reporter.ts'],
  },
});
