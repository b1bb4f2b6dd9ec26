/**
 * The background refresher on a catalogue larger than a handful: it runs more discoveries at once as the
 * catalogue grows (within its bound), schedules imported services in batches spread over the interval,
 * never discovers one service twice at once (one instance or two), and logs a service's change of state
 * once, not every failed attempt.
 */
import { join } from "node:path";
import { ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENGINE, freePort, freshDatabase, startTestMcpServer, startTestRegistry, TEST_SECRET, type TestRegistry, tempDir, waitFor } from "./helpers.ts";

const REACHABLE = 240;
const UNREACHABLE = 24;
// Each listing takes this long: more than a few at once are needed to keep the pace.
const LISTING_MS = 100;
const INTERVAL_S = 4;
// The services that answer must never look unreachable, however loaded the machine running the suite:
// the registry, its test server and other test files share its cores (the unreachable ones are refused at once).
const SLOW_MACHINE = "60";
const LONG = { timeout: 180_000 };

/** One server answering MCP at /s/<n>/mcp for every n, counting each path's listings and how many run at once. */
async function manyServices() {
  const listed = new Map<string, number>();
  const inFlight = new Map<string, number>();
  const seen = { most: 0, now: 0, twiceAtOnce: [] as string[] };
  const server = await startTestMcpServer({
    setup: (mcp, req) => {
      const path = new URL(req.url).pathname;
      mcp.setRequestHandler(ListToolsRequestSchema, async () => {
        seen.most = Math.max(seen.most, ++seen.now);
        const mine = (inFlight.get(path) ?? 0) + 1;
        inFlight.set(path, mine);
        if (mine > 1) seen.twiceAtOnce.push(path);
        await new Promise((r) => setTimeout(r, LISTING_MS));
        inFlight.set(path, mine - 1);
        seen.now--;
        listed.set(path, (listed.get(path) ?? 0) + 1);
        return { tools: [{ name: "lookup", description: `Looks up on ${path}`, inputSchema: { type: "object" as const } }] };
      });
    },
  });
  return { endpoint: (n: number) => `http://127.0.0.1:${server.port}/s/${n}/mcp`, listed, seen, stop: server.stop };
}

type Many = Awaited<ReturnType<typeof manyServices>>;

// Written as an import leaves them: unscheduled (no next refresh time), never discovered, status ok.
async function insertServices(reg: TestRegistry, many: Many, deadPort: number): Promise<void> {
  const { services } = reg.ctx.tables;
  const rows = [
    ...Array.from({ length: REACHABLE }, (_, n) => ({ name: `svc-${n}`, endpoint: many.endpoint(n), transport: "streamable_http" as const })),
    ...Array.from({ length: UNREACHABLE }, (_, n) => ({ name: `dead-${n}`, endpoint: `http://127.0.0.1:${deadPort}/d/${n}/mcp`, transport: "streamable_http" as const })),
  ];
  for (let i = 0; i < rows.length; i += 100) await reg.ctx.db.insert(services).values(rows.slice(i, i + 100));
}

async function states(reg: TestRegistry) {
  const { services } = reg.ctx.tables;
  return reg.ctx.db
    .select({ name: services.name, at: services.lastDiscoveredAt, failures: services.consecutiveFailures, status: services.status, next: services.nextRefreshAt })
    .from(services);
}

describe("background refresh of a few hundred services", () => {
  let reg: TestRegistry;
  let many: Many;
  let inserted: number;
  // Node's warnings in this process (the registry runs in it): every discovery under way listens for the stop.
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  beforeAll(async () => {
    process.on("warning", onWarning);
    [reg, many] = await Promise.all([startTestRegistry({ REGISTRY_REFRESH_INTERVAL: String(INTERVAL_S), REGISTRY_DISCOVERY_TIMEOUT: SLOW_MACHINE }), manyServices()]);
    inserted = Date.now();
    await insertServices(reg, many, await freePort());
  });
  afterAll(async () => {
    process.off("warning", onWarning);
    await reg?.stop();
    await many?.stop();
  });

  it("schedules the imported services spread over one interval and refreshes each, more than four at a time", LONG, async () => {
    const scheduled = (await waitFor(async () => {
      const rows = await states(reg);
      return rows.every((r) => r.next !== null) ? rows : undefined;
    }, "every imported service to get a refresh time"))!;
    // Spread, not one time for all: within one interval (plus the jitter of a claimed one's next time).
    const times = scheduled.map((r) => Date.parse(r.next!) - inserted);
    expect(new Set(times).size).toBeGreaterThan(REACHABLE);
    expect(Math.min(...times)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...times)).toBeLessThanOrEqual(INTERVAL_S * 1000 * 2.2);

    await waitFor(async () => (await states(reg)).every((r) => (r.name.startsWith("dead-") ? r.failures >= 1 : r.at !== null)), "a refresh of every service", 150_000);
    expect([...many.listed.keys()].length).toBe(REACHABLE);
    // The pace needs more than the smallest number of discoveries at once, and stays within the bound.
    expect(many.seen.most).toBeGreaterThan(4);
    expect(many.seen.most).toBeLessThanOrEqual(64);
    expect(many.seen.twiceAtOnce).toEqual([]);
    expect(warnings.filter((w) => w.includes("MaxListeners"))).toEqual([]);
  });

  it("logs each unreachable service once however often it fails, and nothing for the reachable ones", LONG, async () => {
    await waitFor(
      async () => (await states(reg)).filter((r) => r.name.startsWith("dead-")).every((r) => r.failures >= 2),
      "a second failure of every unreachable service",
      150_000,
    );
    const down = reg.logs.filter((l) => / is unreachable /.test(l));
    expect(down.filter((l) => !l.includes('"dead-'))).toEqual([]);
    expect(down).toHaveLength(UNREACHABLE);
    expect(new Set(down.map((l) => /Service "([^"]+)"/.exec(l)?.[1])).size).toBe(UNREACHABLE);
    expect(reg.logs.filter((l) => /svc-\d+/.test(l))).toEqual([]);
    expect(reg.logs.join("\n")).not.toMatch(/ERROR/);
  });
});

describe("two registries refreshing a few hundred services on one database", () => {
  let db: { url: string; drop(): Promise<void> };
  const regs: TestRegistry[] = [];
  let many: Many;
  beforeAll(async () => {
    db = ENGINE === "postgres" ? await freshDatabase() : { url: `file:${join(tempDir(), "shared.db")}`, drop: async () => {} };
    many = await manyServices();
    const env = { DATABASE_URL: db.url, REGISTRY_REFRESH_INTERVAL: String(INTERVAL_S), REGISTRY_DISCOVERY_TIMEOUT: SLOW_MACHINE, REGISTRY_SECRET: TEST_SECRET };
    // One after the other: on SQLite the first creates the file and its schema.
    regs.push(await startTestRegistry(env));
    regs.push(await startTestRegistry(env));
    await insertServices(regs[0], many, await freePort());
  });
  afterAll(async () => {
    for (const reg of regs) await reg.stop();
    await many?.stop();
    await db?.drop();
  });

  it("share the work: every service is refreshed, none twice at once, with no errors", LONG, async () => {
    await waitFor(async () => (await states(regs[1])).every((r) => (r.name.startsWith("dead-") ? r.failures >= 1 : r.at !== null)), "a refresh of every service", 150_000);
    expect(many.listed.size).toBe(REACHABLE);
    expect(many.seen.twiceAtOnce).toEqual([]);
    // Each unreachable service went from ok to unreachable once, on whichever instance saw it first.
    await waitFor(async () => (await states(regs[1])).filter((r) => r.name.startsWith("dead-")).every((r) => r.failures >= 2), "a second failure of each", 150_000);
    const down = regs.flatMap((reg) => reg.logs.filter((l) => / is unreachable /.test(l)));
    expect(down.filter((l) => !l.includes('"dead-'))).toEqual([]);
    expect(new Set(down.map((l) => /Service "([^"]+)"/.exec(l)?.[1])).size).toBe(UNREACHABLE);
    expect(down).toHaveLength(UNREACHABLE);
    for (const reg of regs) expect(reg.logs.join("\n")).not.toMatch(/ERROR/);
  });
});
