/** A catalogue that stays true — refresh_service, background refresh, health, discovery credentials, update_service. */
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import { type CallToolResult, ListToolsRequestSchema, type Tool } from "@modelcontextprotocol/sdk/types.js";
import { eq } from "drizzle-orm";
import type { CatalogueDiff } from "../features/services/refresh.ts";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  call,
  ENGINE,
  fails,
  freePort,
  freshDatabase,
  type Hook,
  startHook,
  startTestMcpServer,
  startTestRegistry,
  TEST_SECRET,
  type TestRegistry,
  snapshot,
  tempDir,
  text,
  waitFor,
} from "./helpers.ts";

type ToolSpec = Partial<Tool> & { name: string };
type ToolEntry = { id: number; name: string; description: string; roles: string[] };
/** What the test server lists now, and whether it answers at all; change it between refreshes. */
type ServerState = { tools: ToolSpec[]; down: boolean; instructions?: string };
type McpServer = Awaited<ReturnType<typeof startTestMcpServer>>;

// This file is about how a discovered difference is applied: changes are served at once (policy accept).
// Holding a changed tool until an admin approves it, the default, is test/tool_pinning.test.ts.
const APPLY_AT_ONCE = { REGISTRY_TOOL_CHANGES: "accept" };
const schema = (...props: string[]) => ({ type: "object" as const, properties: Object.fromEntries(props.map((p) => [p, { type: "string" }])) });
const tool = (name: string, ...props: string[]): ToolSpec => ({ name, description: `Does ${name}`, inputSchema: schema(...props) });
const listing = (state: ServerState) => ({ tools: state.tools.map((t) => ({ description: `Does ${t.name}`, inputSchema: schema(), ...t })) });

/** An SDK server listing `state.tools` (read on every request); answers 503 while `state.down`. */
function changingServer(state: ServerState, intercept?: (req: Request) => Response | undefined | Promise<Response>): Promise<McpServer> {
  return startTestMcpServer({
    instructions: state.instructions,
    intercept: (req) => (state.down ? new Response("down for maintenance", { status: 503 }) : intercept?.(req)),
    setup: (mcp) => mcp.setRequestHandler(ListToolsRequestSchema, () => listing(state)),
  });
}

/** The same kind of server on a given port: what comes back after a server was stopped. */
async function serverOnPort(port: number, state: ServerState): Promise<{ stop(): Promise<void> }> {
  const server = serve({
    port,
    hostname: "127.0.0.1",
    fetch: async (req) => {
      if (req.method !== "POST") return new Response(null, { status: 405 });
      const mcp = new Server({ name: "test-server", version: "1.0.0" }, { capabilities: { tools: {} }, instructions: state.instructions });
      mcp.setRequestHandler(ListToolsRequestSchema, () => listing(state));
      const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      await mcp.connect(transport);
      return transport.handleRequest(req);
    },
  });
  await new Promise((r) => server.once("listening", r));
  return {
    stop: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        (server as unknown as { closeAllConnections(): void }).closeAllConnections();
      }),
  };
}

async function toolsOf(reg: TestRegistry, service: string): Promise<ToolEntry[]> {
  const r = await call(await reg.client(), "get_tools", { service_name: service });
  expect(r.isError, text(r)).toBeFalsy();
  return (r.structuredContent as { tools: ToolEntry[] }).tools;
}

type ServiceInfo = { status: string; last_discovered_at: string | null; last_error: string | null; consecutive_failures: number; [k: string]: unknown };

async function serviceInfo(reg: TestRegistry, service: string): Promise<ServiceInfo> {
  const r = await call(await reg.client(), "get_service", { service_name: service });
  expect(r.isError, text(r)).toBeFalsy();
  expect(JSON.parse(text(r))).toEqual(r.structuredContent);
  return r.structuredContent as ServiceInfo;
}

async function ok(reg: TestRegistry, name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  const r = await call(await reg.client(), name, args);
  expect(r.isError, text(r)).toBeFalsy();
  return r;
}

/** A database two registries can share: a file on SQLite, a fresh database on PostgreSQL. */
async function sharedDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  if (ENGINE === "postgres") return freshDatabase();
  return { url: `file:${join(tempDir(), "shared.db")}`, drop: async () => {} };
}

describe("refresh_service", () => {
  let reg: TestRegistry;
  let hook: Hook;
  let server: McpServer;
  const state: ServerState = { tools: [tool("search", "q"), tool("fetch", "url"), tool("translate", "text")], down: false };
  beforeAll(async () => {
    hook = await startHook();
    [reg, server] = await Promise.all([startTestRegistry({ ...APPLY_AT_ONCE, AGENT_REREAD_HOOK: hook.url, REGISTRY_REFRESH_INTERVAL: "0" }), changingServer(state)]);
    await ok(reg, "add_service", { service_name: "svc", endpoint: server.url, description: "A changing service" });
    await ok(reg, "create_role", { role_name: "reader" });
    await waitFor(() => hook.hits === 1, "the hook call after add_service");
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
    await hook?.stop();
  });

  it("adds, removes and updates tools; kept tools keep their ids and role attachments; the hook is called once", async () => {
    const before = await toolsOf(reg, "svc");
    const id = (name: string) => before.find((t) => t.name === name)!.id;
    await ok(reg, "attach_role_to_tool", { tool_id: id("fetch"), role_name: "reader" });
    await ok(reg, "attach_role_to_tool", { tool_id: id("translate"), role_name: "reader" });
    await ok(reg, "attach_role_to_tool", { tool_id: id("search"), role_name: "reader" });

    // "search" vanishes, "summarize" appears, "fetch" gets a new input schema, "translate" stays as it was.
    state.tools = [tool("fetch", "url", "timeout"), tool("translate", "text"), tool("summarize", "text")];
    const r = await ok(reg, "refresh_service", { service_name: "svc" });
    expect(text(r)).toBe('Service "svc" refreshed (3 tools): added "summarize"; removed "search"; changed "fetch".');
    expect(r.structuredContent).toEqual({ service_name: "svc", tools: 3, added: ["summarize"], removed: ["search"], changed: ["fetch"] });

    const after = await toolsOf(reg, "svc");
    expect(after.map(({ name, roles }) => ({ name, roles }))).toEqual([
      { name: "fetch", roles: ["reader"] },
      { name: "translate", roles: ["reader"] },
      { name: "summarize", roles: [] },
    ]);
    expect(after[0].id).toBe(id("fetch"));
    expect(after[1].id).toBe(id("translate"));
    expect(after[2].id).toBeGreaterThan(Math.max(...before.map((t) => t.id)));
    // The stored schema is the new one; the vanished tool's attachment went with it.
    const { tools, toolRoles } = reg.ctx.tables;
    const [fetchRow] = await reg.ctx.db
      .select()
      .from(tools)
      .where(eq(tools.id, id("fetch")));
    expect(fetchRow.inputSchema).toEqual(schema("url", "timeout"));
    expect(
      await reg.ctx.db
        .select()
        .from(toolRoles)
        .where(eq(toolRoles.toolId, id("search"))),
    ).toEqual([]);
    const roleTools = await (await reg.http("/tools_for_role", { method: "POST", body: JSON.stringify({ role: "reader" }) })).json();
    expect(roleTools.tools.map((t: { name: string }) => t.name).sort()).toEqual(["fetch", "translate"]);

    await waitFor(() => hook.hits === 2, "the hook call after the changing refresh");
    await waitFor(() => reg.ctx.background.size === 0, "the hook call to end");
    expect(hook.hits).toBe(2);
  });

  it("reports a refresh without changes as such, keeps everything, and does not call the hook", async () => {
    const before = await snapshot(reg);
    const hits = hook.hits;
    const r = await ok(reg, "refresh_service", { service_name: "svc" });
    expect(text(r)).toBe('Service "svc" refreshed (3 tools): no tool changes.');
    expect(r.structuredContent).toEqual({ service_name: "svc", tools: 3, added: [], removed: [], changed: [] });
    const after = await snapshot(reg);
    expect(after.tools).toEqual(before.tools);
    expect(after.links).toEqual(before.links);
    expect(after.catalogue).toEqual(before.catalogue);
    expect(reg.ctx.background.size).toBe(0);
    expect(hook.hits).toBe(hits);
  });

  it("counts a new title, description or annotations as a change", async () => {
    state.tools = state.tools.map((t) => (t.name === "translate" ? { ...t, title: "Translate text", annotations: { readOnlyHint: true } } : t));
    state.tools = state.tools.map((t) => (t.name === "summarize" ? { ...t, description: "Summarizes a text" } : t));
    const r = await ok(reg, "refresh_service", { service_name: "svc" });
    expect(r.structuredContent).toEqual({ service_name: "svc", tools: 3, added: [], removed: [], changed: ["translate", "summarize"] });
    const { tools } = reg.ctx.tables;
    const [row] = await reg.ctx.db.select().from(tools).where(eq(tools.name, "translate"));
    expect(row).toMatchObject({ title: "Translate text", annotations: { readOnlyHint: true } });
    expect((await toolsOf(reg, "svc")).find((t) => t.name === "summarize")!.description).toBe("Summarizes a text");
    // Read back from the database the same catalogue is no change, whatever key order the engine keeps.
    expect((await ok(reg, "refresh_service", { service_name: "svc" })).structuredContent).toMatchObject({ added: [], removed: [], changed: [] });
  });

  it("refuses an unknown or invalid service name, writing nothing", async () => {
    expect(await fails(reg, "refresh_service", { service_name: "ghost" })).toBe('Cannot refresh service "ghost": no such service');
    expect(await fails(reg, "refresh_service", { service_name: "  " })).toBe("Cannot refresh service: service_name: must not be empty");
    expect(await fails(reg, "get_service", { service_name: "ghost" })).toBe('Cannot get service "ghost": no such service');
  });
});

describe("health", () => {
  let reg: TestRegistry;
  let server: McpServer;
  let revived: { stop(): Promise<void> } | undefined;
  const state: ServerState = { tools: [tool("ping"), tool("echo", "text")], down: false };
  beforeAll(async () => {
    [reg, server] = await Promise.all([startTestRegistry({ ...APPLY_AT_ONCE, REGISTRY_REFRESH_INTERVAL: "0" }), changingServer(state)]);
    await ok(reg, "add_service", { service_name: "flaky", endpoint: server.url, description: "Comes and goes" });
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
    await revived?.stop();
  });

  it("a new service is ok, with its discovery time and no error", async () => {
    const info = await serviceInfo(reg, "flaky");
    expect(info).toEqual({
      service_name: "flaky",
      endpoint: server.url,
      description: "Comes and goes",
      transport: "streamable_http",
      requires_authorization: false,
      method_authorization: "",
      has_discovery_token: false,
      tools: 2,
      status: "ok",
      last_discovered_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      last_error: null,
      consecutive_failures: 0,
    });
  });

  it("a service that answers with an error becomes unreachable, counts failures and keeps its tools; then recovers", async () => {
    const tools = await toolsOf(reg, "flaky");
    const { last_discovered_at: discovered } = await serviceInfo(reg, "flaky");
    state.down = true;
    const reason = `no MCP service answered at "${server.url}" (streamable HTTP: HTTP 503; SSE: HTTP 503)`;
    for (const failures of [1, 2]) {
      const r = await call(await reg.client(), "refresh_service", { service_name: "flaky" });
      expect(r.isError).toBe(true);
      expect(text(r)).toBe(`Cannot refresh service "flaky": ${reason}`);
      expect(await serviceInfo(reg, "flaky")).toMatchObject({
        status: "unreachable",
        last_error: reason,
        consecutive_failures: failures,
        last_discovered_at: discovered,
        tools: 2,
      });
    }
    expect(await toolsOf(reg, "flaky")).toEqual(tools);
    const list = await ok(reg, "list_services", { include_health: true });
    expect(list.structuredContent).toEqual({
      services: [
        {
          service_name: "flaky",
          endpoint: server.url,
          description: "Comes and goes",
          status: "unreachable",
          last_discovered_at: discovered,
          last_error: reason,
          consecutive_failures: 2,
          tools: 2,
        },
      ],
    });
    expect(JSON.parse(text(list))).toEqual((list.structuredContent as { services: unknown[] }).services);
    // Old callers see what they always saw: without include_health, and on HTTP exactly {transport, url}.
    expect((await ok(reg, "list_services", {})).structuredContent).toEqual({ services: [{ service_name: "flaky", endpoint: server.url, description: "Comes and goes" }] });
    expect(await (await reg.http("/list_services")).json()).toEqual({ services: { flaky: { transport: "streamable_http", url: server.url } } });

    state.down = false;
    expect(text(await ok(reg, "refresh_service", { service_name: "flaky" }))).toBe('Service "flaky" refreshed (2 tools): no tool changes.');
    const info = await serviceInfo(reg, "flaky");
    expect(info).toMatchObject({ status: "ok", last_error: null, consecutive_failures: 0 });
    expect(info.last_discovered_at! > discovered!).toBe(true);
    expect(await toolsOf(reg, "flaky")).toEqual(tools);
  });

  it("a stopped server is unreachable (connection refused); a new server on its port brings it back", async () => {
    const tools = await toolsOf(reg, "flaky");
    await server.stop();
    const r = await call(await reg.client(), "refresh_service", { service_name: "flaky" });
    const reason = `no MCP service answered at "${server.url}" (streamable HTTP: connection refused; SSE: connection refused)`;
    expect(text(r)).toBe(`Cannot refresh service "flaky": ${reason}`);
    expect(await serviceInfo(reg, "flaky")).toMatchObject({ status: "unreachable", last_error: reason, consecutive_failures: 1 });
    expect(await toolsOf(reg, "flaky")).toEqual(tools);

    state.tools = [...state.tools, tool("status")];
    revived = await serverOnPort(server.port, state);
    expect(text(await ok(reg, "refresh_service", { service_name: "flaky" }))).toBe('Service "flaky" refreshed (3 tools): added "status".');
    expect(await serviceInfo(reg, "flaky")).toMatchObject({ status: "ok", last_error: null, consecutive_failures: 0, tools: 3 });
    expect((await toolsOf(reg, "flaky")).slice(0, 2)).toEqual(tools);
  });
});

describe("services that need a credential to be discovered", () => {
  const TOKEN = "s3cret-discovery-token-0123456789";
  let reg: TestRegistry;
  let server: McpServer;
  let echo: McpServer;
  let authorized = 0;
  const results: CallToolResult[] = [];
  const state: ServerState = { tools: [tool("inbox"), tool("send", "to", "body")], down: false };
  beforeAll(async () => {
    reg = await startTestRegistry({ ...APPLY_AT_ONCE, REGISTRY_REFRESH_INTERVAL: "0", REGISTRY_SECRET: TEST_SECRET });
    // Anonymous tools/list is refused: only the right Authorization header gets through.
    server = await changingServer(state, (req) => {
      if (req.headers.get("authorization") !== `Bearer ${TOKEN}`) return new Response("sign in first", { status: 401 });
      authorized++;
      return undefined;
    });
    // A server that refuses the credential with a JSON-RPC error quoting it.
    echo = await changingServer(state, async (req) => {
      if (req.method !== "POST") return new Response(null, { status: 405 });
      const { id } = await req.json();
      const error = { code: -32001, message: `Credential "${req.headers.get("authorization")}" is not accepted here` };
      return Response.json({ jsonrpc: "2.0", id, error });
    });
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
    await echo?.stop();
  });

  async function run(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
    const r = await call(await reg.client(), name, args);
    results.push(r);
    return r;
  }

  it("add_service fails without discovery_token and with a wrong one, writing nothing", async () => {
    const refused = `no MCP service answered at "${server.url}" (streamable HTTP: HTTP 401; SSE: HTTP 401)`;
    const base = { service_name: "mail", endpoint: server.url, description: "Mail", requires_authorization: true, method_authorization: "Bearer" };
    expect(await fails(reg, "add_service", base)).toBe(`Cannot add service "mail": ${refused}`);
    expect(await fails(reg, "add_service", { ...base, discovery_token: "wrong-token" })).toBe(`Cannot add service "mail": ${refused}`);
    expect(await fails(reg, "add_service", { ...base, requires_authorization: false, discovery_token: TOKEN })).toBe(
      'Cannot add service: discovery_token needs requires_authorization true (it is sent as "Authorization: <method_authorization> <token>")',
    );
    expect(await fails(reg, "add_service", { ...base, discovery_token: "two words" })).toBe("Cannot add service: discovery_token: must be printable ASCII without spaces");
    expect(authorized).toBe(0);
  });

  it("add_service succeeds with it; it is stored encrypted and shown only as has_discovery_token", async () => {
    const r = await run("add_service", {
      service_name: "mail",
      endpoint: server.url,
      description: "Mail",
      requires_authorization: true,
      method_authorization: "Bearer",
      discovery_token: TOKEN,
    });
    expect(text(r)).toBe('Service "mail" added with 2 tools.');
    expect(authorized).toBeGreaterThan(0);
    const info = await run("get_service", { service_name: "mail" });
    expect(info.structuredContent).toMatchObject({ requires_authorization: true, method_authorization: "Bearer", has_discovery_token: true, status: "ok", tools: 2 });
    const { services } = reg.ctx.tables;
    const [row] = await reg.ctx.db.select().from(services).where(eq(services.name, "mail"));
    expect(row.discoveryToken).toMatch(/^v1:[0-9a-f]{8}:/);
    expect(row.discoveryToken).not.toContain(TOKEN);
    // Sealed for this row: moved to another service it does not open, so refresh says so instead of using it.
    const other = await changingServer({ tools: [], down: false });
    try {
      await run("add_service", { service_name: "other", endpoint: other.url, description: "Other", requires_authorization: true, method_authorization: "Bearer" });
      await reg.ctx.db.update(services).set({ discoveryToken: row.discoveryToken }).where(eq(services.name, "other"));
      const moved = await run("refresh_service", { service_name: "other" });
      expect(text(moved)).toBe('Cannot refresh service "other": the stored discovery token cannot be decrypted; set it again with update_service (discovery_token)');
      expect((await run("get_service", { service_name: "other" })).structuredContent).toMatchObject({ status: "unreachable", consecutive_failures: 1 });
      await run("remove_service", { service_name: "other" });
    } finally {
      await other.stop();
    }
  });

  it("refresh uses it", async () => {
    state.tools = [...state.tools, tool("archive")];
    const before = authorized;
    const r = await run("refresh_service", { service_name: "mail" });
    expect(text(r)).toBe('Service "mail" refreshed (3 tools): added "archive".');
    expect(authorized).toBeGreaterThan(before);
  });

  it('update_service discovery_token "" removes it (refresh then fails), a new one restores it', async () => {
    const cleared = await run("update_service", { service_name: "mail", discovery_token: "" });
    expect(text(cleared)).toBe('Service "mail" updated (discovery_token).');
    expect((await run("get_service", { service_name: "mail" })).structuredContent).toMatchObject({ has_discovery_token: false });
    const failed = await run("refresh_service", { service_name: "mail" });
    expect(text(failed)).toBe(`Cannot refresh service "mail": no MCP service answered at "${server.url}" (streamable HTTP: HTTP 401; SSE: HTTP 401)`);
    expect(text(await run("update_service", { service_name: "mail", discovery_token: TOKEN }))).toBe('Service "mail" updated (discovery_token).');
    expect(text(await run("refresh_service", { service_name: "mail" }))).toBe('Service "mail" refreshed (3 tools): no tool changes.');
    expect((await run("get_service", { service_name: "mail" })).structuredContent).toMatchObject({ has_discovery_token: true, status: "ok", consecutive_failures: 0 });
  });

  it("never sends the stored token to another origin: moving the service there needs the token again", async () => {
    const moved = await changingServer(state);
    try {
      expect(await fails(reg, "update_service", { service_name: "mail", endpoint: moved.url })).toBe(
        'Cannot update service "mail": the new endpoint is on another origin than the stored discovery_token was given for; give discovery_token again (or "" to remove it)',
      );
      expect(moved.requests).toBe(0);
      // The same origin (another path, or a query) keeps it.
      const sameOrigin = `${server.url}?tenant=1`;
      const before = authorized;
      expect(text(await run("update_service", { service_name: "mail", endpoint: sameOrigin }))).toBe('Service "mail" updated (endpoint).');
      expect(authorized).toBeGreaterThan(before);
      expect(text(await run("update_service", { service_name: "mail", endpoint: server.url }))).toBe('Service "mail" updated (endpoint).');
    } finally {
      await moved.stop();
    }
  });

  it("a server echoing the credential in an error never gets it into the error", async () => {
    const r = await run("add_service", {
      service_name: "echo",
      endpoint: echo.url,
      description: "",
      requires_authorization: true,
      method_authorization: "Basic",
      discovery_token: TOKEN,
    });
    expect(r.isError).toBe(true);
    expect(text(r)).toBe(
      `Cannot add service "echo": no MCP service answered at "${echo.url}" (streamable HTTP: MCP error -32001: Credential "***" is not accepted here; SSE: HTTP 405)`,
    );
    expect(text(r)).not.toContain(TOKEN);
  });

  it("the token is in no result, log line, audit event or stored text", async () => {
    results.push(await run("list_services", { include_health: true }), await run("get_tools", { service_name: "mail" }));
    const audit = await run("list_audit_events", {});
    expect(JSON.stringify(audit)).toContain("update_service");
    for (const r of results) expect(JSON.stringify(r)).not.toContain(TOKEN);
    expect(reg.logs.join("\n")).not.toContain(TOKEN);
    const { auditEvents, services } = reg.ctx.tables;
    expect(JSON.stringify(await reg.ctx.db.select().from(auditEvents))).not.toContain(TOKEN);
    expect(JSON.stringify(await reg.ctx.db.select().from(services))).not.toContain(TOKEN);
  });
});

describe("discovery tokens and key rotation", () => {
  const OLD = TEST_SECRET;
  const NEW = Buffer.alloc(32, 9).toString("base64");
  const TOKEN = "rotating-discovery-token";
  let db: { url: string; drop(): Promise<void> };
  let server: McpServer;
  const cleanup: (() => Promise<void>)[] = [];
  beforeAll(async () => {
    db = await sharedDatabase();
    server = await changingServer({ tools: [tool("one")], down: false }, (req) =>
      req.headers.get("authorization") === `Basic ${TOKEN}` ? undefined : new Response(null, { status: 401 }),
    );
  });
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });
  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  it("re-encrypts discovery tokens at start-up under REGISTRY_SECRET_PREVIOUS, and a key that cannot read them stops start-up", async () => {
    const first = await startTestRegistry({ ...APPLY_AT_ONCE, DATABASE_URL: db.url, REGISTRY_SECRET: OLD, REGISTRY_REFRESH_INTERVAL: "0" });
    await ok(first, "add_service", {
      service_name: "basic",
      endpoint: server.url,
      description: "d",
      requires_authorization: true,
      method_authorization: "Basic",
      discovery_token: TOKEN,
    });
    await first.stop();

    const rotated = await startTestRegistry({ ...APPLY_AT_ONCE, DATABASE_URL: db.url, REGISTRY_SECRET: NEW, REGISTRY_SECRET_PREVIOUS: OLD, REGISTRY_REFRESH_INTERVAL: "0" });
    cleanup.push(() => rotated.stop());
    expect(rotated.logs.join("\n")).toContain("Re-encrypted 1 stored discovery token with the current key");
    const { services } = rotated.ctx.tables;
    const [row] = await rotated.ctx.db.select().from(services).where(eq(services.name, "basic"));
    expect(row.discoveryToken!.startsWith(rotated.ctx.vault.currentPrefix)).toBe(true);
    expect(text(await ok(rotated, "refresh_service", { service_name: "basic" }))).toBe('Service "basic" refreshed (1 tool): no tool changes.');
    await cleanup.pop()!();

    // Only the new key from now on; the old one alone cannot read the tokens and says so before serving.
    const onlyNew = await startTestRegistry({ ...APPLY_AT_ONCE, DATABASE_URL: db.url, REGISTRY_SECRET: NEW, REGISTRY_REFRESH_INTERVAL: "0" });
    await onlyNew.stop();
    await expect(startTestRegistry({ ...APPLY_AT_ONCE, DATABASE_URL: db.url, REGISTRY_SECRET: OLD, REGISTRY_REFRESH_INTERVAL: "0" })).rejects.toThrow(
      "1 stored discovery token was encrypted with another key than REGISTRY_SECRET: set REGISTRY_SECRET to the key they were stored with, " +
        "or, to rotate keys, set REGISTRY_SECRET to the new key and REGISTRY_SECRET_PREVIOUS to the old one",
    );
  });
});

describe("background refresh", () => {
  let reg: TestRegistry;
  let server: McpServer;
  const state: ServerState = { tools: [tool("alpha")], down: false };
  beforeAll(async () => {
    [reg, server] = await Promise.all([startTestRegistry({ ...APPLY_AT_ONCE, REGISTRY_REFRESH_INTERVAL: "0.2" }), changingServer(state)]);
    await ok(reg, "add_service", { service_name: "live", endpoint: server.url, description: "Refreshed by itself" });
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
  });

  it("picks up a change by itself", async () => {
    const [alpha] = await toolsOf(reg, "live");
    state.tools = [tool("alpha"), tool("beta")];
    const tools = (await waitFor(async () => {
      const now = await toolsOf(reg, "live");
      return now.length === 2 ? now : undefined;
    }, "the background refresh to add beta"))!;
    expect(tools.map((t) => t.name)).toEqual(["alpha", "beta"]);
    expect(tools[0]).toEqual(alpha);
  });

  it("records failures and the recovery, logging each change of status once", async () => {
    state.down = true;
    const info = (await waitFor(async () => {
      const i = await serviceInfo(reg, "live");
      return i.consecutive_failures >= 2 ? i : undefined;
    }, "two background failures"))!;
    expect(info).toMatchObject({ status: "unreachable", last_error: `no MCP service answered at "${server.url}" (streamable HTTP: HTTP 503; SSE: HTTP 503)`, tools: 2 });
    state.down = false;
    await waitFor(async () => (await serviceInfo(reg, "live")).status === "ok", "the background refresh to see the service again");
    const down = reg.logs.filter((l) => l.includes('Service "live" is unreachable'));
    expect(down).toHaveLength(1);
    expect(down[0].replace(/^\S+ /, "")).toBe(`WARN Service "live" is unreachable ${JSON.stringify({ reason: `Cannot refresh service "live": ${info.last_error}` })}`);
    expect(reg.logs.filter((l) => l.includes('Service "live" is reachable again'))).toHaveLength(1);
    expect(reg.logs.join("\n")).not.toMatch(/ERROR/);
  });
});

describe("two registries on one database, both refreshing in the background", () => {
  let db: { url: string; drop(): Promise<void> };
  let one: TestRegistry;
  let two: TestRegistry;
  let hook: Hook;
  let server: McpServer;
  const state: ServerState = { tools: [tool("x", "a")], down: false };
  beforeAll(async () => {
    [db, hook, server] = await Promise.all([sharedDatabase(), startHook(), changingServer(state)]);
    const env = {
      ...APPLY_AT_ONCE,
      DATABASE_URL: db.url,
      REGISTRY_REFRESH_INTERVAL: "0.2",
      AGENT_REREAD_HOOK: hook.url,
      ...(ENGINE === "postgres" ? {} : { REGISTRY_SECRET: TEST_SECRET }),
    };
    // One after the other: on SQLite the first creates the file and its schema.
    one = await startTestRegistry(env);
    two = await startTestRegistry(env);
  });
  afterAll(async () => {
    await one?.stop();
    await two?.stop();
    await server?.stop();
    await hook?.stop();
    await db?.drop();
  });

  it("applies a change once: no duplicate tools, one hook call, no errors", async () => {
    await ok(one, "add_service", { service_name: "shared", endpoint: server.url, description: "Seen by both" });
    await waitFor(() => hook.hits === 1, "the hook call after add_service");
    const [x] = await toolsOf(two, "shared");
    state.tools = [tool("x", "a", "b"), tool("y")];
    for (const reg of [one, two]) {
      await waitFor(async () => (await toolsOf(reg, "shared")).length === 2, "both registries to see y");
    }
    // Let several more rounds pass over the unchanged server.
    const requests = server.requests;
    await waitFor(() => server.requests > requests + 30, "more background refreshes");
    const { tools } = one.ctx.tables;
    const rows = await one.ctx.db.select().from(tools).orderBy(tools.id);
    expect(rows.map((r) => r.name)).toEqual(["x", "y"]);
    expect(rows[0]).toMatchObject({ id: x.id, inputSchema: schema("a", "b") });
    await waitFor(() => one.ctx.background.size === 0 && two.ctx.background.size === 0, "the hook calls to end");
    expect(hook.hits).toBe(2);
    for (const reg of [one, two]) expect(reg.logs.join("\n")).not.toMatch(/ERROR|WARN.*unreachable/);
  });

  it("never discovers one service twice at once, even when a discovery takes longer than the interval", async () => {
    let inFlight = 0;
    let most = 0;
    let lists = 0;
    const slow = await startTestMcpServer({
      setup: (mcp) =>
        mcp.setRequestHandler(ListToolsRequestSchema, async () => {
          most = Math.max(most, ++inFlight);
          await new Promise((r) => setTimeout(r, 300));
          inFlight--;
          lists++;
          return { tools: [{ name: "slow", inputSchema: { type: "object" as const } }] };
        }),
    });
    try {
      await ok(two, "add_service", { service_name: "slow", endpoint: slow.url, description: "Takes its time" });
      const before = lists;
      await waitFor(() => lists >= before + 4, "four background discoveries of the slow service");
      expect(most).toBe(1);
      await ok(two, "remove_service", { service_name: "slow" });
    } finally {
      await slow.stop();
    }
  });
});

describe("concurrent refreshes of one service", () => {
  let reg: TestRegistry;
  let hook: Hook;
  let server: McpServer;
  const state: ServerState = { tools: [tool("x")], down: false };
  beforeAll(async () => {
    hook = await startHook();
    [reg, server] = await Promise.all([startTestRegistry({ ...APPLY_AT_ONCE, REGISTRY_REFRESH_INTERVAL: "0", AGENT_REREAD_HOOK: hook.url }), changingServer(state)]);
    await ok(reg, "add_service", { service_name: "busy", endpoint: server.url, description: "Refreshed by many" });
    await waitFor(() => hook.hits === 1, "the hook call after add_service");
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
    await hook?.stop();
  });

  it("report each change once: the difference is applied over what is stored at write time", async () => {
    const clients = await Promise.all(Array.from({ length: 6 }, () => reg.client()));
    const refreshAll = async () => {
      const results = await Promise.all(clients.map((c) => call(c, "refresh_service", { service_name: "busy" })));
      for (const r of results) expect(r.isError, text(r)).toBeFalsy();
      const data = results.map((r) => r.structuredContent as CatalogueDiff);
      return { added: data.flatMap((d) => d.added), removed: data.flatMap((d) => d.removed), changed: data.flatMap((d) => d.changed) };
    };
    state.tools = [tool("x", "changed"), tool("y")];
    expect(await refreshAll()).toEqual({ added: ["y"], removed: [], changed: ["x"] });
    expect((await toolsOf(reg, "busy")).map((t) => t.name)).toEqual(["x", "y"]);
    // Without a new tool no unique index stands in the way: only the version check does.
    state.tools = [tool("x", "changed", "again")];
    expect(await refreshAll()).toEqual({ added: [], removed: ["y"], changed: ["x"] });
    expect((await toolsOf(reg, "busy")).map((t) => t.name)).toEqual(["x"]);
    await waitFor(() => hook.hits === 3, "the hook calls after the changes");
    await waitFor(() => reg.ctx.background.size === 0, "the hook calls to end");
    expect(hook.hits).toBe(3);
    expect(reg.logs.join("\n")).not.toMatch(/ERROR/);
  });
});

describe("update_service", () => {
  let reg: TestRegistry;
  let hook: Hook;
  const servers: McpServer[] = [];
  const first: ServerState = { tools: [tool("lookup", "q"), tool("legacy")], down: false, instructions: "The first home." };
  const second: ServerState = { tools: [tool("lookup", "q"), tool("modern")], down: false, instructions: "The second home." };
  let a: McpServer;
  let b: McpServer;
  let other: McpServer;
  beforeAll(async () => {
    hook = await startHook();
    [reg, a, b, other] = await Promise.all([
      startTestRegistry({ ...APPLY_AT_ONCE, REGISTRY_REFRESH_INTERVAL: "0", AGENT_REREAD_HOOK: hook.url }),
      changingServer(first),
      changingServer(second),
      changingServer({ tools: [tool("other")], down: false }),
    ]);
    servers.push(a, b, other);
    await ok(reg, "add_service", { service_name: "movable", endpoint: a.url, description: "Moves around" });
    await ok(reg, "add_service", { service_name: "other", endpoint: other.url, description: "Stays" });
    await ok(reg, "create_role", { role_name: "finder" });
  });
  afterAll(async () => {
    await reg?.stop();
    await Promise.all(servers.map((s) => s.stop()));
    await hook?.stop();
  });

  it("refuses bad input, unknown services and conflicts, writing nothing", async () => {
    const dead = `http://127.0.0.1:${await freePort()}/mcp`;
    const cases: [Record<string, unknown>, string][] = [
      [{ service_name: "ghost", description: "x" }, 'Cannot update service "ghost": no such service'],
      [{ service_name: "movable" }, 'Cannot update service "movable": give at least one of endpoint, description, requires_authorization, method_authorization, discovery_token'],
      [{ service_name: "movable", endpoint: "ftp://x" }, "Cannot update service: endpoint: must be an http(s) URL"],
      [{ service_name: "movable", endpoint: other.url }, `Cannot update service "movable": service "other" already uses endpoint "${other.url}"`],
      [
        { service_name: "movable", endpoint: dead },
        `Cannot update service "movable": no MCP service answered at "${dead}" (streamable HTTP: connection refused; SSE: connection refused)`,
      ],
      [
        { service_name: "movable", requires_authorization: true },
        'Cannot update service "movable": method_authorization must be "Basic" or "Bearer" when requires_authorization is true',
      ],
      [
        { service_name: "movable", requires_authorization: true, method_authorization: "Digest" },
        'Cannot update service "movable": method_authorization must be "Basic" or "Bearer" when requires_authorization is true',
      ],
      [
        { service_name: "movable", discovery_token: "abc" },
        'Cannot update service "movable": discovery_token needs requires_authorization true (it is sent as "Authorization: <method_authorization> <token>")',
      ],
      [{ service_name: "movable", discovery_token: "a b" }, "Cannot update service: discovery_token: must be printable ASCII without spaces"],
      [{ service_name: "movable", requires_authorization: "yes" }, "Cannot update service: requires_authorization: must be true or false"],
    ];
    const hits = hook.hits;
    for (const [args, message] of cases) expect(await fails(reg, "update_service", args), JSON.stringify(args)).toBe(message);
    expect(b.requests).toBe(0);
    expect(reg.ctx.background.size).toBe(0);
    expect(hook.hits).toBe(hits);
  });

  it("moves a service to a new endpoint, keeping the ids and attachments of the tools that remain", async () => {
    const before = await toolsOf(reg, "movable");
    const lookup = before.find((t) => t.name === "lookup")!;
    await ok(reg, "attach_role_to_tool", { tool_id: lookup.id, role_name: "finder" });
    const hits = hook.hits;
    const r = await ok(reg, "update_service", { service_name: "movable", endpoint: b.url });
    expect(text(r)).toBe('Service "movable" updated (endpoint): added "modern"; removed "legacy".');
    expect(r.structuredContent).toEqual({ service_name: "movable", updated: ["endpoint"], added: ["modern"], removed: ["legacy"], changed: [] });
    const after = await toolsOf(reg, "movable");
    expect(after[0]).toEqual({ ...lookup, roles: ["finder"] });
    expect(after.map((t) => t.name)).toEqual(["lookup", "modern"]);
    expect(await (await reg.http("/list_services")).json()).toMatchObject({ services: { movable: { transport: "streamable_http", url: b.url } } });
    expect(await serviceInfo(reg, "movable")).toMatchObject({ endpoint: b.url, description: "Moves around", status: "ok" });
    await waitFor(() => hook.hits === hits + 1, "the hook call after update_service");
    // Refreshing now asks the new endpoint.
    const asked = b.requests;
    expect(text(await ok(reg, "refresh_service", { service_name: "movable" }))).toBe('Service "movable" refreshed (2 tools): no tool changes.');
    expect(b.requests).toBeGreaterThan(asked);
  });

  it('changes the description and authorization settings without discovery; description "" reads it from the service', async () => {
    const tools = await toolsOf(reg, "movable");
    const asked = b.requests;
    expect(text(await ok(reg, "update_service", { service_name: "movable", description: "  Moved for good  " }))).toBe('Service "movable" updated (description).');
    expect(text(await ok(reg, "update_service", { service_name: "movable", requires_authorization: true, method_authorization: "Basic" }))).toBe(
      'Service "movable" updated (requires_authorization, method_authorization).',
    );
    expect(text(await ok(reg, "update_service", { service_name: "movable", method_authorization: "Basic" }))).toBe('Service "movable" updated (nothing changed).');
    expect(b.requests).toBe(asked);
    expect(await serviceInfo(reg, "movable")).toMatchObject({ description: "Moved for good", requires_authorization: true, method_authorization: "Basic" });
    const token = await (await reg.http("/token?service_name=movable&user_id=ann")).json();
    expect(token.error.code).toBe("token_missing");

    expect(text(await ok(reg, "update_service", { service_name: "movable", description: "", requires_authorization: false }))).toBe(
      'Service "movable" updated (description, requires_authorization, method_authorization).',
    );
    expect(await serviceInfo(reg, "movable")).toMatchObject({ description: "The second home.", requires_authorization: false, method_authorization: "" });
    expect(await toolsOf(reg, "movable")).toEqual(tools);
  });
});

// docs/services.md shows these exchanges verbatim (registry on 8000, services on 3001, 3002, 3003; times differ).
describe("documented exchanges: refresh, health, discovery credentials", () => {
  const DOC_TIME = "2026-11-24T00:16:13.000Z";
  let reg: TestRegistry;
  let weather: McpServer;
  let moved: McpServer;
  let mail: McpServer;
  const state: ServerState = { tools: [tool("forecast", "city"), tool("alerts", "region")], down: false };
  const locked: ServerState = { tools: [tool("inbox")], down: false };
  beforeAll(async () => {
    [reg, weather, moved, mail] = await Promise.all([
      startTestRegistry({ ...APPLY_AT_ONCE, REGISTRY_REFRESH_INTERVAL: "0" }),
      changingServer(state),
      changingServer(state),
      changingServer(locked, (req) => (req.headers.get("authorization") === "Bearer mail-discovery-token" ? undefined : new Response(null, { status: 401 }))),
    ]);
  });
  afterAll(async () => {
    await reg?.stop();
    await weather?.stop();
    await moved?.stop();
    await mail?.stop();
  });

  const urls = () => [
    ["http://127.0.0.1:3001/mcp", weather.url],
    ["http://127.0.0.1:3002/mcp", moved.url],
    ["http://127.0.0.1:3003/mcp", mail.url],
  ];
  const real = (doc: string) => urls().reduce((s, [from, to]) => s.replaceAll(from, to), doc);

  /** POSTs a documented JSON-RPC body to /mcp; returns the answer with the real URLs and times put back to the documented ones. */
  async function rpc(body: string): Promise<unknown> {
    const res = await reg.http("/mcp", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: real(body),
    });
    expect(res.status).toBe(200);
    const answer = urls().reduce((s, [from, to]) => s.replaceAll(to, from), await res.text());
    return JSON.parse(answer.replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, DOC_TIME));
  }

  it("refresh_service, get_service, list_services with health, update_service, add_service with discovery_token", async () => {
    expect(
      await rpc(
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_service","arguments":{"service_name":"weather","endpoint":"http://127.0.0.1:3001/mcp","description":"Weather forecasts"}}}',
      ),
    ).toEqual(JSON.parse('{"result":{"content":[{"type":"text","text":"Service \\"weather\\" added with 2 tools."}]},"jsonrpc":"2.0","id":1}'));

    state.tools = [tool("forecast", "city", "days"), tool("radar", "region")];
    expect(await rpc('{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"refresh_service","arguments":{"service_name":"weather"}}}')).toEqual(
      JSON.parse(
        '{"result":{"content":[{"type":"text","text":"Service \\"weather\\" refreshed (2 tools): added \\"radar\\"; removed \\"alerts\\"; changed \\"forecast\\"."}],"structuredContent":{"service_name":"weather","tools":2,"added":["radar"],"removed":["alerts"],"changed":["forecast"]}},"jsonrpc":"2.0","id":2}',
      ),
    );

    expect(await rpc('{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"refresh_service","arguments":{"service_name":"weather"}}}')).toEqual(
      JSON.parse(
        '{"result":{"content":[{"type":"text","text":"Service \\"weather\\" refreshed (2 tools): no tool changes."}],"structuredContent":{"service_name":"weather","tools":2,"added":[],"removed":[],"changed":[]}},"jsonrpc":"2.0","id":3}',
      ),
    );

    await weather.stop();
    expect(await rpc('{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"refresh_service","arguments":{"service_name":"weather"}}}')).toEqual(
      JSON.parse(
        '{"result":{"content":[{"type":"text","text":"Cannot refresh service \\"weather\\": no MCP service answered at \\"http://127.0.0.1:3001/mcp\\" (streamable HTTP: connection refused; SSE: connection refused)"}],"isError":true},"jsonrpc":"2.0","id":4}',
      ),
    );

    expect(await rpc('{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"get_service","arguments":{"service_name":"weather"}}}')).toEqual(
      JSON.parse(
        '{"result":{"content":[{"type":"text","text":"{\\"service_name\\":\\"weather\\",\\"endpoint\\":\\"http://127.0.0.1:3001/mcp\\",\\"description\\":\\"Weather forecasts\\",\\"transport\\":\\"streamable_http\\",\\"requires_authorization\\":false,\\"method_authorization\\":\\"\\",\\"has_discovery_token\\":false,\\"tools\\":2,\\"status\\":\\"unreachable\\",\\"last_discovered_at\\":\\"2026-11-24T00:16:13.000Z\\",\\"last_error\\":\\"no MCP service answered at \\\\\\"http://127.0.0.1:3001/mcp\\\\\\" (streamable HTTP: connection refused; SSE: connection refused)\\",\\"consecutive_failures\\":1}"}],"structuredContent":{"service_name":"weather","endpoint":"http://127.0.0.1:3001/mcp","description":"Weather forecasts","transport":"streamable_http","requires_authorization":false,"method_authorization":"","has_discovery_token":false,"tools":2,"status":"unreachable","last_discovered_at":"2026-11-24T00:16:13.000Z","last_error":"no MCP service answered at \\"http://127.0.0.1:3001/mcp\\" (streamable HTTP: connection refused; SSE: connection refused)","consecutive_failures":1}},"jsonrpc":"2.0","id":5}',
      ),
    );

    expect(await rpc('{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"list_services","arguments":{"include_health":true}}}')).toEqual(
      JSON.parse(
        '{"result":{"content":[{"type":"text","text":"[{\\"service_name\\":\\"weather\\",\\"endpoint\\":\\"http://127.0.0.1:3001/mcp\\",\\"description\\":\\"Weather forecasts\\",\\"status\\":\\"unreachable\\",\\"last_discovered_at\\":\\"2026-11-24T00:16:13.000Z\\",\\"last_error\\":\\"no MCP service answered at \\\\\\"http://127.0.0.1:3001/mcp\\\\\\" (streamable HTTP: connection refused; SSE: connection refused)\\",\\"consecutive_failures\\":1,\\"tools\\":2}]"}],"structuredContent":{"services":[{"service_name":"weather","endpoint":"http://127.0.0.1:3001/mcp","description":"Weather forecasts","status":"unreachable","last_discovered_at":"2026-11-24T00:16:13.000Z","last_error":"no MCP service answered at \\"http://127.0.0.1:3001/mcp\\" (streamable HTTP: connection refused; SSE: connection refused)","consecutive_failures":1,"tools":2}]}},"jsonrpc":"2.0","id":6}',
      ),
    );

    expect(
      await rpc('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"update_service","arguments":{"service_name":"weather","endpoint":"http://127.0.0.1:3002/mcp"}}}'),
    ).toEqual(
      JSON.parse(
        '{"result":{"content":[{"type":"text","text":"Service \\"weather\\" updated (endpoint)."}],"structuredContent":{"service_name":"weather","updated":["endpoint"],"added":[],"removed":[],"changed":[]}},"jsonrpc":"2.0","id":7}',
      ),
    );
    expect(await serviceInfo(reg, "weather")).toMatchObject({ endpoint: moved.url, status: "ok", consecutive_failures: 0 });

    expect(
      await rpc(
        '{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"add_service","arguments":{"service_name":"mail","endpoint":"http://127.0.0.1:3003/mcp","description":"Team mail","requires_authorization":true,"method_authorization":"Bearer"}}}',
      ),
    ).toEqual(
      JSON.parse(
        '{"result":{"content":[{"type":"text","text":"Cannot add service \\"mail\\": no MCP service answered at \\"http://127.0.0.1:3003/mcp\\" (streamable HTTP: HTTP 401; SSE: HTTP 401)"}],"isError":true},"jsonrpc":"2.0","id":8}',
      ),
    );

    expect(
      await rpc(
        '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"add_service","arguments":{"service_name":"mail","endpoint":"http://127.0.0.1:3003/mcp","description":"Team mail","requires_authorization":true,"method_authorization":"Bearer","discovery_token":"mail-discovery-token"}}}',
      ),
    ).toEqual(JSON.parse('{"result":{"content":[{"type":"text","text":"Service \\"mail\\" added with 1 tool."}]},"jsonrpc":"2.0","id":9}'));

    expect(await rpc('{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"update_service","arguments":{"service_name":"mail","discovery_token":""}}}')).toEqual(
      JSON.parse(
        '{"result":{"content":[{"type":"text","text":"Service \\"mail\\" updated (discovery_token)."}],"structuredContent":{"service_name":"mail","updated":["discovery_token"],"added":[],"removed":[],"changed":[]}},"jsonrpc":"2.0","id":10}',
      ),
    );
  });
});
