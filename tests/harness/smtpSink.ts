/**
 * A real SMTP server on loopback (the npm package smtp-server) that keeps
 * every message it receives, parsed (mailparser), for the notification tests.
 * It accepts AUTH PLAIN/LOGIN without TLS (loopback only) and records the
 * credentials it was given, so a test can check what Alertmanager sent.
 */
import { simpleParser, type ParsedMail } from "mailparser";
import { SMTPServer } from "smtp-server";
import { freePort } from "../../scripts/sandbox/host";

export interface ReceivedMail {
    readonly raw: string;
    readonly parsed: ParsedMail;
    /** AUTH username and password the client used ("" without AUTH). */
    readonly auth: { readonly username: string; readonly password: string };
}

export interface SmtpSink {
    readonly port: number;
    readonly received: ReceivedMail[];
    stop(): Promise<void>;
}

export async function startSmtpSink(): Promise<SmtpSink> {
    const port = await freePort();
    const received: ReceivedMail[] = [];
    const server = new SMTPServer({
        secure: false,
        disabledCommands: ["STARTTLS"],
        authOptional: true,
        allowInsecureAuth: true,
        logger: false,
        onAuth(auth, _session, callback) {
            callback(null, { user: { username: auth.username ?? "", password: auth.password ?? "" } });
        },
        onData(stream, session, callback) {
            const chunks: Buffer[] = [];
            stream.on("data", (c: Buffer) => chunks.push(c));
            stream.on("end", () => {
                const raw = Buffer.concat(chunks).toString("utf8");
                const user = (session.user ?? {}) as { username?: string; password?: string };
                simpleParser(raw)
                    .then((parsed) => received.push({ raw, parsed, auth: { username: user.username ?? "", password: user.password ?? "" } }))
                    .finally(() => callback());
            });
        },
    });
    await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => resolve());
    });
    return { port, received, stop: () => new Promise<void>((r) => server.close(() => r())) };
}
