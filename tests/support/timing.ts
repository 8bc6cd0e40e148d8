/** Vitest hooks for tests/support/engine.ts's Timings (kept apart: the bench imports engine.ts outside vitest). */
import { afterEach, beforeEach } from "vitest";
import type { Timings } from "./engine";

/** Records each test's duration in `timings`; call it inside the describe. */
export function timeEachTest(timings: Timings): void {
    let started = 0;
    beforeEach(() => {
        started = Date.now();
    });
    afterEach((ctx) => {
        timings.add(`test: ${ctx.task.name}`, (Date.now() - started) / 1000);
    });
}
