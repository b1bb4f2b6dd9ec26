/**
 * One spelling per endpoint: what add_service and update_service store, compare and refuse; what a
 * failing endpoint is reported as; and a stored endpoint that is no URL (an old import) in the health.
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, catalogue, startTestMcpServer, startTestRegistry, type TestRegistry, text } from "./helpers.ts";

describe("service endpoints", () => {
  let reg: TestRegistry;
  let c: Client;
  let server: Awaited<ReturnType<typeof startTestMcpServer>>;
  let port = 0;
  beforeAll(async () => {
    [reg, server] = await Promise.all([
      startTestRegistry(),
      startTestMcpServer({ setup: (s) => s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: "search", inputSchema: { type: "object" } }] })) }),
    ]);
    port = server.port;
    c = await reg.client();
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
  });

  it("are stored and handed to agents in their WHATWG form", async () => {
    expect(text(await call(c, "add_service", { service_name: "wiki", endpoint: `HTTP://127.1:${port}/mcp`, description: "Wiki" }))).toBe('Service "wiki" added with 1 tool.');
    expect(await (await reg.http("/list_services")).json()).toEqual({ services: { wiki: { transport: "streamable_http", url: `http://127.0.0.1:${port}/mcp` } } });
  });

  it.each([
    ["hex address", "http://0x7f000001:PORT/mcp"],
    ["upper case and a default-free form", "Http://127.0.0.1:PORT/mcp"],
    ["trailing slash", "http://127.0.0.1:PORT/mcp/"],
    ["trailing dot", "http://127.0.0.1.:PORT/mcp"],
    ["short address", "http://127.1:PORT/mcp"],
  ])("another spelling of a registered endpoint (%s) is a conflict, and nothing is written", async (_what, spelling) => {
    const before = await catalogue(reg);
    const r = await call(c, "add_service", { service_name: "copy", endpoint: spelling.replace("PORT", String(port)), description: "Copy" });
    expect(r.isError).toBe(true);
    expect(text(r)).toBe(`Cannot add service "copy": service "wiki" already uses endpoint "http://127.0.0.1:${port}/mcp"`);
    expect(await catalogue(reg)).toEqual(before);
  });

  it.each([
    ["http://admin:hunter2@127.0.0.1:PORT/mcp", "endpoint: must not contain a user name or password: give the credential as discovery_token"],
    ["http://127.0.0.1:PORT/mcp#tools", "endpoint: must not contain a #fragment"],
    ["/opt/servers/server.py", "endpoint: must be an http(s) URL"],
    ["file:///opt/servers/server.py", "endpoint: must be an http(s) URL"],
  ])("%s is refused before anything is contacted or written", async (endpoint, reason) => {
    const before = await catalogue(reg);
    const requests = server.requests;
    const r = await call(c, "add_service", { service_name: "bad", endpoint: endpoint.replace("PORT", String(port)), description: "Bad" });
    expect(text(r)).toBe(`Cannot add service: ${reason}`);
    expect(text(r)).not.toContain("hunter2");
    expect(server.requests).toBe(requests);
    expect(await catalogue(reg)).toEqual(before);
  });

  it("update_service compares the same way", async () => {
    const other = await startTestMcpServer({ setup: (s) => s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [] })) });
    try {
      expect(text(await call(c, "add_service", { service_name: "other", endpoint: other.url, description: "Other" }))).toBe('Service "other" added with 0 tools.');
      const r = await call(c, "update_service", { service_name: "other", endpoint: `http://127.0.0.1:${port}/mcp/` });
      expect(text(r)).toBe(`Cannot update service "other": service "wiki" already uses endpoint "http://127.0.0.1:${port}/mcp"`);
      expect(JSON.parse(text(await call(c, "get_service", { service_name: "other" }))).endpoint).toBe(other.url);
    } finally {
      await call(c, "remove_service", { service_name: "other" });
      await other.stop();
    }
  });

  it("a port fetch refuses is tried over streamable HTTP (node:http), and said in the registry's words for SSE (fetch)", async () => {
    const r = await call(c, "add_service", { service_name: "x11", endpoint: "http://127.0.0.1:6000/mcp", description: "X" });
    const reason = "the port is one fetch refuses to connect to (a blocked port); serve the service on another port";
    // Nothing listens on port 6000 here.
    expect(text(r)).toBe(`Cannot add service "x11": no MCP service answered at "http://127.0.0.1:6000/mcp" (streamable HTTP: connection refused; SSE: ${reason})`);
    expect(text(r)).not.toMatch(/fetch failed|TypeError|bad port/);
  });

  it("a stored endpoint that is no URL (written by an older import) fails its refresh plainly, and the health says so", async () => {
    await reg.ctx.db.insert(reg.ctx.tables.services).values({ name: "local", endpoint: "/opt/servers/server.py", transport: "streamable_http" });
    const r = await call(c, "refresh_service", { service_name: "local" });
    expect(text(r)).toBe('Cannot refresh service "local": the endpoint "/opt/servers/server.py" is not an http(s) URL; set one with update_service');
    expect(JSON.parse(text(await call(c, "get_service", { service_name: "local" })))).toMatchObject({
      status: "unreachable",
      last_error: 'the endpoint "/opt/servers/server.py" is not an http(s) URL; set one with update_service',
      consecutive_failures: 1,
    });
    expect(reg.logs.join("\n")).not.toMatch(/Internal error/);
  });
});
