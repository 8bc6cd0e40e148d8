/**
 * The one quoting function: every value that reaches a shell on a host goes
 * through `shellQuote`. Single quotes make the value inert data (no expansion,
 * no word splitting, no globbing); an embedded quote is closed, escaped and
 * reopened. NUL cannot be passed through any shell, so it is refused.
 */
export function shellQuote(value: string | number): string {
    const text = String(value);
    if (text.includes("\0")) throw new Error(`refusing to pass a NUL byte to a shell: ${JSON.stringify(text)}`);
    if (text !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(text)) return text;
    return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** Joins a command and its arguments, each quoted. */
export function shellCommand(...argv: Array<string | number>): string {
    return argv.map(shellQuote).join(" ");
}
