/** Import from the predecessor's SQLite database, built here with its exact schema and quirks. */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { definitionOf, digestOf } from "../features/tool_pinning/definition.ts";
import { openStore } from "../shared/db/db.ts";
import { call, ENGINE, freshDatabase, runToExit, startTestMcpServer, startTestRegistry, TEST_SECRET, tempDir, text } from "./helpers.ts";

// The predecessor's tables exactly as SQLAlchemy created them on SQLite (foreign keys were never enforced).
const LEGACY_SCHEMA = `
CREATE TABLE mcp_services (id INTEGER NOT NULL, service_name VARCHAR(255) NOT NULL, endpoint VARCHAR(512) NOT NULL,
  description VARCHAR(1024) NOT NULL, requires_authorization BOOLEAN NOT NULL, method_authorization VARCHAR(32) NOT NULL,
  created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, PRIMARY KEY (id), UNIQUE (service_name), UNIQUE (endpoint));
CREATE INDEX ix_mcp_services_id ON mcp_services (id);
CREATE TABLE mcp_roles (id INTEGER NOT NULL, name VARCHAR(255) NOT NULL, default_system_prompt VARCHAR(8192) NOT NULL,
  PRIMARY KEY (id), UNIQUE (name));
CREATE TABLE mcp_tools (id INTEGER NOT NULL, service_name VARCHAR(255) NOT NULL, name VARCHAR(255) NOT NULL,
  description VARCHAR(1024) NOT NULL, PRIMARY KEY (id), CONSTRAINT uq_tool_per_service UNIQUE (service_name, name),
  FOREIGN KEY(service_name) REFERENCES mcp_services (service_name) ON DELETE CASCADE);
CREATE TABLE mcp_users (id INTEGER NOT NULL, user_id VARCHAR(255) NOT NULL, role_id_fk INTEGER, PRIMARY KEY (id),
  FOREIGN KEY(role_id_fk) REFERENCES mcp_roles (id) ON DELETE SET NULL);
CREATE UNIQUE INDEX ix_mcp_users_user_id ON mcp_users (user_id);
CREATE TABLE mcp_tool_roles (id INTEGER NOT NULL, tool_id INTEGER NOT NULL, role_id INTEGER NOT NULL, PRIMARY KEY (id),
  CONSTRAINT uq_role_per_tool UNIQUE (tool_id, role_id), FOREIGN KEY(tool_id) REFERENCES mcp_tools (id) ON DELETE CASCADE,
  FOREIGN KEY(role_id) REFERENCES mcp_roles (id) ON DELETE CASCADE);
CREATE TABLE user_access_tokens (id INTEGER NOT NULL, user_id_fk INTEGER NOT NULL, service_name VARCHAR(255) NOT NULL,
  token VARCHAR(2048) NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, PRIMARY KEY (id),
  CONSTRAINT uq_token_per_user_service UNIQUE (user_id_fk, service_name),
  FOREIGN KEY(user_id_fk) REFERENCES mcp_users (id) ON DELETE CASCADE,
  FOREIGN KEY(service_name) REFERENCES mcp_services (service_name) ON DELETE CASCADE);
`;

const NOW = "'2025-05-01 10:00:00.000000'";
const LEGACY_ROWS = `
INSERT INTO mcp_services VALUES (1, 'weather', 'http://127.0.0.1:9/weather/mcp', 'Weather forecasts', 1, 'Bearer', ${NOW}, ${NOW});
INSERT INTO mcp_services VALUES (4, 'search', 'http://127.0.0.1:9/search/sse', 'Web search', 0, '', ${NOW}, ${NOW});
INSERT INTO mcp_tools VALUES (3, 'weather', 'search', 'Find a city');
INSERT INTO mcp_tools VALUES (5, 'weather', 'forecast', 'Forecast for a city');
INSERT INTO mcp_tools VALUES (7, 'search', 'search', 'Search the web');
INSERT INTO mcp_tools VALUES (8, 'gone', 'ghost', 'A tool of a service removed with foreign keys off');
INSERT INTO mcp_services VALUES (6, 'local', '/opt/servers/server.py', 'A script the predecessor ran as a subprocess', 0, '', ${NOW}, ${NOW});
INSERT INTO mcp_tools VALUES (9, 'local', 'run', 'Run it');
INSERT INTO mcp_roles VALUES (1, 'analyst', 'You analyse weather and the web.');
INSERT INTO mcp_roles VALUES (2, 'idle', '');
INSERT INTO mcp_tool_roles VALUES (1, 3, 1);
INSERT INTO mcp_tool_roles VALUES (2, 5, 1);
INSERT INTO mcp_tool_roles VALUES (3, 7, 1);
INSERT INTO mcp_tool_roles VALUES (4, 8, 1);
INSERT INTO mcp_users VALUES (1, 'ann', 1);
INSERT INTO mcp_users VALUES (2, 'bob', NULL);
INSERT INTO mcp_users VALUES (3, 'carl', 42);
INSERT INTO user_access_tokens VALUES (1, 1, 'weather', 'ann-weather-token-1234', ${NOW}, ${NOW});
INSERT INTO user_access_tokens VALUES (2, 1, 'gone', 'ann-orphan-token-5678', ${NOW}, ${NOW});
INSERT INTO user_access_tokens VALUES (3, 2, 'search', 'bob-search-token-9012', ${NOW}, ${NOW});
`;

async function buildLegacyDb(path: string): Promise<void> {
  const c = createClient({ url: `file:${path}` });
  await c.execute("PRAGMA foreign_keys=OFF");
  await c.executeMultiple(LEGACY_SCHEMA + LEGACY_ROWS);
  c.close();
}

const sha = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

describe("npm run import", () => {
  const dir = tempDir();
  const legacy = join(dir, "dev.db");
  let target: { url: string; drop(): Promise<void> };
  let env: Record<string, string>;
  let first: { code: number | null; output: string };
  let second: { code: number | null; output: string };
  let before: string;

  beforeAll(async () => {
    await buildLegacyDb(legacy);
    before = sha(legacy);
    // The registry's own database: a file on SQLite (its key file lands beside it), a fresh database on PostgreSQL.
    target = ENGINE === "sqlite" ? { url: `file:${join(dir, "registry.db")}`, drop: async () => {} } : await freshDatabase();
    env = { DATABASE_URL: target.url, ...(ENGINE === "postgres" ? { REGISTRY_SECRET: TEST_SECRET } : {}) };
    first = await runToExit("npm", ["run", "--silent", "import", "--", `sqlite:///${legacy}`], { env, timeoutMs: 60_000 });
    second = await runToExit("npm", ["run", "--silent", "import", "--", `sqlite:///${legacy}`], { env, timeoutMs: 60_000 });
  }, 120_000);
  afterAll(async () => target?.drop());

  it("prints what it imported, what it skipped and why", () => {
    expect(first.code, first.output).toBe(0);
    expect(first.output).toContain(`Imported from ${legacy}:`);
    expect(first.output).toContain("services: 2");
    expect(first.output).toContain("tools: 3 (their input schemas are not stored until the service is refreshed");
    expect(first.output).toContain("roles: 2");
    expect(first.output).toContain("role attachments: 3");
    expect(first.output).toContain("users: 3");
    expect(first.output).toContain("tokens: 1 (encrypted)");
    expect(first.output).toContain('tool 8 "ghost" of service "gone": its service no longer exists');
    expect(first.output).toContain('attachment of tool 8 to role "analyst": the tool was not imported');
    // A local path was run as a subprocess by the predecessor: agents cannot use it, and a refresh could not reach it.
    expect(first.output).toContain(
      'service "local": its endpoint "/opt/servers/server.py" must be an http(s) URL (agents cannot call a local path or command); add it again with add_service at an http(s) URL',
    );
    expect(first.output).toContain('tool 9 "run" of service "local": its service was not imported');
    expect(first.output).toContain('role of user "carl": role 42 no longer exists; the user is imported without a role');
    expect(first.output).toContain('token of user "ann" for service "gone": the service no longer exists');
    expect(first.output).toContain('token of user "bob" for service "search": the service does not require authorization');
    // Tokens are never printed.
    expect(first.output).not.toContain("ann-weather-token-1234");
    expect(first.output).not.toContain("ann-orphan-token-5678");
  });

  it("is idempotent: a second run imports nothing", () => {
    expect(second.code, second.output).toBe(0);
    for (const kind of ["services", "tools", "roles", "role attachments", "users", "tokens"]) expect(second.output).toMatch(new RegExp(`  ${kind}: 0\\b`));
  });

  it("writes each imported tool with the digest of its definition, so start-up has none to compute", async () => {
    // One import into a database of its own: a second run's start-up would fill the digests itself.
    const once = ENGINE === "sqlite" ? { url: `file:${join(dir, "once.db")}`, drop: async () => {} } : await freshDatabase();
    const imported = await runToExit("npm", ["run", "--silent", "import", "--", `sqlite:///${legacy}`], { env: { ...env, DATABASE_URL: once.url }, timeoutMs: 60_000 });
    expect(imported.code, imported.output).toBe(0);
    const store = await openStore(once.url);
    try {
      const rows = await store.db.select().from(store.tables.tools);
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) expect(row.digest).toBe(digestOf(definitionOf(row)));
    } finally {
      await store.close();
      await once.drop();
    }
  }, 90_000);

  it("never modifies the predecessor's file", () => {
    expect(sha(legacy)).toBe(before);
  });

  it("serves the imported data to old agents exactly as before", async () => {
    const reg = await startTestRegistry(env);
    const server = await startTestMcpServer({ setup: (s) => s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: "fresh", inputSchema: { type: "object" } }] })) });
    try {
      expect(await (await reg.http("/list_services")).json()).toEqual({
        services: {
          search: { transport: "sse", url: "http://127.0.0.1:9/search/sse" },
          weather: { transport: "streamable_http", url: "http://127.0.0.1:9/weather/mcp" },
        },
      });
      const client = await reg.client();
      expect(JSON.parse(text(await call(client, "get_tools", { service_name: "weather" })))).toEqual([
        { id: 3, name: "search", description: "Find a city", roles: ["analyst"] },
        { id: 5, name: "forecast", description: "Forecast for a city", roles: ["analyst"] },
      ]);
      const post = async (path: string, body: unknown) =>
        (await reg.http(path, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } })).json();
      expect(await post("/role_for_user", { user_id: "ann" })).toEqual({ role: "analyst" });
      expect(await post("/role_for_user", { user_id: "bob" })).toEqual({ role: "" });
      expect(await post("/role_for_user", { user_id: "carl" })).toEqual({ role: "" });
      expect(await post("/system_prompt_for_role", { role: "analyst" })).toEqual({ default_system_prompt: "You analyse weather and the web." });
      const tools = (await post("/tools_for_role", { role: "analyst" })) as { tools: { id: number; service_name: string }[] };
      expect(tools.tools.map((t) => [t.id, t.service_name]).sort()).toEqual([
        [3, "weather"],
        [5, "weather"],
        [7, "search"],
      ]);
      expect(await (await reg.http("/token?service_name=weather&user_id=ann")).json()).toEqual({ token: "ann-weather-token-1234", method_authorization: "Bearer" });
      expect((await reg.http("/token?service_name=gone&user_id=ann")).status).toBe(404);
      // Ids handed out after the import never collide with imported ones.
      await call(client, "add_service", { service_name: "fresh", endpoint: server.url, description: "x" });
      const [fresh] = JSON.parse(text(await call(client, "get_tools", { service_name: "fresh" })));
      expect(fresh.id).toBeGreaterThan(7);
    } finally {
      await reg.stop();
      await server.stop();
    }
  });

  it("refuses what it cannot import with a clear message and writes nothing", async () => {
    const mysql = await runToExit("npm", ["run", "--silent", "import", "--", "mysql://u:p@localhost/old"], { env });
    expect(mysql.code).toBe(1);
    expect(mysql.output).toContain('Cannot import from "mysql": only the predecessor\'s SQLite database can be imported');
    const missing = await runToExit("npm", ["run", "--silent", "import", "--", `sqlite:///${join(dir, "nope.db")}`], { env });
    expect(missing.code).toBe(1);
    expect(missing.output).toContain("no file at");
    const none = await runToExit("npm", ["run", "--silent", "import"], { env });
    expect(none.code).toBe(1);
    expect(none.output).toContain("Usage: npm run import -- <the predecessor's DATABASE_URL>");
  });
});
