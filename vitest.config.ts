import { defineConfig } from 'vitest/config';

// Integration tests share one real Kafka broker and one real Redis started by the global setup
// (tests/support/global-setup.ts); each test uses its own topic, group and key prefix.
export default defineConfig({
  test: {
    // tests/chaos (the reliability gauntlet) has its own config: `npm run test:chaos`.
    include: ['tests/unit/**/*.test.ts', 'tests/integration/**/*.test.ts'],
    globalSetup: ['tests/support/global-setup.ts'],
    // Starting the JVM broker takes a few seconds; tests that produce and consume need headroom
    // on a 2-core machine that also runs the broker and Redis.
    testTimeout: 60_000,
    hookTimeout: 180_000,
    // Two workers: the machine has two cores and the broker needs one of them.
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default', './tests/support/summary-reporter.ts'],
  },
});
