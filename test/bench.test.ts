/** The benchmark runs (--quick) and writes valid results. Its numbers are judged by its own output, never here. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ENGINE, runToExit, tempDir } from "./helpers.ts";

type Results = {
  runtime: string;
  engine: string;
  scenarios: { name: string; kind: string; vs: string; reqPerSec: number; p50Ms: number; p99Ms: number; ratio: number; cpuUsPerReq?: number | null; rssMb?: number | null }[];
  targets: { name: string; pass: boolean }[];
  peakRssMb: number | null;
};

describe("npm run bench -- --quick", () => {
  it("measures every scenario against its baseline and writes the results where it is told", async () => {
    const out = join(tempDir(), "results.json");
    // On the suite's engine: PostgreSQL runs get a temporary database of their own on that server.
    const database = ENGINE === "postgres" ? ["--database", process.env.TEST_DATABASE_URL!] : [];
    const { code, output } = await runToExit(process.execPath, ["--import", "tsx", "bench/bench.ts", "--quick", "--out", out, ...database], { timeoutMs: 150_000 });
    expect(code, output).toBe(0);

    const results = JSON.parse(readFileSync(out, "utf8")) as Results;
    expect(results.engine).toBe(ENGINE);
    const names = results.scenarios.map((s) => s.name);
    for (const name of [
      "bare Hono JSON route",
      "bare SDK tools/call",
      "GET /health",
      "GET /token",
      "POST /role_for_user",
      "POST /system_prompt_for_role",
      "POST /tools_for_role",
      "GET /list_services",
      "MCP tools/call get_tools",
      "MCP tools/list",
      "add_service (server-everything)",
      "remove_service",
      "gateway tools/call echo",
      "gateway tools/list (500 tools)",
    ]) {
      expect(names).toContain(name);
    }
    for (const s of results.scenarios) {
      for (const field of ["reqPerSec", "p50Ms", "p99Ms", "ratio"] as const) {
        expect(Number.isFinite(s[field]), `${s.name} ${field} = ${s[field]}`).toBe(true);
      }
      expect(names, `${s.name} is compared with ${s.vs}`).toContain(s.vs);
    }
    // What a load row reports (issue 21): the server's CPU per request and its RSS after the run.
    for (const s of results.scenarios.filter((r) => r.kind === "load")) {
      expect(Number.isFinite(s.cpuUsPerReq), `${s.name} cpuUsPerReq`).toBe(true);
      expect(s.rssMb, `${s.name} rssMb`).toBeGreaterThan(0);
    }
    // Each target is reported as met or missed (which one is the benchmark's business, not the suite's).
    expect(results.targets.length).toBeGreaterThanOrEqual(6);
    for (const t of results.targets) expect(typeof t.pass).toBe("boolean");
    // The table is printed too, with a verdict per target.
    expect(output).toMatch(/^(PASS|MISS) {2}GET \/token/m);
  }, 180_000);
});
