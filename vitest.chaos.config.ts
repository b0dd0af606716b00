import { defineConfig } from 'vitest/config';

// Run alone, after the rest of the suite (`npm test`), one file at a time:
// the chaos drill loads both cores with several gateway processes, and the
// proof-of-work measurement in Chromium needs the cores to itself.
export default defineConfig({
  test: {
    include: ['test/chaos.test.ts', 'test/browser-challenge.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 240_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
