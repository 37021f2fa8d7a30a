import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    // Forks, not threads: the KVM backend's SIGALRM watchdog needs a process of its own.
    // Two: vitest's default for `run` is one fewer than the cores, one on a 2-core machine.
    pool: "forks",
    poolOptions: { forks: { maxForks: 2 } }
  }
})
