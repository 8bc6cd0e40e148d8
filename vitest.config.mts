import { defineConfig } from "vitest/config";

export default defineConfig({
    test: {
        include: ["tests/**/*.test.ts"],
        // Integration tests start real servers; give them room, and keep to the machine's two cores.
        testTimeout: 120_000,
        hookTimeout: 180_000,
        pool: "forks",
        // The tests' s3rver runs in the worker. It seals ListObjectsV2 continuation tokens with DES,
        // which OpenSSL 3 keeps in its legacy provider: without it every listing longer than a page
        // (a pgBackRest repository) fails. The sandbox starts its s3rver with the same flag.
        execArgv: ["--openssl-legacy-provider"],
        maxWorkers: 2,
        reporters: ["default"],
    },
});
