/** Several registry processes over one database; uniqueness holds under concurrency. */
import { join } from "node:path";
import { CallToolRequestSchema, type CallToolResult, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  call,
  connectClient,
  ENGINE,
  freePort,
  freshDatabase,
  type Spawned,
  spawnUntil,
  startEverything,
  startTestMcpServer,
  startTestRegistry,
  TEST_SECRET,
  tempDir,
  text,
} from "./helpers.ts";

async function startProcess(databaseUrl: string) {
  const port = await freePort();
  const p = await spawnUntil(process.execPath, ["--import", "tsx", "main.ts"], {
    env: { MCP_PORT: String(port), DATABASE_URL: databaseUrl, REGISTRY_SECRET: TEST_SECRET },
    ready: /MCP Registry listening/,
  });
  return { ...p, url: `http://127.0.0.1:${port}` };
}

describe("concurrent add_service in one registry (every engine)", () => {
  it("two adds of one name at the same moment: exactly one succeeds, the other is a conflict", async () => {
    const reg = await startTestRegistry();
    const servers = await Promise.all([0, 1].map(() => startTestMcpServer({ setup: (s) => s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [] })) })));
    try {
      const [a, b] = [await reg.client(), await reg.client()];
      const results = await Promise.all([
        call(a, "add_service", { service_name: "same", endpoint: servers[0].url, description: "one" }),
        call(b, "add_service", { service_name: "same", endpoint: servers[1].url, description: "two" }),
      ]);
      expect(
        results.filter((r) => !r.isError),
        JSON.stringify(results),
      ).toHaveLength(1);
      const failed = results.filter((r) => r.isError);
      expect(failed).toHaveLength(1);
      expect(text(failed[0])).toBe('Cannot add service "same": a service with that name already exists');
      const list = await (await reg.http("/list_services")).json();
      expect(Object.keys(list.services)).toEqual(["same"]);
      // The winner's event committed with its service; the loser's insert (and its event) rolled back,
      // and its failure is recorded once.
      const events = (await call(a, "list_audit_events", { action: "add_service" })).structuredContent as { events: { outcome: string }[] };
      expect(events.events.map((e) => e.outcome).sort()).toEqual(["conflict", "ok"]);
    } finally {
      await reg.stop();
      await Promise.all(servers.map((s) => s.stop()));
    }
  });
});

describe("the gateway on two instances of one database (every engine)", () => {
  it("a detach or a key revoked through one instance takes effect at the next gateway call (and registry API read) on the other", async () => {
    const fresh = ENGINE === "sqlite" ? { url: `file:${join(tempDir(), "r.db")}`, drop: async () => {} } : await freshDatabase();
    const env = { DATABASE_URL: fresh.url, REGISTRY_SECRET: TEST_SECRET };
    const service = await startTestMcpServer({
      setup(server) {
        server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: "ping", description: "Ping", inputSchema: { type: "object" as const } }] }));
        server.setRequestHandler(CallToolRequestSchema, () => ({ content: [{ type: "text", text: "pong" }] }));
      },
    });
    const one = await startTestRegistry(env);
    const other = await startTestRegistry(env);
    try {
      const admin = await one.client();
      await call(admin, "add_service", { service_name: "svc", endpoint: service.url, description: "" });
      await call(admin, "create_role", { role_name: "staff" });
      await call(admin, "attach_role_to_tool", { tool_id: 1, role_name: "staff" });
      await call(admin, "assign_role_to_user", { user_id: "ann", role_name: "staff" });
      const key = (await call(admin, "create_user_key", { user_id: "ann" })).structuredContent!.key as string;
      const gateway = await connectClient(`${other.url}/gateway/mcp`, key);
      // The other instance answers (and keeps its listing for this catalogue generation).
      expect(text((await gateway.callTool({ name: "svc__ping", arguments: {} })) as CallToolResult)).toBe("pong");
      // Its registry API shows ann the service and the gateway, from the same kept listing.
      const view = async () => ((await (await other.http("/v0.1/servers", { key })).json()) as { servers: { server: { name: string } }[] }).servers.map((s) => s.server.name);
      expect(await view()).toEqual(["local.mcp-registry/gateway", "local.mcp-registry/svc"]);
      await call(admin, "detach_role_from_tool", { tool_id: 1, role_name: "staff" });
      expect(await view()).toEqual([]);
      const refused = (await gateway.callTool({ name: "svc__ping", arguments: {} })) as CallToolResult;
      expect(refused.isError).toBe(true);
      expect(text(refused)).toMatch(/^No tool "svc__ping" for user "ann"/);
      expect((await gateway.listTools()).tools).toEqual([]);
      await call(admin, "revoke_user_key", { user_id: "ann", label: "default" });
      await expect(gateway.listTools()).rejects.toThrow(/Invalid API key/);
      await gateway.close();
    } finally {
      await other.stop();
      await one.stop();
      await service.stop();
      await fresh.drop();
    }
  });
});

// Engine-specific: several processes share one database only on PostgreSQL (SQLite is one machine's file).
describe.runIf(ENGINE === "postgres")("two registry processes on one PostgreSQL database", () => {
  let db: { url: string; drop(): Promise<void> };
  let one: Spawned | undefined;
  let two: Spawned | undefined;
  let everything: Spawned;
  beforeAll(async () => {
    db = await freshDatabase();
    everything = await startEverything();
    // Started together: both run migrations at once, serialised by an advisory lock.
    const [a, b] = await Promise.all([startProcess(db.url), startProcess(db.url)]);
    one = { ...a, port: 0 } as unknown as Spawned;
    two = { ...b, port: 0 } as unknown as Spawned;
  }, 60_000);
  afterAll(async () => {
    await one?.stop();
    await two?.stop();
    await everything?.stop();
    await db?.drop();
  });

  it("a service added through one is listed and removed by the other", async () => {
    const a = await connectClient(`${one!.url}/mcp`);
    const b = await connectClient(`${two!.url}/mcp`);
    expect(text(await call(a, "add_service", { service_name: "everything", endpoint: everything.url, description: "" }))).toBe('Service "everything" added with 13 tools.');
    expect(await (await fetch(`${two!.url}/list_services`)).json()).toEqual({ services: { everything: { transport: "streamable_http", url: everything.url } } });
    const toolsViaB = JSON.parse(text(await call(b, "get_tools", { service_name: "everything" })));
    expect(toolsViaB).toHaveLength(13);
    expect(text(await call(b, "remove_service", { service_name: "everything" }))).toBe('Service "everything" removed.');
    expect(await (await fetch(`${one!.url}/list_services`)).json()).toEqual({ services: {} });
    await a.close();
    await b.close();
  });

  it("a token stored through one is served by the other", async () => {
    const server = await startTestMcpServer({ setup: (s) => s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [] })) });
    const a = await connectClient(`${one!.url}/mcp`);
    try {
      expect(
        (await call(a, "add_service", { service_name: "mail", endpoint: server.url, description: "Mail", requires_authorization: true, method_authorization: "Bearer" })).isError,
      ).toBeFalsy();
      expect((await fetch(`${two!.url}/token?service_name=mail&user_id=ann`)).status).toBe(401);
      expect((await call(a, "authorize_user_to_service", { service_name: "mail", user_id: "ann", token: "ann-mail-token" })).isError).toBeFalsy();
      const res = await fetch(`${two!.url}/token`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ service_name: "mail", user_id: "ann" }),
      });
      expect(await res.json()).toEqual({ token: "ann-mail-token", method_authorization: "Bearer" });
    } finally {
      await a.close();
      await server.stop();
    }
  });

  it("concurrent add_service of one name through both: one success, one conflict, never a 500", async () => {
    const servers = await Promise.all([0, 1].map(() => startTestMcpServer({ setup: (s) => s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [] })) })));
    const a = await connectClient(`${one!.url}/mcp`);
    const b = await connectClient(`${two!.url}/mcp`);
    try {
      for (let round = 0; round < 5; round++) {
        const name = `race-${round}`;
        const results = await Promise.all([
          call(a, "add_service", { service_name: name, endpoint: `${servers[0].url}?r=${round}`, description: "a" }),
          call(b, "add_service", { service_name: name, endpoint: `${servers[1].url}?r=${round}`, description: "b" }),
        ]);
        expect(
          results.filter((r) => !r.isError),
          name,
        ).toHaveLength(1);
        expect(results.filter((r) => r.isError).map(text)).toEqual([`Cannot add service "${name}": a service with that name already exists`]);
      }
      const list = await (await fetch(`${two!.url}/list_services`)).json();
      expect(
        Object.keys(list.services)
          .filter((n) => n.startsWith("race-"))
          .sort(),
      ).toEqual(["race-0", "race-1", "race-2", "race-3", "race-4"]);
    } finally {
      await a.close();
      await b.close();
      await Promise.all(servers.map((s) => s.stop()));
    }
  });
});
