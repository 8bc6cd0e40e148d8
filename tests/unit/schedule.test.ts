/**
 * config/schedule.ts: cron and OnCalendar in, one canonical OnCalendar out,
 * with a description in words and the longest gap between runs. Every
 * canonical form is fed to the real `systemd-analyze calendar`, which is also
 * the oracle for the longest gap.
 */
import { describe, expect, it } from "vitest";
import { parseSchedule, ScheduleError } from "../../config/schedule";
import { CONFIG_KEYS } from "../../config/schema";
import { load, requireTools, run, skipWithout, stack, STACKS } from "./helpers";

const HOUR = 3600;
const DAY = 86_400;

/** cron -> canonical OnCalendar. */
const CRON: ReadonlyArray<readonly [string, string]> = [
    ["0 2 * * *", "*-*-* 02:00:00"],
    ["0 1 * * *", "*-*-* 01:00:00"],
    ["30 1 * * *", "*-*-* 01:30:00"],
    ["0 3 * * 0", "Sun *-*-* 03:00:00"],
    ["0 3 * * 7", "Sun *-*-* 03:00:00"],
    ["0 3 * * SUN", "Sun *-*-* 03:00:00"],
    ["15 4 * * mon", "Mon *-*-* 04:15:00"],
    ["0 2 * * 1-5", "Mon,Tue,Wed,Thu,Fri *-*-* 02:00:00"],
    ["0 2 * * MON-fri", "Mon,Tue,Wed,Thu,Fri *-*-* 02:00:00"],
    ["0 0 * * 6,0", "Sun,Sat *-*-* 00:00:00"],
    ["0 0 * * 5-7", "Sun,Fri,Sat *-*-* 00:00:00"],
    ["0 0 * * 0-7", "*-*-* 00:00:00"],
    ["0 0 * * 1,1,1", "Mon *-*-* 00:00:00"],
    ["0 */6 * * *", "*-*-* 00,06,12,18:00:00"],
    ["*/15 * * * *", "*-*-* *:00,15,30,45:00"],
    ["5,35 8-10 * * *", "*-*-* 08,09,10:05,35:00"],
    ["0 8-18/5 * * *", "*-*-* 08,13,18:00:00"],
    ["0 22/1 * * *", "*-*-* 22,23:00:00"],
    ["* * * * *", "*-*-* *:*:00"],
    ["0 * * * *", "*-*-* *:00:00"],
    ["0-59 0-23 * * *", "*-*-* *:*:00"],
    ["0 2 15 * *", "*-*-15 02:00:00"],
    ["0 2 1,15 * *", "*-*-01,15 02:00:00"],
    ["0 0 1 */3 *", "*-01,04,07,10-01 00:00:00"],
    ["0 4 * jan,JUL *", "*-01,07-* 04:00:00"],
    ["0 4 1 feb-apr *", "*-02,03,04-01 04:00:00"],
    ["0 12 * 12 *", "*-12-* 12:00:00"],
    ["0 0 1 1 *", "*-01-01 00:00:00"],
    ["  0   2  *  *  *  ", "*-*-* 02:00:00"],
    ["0 2 ? * *", "*-*-* 02:00:00"],
];

/** OnCalendar (and shorthands) -> canonical OnCalendar. */
const ON_CALENDAR: ReadonlyArray<readonly [string, string]> = [
    ["*-*-* 02:00:00", "*-*-* 02:00:00"],
    ["Sun *-*-* 03:00:00", "Sun *-*-* 03:00:00"],
    ["Sun *-*-* 03:00", "Sun *-*-* 03:00:00"],
    ["Mon..Fri *-*-* 02:00", "Mon,Tue,Wed,Thu,Fri *-*-* 02:00:00"],
    ["Sat,Sun 04:30", "Sun,Sat *-*-* 04:30:00"],
    ["mon *-*-* 02:00", "Mon *-*-* 02:00:00"],
    ["02:00", "*-*-* 02:00:00"],
    ["2:5", "*-*-* 02:05:00"],
    ["*-*-01 00:00", "*-*-01 00:00:00"],
    ["*-*-1..7 03:00", "*-*-01,02,03,04,05,06,07 03:00:00"],
    ["*-01,07-01 06:00:00", "*-01,07-01 06:00:00"],
    ["*-*-* *:0/15:00", "*-*-* *:00,15,30,45:00"],
    ["*-*-* 0/6:00", "*-*-* 00,06,12,18:00:00"],
    ["*-*-* *:*:00", "*-*-* *:*:00"],
    ["Mon *-*-01 02:00", "Mon *-*-01 02:00:00"],
    ["minutely", "*-*-* *:*:00"],
    ["hourly", "*-*-* *:00:00"],
    ["daily", "*-*-* 00:00:00"],
    ["Daily", "*-*-* 00:00:00"],
    ["weekly", "Mon *-*-* 00:00:00"],
    ["monthly", "*-*-01 00:00:00"],
    ["yearly", "*-01-01 00:00:00"],
    ["annually", "*-01-01 00:00:00"],
    ["quarterly", "*-01,04,07,10-01 00:00:00"],
    ["semiannually", "*-01,07-01 00:00:00"],
];

describe("cron is converted to OnCalendar", () => {
    it.each(CRON)("%j -> %j", (cron, onCalendar) => {
        const s = parseSchedule(cron);
        expect(s.onCalendar).toBe(onCalendar);
        expect(s.source).toBe(cron);
    });
});

describe("OnCalendar forms and shorthands are normalised", () => {
    it.each(ON_CALENDAR)("%j -> %j", (text, onCalendar) => {
        expect(parseSchedule(text).onCalendar).toBe(onCalendar);
    });

    it("full weekday names, as systemd accepts them (\"Monday\", \"saturday\")", () => {
        expect(parseSchedule("Monday *-*-* 02:00").onCalendar).toBe("Mon *-*-* 02:00:00");
        expect(parseSchedule("saturday,Sunday 02:00").onCalendar).toBe("Sun,Sat *-*-* 02:00:00");
    });

    it("the canonical form is a fixed point", () => {
        for (const [, canonical] of [...CRON, ...ON_CALENDAR]) expect(parseSchedule(canonical).onCalendar).toBe(canonical);
    });

    it("cron and the equivalent OnCalendar give the same schedule", () => {
        const a = parseSchedule("0 3 * * 0");
        const b = parseSchedule("Sun *-*-* 03:00:00");
        expect({ ...a, source: "" }).toEqual({ ...b, source: "" });
    });
});

describe("descriptions in words", () => {
    it.each([
        ["0 2 * * *", "every day at 02:00"],
        ["0 3 * * 0", "every Sunday at 03:00"],
        ["0 1 * * *", "every day at 01:00"],
        ["0 2 * * 1-5", "every Monday, Tuesday, Wednesday, Thursday and Friday at 02:00"],
        ["0 0 * * 6,0", "every Sunday and Saturday at 00:00"],
        ["0 */6 * * *", "every day at 00:00, 06:00, 12:00 and 18:00"],
        ["*/15 * * * *", "every hour at minute 0, 15, 30 and 45"],
        ["0 * * * *", "every hour at minute 0"],
        ["* * * * *", "every minute"],
        ["0 2 15 * *", "on day 15 of the month at 02:00"],
        ["0 0 1 */3 *", "on day 1 of the month in Jan, Apr, Jul and Oct at 00:00"],
        ["0 4 * jan,JUL *", "every day in Jan and Jul at 04:00"],
        ["weekly", "every Monday at 00:00"],
    ])("%j is %j", (text, description) => {
        expect(parseSchedule(text).description).toBe(description);
    });

    it("many times a day are summarised by count, first and last", () => {
        expect(parseSchedule("*/10 8-17 * * *").description).toMatch(/60 times a day from 08:00 to 17:50$/);
    });

    it("an OnCalendar with both a weekday and a day of month mentions both (systemd requires both to match)", () => {
        const d = parseSchedule("Mon *-*-01 02:00").description;
        expect(d).toMatch(/Monday/);
        expect(d).toMatch(/day 1\b/);
    });
});

describe("maxIntervalSeconds: the longest gap between runs", () => {
    it.each([
        ["0 2 * * *", DAY],
        ["daily", DAY],
        ["0 */6 * * *", 6 * HOUR],
        ["*/15 * * * *", 900],
        ["* * * * *", 60],
        ["hourly", HOUR],
        ["5,35 8-10 * * *", 21 * HOUR + 30 * 60],
        ["0 2 * * 1-5", 3 * DAY],
        ["0 0 1 * *", 31 * DAY],
        ["0 0 1 */3 *", 92 * DAY],
        ["0 0 1 1 *", 366 * DAY],
    ])("%j -> %d s", (text, seconds) => {
        expect(parseSchedule(text).maxIntervalSeconds).toBe(seconds);
    });

    it.each([0, 1, 2, 3, 4, 5, 6])("weekly on day-of-week %d is 604800 s", (dow) => {
        expect(parseSchedule(`0 3 * * ${dow}`).maxIntervalSeconds).toBe(7 * DAY);
    });

    it("the seed's weekly database schedule (Sunday 03:00) is one week", () => {
        expect(load({ hosts: [] }).schedules.databaseWeekly.maxIntervalSeconds).toBe(7 * DAY);
        expect(parseSchedule("weekly").maxIntervalSeconds).toBe(7 * DAY);
    });

    it("weekends only: the longest gap is Sunday to Saturday", () => {
        expect(parseSchedule("0 0 * * 6,0").maxIntervalSeconds).toBe(6 * DAY);
    });
});

describe("invalid schedules", () => {
    it.each([
        ["", /empty/],
        ["   ", /empty/],
        ["60 2 * * *", /minute 60 is outside 0-59/],
        ["0 24 * * *", /hour 24 is outside 0-23/],
        ["0 2 32 * *", /day-of-month 32 is outside 1-31/],
        ["0 2 0 * *", /day-of-month 0 is outside 1-31/],
        ["0 2 * 13 *", /month 13 is outside 1-12/],
        ["0 2 * 0 *", /month 0 is outside 1-12/],
        ["0 2 * * 8", /day-of-week 8 is outside 0-7/],
        ["0 2 * * 5-1", /runs backwards/],
        ["0 2 * * foo", /not a number/],
        ["*/0 * * * *", /step 0 is outside/],
        ["0 2 1-2-3 * *", /malformed/],
        ["0 2 1,,2 * *", /empty item/],
        ["0 2 */2/3 * *", /two steps/],
        ["0 2 1 * 1", /both day-of-month and day-of-week/],
        ["0 2 31 2 *", /never runs/],
        ["0 2 * *", /OnCalendar must look like/],
        ["2024-*-* 02:00", /fixed year never repeats/],
        ["*-*-* 02:00:30", /seconds must be 00/],
        ["*-*-* 02", /HH:MM/],
        ["*-* 02:00", /YEAR-MONTH-DAY/],
        ["Mon..Xyz *-*-* 02:00", /not a number/],
    ])("%j is refused: %s", (text, reason) => {
        expect(() => parseSchedule(text)).toThrow(ScheduleError);
        expect(() => parseSchedule(text)).toThrow(reason);
    });

    it.each([
        "0 2 * * *; rm -rf /",
        "0 2 * * * && reboot",
        "0 2 * * * | sh",
        "$(reboot)",
        "`id`",
        "0 2 * * *\n",
        "0 2 * * *\r",
        "0\t2 * * *",
        "0 2 * * * > /etc/passwd",
        "'0 2 * * *'",
        "@daily",
        "*-*-* 02:00 ~ x",
    ])("shell metacharacters are refused: %j", (text) => {
        expect(() => parseSchedule(text)).toThrow(/characters outside cron\/OnCalendar syntax/);
    });

    it("a non-string is refused", () => {
        expect(() => parseSchedule(undefined as unknown as string)).toThrow(ScheduleError);
    });
});

/** Every canonical OnCalendar this module produces in these tests and in the stacks. */
function allCanonical(): string[] {
    const out = new Set<string>();
    for (const [text] of [...CRON, ...ON_CALENDAR]) out.add(parseSchedule(text).onCalendar);
    for (const key of Object.keys(CONFIG_KEYS).filter((k) => k.startsWith("schedule"))) {
        out.add(parseSchedule(String((CONFIG_KEYS as Record<string, { default: unknown }>)[key].default)).onCalendar);
    }
    for (const name of STACKS) for (const s of Object.values(stack(name).schedules)) out.add(s.onCalendar);
    return [...out];
}

const DOW_ORDER = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/** Weekday prefix as a set (systemd orders Mon..Sun and folds runs into `A..B`), the rest verbatim. */
function comparable(expr: string): string {
    const parts = expr.split(" ");
    if (!/^[A-Z]/.test(parts[0])) return expr;
    const days = new Set<number>();
    for (const item of parts[0].split(",")) {
        const [a, b] = item.split("..");
        const lo = DOW_ORDER.indexOf(a);
        const hi = b === undefined ? lo : DOW_ORDER.indexOf(b);
        if (lo < 0 || hi < 0) throw new Error(`unknown weekday in ${expr}`);
        for (let d = lo; d <= hi; d++) days.add(d);
    }
    return [[...days].sort().map((d) => DOW_ORDER[d]).join(","), ...parts.slice(1)].join(" ");
}

/** Splits `systemd-analyze calendar` output into one block per expression. */
function calendarBlocks(stdout: string): { original?: string; normalized: string; elapses: number[] }[] {
    return stdout
        .split(/\n\s*\n/)
        .filter((b) => b.includes("Normalized form:"))
        .map((block) => {
            const original = /Original form: (.+)/.exec(block)?.[1].trim();
            const normalized = /Normalized form: (.+)/.exec(block)![1].trim();
            const elapses = [...block.matchAll(/(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC/g)].map((m) => Date.parse(`${m[1].replace(" ", "T")}Z`));
            return { ...(original ? { original } : {}), normalized, elapses };
        });
}

const needsSystemd = skipWithout("systemd-analyze");

describe.skipIf(needsSystemd)("the real systemd-analyze calendar", () => {
    const env = { ...process.env, TZ: "UTC", SYSTEMD_COLORS: "0", LC_ALL: "C" };

    it("accepts every canonical OnCalendar we produce, normalising it to the same schedule", () => {
        requireTools("systemd-analyze");
        const exprs = allCanonical();
        expect(exprs.length).toBeGreaterThan(30);
        const r = run("systemd-analyze", ["calendar", ...exprs], { env });
        expect(r.stderr).toBe("");
        expect(r.status).toBe(0);
        const blocks = calendarBlocks(r.stdout);
        expect(blocks).toHaveLength(exprs.length);
        blocks.forEach((b, i) => {
            expect(b.original ?? b.normalized).toBe(exprs[i]);
            expect(comparable(b.normalized), `systemd normalised ${exprs[i]} to ${b.normalized}`).toBe(comparable(exprs[i]));
            expect(b.elapses.length).toBe(1);
        });
    });

    it("the harness notices an expression systemd refuses", () => {
        requireTools("systemd-analyze");
        const r = run("systemd-analyze", ["calendar", "*-*-* 02:00:00", "*-*-* 25:00:00"], { env });
        expect(r.status).not.toBe(0);
        expect(r.stderr).toMatch(/Failed to parse calendar specification '\*-\*-\* 25:00:00'/);
    });

    // systemd computes the next elapses itself; the longest gap among them must equal ours.
    it.each([
        ["0 2 * * *", 30],
        ["0 3 * * 0", 30],
        ["0 3 * * 6", 30],
        ["0 3 * * 1", 30],
        ["0 2 * * 1-5", 60],
        ["0 0 * * 6,0", 60],
        ["0 */6 * * *", 40],
        ["*/15 9-17 * * *", 200],
        ["5,35 8-10 * * *", 40],
        ["0 0 1 * *", 60],
        ["0 0 1 */3 *", 40],
        ["0 0 1 1 *", 10],
    ])("maxIntervalSeconds of %j matches the gaps of systemd's next %d elapses", (text, iterations) => {
        requireTools("systemd-analyze");
        const s = parseSchedule(text);
        const r = run("systemd-analyze", ["calendar", `--iterations=${iterations}`, "--base-time=2025-01-01 00:00:00 UTC", s.onCalendar], { env });
        expect(r.status, r.stderr).toBe(0);
        const [block] = calendarBlocks(r.stdout);
        expect(block.elapses).toHaveLength(iterations);
        const gaps = block.elapses.slice(1).map((t, i) => (t - block.elapses[i]) / 1000);
        expect(s.maxIntervalSeconds).toBe(Math.max(...gaps));
    });
});
