/** Limits on what a downstream service may bring into the catalogue, and tool names that are not names. */
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { type CallToolResult, ListToolsRequestSchema, type Tool } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BAD_NAME } from "../features/services/discovery.ts";
import { call, connectClient, fails, startSseMcpServer, startTestMcpServer, startTestRegistry, type TestRegistry, text, waitFor } from "./helpers.ts";

type McpServer = Awaited<ReturnType<typeof startTestMcpServer>>;
type ToolEntry = { id: number; name: string; description: string; roles: string[] };

/** The limits of the registries below: small, so each attack is cheap to stage. */
const LIMITS = {
  REGISTRY_MAX_TOOLS: "10",
  REGISTRY_MAX_DESCRIPTION_BYTES: "1024",
  REGISTRY_MAX_SCHEMA_BYTES: "2048",
  REGISTRY_MAX_DISCOVERY_BYTES: "65536",
  REGISTRY_MAX_DISCOVERY_PAGES: "3",
  REGISTRY_MAX_CATALOGUE_BYTES: "65536",
  REGISTRY_REFRESH_INTERVAL: "0",
};

const tool = (name: string, extra: Partial<Tool> = {}): Tool => ({ name, description: `Does ${name}`, inputSchema: { type: "object" }, ...extra });
const manyTools = (n: number, from = 0) => Array.from({ length: n }, (_, i) => tool(`tool-${from + i}`));

/** An SDK server whose tools/list answer is `list(cursor)`, read on every request; counts tools/list calls in `pages`. */
async function listingServer(list: (cursor: string | undefined) => { tools: Tool[]; nextCursor?: string }, opts: { instructions?: string } = {}) {
  const seen = { pages: [] as (string | undefined)[] };
  const server = await startTestMcpServer({
    instructions: opts.instructions,
    setup: (mcp: Server) =>
      mcp.setRequestHandler(ListToolsRequestSchema, (req) => {
        seen.pages.push(req.params?.cursor);
        return list(req.params?.cursor);
      }),
  });
  return Object.assign(server, seen);
}

/** What a bare SDK client gets from a server: every page (at most `maxPages`), and the size of the answers. */
async function bareList(url: string, maxPages = 20): Promise<{ tools: Tool[]; pages: number; bytes: number }> {
  const client = await connectClient(url);
  try {
    const tools: Tool[] = [];
    let cursor: string | undefined;
    let pages = 0;
    let bytes = 0;
    do {
      const page = await client.listTools(cursor ? { cursor } : {});
      pages++;
      bytes += JSON.stringify(page).length;
      tools.push(...page.tools);
      cursor = page.nextCursor;
    } while (cursor && pages < maxPages);
    return { tools, pages, bytes };
  } finally {
    await client.close();
  }
}

/** add_service expecting a refusal: nothing written (no service, no tool), and the refused call is in the audit trail. */
async function refusedAdd(reg: TestRegistry, args: Record<string, unknown>): Promise<string> {
  const message = await fails(reg, "add_service", args);
  const c = await reg.client();
  expect(text(await call(c, "get_tools", { service_name: args.service_name }))).toBe(`Cannot get tools of service "${args.service_name}": no such service`);
  const audit = (await call(c, "list_audit_events", { action: "add_service", limit: 1 })).structuredContent as { events: { outcome: string; target: string }[] };
  expect(audit.events[0]).toMatchObject({ outcome: "unavailable", target: `service_name=${args.service_name}` });
  return message;
}

async function ok(reg: TestRegistry, name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  const r = await call(await reg.client(), name, args);
  expect(r.isError, text(r)).toBeFalsy();
  return r;
}

async function toolsOf(reg: TestRegistry, service: string): Promise<ToolEntry[]> {
  return ((await ok(reg, "get_tools", { service_name: service })).structuredContent as { tools: ToolEntry[] }).tools;
}

async function serviceInfo(reg: TestRegistry, service: string) {
  return (await ok(reg, "get_service", { service_name: service })).structuredContent as { status: string; last_error: string | null; consecutive_failures: number; tools: number };
}

// Control characters, C1 controls, bidi controls and isolates: none may reach a result or a log line raw.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

describe("limits on what a service may bring", () => {
  let reg: TestRegistry;
  const servers: McpServer[] = [];
  beforeAll(async () => {
    reg = await startTestRegistry(LIMITS);
  });
  afterAll(async () => {
    await reg?.stop();
    await Promise.all(servers.map((s) => s.stop()));
  });
  async function serve(...args: Parameters<typeof listingServer>) {
    const s = await listingServer(...args);
    servers.push(s);
    return s;
  }

  it("refuses more tools than REGISTRY_MAX_TOOLS over several pages, reading no page after the one that crossed it", async () => {
    // 6 tools a page, 4 pages: 24 tools.
    const s = await serve((cursor) => {
      const page = Number(cursor ?? 0);
      return { tools: manyTools(6, page * 6), ...(page < 3 ? { nextCursor: String(page + 1) } : {}) };
    });
    expect((await bareList(s.url)).tools).toHaveLength(24);
    s.pages.length = 0;
    const message = await refusedAdd(reg, { service_name: "many", endpoint: s.url, description: "" });
    expect(message).toBe(`Cannot add service "many": the MCP service at "${s.url}" lists more than 10 tools (REGISTRY_MAX_TOOLS)`);
    expect(s.pages).toEqual([undefined, "1"]);
  });

  it("refuses more tools than REGISTRY_MAX_TOOLS in one page, and accepts exactly the limit", async () => {
    const s = await serve(() => ({ tools: manyTools(11) }));
    expect((await bareList(s.url)).tools).toHaveLength(11);
    expect(await refusedAdd(reg, { service_name: "crowded", endpoint: s.url, description: "" })).toBe(
      `Cannot add service "crowded": the MCP service at "${s.url}" lists more than 10 tools (REGISTRY_MAX_TOOLS)`,
    );

    const full = await serve(() => ({ tools: manyTools(10) }));
    expect(text(await ok(reg, "add_service", { service_name: "full", endpoint: full.url, description: "" }))).toBe('Service "full" added with 10 tools.');
    await ok(reg, "remove_service", { service_name: "full" });
  });

  it("refuses a tools/list answer over REGISTRY_MAX_DISCOVERY_BYTES (1 MB) though each kept field is small", async () => {
    // The bulk sits in _meta, which the registry would not even keep.
    const s = await serve(() => ({ tools: [tool("bulky", { _meta: { padding: "x".repeat(1_000_000) } })] }));
    expect((await bareList(s.url)).bytes).toBeGreaterThan(1_000_000);
    expect(await refusedAdd(reg, { service_name: "bulky", endpoint: s.url, description: "" })).toBe(
      `Cannot add service "bulky": the MCP service at "${s.url}" answered with more than 65536 bytes (REGISTRY_MAX_DISCOVERY_BYTES)`,
    );
  });

  it("refuses more pages than REGISTRY_MAX_DISCOVERY_PAGES (an endless nextCursor), reading exactly the limit; accepts exactly the limit", async () => {
    let served = 0;
    const endless = await serve(() => ({ tools: [tool(`page-${served}`)], nextCursor: `cursor-${++served}` }));
    expect((await bareList(endless.url, 20)).pages).toBe(20);
    endless.pages.length = 0;
    expect(await refusedAdd(reg, { service_name: "endless", endpoint: endless.url, description: "" })).toBe(
      `Cannot add service "endless": the MCP service at "${endless.url}" lists tools on more than 3 pages (REGISTRY_MAX_DISCOVERY_PAGES)`,
    );
    expect(endless.pages).toHaveLength(3);

    const three = await serve((cursor) => {
      const page = Number(cursor ?? 0);
      return { tools: [tool(`page-${page}`)], ...(page < 2 ? { nextCursor: String(page + 1) } : {}) };
    });
    expect(text(await ok(reg, "add_service", { service_name: "three-pages", endpoint: three.url, description: "" }))).toBe('Service "three-pages" added with 3 tools.');
    await ok(reg, "remove_service", { service_name: "three-pages" });
  });

  it("refuses tool definitions over REGISTRY_MAX_CATALOGUE_BYTES in all, though every field and answer is within its own limit", async () => {
    // 9 tools of about 8 KB each (every field just under its limit), 3 to a page of about 25 KB: 72 KB in all.
    const big = (name: string) =>
      tool(name, {
        title: "t".repeat(1000),
        description: "d".repeat(1000),
        inputSchema: { type: "object", description: "i".repeat(1990) },
        outputSchema: { type: "object", description: "o".repeat(1990) },
        annotations: { title: "a".repeat(1990) },
      });
    const s = await serve((cursor) => {
      const page = Number(cursor ?? 0);
      return { tools: [0, 1, 2].map((i) => big(`big-${page * 3 + i}`)), ...(page < 2 ? { nextCursor: String(page + 1) } : {}) };
    });
    expect((await bareList(s.url)).tools).toHaveLength(9);
    expect(await refusedAdd(reg, { service_name: "big", endpoint: s.url, description: "" })).toBe(
      `Cannot add service "big": the MCP service at "${s.url}" lists tool definitions of more than 65536 bytes in all (REGISTRY_MAX_CATALOGUE_BYTES)`,
    );
  });

  it("skips a tool with a huge description, title or schema with a reason, and stores the others", async () => {
    const big = { type: "object" as const, properties: { blob: { type: "string", description: "y".repeat(3000) } } };
    const s = await serve(() => ({
      tools: [
        // 512 two-byte characters: exactly 1024 bytes, kept.
        tool("fits", { description: "é".repeat(512) }),
        // 513 characters, 1026 bytes: the limit counts bytes, not characters.
        tool("wordy", { description: "é".repeat(513) }),
        tool("titled", { title: "t".repeat(1025) }),
        tool("heavy-input", { inputSchema: big }),
        tool("heavy-output", { outputSchema: big }),
        tool("heavy-annotations", { annotations: { title: "a".repeat(3000) } }),
      ],
    }));
    expect((await bareList(s.url)).tools.map((t) => t.name)).toEqual(["fits", "wordy", "titled", "heavy-input", "heavy-output", "heavy-annotations"]);
    const r = await ok(reg, "add_service", { service_name: "fat", endpoint: s.url, description: "Fat tools" });
    expect(text(r)).toBe(
      'Service "fat" added with 1 tool; skipped 5: ' +
        '"wordy" (description of more than 1024 bytes (REGISTRY_MAX_DESCRIPTION_BYTES)), ' +
        '"titled" (title of more than 1024 bytes (REGISTRY_MAX_DESCRIPTION_BYTES)), ' +
        '"heavy-input" (inputSchema of more than 2048 bytes (REGISTRY_MAX_SCHEMA_BYTES)), ' +
        '"heavy-output" (outputSchema of more than 2048 bytes (REGISTRY_MAX_SCHEMA_BYTES)), ' +
        '"heavy-annotations" (annotations of more than 2048 bytes (REGISTRY_MAX_SCHEMA_BYTES)).',
    );
    expect((await toolsOf(reg, "fat")).map((t) => [t.name, t.description])).toEqual([["fits", "é".repeat(512)]]);
    await ok(reg, "remove_service", { service_name: "fat" });
  });

  it("refuses a description of the service's own over REGISTRY_MAX_DESCRIPTION_BYTES when asked to read it; a given one works", async () => {
    const s = await serve(() => ({ tools: [tool("ping")] }), { instructions: "i".repeat(1025) });
    const bare = await connectClient(s.url);
    expect(bare.getInstructions()).toHaveLength(1025);
    await bare.close();
    expect(await refusedAdd(reg, { service_name: "talkative", endpoint: s.url, description: "" })).toBe(
      `Cannot add service "talkative": the MCP service at "${s.url}" has a description of more than 1024 bytes (REGISTRY_MAX_DESCRIPTION_BYTES); give one with description`,
    );
    expect(text(await ok(reg, "add_service", { service_name: "talkative", endpoint: s.url, description: "Talks a lot" }))).toBe('Service "talkative" added with 1 tool.');
    await ok(reg, "remove_service", { service_name: "talkative" });
  });

  it("skips tools whose names are not MCP tool names, with the name shown escaped, and stores the good ones", async () => {
    const bad = ["", "a\u0000b", "\u001b[31mred", "bidi\u202Ename", "x".repeat(129), "has space"];
    const good = ["good-1", "good.2", "Snake_case_3", "y".repeat(128)];
    const s = await serve(() => ({ tools: [...bad, ...good].map((n) => tool(n)) }));
    expect((await bareList(s.url)).tools.map((t) => t.name)).toEqual([...bad, ...good]);
    const r = await ok(reg, "add_service", { service_name: "names", endpoint: s.url, description: "Odd names" });
    const shown = ['""', '"a\\u0000b"', '"\\u001b[31mred"', '"bidi\\u202ename"', `"${"x".repeat(64)}…"`, '"has space"'];
    expect(text(r)).toBe(`Service "names" added with 4 tools; skipped 6: ${shown.map((n) => `${n} (${BAD_NAME})`).join(", ")}.`);
    expect(BAD_NAME).toBe("not a valid tool name: 1-128 of A-Za-z0-9_-.");
    expect(text(r)).not.toMatch(UNSAFE);
    expect((await toolsOf(reg, "names")).map((t) => t.name)).toEqual(good);
    expect(reg.logs.filter((l) => UNSAFE.test(l))).toEqual([]);
  });

  it("still refuses a name listed twice, shown escaped", async () => {
    const s = await serve(() => ({ tools: [tool("a\u0000b"), tool("a\u0000b")] }));
    expect(await refusedAdd(reg, { service_name: "twice", endpoint: s.url, description: "" })).toBe(
      `Cannot add service "twice": the MCP service at "${s.url}" lists tool "a\\u0000b" more than once`,
    );
  });
});

describe("an answer that never ends", () => {
  let reg: TestRegistry;
  let server: McpServer;
  const sent = { bytes: 0, cancelled: false };
  const SIZE = 50 * 1024 * 1024;
  beforeAll(async () => {
    // The default limits (8 MiB per answer) against a 50 MB tools/list, produced only as fast as it is read.
    reg = await startTestRegistry({ REGISTRY_REFRESH_INTERVAL: "0" });
    server = await startTestMcpServer({
      setup: (mcp) => mcp.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [] })),
      // Only tools/list is answered here (undefined: the SDK server answers); the helper's type wants a Response from a promise.
      intercept: (async (req: Request) => {
        if (req.method !== "POST") return undefined;
        const message = await req.clone().json();
        if (message.method !== "tools/list") return undefined;
        const head = new TextEncoder().encode(`{"jsonrpc":"2.0","id":${JSON.stringify(message.id)},"result":{"tools":[`);
        const item = new TextEncoder().encode(`${JSON.stringify(tool("t", { description: "z".repeat(1000) }))},`.repeat(64));
        let first = true;
        const body = new ReadableStream<Uint8Array>({
          pull(controller) {
            const chunk = first ? head : item;
            first = false;
            sent.bytes += chunk.byteLength;
            controller.enqueue(chunk);
            if (sent.bytes >= SIZE) controller.close();
          },
          cancel() {
            sent.cancelled = true;
          },
        });
        return new Response(body, { headers: { "content-type": "application/json" } });
      }) as (req: Request) => Promise<Response>,
    });
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
  });

  it("is cut off past REGISTRY_MAX_DISCOVERY_BYTES (default 8 MiB) and never read whole", async () => {
    // The server does send 50 MB to whoever reads it all.
    const res = await fetch(server.url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list", params: {} }),
    });
    let read = 0;
    const reader = res.body!.getReader();
    for (let r = await reader.read(); !r.done; r = await reader.read()) read += r.value.byteLength;
    expect(read).toBeGreaterThanOrEqual(SIZE);
    Object.assign(sent, { bytes: 0, cancelled: false });

    const message = await refusedAdd(reg, { service_name: "firehose", endpoint: server.url, description: "" });
    expect(message).toBe(`Cannot add service "firehose": the MCP service at "${server.url}" answered with more than 8388608 bytes (REGISTRY_MAX_DISCOVERY_BYTES)`);
    await waitFor(() => sent.cancelled, "the server's answer to be cancelled");
    expect(sent.bytes).toBeLessThan(SIZE);
  });
});

describe("the issue's flood with the default limits", () => {
  let reg: TestRegistry;
  let server: McpServer;
  beforeAll(async () => {
    reg = await startTestRegistry({ REGISTRY_REFRESH_INTERVAL: "0" });
    server = await listingServer(() => ({ tools: manyTools(50_000) }));
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
  });

  it("refuses 50,000 tools in one page, naming REGISTRY_MAX_TOOLS (1000)", async () => {
    expect((await bareList(server.url)).tools).toHaveLength(50_000);
    expect(await refusedAdd(reg, { service_name: "flood", endpoint: server.url, description: "" })).toBe(
      `Cannot add service "flood": the MCP service at "${server.url}" lists more than 1000 tools (REGISTRY_MAX_TOOLS)`,
    );
  });
});

describe("limits over the legacy SSE transport", () => {
  let reg: TestRegistry;
  let sse: { url: string; stop(): Promise<void> };
  beforeAll(async () => {
    // A long timeout: the refusal must come from the limit, not from the deadline.
    reg = await startTestRegistry({ ...LIMITS, REGISTRY_DISCOVERY_TIMEOUT: "60" });
    sse = await startSseMcpServer("/sse", (mcp) =>
      mcp.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [tool("bulky", { _meta: { padding: "x".repeat(1_000_000) } })] })),
    );
  });
  afterAll(async () => {
    await reg?.stop();
    await sse?.stop();
  });

  it("counts the SSE stream too: a 1 MB answer on it is refused at once, naming the limit", async () => {
    expect(await refusedAdd(reg, { service_name: "sse-bulky", endpoint: sse.url, description: "" })).toBe(
      `Cannot add service "sse-bulky": the MCP service at "${sse.url}" answered with more than 65536 bytes (REGISTRY_MAX_DISCOVERY_BYTES)`,
    );
  });
});

describe("a service that grows past a limit after it was added", () => {
  let reg: TestRegistry;
  let server: McpServer;
  // endless: every page names a new next page.
  const state = { tools: [tool("alpha"), tool("beta")] as Tool[], endless: false, served: 0 };
  beforeAll(async () => {
    reg = await startTestRegistry(LIMITS);
    server = await listingServer((cursor) => ({
      tools: cursor ? [tool(`more-${cursor}`)] : state.tools,
      ...(state.endless ? { nextCursor: `c${++state.served}` } : {}),
    }));
    await ok(reg, "add_service", { service_name: "grower", endpoint: server.url, description: "Grows" });
    await ok(reg, "create_role", { role_name: "reader" });
    await ok(reg, "attach_role_to_tool", { tool_id: (await toolsOf(reg, "grower"))[0].id, role_name: "reader" });
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
  });

  it("refresh_service refuses too many tools: health records the limit, the old tools stay served", async () => {
    const before = await toolsOf(reg, "grower");
    state.tools = manyTools(11);
    const reason = `the MCP service at "${server.url}" lists more than 10 tools (REGISTRY_MAX_TOOLS)`;
    const r = await call(await reg.client(), "refresh_service", { service_name: "grower" });
    expect(r.isError).toBe(true);
    expect(text(r)).toBe(`Cannot refresh service "grower": ${reason}`);
    expect(await serviceInfo(reg, "grower")).toMatchObject({ status: "unreachable", last_error: reason, consecutive_failures: 1, tools: 2 });
    expect(await toolsOf(reg, "grower")).toEqual(before);
  });

  it("refresh_service refuses a too large answer the same way", async () => {
    const before = await toolsOf(reg, "grower");
    state.tools = [tool("alpha", { _meta: { padding: "x".repeat(1_000_000) } }), tool("beta")];
    const reason = `the MCP service at "${server.url}" answered with more than 65536 bytes (REGISTRY_MAX_DISCOVERY_BYTES)`;
    expect(text(await call(await reg.client(), "refresh_service", { service_name: "grower" }))).toBe(`Cannot refresh service "grower": ${reason}`);
    expect(await serviceInfo(reg, "grower")).toMatchObject({ status: "unreachable", last_error: reason, consecutive_failures: 2, tools: 2 });
    expect(await toolsOf(reg, "grower")).toEqual(before);
  });

  it("refresh_service skips bad names with reasons (also in its structured result) and keeps the good ones", async () => {
    const before = await toolsOf(reg, "grower");
    state.tools = [tool("alpha"), tool("beta"), tool("gamma"), tool("tab\tbed"), tool("\u202Eevil")];
    // A client that has listed the registry's tools checks structuredContent against refresh_service's outputSchema.
    const checking = await reg.client();
    await checking.listTools();
    const r = await call(checking, "refresh_service", { service_name: "grower" });
    expect(r.isError, text(r)).toBeFalsy();
    const skipped = [
      { name: "tab\\tbed", reason: BAD_NAME },
      { name: "\\u202eevil", reason: BAD_NAME },
    ];
    expect(text(r)).toBe(`Service "grower" refreshed (3 tools): added "gamma"; skipped 2: "tab\\tbed" (${BAD_NAME}), "\\u202eevil" (${BAD_NAME}).`);
    expect(r.structuredContent).toEqual({ service_name: "grower", tools: 3, added: ["gamma"], removed: [], changed: [], skipped });
    expect(text(r)).not.toMatch(UNSAFE);
    const after = await toolsOf(reg, "grower");
    expect(after.slice(0, 2)).toEqual(before);
    expect(after.map((t) => t.name)).toEqual(["alpha", "beta", "gamma"]);
    expect(await serviceInfo(reg, "grower")).toMatchObject({ status: "ok", last_error: null, consecutive_failures: 0, tools: 3 });
    // Without skipped tools the result is exactly what it always was.
    state.tools = [tool("alpha"), tool("beta"), tool("gamma")];
    const plain = await ok(reg, "refresh_service", { service_name: "grower" });
    expect(plain.structuredContent).toEqual({ service_name: "grower", tools: 3, added: [], removed: [], changed: [] });
  });

  it("refresh_service refuses an endless nextCursor, keeping the tools", async () => {
    const before = await toolsOf(reg, "grower");
    state.endless = true;
    const reason = `the MCP service at "${server.url}" lists tools on more than 3 pages (REGISTRY_MAX_DISCOVERY_PAGES)`;
    try {
      expect(text(await call(await reg.client(), "refresh_service", { service_name: "grower" }))).toBe(`Cannot refresh service "grower": ${reason}`);
    } finally {
      state.endless = false;
    }
    expect(await serviceInfo(reg, "grower")).toMatchObject({ status: "unreachable", last_error: reason, consecutive_failures: 1, tools: 3 });
    expect(await toolsOf(reg, "grower")).toEqual(before);
  });

  it("update_service to an endpoint past a limit is refused, writing nothing; to one with bad names it skips them", async () => {
    let n = 0;
    const endless = await listingServer(() => ({ tools: [tool(`p${n}`)], nextCursor: `c${++n}` }));
    const odd = await listingServer(() => ({ tools: [tool("alpha"), tool("beta"), tool("gamma"), tool("")] }));
    try {
      expect(await fails(reg, "update_service", { service_name: "grower", endpoint: endless.url })).toBe(
        `Cannot update service "grower": the MCP service at "${endless.url}" lists tools on more than 3 pages (REGISTRY_MAX_DISCOVERY_PAGES)`,
      );
      const checking = await reg.client();
      await checking.listTools();
      const r = await call(checking, "update_service", { service_name: "grower", endpoint: odd.url });
      expect(r.isError, text(r)).toBeFalsy();
      expect(text(r)).toBe(`Service "grower" updated (endpoint); skipped 1: "" (${BAD_NAME}).`);
      expect(r.structuredContent).toEqual({ service_name: "grower", updated: ["endpoint"], added: [], removed: [], changed: [], skipped: [{ name: "", reason: BAD_NAME }] });
      expect((await toolsOf(reg, "grower")).map((t) => t.name)).toEqual(["alpha", "beta", "gamma"]);
      await ok(reg, "update_service", { service_name: "grower", endpoint: server.url });
    } finally {
      await endless.stop();
      await odd.stop();
    }
  });
});

describe("a background refresh that suddenly brings too much", () => {
  let reg: TestRegistry;
  let server: McpServer;
  const state = { tools: [tool("alpha"), tool("beta")] as Tool[] };
  beforeAll(async () => {
    reg = await startTestRegistry({ ...LIMITS, REGISTRY_REFRESH_INTERVAL: "0.2" });
    server = await listingServer(() => ({ tools: state.tools }));
    await ok(reg, "add_service", { service_name: "drifter", endpoint: server.url, description: "Drifts" });
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
  });

  it("is refused with no admin action: health names the limit, the old tools stay, the log says so once", async () => {
    const before = await toolsOf(reg, "drifter");
    state.tools = manyTools(11);
    const reason = `the MCP service at "${server.url}" lists more than 10 tools (REGISTRY_MAX_TOOLS)`;
    const info = await waitFor(async () => {
      const i = await serviceInfo(reg, "drifter");
      return i.consecutive_failures >= 2 ? i : undefined;
    }, "two background refusals");
    expect(info).toMatchObject({ status: "unreachable", last_error: reason, tools: 2 });
    expect(await toolsOf(reg, "drifter")).toEqual(before);
    const down = reg.logs.filter((l) => l.includes('Service "drifter" is unreachable'));
    expect(down).toHaveLength(1);
    expect(down[0].replace(/^\S+ /, "")).toBe(`WARN Service "drifter" is unreachable ${JSON.stringify({ reason: `Cannot refresh service "drifter": ${reason}` })}`);
  });

  it("logs the tools it skipped, escaped", async () => {
    state.tools = [tool("alpha"), tool("beta"), tool("\u001b[2Jwipe")];
    await waitFor(async () => (await serviceInfo(reg, "drifter")).status === "ok", "the background refresh to succeed again");
    const line = (await waitFor(() => reg.logs.find((l) => l.includes('Service "drifter" lists tools the registry skipped')), "the log line of skipped tools"))!;
    expect(line.replace(/^\S+ /, "")).toBe(`WARN Service "drifter" lists tools the registry skipped ${JSON.stringify({ skipped: [`"\\u001b[2Jwipe" (${BAD_NAME})`] })}`);
    expect(reg.logs.filter((l) => UNSAFE.test(l))).toEqual([]);
  });
});
