/**
 * report.html in headless Chromium (playwright-core driving the system's
 * /usr/bin/chromium): for the integration test's checks of the rendered page
 * and for the screenshot the sandbox leaves as evidence. A throwaway browser
 * profile, no network needed (the page loads nothing; the caller can check
 * the requests it made).
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import type { Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

/** Opens the page at a 1280x900 viewport and hands it, and every URL it requested, to `use`; closes the browser after. */
export async function withReportPage<T>(htmlFile: string, use: (page: Page, requests: readonly string[]) => Promise<T>, executablePath = CHROMIUM): Promise<T> {
    const { chromium } = await import("playwright-core");
    const profile = mkdtempSync(path.join(tmpdir(), "hx-report-chromium-"));
    const browser = await chromium.launchPersistentContext(profile, {
        executablePath,
        headless: true,
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        viewport: { width: 1280, height: 900 },
    });
    try {
        const page = await browser.newPage();
        const requests: string[] = [];
        page.on("request", (req) => requests.push(req.url()));
        await page.goto(pathToFileURL(htmlFile).href);
        return await use(page, requests);
    } finally {
        await browser.close();
        rmSync(profile, { recursive: true, force: true });
    }
}

/** A full-page PNG of the open page. */
export async function screenshotPage(page: Page, pngFile: string): Promise<void> {
    mkdirSync(path.dirname(pngFile), { recursive: true });
    await page.screenshot({ path: pngFile, fullPage: true });
}

/** A full-page PNG of report.html. */
export function screenshotReport(htmlFile: string, pngFile: string, executablePath = CHROMIUM): Promise<void> {
    return withReportPage(htmlFile, (page) => screenshotPage(page, pngFile), executablePath);
}
