import { defineConfig } from 'vitest/config';

// The chaos drill runs alone, after the rest of the suite (`npm test`): it
// loads both cores with several gateway processes, and nothing else should
// share the machine with it or with the timing-sensitive tests.
export default defineConfig({
  test: {
    include: ['test/chaos.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 240_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
