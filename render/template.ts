/**
 * Fills `{{hx.name}}` placeholders in files under `templates/`. Every placeholder
 * must be given and every given value must be used, so a renamed placeholder
 * fails loudly instead of shipping a literal `{{hx.name}}` to a host.
 * Values are checked by the caller for the file's syntax (unit, sudoers, ...).
 */
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";

/** `HX_TEMPLATES_DIR` renders from another copy of templates/ (to review or benchmark a change). */
export const TEMPLATE_ROOT = process.env.HX_TEMPLATES_DIR ? path.resolve(process.env.HX_TEMPLATES_DIR) : path.resolve(__dirname, "..", "templates");

const cache = new Map<string, string>();

const listings = new Map<string, string[]>();

/** Every file under a folder of templates/, as paths relative to that folder, sorted; listed once per run. */
export function templateFiles(relativeDir: string): string[] {
    let files = listings.get(relativeDir);
    if (!files) {
        files = listTemplateFiles(relativeDir);
        listings.set(relativeDir, files);
    }
    return [...files];
}

function listTemplateFiles(relativeDir: string): string[] {
    return readdirSync(path.join(TEMPLATE_ROOT, relativeDir), { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => path.relative(path.join(TEMPLATE_ROOT, relativeDir), path.join(e.parentPath, e.name)))
        .sort();
}

export const SCRIPT_TEMPLATE_DIR = "scripts";

/** The step scripts' static POSIX-sh bodies (see stepScript). */
export const STEP_TEMPLATE_DIR = "steps";

/** Scripts shipped to every host: every .sh under templates/scripts, the library's lib/ included. */
export function scriptTemplates(): string[] {
    return templateFiles(SCRIPT_TEMPLATE_DIR).filter((f) => f.endsWith(".sh"));
}

/** Sourced, not run: the loader and everything under lib/. */
export const isLibrary = (script: string): boolean => script.endsWith("-lib.sh") || script.startsWith("lib/");

const stepBodies = new Map<string, string>();

/**
 * A step script's body (templates/steps) as it goes into a command text: without its comment lines (they are for
 * the reader of the template; every command text is stored in the state, once per step and host) and blank lines.
 * Here-documents are kept as they are.
 */
export function stepTemplate(name: string): string {
    const relative = `${STEP_TEMPLATE_DIR}/${name}.sh`;
    const text = readTemplate(relative);
    let body = stepBodies.get(text);
    if (body === undefined) {
        body = withoutComments(text);
        stepBodies.set(text, body);
    }
    return body;
}

function withoutComments(script: string): string {
    const out: string[] = [];
    let heredocEnd: string | undefined;
    for (const line of script.split("\n")) {
        if (heredocEnd !== undefined) {
            out.push(line);
            if (line.replace(/^\t+/, "") === heredocEnd) heredocEnd = undefined;
            continue;
        }
        if (/^\s*#/.test(line) || line.trim() === "") continue;
        out.push(line);
        const opened = /<<-?\s*['"]?([A-Za-z_][A-Za-z0-9_]*)['"]?/.exec(line);
        if (opened) heredocEnd = opened[1];
    }
    return out.length ? `${out.join("\n")}\n` : "";
}

export function readTemplate(relative: string): string {
    let text = cache.get(relative);
    if (text === undefined) {
        text = readFileSync(path.join(TEMPLATE_ROOT, relative), "utf8");
        cache.set(relative, text);
    }
    return text;
}

export function fillTemplate(name: string, text: string, values: Record<string, string | number>): string {
    const used = new Set<string>();
    const out = text.replace(/\{\{hx\.([A-Za-z][A-Za-z0-9]*)\}\}/g, (_, key: string) => {
        if (!(key in values)) throw new Error(`template ${name}: no value for {{hx.${key}}}`);
        used.add(key);
        return String(values[key]);
    });
    const unused = Object.keys(values).filter((k) => !used.has(k));
    if (unused.length) throw new Error(`template ${name}: values given but not used: ${unused.join(", ")}`);
    return out;
}

export function renderTemplate(relative: string, values: Record<string, string | number>): string {
    return fillTemplate(relative, readTemplate(relative), values);
}
