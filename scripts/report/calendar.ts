/**
 * Calendar arithmetic for the report: which day, ISO week, month and year a
 * time falls in (in the report's zone, as lib/manifest.sh hx_period_keys
 * counts them), and on which days a schedule runs.
 */
import type { RetentionClass } from "../../config/lifecycle";

const DAY_MS = 86_400_000;

const formatters = new Map<string, Intl.DateTimeFormat>();

/** YYYY-MM-DD of an instant in `zone`. */
export function dayOf(instant: Date, zone: string): string {
    let f = formatters.get(zone);
    if (!f) {
        f = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" });
        formatters.set(zone, f);
    }
    return f.format(instant);
}

/** Days are handled as UTC midnights of their calendar date, so arithmetic on them has no DST. */
export const dayNumber = (day: string): number => Date.parse(`${day}T00:00:00Z`) / DAY_MS;
export const dayFromNumber = (n: number): string => new Date(n * DAY_MS).toISOString().slice(0, 10);

/** ISO 8601 week (%G-W%V), as `date` prints it for hx_period_keys. */
export function isoWeek(day: string): string {
    const d = new Date(`${day}T00:00:00Z`);
    const weekday = (d.getUTCDay() + 6) % 7; // Monday 0
    const thursday = new Date(d.getTime() + (3 - weekday) * DAY_MS);
    const year = thursday.getUTCFullYear();
    const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / DAY_MS / 7) + 1;
    return `${year}-W${String(week).padStart(2, "0")}`;
}

/** The period of a day for a retention class: the key restic-style retention counts. */
export function periodKey(day: string, retentionClass: RetentionClass): string {
    switch (retentionClass) {
        case "daily":
            return day;
        case "weekly":
            return isoWeek(day);
        case "monthly":
            return day.slice(0, 7);
        case "yearly":
            return day.slice(0, 4);
    }
}

/** How many periods of a class run from `firstDay` to `lastDay`, both included. */
export function periodsBetween(firstDay: string, lastDay: string, retentionClass: RetentionClass): number {
    const [y1, m1] = [Number(firstDay.slice(0, 4)), Number(firstDay.slice(5, 7))];
    const [y2, m2] = [Number(lastDay.slice(0, 4)), Number(lastDay.slice(5, 7))];
    switch (retentionClass) {
        case "daily":
            return dayNumber(lastDay) - dayNumber(firstDay) + 1;
        case "weekly": {
            const monday = (day: string) => dayNumber(day) - ((new Date(`${day}T00:00:00Z`).getUTCDay() + 6) % 7);
            return (monday(lastDay) - monday(firstDay)) / 7 + 1;
        }
        case "monthly":
            return (y2 - y1) * 12 + (m2 - m1) + 1;
        case "yearly":
            return y2 - y1 + 1;
    }
}

const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/**
 * Whether a canonical OnCalendar expression (config/schedule.ts toOnCalendar:
 * `[Dow,..] *-MM|*-DD|* HH:MM:00`) fires on a calendar day. Only the date
 * part matters here; the time of day is the job's business.
 */
export function runsOnDay(onCalendar: string, day: string): boolean {
    const m = /^(?:([A-Za-z,]+) )?\*-(\*|[\d,]+)-(\*|[\d,]+) \S+$/.exec(onCalendar.trim());
    if (!m) throw new Error(`not a canonical OnCalendar expression: ${onCalendar}`);
    const [, dows, months, doms] = m;
    const d = new Date(`${day}T00:00:00Z`);
    if (dows && !dows.split(",").includes(WEEKDAYS[d.getUTCDay()])) return false;
    if (months !== "*" && !months.split(",").map(Number).includes(d.getUTCMonth() + 1)) return false;
    if (doms !== "*" && !doms.split(",").map(Number).includes(d.getUTCDate())) return false;
    return true;
}
