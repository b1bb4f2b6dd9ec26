/**
 * How a discovered catalogue is written: every tool in one statement whose rows travel as one JSON
 * parameter (features/services/refresh.ts insertTools). What is stored must be exactly what was listed,
 * in the listed order, for awkward definitions and for the largest catalogue the limits allow, on add and
 * on refresh, and what a later refresh compares (the digests) must agree with it.
 */
import { ListToolsRequestSchema, type Tool } from "@modelcontextprotocol/sdk/types.js";
import { asc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { definitionOf, digestOf } from "../features/tool_pinning/definition.ts";
import { call, startTestMcpServer, startTestRegistry, type TestRegistry, text } from "./helpers.ts";

// Definitions a JSON round trip through the engine could get wrong: quotes, escapes, line and paragraph
// separators, astral characters, numbers of every shape, nulls nested and at the top, empty objects, deep nesting.
const AWKWARD: Tool[] = [
  { name: "quotes", description: `He said "hi" \\ 'there'\n\ttab\u2028\u2029 and ${"\u0007"}bell`, inputSchema: { type: "object" } },
  {
    name: "numbers",
    title: "Números 🧮",
    description: "",
    inputSchema: { type: "object", properties: { n: { type: "number", minimum: -1.5e-7, maximum: 1e21, multipleOf: 0.1, default: 9007199254740991 } } },
    outputSchema: { type: "object", properties: { ok: { type: "boolean", default: false } }, required: [] },
  },
  {
    name: "nulls",
    description: "null inside",
    inputSchema: { type: "object", properties: { x: { default: null, enum: [null, "null", 0, ""] } } },
    annotations: { readOnlyHint: true, destructiveHint: false },
  },
  { name: "deep", description: "nested", inputSchema: { type: "object", properties: { a: nest(40) } } },
  { name: "keys.order-1", description: "keys as listed", inputSchema: { type: "object", properties: { z: {}, a: {}, é: {}, "1": {} }, "x-extra": { "": "" } } },
];

function nest(depth: number): Record<string, unknown> {
  return depth === 0 ? { type: "string" } : { type: "object", properties: { inner: nest(depth - 1) } };
}

const many = (n: number, from = 0): Tool[] =>
  Array.from({ length: n }, (_, i) => ({
    name: `tool_${String(from + i).padStart(5, "0")}`,
    description: `Tool ${from + i}: does one thing`,
    inputSchema: { type: "object", properties: { q: { type: "string", description: `query ${from + i}` } } },
  }));

describe("writing a catalogue", () => {
  let reg: TestRegistry;
  let server: Awaited<ReturnType<typeof startTestMcpServer>>;
  const listed = { tools: [] as Tool[] };
  beforeAll(async () => {
    // The default limits: 1,000 tools per service is the largest catalogue they allow.
    [reg, server] = await Promise.all([
      startTestRegistry({ REGISTRY_REFRESH_INTERVAL: "0", REGISTRY_TOOL_CHANGES: "accept" }),
      startTestMcpServer({ setup: (mcp) => mcp.setRequestHandler(ListToolsRequestSchema, () => ({ tools: listed.tools })) }),
    ]);
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
  });

  async function stored(service: string) {
    const { services, tools } = reg.ctx.tables;
    const [row] = await reg.ctx.db.select({ id: services.id }).from(services).where(eq(services.name, service));
    return reg.ctx.db.select().from(tools).where(eq(tools.serviceId, row.id)).orderBy(asc(tools.id));
  }

  // The stored rows are the listed definitions, in order, each with the digest of its definition and not held.
  async function expectStored(service: string, tools: Tool[]) {
    const rows = await stored(service);
    expect(rows.map((r) => definitionOf(r))).toEqual(tools.map((t) => definitionOf({ title: null, outputSchema: null, annotations: null, ...t } as never)));
    expect(rows.map((r) => r.digest)).toEqual(tools.map((t) => digestOf({ title: null, outputSchema: null, annotations: null, ...t } as never)));
    expect(rows.every((r) => r.held === false)).toBe(true);
    return rows;
  }

  it("stores awkward definitions exactly, and a refresh of the same listing finds no change", async () => {
    listed.tools = AWKWARD;
    const admin = await reg.client();
    expect(text(await call(admin, "add_service", { service_name: "awkward", endpoint: server.url, description: "x" }))).toContain(`added with ${AWKWARD.length} tools`);
    await expectStored("awkward", AWKWARD);
    // Stored text read back by the engine agrees with what discovery computes: nothing to apply.
    expect(text(await call(admin, "refresh_service", { service_name: "awkward" }))).toBe(`Service "awkward" refreshed (${AWKWARD.length} tools): no tool changes.`);
  });

  it("stores the largest catalogue the limits allow in listed order; a refresh appends new tools after the kept ones", async () => {
    listed.tools = many(1000);
    const admin = await reg.client();
    expect(text(await call(admin, "add_service", { service_name: "big", endpoint: `${server.url}?big`, description: "x" }))).toContain("added with 1000 tools");
    const before = await expectStored("big", listed.tools);
    // 200 go, 200 come: the 800 kept keep their ids, the new ones are written after them, in listed order.
    listed.tools = [...many(800, 200), ...many(200, 5000)];
    expect(text(await call(admin, "refresh_service", { service_name: "big" }))).toMatch(/added .*removed/s);
    const after = await expectStored("big", listed.tools);
    expect(after.slice(0, 800).map((r) => r.id)).toEqual(before.slice(200).map((r) => r.id));
    expect(Math.min(...after.slice(800).map((r) => r.id))).toBeGreaterThan(Math.max(...before.map((r) => r.id)));
  });
});
