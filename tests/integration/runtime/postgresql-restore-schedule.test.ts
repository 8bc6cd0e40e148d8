/**
 * The PostgreSQL restore's schedule (lib/source/postgresql-restore.sh), with
 * pg_restore and the artifact stubbed: how the TOC is split into lists, and
 * in which order and when the index and key-constraint builds start. With the
 * manifest's content.postData (the index sizes the dump records), heaviest
 * first and each once its table is loaded; without it (an older artifact),
 * round-robin in TOC order, as before.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { missingTools, removeDir, run, tempDir } from "../../support/env";
import { SCRIPTS_SRC } from "../../support/host";

const missing = missingTools(["jq", "awk", "sort"]);
const LIB = join(SCRIPTS_SRC, "hx-backup-lib.sh");

const TOC = `;
; Archive created at 2026-12-08 00:37:00 UTC
;
215; 1259 16390 TABLE public big postgres
216; 1259 16395 TABLE public small postgres
3360; 0 16390 TABLE DATA public big postgres
3361; 0 16395 TABLE DATA public small postgres
3200; 2606 16400 CONSTRAINT public big big_pkey postgres
3201; 2606 16401 CONSTRAINT public small small_pkey postgres
3210; 1259 16402 INDEX public big_note postgres
3211; 1259 16403 INDEX public small_note postgres
3212; 1259 16404 INDEX public mv_n postgres
3213; 0 0 INDEX ATTACH public parted_1_x_idx postgres
3220; 2606 16410 FK CONSTRAINT public small small_big_fkey postgres
`;

const POST_DATA = [
    { toc: "2606 16400", table: "public.big", tableOid: 16390, tableBytes: 40_000_000_000, indexBytes: 2_000_000 },
    { toc: "2606 16401", table: "public.small", tableOid: 16395, tableBytes: 8192, indexBytes: 16_384 },
    { toc: "1259 16402", table: "public.big", tableOid: 16390, tableBytes: 40_000_000_000, indexBytes: 3_000_000 },
    { toc: "1259 16403", table: "public.small", tableOid: 16395, tableBytes: 8192, indexBytes: 16_384 },
];

const manifest = (postData: boolean) => ({
    content: {
        format: "custom",
        tables: [
            { table: "public.big", rows: 100_000 },
            { table: "public.small", rows: 10 },
        ],
        ...(postData ? { postData: POST_DATA } : {}),
    },
});

/** Source the library with the stream and pg_restore stubbed, then run SCRIPT in DIR. */
async function inLib(dir: string, m: object, script: string): Promise<string> {
    writeFileSync(join(dir, "m.json"), JSON.stringify(m));
    writeFileSync(join(dir, "toc.txt"), TOC);
    mkdirSync(join(dir, "out"));
    const r = await run("bash", ["-c", `set -Eeuo pipefail; source "$1"; cd "$2"
        hx_open_part() { :; }
        pg_restore() { cat toc.txt; }
        hx_info() { :; }
        ${script}`, "_", LIB, dir]);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
}

const lines = (f: string) => readFileSync(f, "utf8").trim().split("\n");

describe.skipIf(missing.length > 0)("PostgreSQL restore schedule", () => {
    const dirs: string[] = [];
    const fresh = () => {
        const d = tempDir("hx-pgsched-");
        dirs.push(d);
        return d;
    };
    afterAll(() => dirs.forEach((d) => removeDir(d)));

    it("with the manifest's index sizes, lists the index and key-constraint builds heaviest first, with their tables", async () => {
        const dir = fresh();
        await inLib(dir, manifest(true), 'hx__pg_split_toc m.json a "" out 2 1 out/err');
        const out = join(dir, "out");
        // index bytes + a quarter of the table's (beyond 32 bits: awk must not print them
        // through %d); an entry the manifest does not size weighs 0, table unknown
        expect(lines(join(out, "post"))).toEqual([
            "10003000000\t16390\t3210; 1259 16402 INDEX public big_note postgres",
            "10002000000\t16390\t3200; 2606 16400 CONSTRAINT public big big_pkey postgres",
            "18432\t16395\t3201; 2606 16401 CONSTRAINT public small small_pkey postgres",
            "18432\t16395\t3211; 1259 16403 INDEX public small_note postgres",
            "0\t-\t3212; 1259 16404 INDEX public mv_n postgres",
        ]);
        expect(readdirSync(out).filter((f) => /^p\./.test(f))).toEqual([]);
        expect(lines(join(out, "dtab.0"))).toEqual(["16390"]);
        expect(lines(join(out, "dtab.1"))).toEqual(["16395"]);
        // INDEX ATTACH needs both indexes: after every build, with the foreign keys.
        expect(lines(join(out, "rest"))).toEqual([
            "215; 1259 16390 TABLE public big postgres",
            "216; 1259 16395 TABLE public small postgres",
            "3213; 0 0 INDEX ATTACH public parted_1_x_idx postgres",
            "3220; 2606 16410 FK CONSTRAINT public small small_big_fkey postgres",
        ]);
    });

    it("without them (an artifact of the previous dump code), splits the builds round-robin in TOC order, as before", async () => {
        const dir = fresh();
        await inLib(dir, manifest(false), 'hx__pg_split_toc m.json a "" out 2 1 out/err');
        const out = join(dir, "out");
        expect(readdirSync(out).filter((f) => f.startsWith("post"))).toEqual([]);
        expect(lines(join(out, "p.0"))).toEqual([
            "3200; 2606 16400 CONSTRAINT public big big_pkey postgres",
            "3210; 1259 16402 INDEX public big_note postgres",
            "3212; 1259 16404 INDEX public mv_n postgres",
        ]);
        expect(lines(join(out, "p.1"))).toEqual([
            "3201; 2606 16401 CONSTRAINT public small small_pkey postgres",
            "3211; 1259 16403 INDEX public small_note postgres",
        ]);
    });

    it("starts a build once its table is loaded, heaviest first, small ones together, unknown ones after all data", async () => {
        const dir = fresh();
        // Each stream records its entries; the big table's data stream ends only once
        // small_note was started, so big's builds can only follow it.
        const out = await inLib(dir, manifest(true), `hx__pg_split_toc m.json a "" out 2 1 out/err
            HX_PG_RESTORE_START=\${EPOCHREALTIME/[.,]/}
            hx__pg_restore_stream() {
                local list=\${!#}
                list=\${list#--use-list=}
                printf 'build %s\\n' "$(cut --delimiter=' ' --fields=6- "$list" | paste --serial --delimiters=,)" >>out/order
                if grep --quiet small_note "$list"; then : >out/release; fi
            }
            ( until [[ -e out/release ]]; do sleep 0.05; done; printf 'loaded big\\n' >>out/order; : >out/dtab.0.end ) &
            hx__pg_run_post m.json a "" db out/err out 2 out/dtab.0
            cat out/order`);
        const order = out.trim().split("\n");
        expect(order.slice(0, 2)).toEqual(["build small small_pkey postgres,small_note postgres", "loaded big"]);
        // Then big's two builds, each in a stream of its own, and the unsized entry.
        expect(order.slice(2).sort()).toEqual(["build big big_pkey postgres", "build big_note postgres", "build mv_n postgres"]);
    });
});
