/** Who may call what — generated matrix over every tool and route, secure defaults, audit. */
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allTools, createApp } from "../registry.ts";
import { mayCall, type Principal, ruleOf } from "../features/access/access.ts";
import { loadConfig } from "../shared/config.ts";
import { call, connectClient, type Spawned, startEverything, startTestRegistry, type TestRegistry, text } from "./helpers.ts";

const ADMIN = "admin-key-0123456789abcdef";
const ADMIN2 = "admin-key-rotated-abcdef0123";
const AGENT = "agent-key-0123456789abcdef";
const WRONG = "wrong-key-0123456789abcdef";
const KEYS = { REGISTRY_ADMIN_KEYS: `${ADMIN}, ${ADMIN2}`, REGISTRY_AGENT_KEYS: AGENT };

type Who = { name: string; key?: string; principal: Principal | null };
const WHO: Who[] = [
  { name: "admin", key: ADMIN, principal: "admin" },
  { name: "agent", key: AGENT, principal: "agent" },
  { name: "user key", principal: "user" },
  { name: "anonymous", principal: "anonymous" },
  { name: "wrong key", key: WRONG, principal: null },
];

// Every HTTP route the app serves, read from the app itself so a new route cannot escape the matrix.
function routes(reg: TestRegistry): { method: string; path: string }[] {
  const app = createApp(reg.ctx, reg.keys);
  const seen = new Set<string>();
  return app.routes
    .filter((r) => r.method !== "ALL" && !r.path.startsWith("/mcp") && r.path !== "/*")
    .filter((r) => !seen.has(`${r.method} ${r.path}`) && seen.add(`${r.method} ${r.path}`));
}

describe("access matrix", () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startTestRegistry(KEYS);
    // A user key is issued, not configured: its user must exist first.
    const admin = await reg.client(ADMIN);
    await reg.http("/register_user", { method: "POST", key: ADMIN, headers: { "content-type": "application/json" }, body: '{"user_id":"ann"}' });
    WHO.find((w) => w.principal === "user")!.key = (await call(admin, "create_user_key", { user_id: "ann" })).structuredContent!.key as string;
  });
  afterAll(async () => reg?.stop());

  it("knows the routes it must cover", () => {
    const names = routes(reg).map((r) => `${r.method} ${r.path}`);
    expect(names).toContain("GET /health");
    expect(names).toContain("GET /list_services");
  });

  for (const who of WHO) {
    it(`HTTP routes for ${who.name}`, async () => {
      for (const r of routes(reg)) {
        const res = await reg.http(r.path, { method: r.method, key: who.key, ...(r.method === "POST" ? { body: "{}", headers: { "content-type": "application/json" } } : {}) });
        const rule = ruleOf(r.method, r.path);
        if (rule === "CONSOLE") {
          // The console ignores Authorization: only its session cookie opens it (test/console.test.ts).
          const what = `${r.method} ${r.path} as ${who.name}`;
          expect(res.status, what).toBe(r.method === "GET" ? 200 : 401);
          // A page is a redirect (followed here) to the login page; only the static files are served as they are.
          if (r.method === "GET" && !r.path.startsWith("/console/static/")) expect(new URL(res.url).pathname, what).toBe("/console/login");
          continue;
        }
        const allowed = who.principal !== null && mayCall({ principal: who.principal, label: "" }, rule);
        const publicRoute = mayCall({ principal: "anonymous", label: "" }, rule);
        if (allowed || publicRoute) {
          expect([401, 403], `${rule} as ${who.name}`).not.toContain(res.status);
        } else if (who.principal === "user") {
          expect(res.status, `${rule} as ${who.name}`).toBe(403);
          expect((await res.json()).error.message).toBe("A user key opens only the gateway (POST /gateway/mcp) and the registry API (GET /v0.1/servers)");
        } else if (who.principal === "agent" || who.principal === "admin") {
          expect(res.status, `${rule} as ${who.name}`).toBe(403);
          expect((await res.json()).error.code).toBe("forbidden");
        } else {
          expect(res.status, `${rule} as ${who.name}`).toBe(401);
          expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
          // The registry API answers errors in its specification's shape, {"error": "<message>"}.
          const { error } = await res.json();
          expect(rule === "REGISTRY_API" ? typeof error : error.code, `${rule} as ${who.name}`).toBe(rule === "REGISTRY_API" ? "string" : "unauthorized");
        }
      }
    });

    it(`MCP tools for ${who.name}`, async () => {
      if (who.principal === "user") {
        // A user key opens the gateway only, never the registry's own MCP endpoint.
        const res = await reg.http("/mcp", { method: "POST", key: who.key, headers: { "content-type": "application/json" }, body: "{}" });
        expect(res.status).toBe(403);
        await expect(connectClient(`${reg.url}/mcp`, who.key)).rejects.toThrow(/A user key opens only the gateway/);
        return;
      }
      if (who.principal === null || who.principal === "anonymous") {
        // Refused before any tool runs: the MCP endpoint itself answers 401.
        const res = await reg.http("/mcp", {
          method: "POST",
          key: who.key,
          headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
          body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
        });
        expect(res.status).toBe(401);
        expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
        await expect(connectClient(`${reg.url}/mcp`, who.key)).rejects.toThrow();
        return;
      }
      const client = await reg.client(who.key);
      const listed = (await client.listTools()).tools.map((t) => t.name).sort();
      const allowed = allTools
        .filter((t) => mayCall({ principal: who.principal!, label: "" }, `tool ${t.name}`))
        .map((t) => t.name)
        .sort();
      expect(listed).toEqual(allowed);
      for (const tool of allTools) {
        // Empty arguments: an allowed tool answers (maybe with a validation error), a refused one says so.
        const result = await call(client, tool.name, {});
        if (allowed.includes(tool.name)) expect(text(result), tool.name).not.toMatch(/not allowed/);
        else {
          expect(result.isError, tool.name).toBe(true);
          expect(text(result)).toBe(`Cannot call tool "${tool.name}": not allowed for this key`);
        }
      }
    });
  }

  it("an agent sees exactly the agent tools; admin sees all", async () => {
    const agent = await reg.client(AGENT);
    const names = (await agent.listTools()).tools.map((t) => t.name);
    expect(names).toContain("list_services");
    expect(names).toContain("get_tools");
    expect(names).not.toContain("add_service");
    expect(names).not.toContain("remove_service");
    const admin = await reg.client(ADMIN2);
    expect((await admin.listTools()).tools.map((t) => t.name).sort()).toEqual(allTools.map((t) => t.name).sort());
  });

  it("a refused call writes nothing and is audited without the key", async () => {
    const agent = await reg.client(AGENT);
    const r = await call(agent, "remove_service", { service_name: "anything" });
    expect(r.isError).toBe(true);
    const admin = await reg.client(ADMIN);
    const page = (await call(admin, "list_audit_events", { action: "remove_service" })).structuredContent as { events: { actor: string; outcome: string; target: string }[] };
    expect(page.events[0]).toMatchObject({ outcome: "forbidden", target: "service_name=anything" });
    expect(page.events[0].actor).toMatch(/^agent:[0-9a-f]{8}$/);
  });
});

describe("audit log", () => {
  let reg: TestRegistry;
  let everything: Spawned;
  beforeAll(async () => {
    [reg, everything] = await Promise.all([startTestRegistry(KEYS), startEverything()]);
  });
  afterAll(async () => {
    await reg?.stop();
    await everything?.stop();
  });

  it("records changes with actor, action, target, outcome and time; filters and pages", async () => {
    const admin = await reg.client(ADMIN);
    expect((await call(admin, "add_service", { service_name: "everything", endpoint: everything.url, description: "x" })).isError).toBeFalsy();
    expect((await call(admin, "add_service", { service_name: "everything", endpoint: everything.url, description: "x" })).isError).toBe(true);
    expect((await call(admin, "remove_service", { service_name: "nope" })).isError).toBe(true);
    // Reads are not audited (list_services is read-only).
    await call(admin, "list_services");

    const all = (await call(admin, "list_audit_events", {})).structuredContent as { events: Record<string, unknown>[]; next_before_id: number | null };
    expect(all.events.map((e) => [e.action, e.outcome, e.target])).toEqual([
      ["remove_service", "not_found", "service_name=nope"],
      ["add_service", "conflict", "service_name=everything"],
      ["add_service", "ok", "service_name=everything"],
    ]);
    expect(all.next_before_id).toBeNull();
    const admin1Label = all.events[2].actor;
    expect(admin1Label).toMatch(/^admin:[0-9a-f]{8}$/);
    expect(Date.parse(String(all.events[0].at))).not.toBeNaN();

    const adds = (await call(admin, "list_audit_events", { action: "add_service", limit: 1 })).structuredContent as {
      events: { id: number; outcome: string }[];
      next_before_id: number;
    };
    expect(adds.events.map((e) => e.outcome)).toEqual(["conflict"]);
    const next = (await call(admin, "list_audit_events", { action: "add_service", limit: 1, before_id: adds.next_before_id })).structuredContent as {
      events: { outcome: string }[];
      next_before_id: number | null;
    };
    expect(next.events.map((e) => e.outcome)).toEqual(["ok"]);
    expect(next.next_before_id).toBeNull();

    const byTarget = (await call(admin, "list_audit_events", { target: "nope" })).structuredContent as { events: unknown[] };
    expect(byTarget.events).toHaveLength(1);
    // A LIKE wildcard in the filter is taken literally.
    expect(((await call(admin, "list_audit_events", { target: "%" })).structuredContent as { events: unknown[] }).events).toHaveLength(0);
    const future = (await call(admin, "list_audit_events", { since: "2999-01-01T00:00:00Z" })).structuredContent as { events: unknown[] };
    expect(future.events).toHaveLength(0);

    // until: before it, not at it; since and until together bound a window.
    const firstAt = String(all.events[2].at);
    const untilFirst = (await call(admin, "list_audit_events", { until: firstAt })).structuredContent as { events: unknown[] };
    expect(untilFirst.events).toHaveLength(0);
    const window = (await call(admin, "list_audit_events", { since: firstAt, until: "2999-01-01T00:00:00Z" })).structuredContent as { events: unknown[] };
    expect(window.events).toHaveLength(3);

    // Rotated keys have different labels, so the trail tells them apart; actor filters by prefix.
    const admin2 = await reg.client(ADMIN2);
    await call(admin2, "remove_service", { service_name: "nope2" });
    const last = (await call(admin, "list_audit_events", { limit: 1 })).structuredContent as { events: { actor: string }[] };
    expect(last.events[0].actor).toMatch(/^admin:[0-9a-f]{8}$/);
    expect(last.events[0].actor).not.toBe(admin1Label);
    const byActor = (await call(admin, "list_audit_events", { actor: admin1Label })).structuredContent as { events: { actor: string }[] };
    expect(byActor.events.map((e) => e.actor)).toEqual([admin1Label, admin1Label, admin1Label]);
    expect(((await call(admin, "list_audit_events", { actor: "admin:%" })).structuredContent as { events: unknown[] }).events).toHaveLength(0);
  });

  it("rejects bad filters with a clear error", async () => {
    const admin = await reg.client(ADMIN);
    for (const [args, msg] of [
      [{ since: "yesterday" }, "since: must be an ISO 8601 timestamp"],
      [{ limit: 0 }, "limit: must be at least 1"],
      [{ limit: 501 }, "limit: must be at most 500"],
      [{ before_id: "x" }, "before_id: must be a number"],
    ] as const) {
      const r = await call(admin, "list_audit_events", args);
      expect(r.isError).toBe(true);
      expect(text(r)).toContain(msg);
    }
  });

  it("never writes a key into the log or the audit trail", async () => {
    const admin = await reg.client(ADMIN);
    await call(admin, "remove_service", { service_name: "x" });
    await reg.http("/list_services", { key: WRONG });
    await reg.http("/list_services", { key: AGENT });
    const rows = await reg.ctx.db.select().from(reg.ctx.tables.auditEvents);
    const everything = reg.logs.join("\n") + JSON.stringify(rows);
    for (const key of [ADMIN, ADMIN2, AGENT, WRONG]) expect(everything).not.toContain(key);
  });
});

describe("secure defaults", () => {
  it("refuses to listen on a non-loopback address without keys, and says how to fix it", async () => {
    await expect(startTestRegistry({ MCP_HOST: "0.0.0.0" })).rejects.toThrow(/Refusing to listen on 0\.0\.0\.0 without keys: set REGISTRY_ADMIN_KEYS/);
  });

  it("starts on a non-loopback address with REGISTRY_AUTH=off, with a warning, everyone admin", async () => {
    const reg = await startTestRegistry({ MCP_HOST: "0.0.0.0", REGISTRY_AUTH: "off" });
    try {
      expect(reg.logs.join("\n")).toMatch(/WARN REGISTRY_AUTH=off/);
      const client = await connectClient(`http://127.0.0.1:${reg.port}/mcp`);
      expect((await client.listTools()).tools.map((t) => t.name)).toContain("add_service");
      await client.close();
    } finally {
      await reg.stop();
    }
  });

  it("development mode on loopback without keys: every caller is admin, logged once", async () => {
    const reg = await startTestRegistry();
    try {
      expect(reg.logs.filter((l) => l.includes("Development mode"))).toHaveLength(1);
      const client = await reg.client();
      expect((await client.listTools()).tools.map((t) => t.name)).toContain("remove_service");
    } finally {
      await reg.stop();
    }
  });

  it("refuses short keys in configuration without echoing them", () => {
    expect(() => loadConfig({ REGISTRY_ADMIN_KEYS: "short" })).toThrow(/REGISTRY_ADMIN_KEYS must hold keys of at least 16 characters/);
    try {
      loadConfig({ REGISTRY_ADMIN_KEYS: "short" });
    } catch (e) {
      expect(String(e)).not.toContain('short"');
    }
  });
});

describe("transport protections", () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startTestRegistry(KEYS);
  });
  afterAll(async () => reg?.stop());

  const rpc = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" });
  const headers = { "content-type": "application/json", accept: "application/json, text/event-stream" };

  it("refuses a foreign Host or Origin on the MCP endpoint (DNS rebinding)", async () => {
    const { request } = await import("node:http");
    // fetch cannot forge Host, so use node:http.
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port: reg.port, path: "/mcp", method: "POST", headers: { ...headers, host: "evil.example:80", authorization: `Bearer ${ADMIN}` } },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on("error", reject);
      req.end(rpc);
    });
    expect(status).toBe(403);
    const res = await reg.http("/mcp", { method: "POST", key: ADMIN, headers: { ...headers, origin: "http://evil.example" }, body: rpc });
    expect(res.status).toBe(403);
    expect((await res.json()).error.message).toBe(
      'Origin "http://evil.example" is not allowed: only the registry\'s own pages and REGISTRY_ALLOWED_ORIGINS may call it from a browser',
    );
    const ok = await reg.http("/mcp", { method: "POST", key: ADMIN, headers: { ...headers, origin: `http://localhost:${reg.port}` }, body: rpc });
    expect(ok.status).toBe(200);
  });

  it("answers 413 with the JSON error body for a body over 1 MiB", async () => {
    const big = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list", params: { pad: "x".repeat(1024 * 1024) } });
    const res = await reg.http("/mcp", { method: "POST", key: ADMIN, headers, body: big });
    expect(res.status).toBe(413);
    expect(await res.json()).toEqual({ error: { code: "payload_too_large", message: "Request body exceeds 1048576 bytes" } });
  });
});

describe("internal errors", () => {
  it("answer 500 / a tool error naming a request id that the log line carries, and never show SQL", async () => {
    const reg = await startTestRegistry();
    try {
      // A table the registry needs, gone: every engine then fails the query with its own SQL error.
      const rename = sql`alter table users rename to users_gone`;
      await reg.ctx.execute(rename);
      const res = await reg.http("/role_for_user", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "ann" }) });
      expect(res.status).toBe(500);
      const { error } = await res.json();
      expect(error.code).toBe("internal");
      const [, httpId] = /^Internal error \(request ([0-9a-f]{8})\)$/.exec(error.message)!;
      const result = await call(await reg.client(), "list_users");
      expect(result.isError).toBe(true);
      const [, toolId] = /^Internal error \(request ([0-9a-f]{8})\)$/.exec(text(result))!;
      expect(toolId).not.toBe(httpId);
      const logs = reg.logs.join("\n");
      for (const id of [httpId, toolId]) expect(logs).toMatch(new RegExp(`ERROR Internal error .*${id}`));
      expect(JSON.stringify(error) + text(result)).not.toMatch(/users|sql|select/i);
    } finally {
      await reg.stop();
    }
  });
});
