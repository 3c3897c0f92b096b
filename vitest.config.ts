import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    // Builds the dashboard bundle (dist-ui/) that the HTTP and browser tests serve, and dist/
    // (with its own dashboard bundle) for the tests that spawn the executables.
    globalSetup: ["tests/global-setup.ts", "tests/build-dist.ts"],
    // Real processes and sockets: generous per-test timeouts, never fixed sleeps.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: keep files in separate forks so a crashing test cannot take others down.
    pool: "forks",
    maxWorkers: 2,
  },
});
