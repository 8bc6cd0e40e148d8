/**
 * Schedules: cron (as in the seed document) or systemd OnCalendar in, one
 * canonical OnCalendar expression out, plus a plain-words description and the
 * longest gap between two runs (the basis of the BackupDelayed alert).
 *
 * Both syntaxes are parsed into the same field sets, so every schedule that
 * passes here is emitted in one shape that `systemd-analyze calendar` accepts
 * (the unit tests run it on every form).
 */

export interface Schedule {
    /** The value as configured. */
    readonly source: string;
    /** Canonical systemd OnCalendar expression. */
    readonly onCalendar: string;
    /** Plain words, e.g. "every Sunday at 03:00". */
    readonly description: string;
    /** Longest gap between two consecutive runs, in seconds. */
    readonly maxIntervalSeconds: number;
}

interface FieldSets {
    minute: number[];
    hour: number[];
    /** null = every day of the month. */
    dom: number[] | null;
    /** null = every month. */
    month: number[] | null;
    /** null = every weekday; 0 = Sunday. */
    dow: number[] | null;
}

export class ScheduleError extends Error {}

const DOW_NAMES = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const DOW_LONG = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTH_LONG = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

const range = (lo: number, hi: number): number[] => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);

function parseNumber(token: string, lo: number, hi: number, names: string[] | null, what: string): number {
    const lower = token.toLowerCase();
    if (names) {
        // Full names or their three-letter forms, as cron and systemd accept them.
        const idx = names.findIndex((n) => lower === n.toLowerCase() || lower === n.toLowerCase().slice(0, 3));
        if (idx >= 0) return idx + (what === "month" ? 1 : 0);
    }
    if (!/^\d+$/.test(token)) throw new ScheduleError(`${what} "${token}" is not a number`);
    const n = Number(token);
    if (n < lo || n > hi) throw new ScheduleError(`${what} ${n} is outside ${lo}-${hi}`);
    return n;
}

/**
 * Parses one field: `*`, `N`, `A-B` (cron) or `A..B` (systemd), lists with `,`,
 * and steps `/S`. Returns null for "every value".
 */
function parseField(text: string, lo: number, hi: number, what: string, names: string[] | null = null): number[] | null {
    if (text === "*" || text === "?") return null;
    const out = new Set<number>();
    for (const part of text.split(",")) {
        if (part === "") throw new ScheduleError(`empty item in ${what} "${text}"`);
        const [base, stepText, extra] = part.split("/");
        if (extra !== undefined) throw new ScheduleError(`${what} "${part}" has two steps`);
        const step = stepText === undefined ? 1 : parseNumber(stepText, 1, hi, null, `${what} step`);
        let first: number;
        let last: number;
        if (base === "*") {
            [first, last] = [lo, hi];
        } else {
            const bounds = base.includes("..") ? base.split("..") : base.split("-");
            if (bounds.length > 2) throw new ScheduleError(`${what} range "${base}" is malformed`);
            first = parseNumber(bounds[0], lo, hi, names, what);
            last = bounds.length === 2 ? parseNumber(bounds[1], lo, hi, names, what) : stepText === undefined ? first : hi;
            if (last < first) throw new ScheduleError(`${what} range "${base}" runs backwards`);
        }
        for (let v = first; v <= last; v += step) out.add(v);
    }
    const values = [...out].sort((a, b) => a - b);
    return values.length === hi - lo + 1 ? null : values;
}

function parseCron(text: string): FieldSets {
    const fields = text.trim().split(/\s+/);
    if (fields.length !== 5) throw new ScheduleError(`cron needs 5 fields (minute hour day-of-month month day-of-week), got ${fields.length}`);
    const [m, h, dom, mon, dow] = fields;
    const minute = parseField(m, 0, 59, "minute") ?? range(0, 59);
    const hour = parseField(h, 0, 23, "hour") ?? range(0, 23);
    const dows = parseField(dow, 0, 7, "day-of-week", DOW_LONG);
    const sets: FieldSets = {
        minute,
        hour,
        dom: parseField(dom, 1, 31, "day-of-month"),
        month: parseField(mon, 1, 12, "month", MONTH_LONG),
        dow: dows === null ? null : [...new Set(dows.map((d) => d % 7))].sort((a, b) => a - b),
    };
    if (sets.dow !== null && sets.dow.length === 7) sets.dow = null;
    if (sets.dom !== null && sets.dow !== null) {
        // cron ORs the two day fields; systemd ANDs them. Refuse rather than change meaning.
        throw new ScheduleError("cron with both day-of-month and day-of-week set means either day, which systemd cannot express; split it into two schedules or use one field");
    }
    return sets;
}

const SHORTHANDS: Record<string, string> = {
    minutely: "*-*-* *:*:00",
    hourly: "*-*-* *:00:00",
    daily: "*-*-* 00:00:00",
    weekly: "Mon *-*-* 00:00:00",
    monthly: "*-*-01 00:00:00",
    yearly: "*-01-01 00:00:00",
    annually: "*-01-01 00:00:00",
    quarterly: "*-01,04,07,10-01 00:00:00",
    semiannually: "*-01,07-01 00:00:00",
};

function parseOnCalendar(text: string): FieldSets {
    const expanded = SHORTHANDS[text.trim().toLowerCase()] ?? text.trim();
    const parts = expanded.split(/\s+/);
    let dowPart: string | null = null;
    if (parts.length && /^[A-Za-z]/.test(parts[0])) dowPart = parts.shift()!;
    if (parts.length === 1) parts.unshift("*-*-*");
    if (parts.length !== 2) throw new ScheduleError("OnCalendar must look like \"[Mon,Tue] *-*-* HH:MM[:SS]\"");
    const [datePart, timePart] = parts;
    const date = datePart.split("-");
    if (date.length !== 3) throw new ScheduleError(`date "${datePart}" must be YEAR-MONTH-DAY`);
    if (date[0] !== "*") throw new ScheduleError("a fixed year never repeats; use * for the year");
    const time = timePart.split(":");
    if (time.length < 2 || time.length > 3) throw new ScheduleError(`time "${timePart}" must be HH:MM or HH:MM:SS`);
    if (time.length === 3 && !/^0+$/.test(time[2])) throw new ScheduleError("seconds must be 00; backups run at minute resolution");
    const dows = dowPart === null ? null : parseField(dowPart, 0, 6, "weekday", DOW_LONG);
    return {
        minute: parseField(time[1], 0, 59, "minute") ?? range(0, 59),
        hour: parseField(time[0], 0, 23, "hour") ?? range(0, 23),
        month: parseField(date[1], 1, 12, "month"),
        dom: parseField(date[2], 1, 31, "day-of-month"),
        dow: dows,
    };
}

const pad = (n: number): string => String(n).padStart(2, "0");
const list = (values: number[] | null, width = 2): string =>
    values === null ? "*" : values.map((v) => (width === 2 ? pad(v) : String(v))).join(",");

function toOnCalendar(s: FieldSets): string {
    const dow = s.dow === null ? "" : `${s.dow.map((d) => DOW_NAMES[d]).join(",")} `;
    const minute = s.minute.length === 60 ? "*" : list(s.minute);
    const hour = s.hour.length === 24 ? "*" : list(s.hour);
    return `${dow}*-${list(s.month)}-${list(s.dom)} ${hour}:${minute}:00`;
}

function joinWords(words: string[], conjunction = "and"): string {
    return words.length <= 1 ? words.join("") : `${words.slice(0, -1).join(", ")} ${conjunction} ${words[words.length - 1]}`;
}

function describe(s: FieldSets): string {
    let when: string;
    if (s.minute.length === 60 && s.hour.length === 24) when = "every minute";
    else if (s.hour.length === 24) when = `every hour at minute ${joinWords(s.minute.map(String))}`;
    else {
        const times = s.hour.flatMap((h) => s.minute.map((m) => `${pad(h)}:${pad(m)}`));
        when = times.length > 6 ? `at ${times.length} times a day from ${times[0]} to ${times[times.length - 1]}` : `at ${joinWords(times)}`;
    }
    let days = "every day";
    if (s.dow !== null) days = `every ${joinWords(s.dow.map((d) => DOW_LONG[d]))}`;
    if (s.dom !== null) {
        // systemd requires both to match when both are set.
        days = `on day ${joinWords(s.dom.map(String))} of the month${s.dow === null ? "" : ` if it is a ${joinWords(s.dow.map((d) => DOW_LONG[d]), "or")}`}`;
    }
    const months = s.month === null ? "" : ` in ${joinWords(s.month.map((m) => MONTH_LONG[m - 1].slice(0, 3)))}`;
    return `${days}${months} ${when}`.replace(/^every day every/, "every");
}

/**
 * Longest gap between runs: walks eight years (two leap cycles) run by run and
 * takes the largest gap inside that window, so every weekday, month length
 * and leap day is seen at least twice.
 */
function maxInterval(s: FieldSets): number {
    const minutes = new Set(s.minute);
    const hours = new Set(s.hour);
    const doms = s.dom && new Set(s.dom);
    const months = s.month && new Set(s.month);
    const dows = s.dow && new Set(s.dow);
    let previous: number | null = null;
    let longest = 0;
    const start = Date.UTC(2024, 0, 1);
    const days = 2 * (366 + 365 * 3);
    for (let day = 0; day < days; day++) {
        const d = new Date(start + day * 86_400_000);
        if (doms && !doms.has(d.getUTCDate())) continue;
        if (months && !months.has(d.getUTCMonth() + 1)) continue;
        if (dows && !dows.has(d.getUTCDay())) continue;
        for (const h of hours) {
            for (const m of minutes) {
                const t = d.getTime() / 1000 + h * 3600 + m * 60;
                if (previous !== null) longest = Math.max(longest, t - previous);
                previous = t;
            }
        }
    }
    if (previous === null) throw new ScheduleError("never runs (no date matches)");
    if (longest === 0) throw new ScheduleError("runs only once in eight years; pick a schedule that repeats");
    return longest;
}

const CRON_SHAPE = /^\s*\S+\s+\S+\s+\S+\s+\S+\s+\S+\s*$/;
const SAFE_CHARS = /^[A-Za-z0-9*?,./:\- ]+$/;

/** Parses a cron or OnCalendar schedule. Throws ScheduleError with the reason. */
const parsed = new Map<string, Schedule>();

/** Parses a schedule; the same source string is parsed once per run (every host's plan asks again). */
export function parseSchedule(source: string): Schedule {
    const known = typeof source === "string" ? parsed.get(source) : undefined;
    if (known) return known;
    const schedule = parseScheduleUncached(source);
    parsed.set(source, schedule);
    return schedule;
}

function parseScheduleUncached(source: string): Schedule {
    if (typeof source !== "string" || source.trim() === "") throw new ScheduleError("schedule is empty");
    if (!SAFE_CHARS.test(source)) throw new ScheduleError("schedule has characters outside cron/OnCalendar syntax");
    const isCron = CRON_SHAPE.test(source) && !source.includes(":");
    const sets = isCron ? parseCron(source) : parseOnCalendar(source);
    return {
        source,
        onCalendar: toOnCalendar(sets),
        description: describe(sets),
        maxIntervalSeconds: maxInterval(sets),
    };
}
