import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests attach loop devices (a global, numbered kernel resource) and
    // measure fd counts: run test files one after another, never in parallel.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    reporters: ['default', './test/summary-reporter.ts'],
    // Removes each file's loop devices, mounts and temp dirs when it ends (test/helpers/cleanup.ts).
    setupFiles: ['test/helpers/cleanup.ts'],
  },
});
