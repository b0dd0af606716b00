import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // run alone afterwards: vitest.chaos.config.ts
    exclude: ['test/chaos.test.ts', 'test/browser-challenge.test.ts', '**/node_modules/**'],
    // uWebSockets.js is a native addon: run test files in child processes, not worker threads.
    pool: 'forks',
    poolOptions: { forks: { singleFork: false } },
    fileParallelism: true,
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
