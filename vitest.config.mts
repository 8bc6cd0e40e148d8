import { defineConfig } from "vitest/config";

export default defineConfig({
    test: {
        include: ["tests/**/*.test.ts"],
        // Integration tests start real servers; give them room, and keep to the machine's two cores.
        testTimeout: 120_000,
        hookTimeout: 180_000,
        pool: "forks",
        maxWorkers: 2,
        reporters: ["default"],
    },
});
