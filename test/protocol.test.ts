/** Clients of every protocol version in use, and the metadata every tool shows them (titles, hints, output schemas). */
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, startTestMcpServer, startTestRegistry, type TestRegistry } from "./helpers.ts";

const ADMIN = "admin-key-protocol-0123456789";
const LATEST = "2025-11-25";

/** One JSON-RPC message over streamable HTTP, as a raw client sends it; the version header once negotiated. */
async function rpc(reg: TestRegistry, body: object, version?: string): Promise<Response> {
  return reg.http("/mcp", {
    method: "POST",
    key: ADMIN,
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...(version ? { "mcp-protocol-version": version } : {}),
    },
    body: JSON.stringify({ jsonrpc: "2.0", ...body }),
  });
}

/** Sends initialize asking for `version` and returns the version the registry answered with. */
async function initialize(reg: TestRegistry, version: string): Promise<string> {
  const res = await rpc(reg, { id: 1, method: "initialize", params: { protocolVersion: version, capabilities: {}, clientInfo: { name: "raw-client", version: "1.0.0" } } });
  expect(res.status).toBe(200);
  const body = await res.json();
  expect(body.result.serverInfo.name).toBe("mcp-registry");
  expect(body.result.capabilities.tools).toEqual({});
  return body.result.protocolVersion;
}

describe("protocol versions over streamable HTTP", () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN });
  });
  afterAll(async () => reg?.stop());

  for (const version of ["2025-03-26", "2025-06-18", "2025-11-25"]) {
    it(`a ${version} client negotiates ${version}, lists tools and calls one`, async () => {
      expect(await initialize(reg, version)).toBe(version);
      const initialized = await rpc(reg, { method: "notifications/initialized" }, version);
      expect(initialized.status).toBe(202);

      const list = await rpc(reg, { id: 2, method: "tools/list" }, version);
      expect(list.status).toBe(200);
      const names = (await list.json()).result.tools.map((t: { name: string }) => t.name);
      expect(names).toEqual(expect.arrayContaining(["add_service", "list_services", "get_tools"]));

      const called = await rpc(reg, { id: 3, method: "tools/call", params: { name: "list_roles", arguments: {} } }, version);
      expect(called.status).toBe(200);
      const { result } = await called.json();
      expect(result.isError).toBeFalsy();
      expect(result.content).toEqual([{ type: "text", text: "[]" }]);
      expect(result.structuredContent).toEqual({ roles: [] });
    });
  }

  it("an unsupported version negotiates to the latest, and is refused as a request header", async () => {
    expect(await initialize(reg, "1999-01-01")).toBe(LATEST);
    const res = await rpc(reg, { id: 2, method: "tools/list" }, "1999-01-01");
    expect(res.status).toBe(400);
    expect((await res.json()).error.message).toMatch(/Unsupported protocol version: 1999-01-01/);
  });

  it("accepts logging/setLevel (the logging capability is declared)", async () => {
    const res = await rpc(reg, { id: 1, method: "initialize", params: { protocolVersion: LATEST, capabilities: {}, clientInfo: { name: "raw-client", version: "1.0.0" } } });
    expect((await res.json()).result.capabilities.logging).toEqual({});
    const set = await rpc(reg, { id: 2, method: "logging/setLevel", params: { level: "info" } }, LATEST);
    expect(await set.json()).toEqual({ jsonrpc: "2.0", id: 2, result: {} });
  });
});

// A value for each required argument a data tool may take; a new tool with another one must add it here.
type Sample = (ids: { toolId: number }) => unknown;
const SAMPLES: Record<string, Sample> = {
  service_name: () => "fixture",
  role_name: () => "reader",
  user_id: () => "alice",
  tool_id: ({ toolId }) => toolId,
};
// Tools that need more than their required arguments to do something.
const MORE_ARGS: Record<string, Record<string, unknown>> = {
  update_service: { description: "Fixture, updated" },
  // Packages only: skipped with its reason, so the result has something in it without a network call.
  import_servers: {
    server_json: { name: "io.example/local", description: "Local only", version: "1.0.0", packages: [{ registryType: "npm", identifier: "x", transport: { type: "stdio" } }] },
  },
};

describe("tool metadata", () => {
  let reg: TestRegistry;
  let fixture: Awaited<ReturnType<typeof startTestMcpServer>>;
  beforeAll(async () => {
    [reg, fixture] = await Promise.all([
      startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN }),
      startTestMcpServer({
        setup(server) {
          server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: "echo", description: "Echo", inputSchema: { type: "object" as const } }] }));
          server.setRequestHandler(CallToolRequestSchema, () => ({ content: [{ type: "text", text: "echo" }] }));
        },
      }),
    ]);
  });
  afterAll(async () => {
    await reg?.stop();
    await fixture?.stop();
  });

  it("every tool has a title and boolean readOnly/destructive/idempotent hints", async () => {
    const { tools } = await (await reg.client(ADMIN)).listTools();
    expect(tools.length).toBeGreaterThan(10);
    for (const tool of tools) {
      expect(tool.title, tool.name).toMatch(/\S/);
      const a = tool.annotations ?? {};
      for (const hint of ["readOnlyHint", "destructiveHint", "idempotentHint"] as const) expect(typeof a[hint], `${tool.name}.${hint}`).toBe("boolean");
      // A read-only tool destroys nothing.
      if (a.readOnlyHint) expect(a.destructiveHint, tool.name).toBe(false);
    }
  });

  it("every tool with an outputSchema returns structuredContent that matches it", async () => {
    const client = await reg.client(ADMIN);
    // Something to show: a service with one tool, a role attached to it, a user with the role.
    expect((await call(client, "add_service", { service_name: "fixture", endpoint: fixture.url, description: "Fixture" })).isError).toBeFalsy();
    const toolId = ((await call(client, "get_tools", { service_name: "fixture" })).structuredContent as { tools: { id: number }[] }).tools[0].id;
    expect((await call(client, "create_role", { role_name: "reader" })).isError).toBeFalsy();
    expect((await call(client, "attach_role_to_tool", { tool_id: toolId, role_name: "reader" })).isError).toBeFalsy();
    expect((await call(client, "assign_role_to_user", { user_id: "alice", role_name: "reader" })).isError).toBeFalsy();

    const { tools } = await client.listTools();
    // Read-only tools first, so a changing one cannot take away what they show.
    const withOutput = tools.filter((t) => t.outputSchema).sort((a, b) => Number(!a.annotations?.readOnlyHint) - Number(!b.annotations?.readOnlyHint));
    expect(withOutput.map((t) => t.name)).toEqual(expect.arrayContaining(["list_services", "get_tools", "list_roles", "list_users"]));
    for (const tool of withOutput) {
      const args: Record<string, unknown> = { ...MORE_ARGS[tool.name] };
      for (const name of tool.inputSchema.required ?? []) {
        expect(SAMPLES[name], `a sample value for argument "${name}" of ${tool.name}`).toBeDefined();
        args[name] = SAMPLES[name]({ toolId });
      }
      // The SDK client checks structuredContent against the outputSchema it saw in listTools, and throws on a mismatch.
      const result = await call(client, tool.name, args);
      expect(result.isError, `${tool.name}: ${JSON.stringify(result.content)}`).toBeFalsy();
      expect(result.structuredContent, tool.name).toBeTypeOf("object");
      // Text too, for clients that ignore structuredContent.
      expect(result.content[0]).toMatchObject({ type: "text" });
    }
  });
});
