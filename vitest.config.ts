import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The JSON report lets scripts/test.sh print a plain 'N passed, N failed' closing line.
    reporters: ['default', ['json', { outputFile: '.vigil-test/results.json' }]],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'integration',
          include: [
            'test/integration/**/*.test.ts',
            'test/workflows/**/*.test.ts',
            'test/e2e/**/*.test.ts',
          ],
          environment: 'node',
          globalSetup: ['test/helpers/services.global.ts'],
          setupFiles: ['test/helpers/quiet-temporal.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // The services are shared; files run in parallel but each test names its own
          // keys, topics, task queues and databases.
          maxWorkers: 2,
        },
      },
    ],
  },
});
