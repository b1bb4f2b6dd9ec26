import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // The suites mostly wait on servers and processes of their own: three at a time halve the run on 2 cores
    // (vitest's default is one fewer than the cores: one, there). Timeouts in tests leave room for the load.
    maxWorkers: 3,
  },
});
