/**
 * The documentation holds together: the README is a short front door that maps
 * every page of docs/, every relative link in those pages reaches an existing
 * file (and, into a Markdown page, an existing heading), and each alert's
 * default runbook_url lands on its own runbook section.
 */
import { existsSync, readdirSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadStackConfig } from "../../config/load";
import { CONFIG_KEYS } from "../../config/schema";
import { alertNames, renderRules } from "../../render/monitoringPlan";
import { anchors, headings, links, readPage } from "../support/markdown";
import { PROJECT_DIR } from "./helpers";

const DOCS = path.join(PROJECT_DIR, "docs");
const pages = ["README.md", ...readdirSync(DOCS).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];
/** Where the default runbook base URL points in this repository (GitHub's blob URL of the main branch). */
const REPO_BLOB = "https://github.com/hx-infra/hx-backup/blob/main/";

/** What is wrong with one link of `page` ("" when it resolves). */
function brokenLink(page: string, target: string): string {
    const [file, anchor] = target.split("#", 2) as [string, string | undefined];
    const resolved = file === "" ? path.join(PROJECT_DIR, page) : path.resolve(path.dirname(path.join(PROJECT_DIR, page)), decodeURI(file));
    if (!resolved.startsWith(PROJECT_DIR + path.sep)) return `${target} leaves the repository`;
    if (!existsSync(resolved)) return `${target}: no file ${path.relative(PROJECT_DIR, resolved)}`;
    if (anchor !== undefined && resolved.endsWith(".md") && !anchors(readPage(resolved)).has(anchor)) return `${target}: ${path.relative(PROJECT_DIR, resolved)} has no heading with the anchor #${anchor}`;
    return "";
}

describe("the documentation", () => {
    it("has a README of at most 300 lines that links to every page of docs/", () => {
        const readme = readPage(path.join(PROJECT_DIR, "README.md"));
        expect(readme.split("\n").length).toBeLessThanOrEqual(300);
        const linked = new Set(links(readme).map((l) => l.target.split("#")[0]));
        for (const page of pages.filter((p) => p.startsWith("docs/"))) expect(linked, `README.md does not link to ${page}`).toContain(page);
    });

    it("has no broken relative link in any page: each reaches a file, and each anchor a heading of its page", () => {
        const broken = pages.flatMap((page) =>
            links(readPage(path.join(PROJECT_DIR, page)))
                .filter((l) => !/^(https?:|mailto:)/.test(l.target))
                .map((l) => ({ where: `${page}:${l.line}`, why: brokenLink(page, l.target) }))
                .filter((b) => b.why !== ""),
        );
        expect(broken).toEqual([]);
    });

    it("catches a broken link: a missing file, a missing anchor, and a path out of the repository", () => {
        expect(brokenLink("README.md", "docs/no-such-page.md")).toMatch(/no file docs\/no-such-page\.md/);
        expect(brokenLink("README.md", "docs/runbooks.md#no-such-alert")).toMatch(/has no heading with the anchor #no-such-alert/);
        expect(brokenLink("docs/operating.md", "#restoring")).toBe("");
        expect(brokenLink("docs/operating.md", "#backupfailed")).toMatch(/docs\/operating\.md has no heading/);
        expect(brokenLink("docs/operating.md", "../../etc/passwd")).toMatch(/leaves the repository/);
    });

    it("gives every alert, by its default runbook_url, its own section of docs/runbooks.md", () => {
        const base = String(CONFIG_KEYS.runbookBaseUrl.default);
        expect(base.startsWith(REPO_BLOB), `runbookBaseUrl's default ${base} is not a file of this repository`).toBe(true);
        const page = base.slice(REPO_BLOB.length);
        expect(page).toBe("docs/runbooks.md");
        const runbooks = readPage(path.join(PROJECT_DIR, page));
        const rules = (parse(renderRules(loadStackConfig("docs", { hosts: [{ name: "mon", address: "127.0.0.1", roles: ["monitoring"], remoteSync: false }], monitoringHost: "mon" }))) as {
            groups: { rules: { alert: string; annotations: { runbook_url: string } }[] }[];
        }).groups.flatMap((g) => g.rules);
        expect(rules.map((r) => r.alert)).toEqual(alertNames());
        const sections = new Set(headings(runbooks).filter((h) => h.level === 2).map((h) => h.text));
        for (const r of rules) {
            expect(r.annotations.runbook_url).toBe(`${base}#${r.alert.toLowerCase()}`);
            expect(sections, `docs/runbooks.md needs a "## ${r.alert}" section`).toContain(r.alert);
            expect(brokenLink("README.md", r.annotations.runbook_url.slice(REPO_BLOB.length)), r.alert).toBe("");
        }
    });
});
