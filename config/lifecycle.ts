/**
 * S3 lifecycle tiers per retention class, and the AWS constraints they must meet.
 *
 * Each backup object is uploaded under one retention class (daily, weekly,
 * monthly, yearly). A class moves down the storage tiers and expires when its
 * local retention would have dropped it. The constraints below are the ones in
 * AWS's "Constraints and considerations for transitions" and the
 * PutBucketLifecycleConfiguration reference; `validateLifecycleRule` checks a
 * concrete rule against them.
 */

export type RetentionClass = "daily" | "weekly" | "monthly" | "yearly";
export const RETENTION_CLASSES: readonly RetentionClass[] = ["daily", "weekly", "monthly", "yearly"];

export type TransitionStorageClass = "STANDARD_IA" | "ONEZONE_IA" | "INTELLIGENT_TIERING" | "GLACIER_IR" | "GLACIER" | "DEEP_ARCHIVE";

/** AWS's transition waterfall: an object only moves to a class further down. */
const WATERFALL: readonly TransitionStorageClass[] = ["STANDARD_IA", "INTELLIGENT_TIERING", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"];

/** Minimum storage duration in days; leaving earlier is billed as if it stayed. */
export const MINIMUM_STORAGE_DAYS: Record<TransitionStorageClass, number> = {
    STANDARD_IA: 30,
    ONEZONE_IA: 30,
    INTELLIGENT_TIERING: 0,
    GLACIER_IR: 90,
    GLACIER: 90,
    DEEP_ARCHIVE: 180,
};

export interface Transition {
    readonly days: number;
    readonly storageClass: TransitionStorageClass;
}

export interface ClassLifecycle {
    readonly retentionClass: RetentionClass;
    readonly transitions: readonly Transition[];
    readonly expirationDays: number;
}

export interface TierSettings {
    /** 0 disables a tier. */
    readonly iaDays: number;
    readonly glacierDays: number;
    readonly glacierClass: "GLACIER_IR" | "GLACIER";
    readonly deepArchiveDays: number;
}

/**
 * Checks one rule against AWS's constraints. Returns problems in words, empty when valid.
 */
export function validateLifecycleRule(rule: ClassLifecycle): string[] {
    const problems: string[] = [];
    let previous: Transition | null = null;
    for (const t of rule.transitions) {
        if (!Number.isInteger(t.days) || t.days < 0) problems.push(`${t.storageClass} transition day ${t.days} must be a whole number >= 0`);
        if ((t.storageClass === "STANDARD_IA" || t.storageClass === "ONEZONE_IA") && t.days < 30) {
            problems.push(`${t.storageClass} transition at day ${t.days} is too early: AWS requires at least 30 days in STANDARD first`);
        }
        if (previous) {
            if (WATERFALL.indexOf(t.storageClass) <= WATERFALL.indexOf(previous.storageClass)) {
                problems.push(`${previous.storageClass} -> ${t.storageClass} goes up the storage waterfall; AWS only transitions downwards`);
            }
            if (t.days <= previous.days) problems.push(`${t.storageClass} transition at day ${t.days} must come after ${previous.storageClass} at day ${previous.days}`);
            const stay = t.days - previous.days;
            const minimum = MINIMUM_STORAGE_DAYS[previous.storageClass];
            if (stay < minimum) {
                problems.push(`${t.storageClass} at day ${t.days} leaves ${previous.storageClass} after ${stay} days, inside its ${minimum}-day minimum storage duration; set it to day ${previous.days + minimum} or later`);
            }
        }
        previous = t;
    }
    if (!Number.isInteger(rule.expirationDays) || rule.expirationDays < 1) {
        problems.push(`expiration ${rule.expirationDays} must be a whole number of days >= 1`);
    } else if (previous) {
        if (rule.expirationDays <= previous.days) {
            problems.push(`expiration at day ${rule.expirationDays} is not after the last transition (${previous.storageClass} at day ${previous.days})`);
        } else {
            const minimum = MINIMUM_STORAGE_DAYS[previous.storageClass];
            if (rule.expirationDays - previous.days < minimum) {
                problems.push(`expiration at day ${rule.expirationDays} deletes objects ${rule.expirationDays - previous.days} days after their ${previous.storageClass} transition, inside its ${minimum}-day minimum storage duration; expire at day ${previous.days + minimum} or later, or before day ${previous.days + 1} to skip ${previous.storageClass}`);
            }
        }
    }
    return problems;
}

/** Days a class is kept locally, plus one day of slack for upload timing. */
export function derivedExpirationDays(retentionClass: RetentionClass, count: number): number {
    const periodDays: Record<RetentionClass, number> = { daily: 1, weekly: 7, monthly: 31, yearly: 366 };
    return Math.max(1, count * periodDays[retentionClass] + 1);
}

function tiersOf(tiers: TierSettings): Transition[] {
    const out: Transition[] = [];
    if (tiers.iaDays > 0) out.push({ days: tiers.iaDays, storageClass: "STANDARD_IA" });
    if (tiers.glacierDays > 0) out.push({ days: tiers.glacierDays, storageClass: tiers.glacierClass });
    if (tiers.deepArchiveDays > 0) out.push({ days: tiers.deepArchiveDays, storageClass: "DEEP_ARCHIVE" });
    return out;
}

/**
 * Builds one class's rule. A derived expiration takes only the tiers the object
 * can stay in for their full minimum duration; an explicit expiration takes
 * every tier that starts before it, so a bad explicit value is reported, not
 * silently reshaped.
 */
export function classLifecycle(retentionClass: RetentionClass, expirationDays: number, explicit: boolean, tiers: TierSettings): ClassLifecycle {
    const all = tiersOf(tiers);
    let transitions = all.filter((t) => t.days < expirationDays);
    if (!explicit) {
        while (transitions.length) {
            const last = transitions[transitions.length - 1];
            if (expirationDays - last.days >= MINIMUM_STORAGE_DAYS[last.storageClass]) break;
            transitions = transitions.slice(0, -1);
        }
    }
    return { retentionClass, transitions, expirationDays };
}

/** Checks the tier settings on their own (order, IA minimum, gaps), independent of any class. */
export function validateTiers(tiers: TierSettings): string[] {
    return validateLifecycleRule({ retentionClass: "yearly", transitions: tiersOf(tiers), expirationDays: 100_000 });
}
