/** Headings and links of the project's Markdown pages, read the way GitHub renders them. */
import { readFileSync } from "node:fs";

/** GitHub's anchor for a heading's text: lower case, punctuation dropped (code ticks too), spaces to hyphens. */
export function headingAnchor(heading: string): string {
    return heading
        .trim()
        .toLowerCase()
        .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
        .replace(/[^\p{L}\p{N}\s_-]/gu, "")
        .replace(/\s/g, "-");
}

/** The page's headings outside code fences, in order. */
export function headings(markdown: string): { level: number; text: string }[] {
    const out: { level: number; text: string }[] = [];
    let fenced = false;
    for (const line of markdown.split("\n")) {
        if (line.startsWith("```")) fenced = !fenced;
        const m = fenced ? null : /^(#{1,6}) (.+)$/.exec(line);
        if (m) out.push({ level: m[1]!.length, text: m[2]!.trim() });
    }
    return out;
}

/** Every anchor the page has: one per heading, a repeated one suffixed -1, -2, ... as GitHub does. */
export function anchors(markdown: string): Set<string> {
    const seen = new Map<string, number>();
    const out = new Set<string>();
    for (const h of headings(markdown)) {
        const a = headingAnchor(h.text);
        const n = seen.get(a) ?? 0;
        out.add(n === 0 ? a : `${a}-${n}`);
        seen.set(a, n + 1);
    }
    return out;
}

/** The page's Markdown links outside code fences and inline code: target as written, and its line. */
export function links(markdown: string): { target: string; line: number }[] {
    const out: { target: string; line: number }[] = [];
    let fenced = false;
    markdown.split("\n").forEach((line, i) => {
        if (line.startsWith("```")) fenced = !fenced;
        if (fenced) return;
        const prose = line.replace(/`[^`]*`/g, "");
        for (const m of prose.matchAll(/\]\(([^)\s]+)\)/g)) out.push({ target: m[1]!, line: i + 1 });
    });
    return out;
}

export const readPage = (file: string): string => readFileSync(file, "utf8");
