import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, normalizeDatabaseUrl, readDotEnv, redactDatabaseUrl } from "../shared/config.ts";
import { tempDir } from "./helpers.ts";

/** The ConfigError loadConfig throws for `env`. */
function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe("loadConfig", () => {
  it("has safe defaults", () => {
    // toMatchObject: the security settings (REGISTRY_SECRET...) are covered by their own suite.
    expect(loadConfig({})).toMatchObject({
      host: "127.0.0.1",
      port: 8000,
      databaseUrl: "file:registry.db",
      rereadHook: null,
      discoveryTimeoutMs: 10_000,
      adminKeys: [],
      agentKeys: [],
      auth: "on",
      sqliteSync: "full",
      busyTimeoutMs: 5000,
      allowedOrigins: [],
      auditRetentionDays: 90,
      limits: { tools: 1000, descriptionBytes: 16384, schemaBytes: 65536, answerBytes: 8388608, pages: 100, catalogueBytes: 8388608 },
    });
  });

  it("treats empty and blank variables as unset", () => {
    expect(loadConfig({ MCP_HOST: "", MCP_PORT: " ", DATABASE_URL: "", AGENT_REREAD_HOOK: "" })).toEqual(loadConfig({}));
  });

  it("reads every variable", () => {
    const admin = "admin-key-0123456789";
    const agent1 = "agent-key-0123456789";
    const agent2 = "agent-key-abcdefghij";
    expect(
      loadConfig({
        MCP_HOST: "0.0.0.0",
        MCP_PORT: "9001",
        DATABASE_URL: "sqlite:///./dev.db",
        AGENT_REREAD_HOOK: "https://agents.example.com/reread",
        REGISTRY_DISCOVERY_TIMEOUT: "2.5",
        REGISTRY_ADMIN_KEYS: admin,
        REGISTRY_AGENT_KEYS: ` ${agent1} , ${agent2},`,
        REGISTRY_AUTH: "off",
        REGISTRY_SQLITE_SYNC: "normal",
        REGISTRY_SQLITE_BUSY_TIMEOUT: "0.5",
      }),
    ).toMatchObject({
      host: "0.0.0.0",
      port: 9001,
      databaseUrl: "file:./dev.db",
      rereadHook: "https://agents.example.com/reread",
      discoveryTimeoutMs: 2500,
      adminKeys: [admin],
      agentKeys: [agent1, agent2],
      auth: "off",
      sqliteSync: "normal",
      busyTimeoutMs: 500,
    });
  });

  it.each(["abc", "70000", "-1", "80.5"])("refuses MCP_PORT=%s naming the variable", (port) => {
    expect(configError({ MCP_PORT: port }).message).toBe(`Invalid configuration: MCP_PORT must be an integer from 0 to 65535 (got "${port}")`);
  });

  it.each(["not a url", "ftp://agents/reread", "/reread"])("refuses AGENT_REREAD_HOOK=%s", (hook) => {
    expect(configError({ AGENT_REREAD_HOOK: hook }).message).toBe(`Invalid configuration: AGENT_REREAD_HOOK must be an http(s) URL (got "${hook}")`);
  });

  it("refuses an unsupported database, naming the supported forms and not echoing the URL", () => {
    const message = configError({ DATABASE_URL: "mysql://root:secret@db/registry" }).message;
    // As docs/configuration.md shows it.
    expect(message).toBe(
      'Invalid configuration: DATABASE_URL uses an unsupported database "mysql"; supported: SQLite (file:<path>, :memory:, ' +
        "sqlite:///<path>), remote libSQL (libsql://, http(s)://) and PostgreSQL (postgres://)",
    );
    expect(message).not.toContain("secret");
  });

  it.each([
    [{ MCP_HOST: "bad host" }, 'Invalid configuration: MCP_HOST must be a host name or IP address (got "bad host")'],
    [{ REGISTRY_DISCOVERY_TIMEOUT: "0" }, 'Invalid configuration: REGISTRY_DISCOVERY_TIMEOUT must be at least 0.1 seconds (got "0")'],
    [{ REGISTRY_DISCOVERY_TIMEOUT: "ten" }, 'Invalid configuration: REGISTRY_DISCOVERY_TIMEOUT must be a number of seconds (got "ten")'],
    [{ REGISTRY_DISCOVERY_TIMEOUT: "601" }, 'Invalid configuration: REGISTRY_DISCOVERY_TIMEOUT must be at most 600 seconds (got "601")'],
    [{ REGISTRY_AUTH: "maybe" }, 'Invalid configuration: REGISTRY_AUTH must be "on" or "off" (got "maybe")'],
    [
      { REGISTRY_ALLOWED_ORIGINS: "console.example.com" },
      'Invalid configuration: REGISTRY_ALLOWED_ORIGINS must hold origins like https://console.example.com (scheme, host and port only) (got "console.example.com")',
    ],
    [
      { REGISTRY_ALLOWED_ORIGINS: "https://a.example/path" },
      'Invalid configuration: REGISTRY_ALLOWED_ORIGINS must hold origins like https://console.example.com (scheme, host and port only) (got "https://a.example/path")',
    ],
    [{ REGISTRY_AUDIT_RETENTION_DAYS: "-1" }, 'Invalid configuration: REGISTRY_AUDIT_RETENTION_DAYS must be a whole number (got "-1")'],
    [{ REGISTRY_MAX_TOOLS: "0" }, 'Invalid configuration: REGISTRY_MAX_TOOLS must be at least 1 (got "0")'],
    [{ REGISTRY_SQLITE_SYNC: "off" }, 'Invalid configuration: REGISTRY_SQLITE_SYNC must be "full" or "normal" (got "off")'],
    [{ REGISTRY_SQLITE_BUSY_TIMEOUT: "0" }, 'Invalid configuration: REGISTRY_SQLITE_BUSY_TIMEOUT must be at least 0.1 seconds (got "0")'],
    [{ REGISTRY_SQLITE_BUSY_TIMEOUT: "5s" }, 'Invalid configuration: REGISTRY_SQLITE_BUSY_TIMEOUT must be a number of seconds (got "5s")'],
  ])("refuses %j", (env, message) => {
    expect(configError(env).message).toBe(message);
  });

  it("refuses short keys without echoing them", () => {
    const message = configError({ REGISTRY_ADMIN_KEYS: "long-enough-key-0123,short" }).message;
    expect(message).toBe("Invalid configuration: REGISTRY_ADMIN_KEYS must hold keys of at least 16 characters each");
    expect(message).not.toContain("short");
  });
});

describe("normalizeDatabaseUrl", () => {
  it.each([
    ["file:registry.db", "file:registry.db"],
    ["file:/var/lib/registry/r.db", "file:/var/lib/registry/r.db"],
    [":memory:", ":memory:"],
    ["libsql://db.example.com", "libsql://db.example.com"],
    ["https://db.example.com", "https://db.example.com"],
    ["http://127.0.0.1:8080", "http://127.0.0.1:8080"],
    // The predecessor's SQLAlchemy forms: three slashes then a relative path, four for an absolute one.
    ["sqlite:///./dev.db", "file:./dev.db"],
    ["sqlite:///dev.db", "file:dev.db"],
    ["sqlite:////var/lib/registry/r.db", "file:/var/lib/registry/r.db"],
    ["sqlite+aiosqlite:///./dev.db", "file:./dev.db"],
    ["sqlite+aiosqlite:////var/lib/registry/r.db", "file:/var/lib/registry/r.db"],
    ["sqlite:///:memory:", ":memory:"],
    ["sqlite:///", ":memory:"],
  ])("maps %s to %s", (raw, expected) => {
    expect(normalizeDatabaseUrl(raw)).toBe(expected);
  });

  it("maps the old forms of one file to that file", () => {
    const path = "/srv/registry/r.db";
    expect(new Set([`file:${path}`, `sqlite:///${path}`, `sqlite+aiosqlite:///${path}`].map(normalizeDatabaseUrl))).toEqual(new Set([`file:${path}`]));
  });

  it.each([
    ["postgres://u:p@db:5432/registry", "postgres://u:p@db:5432/registry"],
    ["postgresql://db/registry", "postgresql://db/registry"],
  ])("passes the PostgreSQL URL %s through", (raw, expected) => {
    expect(normalizeDatabaseUrl(raw)).toBe(expected);
  });

  it.each(["mysql://x", "mongodb://x", "registry.db"])("refuses %s", (raw) => {
    expect(() => normalizeDatabaseUrl(raw)).toThrow(/unsupported database/);
  });
});

describe("redactDatabaseUrl (the start-up line of npm start and npm run stdio)", () => {
  it.each([
    ["postgres://registry:s3cret@db.internal:5432/registry", "postgres://***@db.internal:5432/registry"],
    ["libsql://reg.example.turso.io?authToken=eyJhbGciOi", "libsql://reg.example.turso.io?authToken=***"],
    ["postgresql://db/registry?sslmode=require&password=hunter2", "postgresql://db/registry?sslmode=require&password=***"],
    ["file:registry.db", "file:registry.db"],
    [":memory:", ":memory:"],
  ])("shows %s as %s", (url, shown) => {
    expect(redactDatabaseUrl(url)).toBe(shown);
  });
});

describe("readDotEnv", () => {
  function dotEnv(content: string, env: Record<string, string | undefined> = {}): Record<string, string | undefined> {
    const file = join(tempDir(), ".env");
    writeFileSync(file, content);
    readDotEnv(file, env);
    return env;
  }

  it("parses plain, quoted, exported and commented lines", () => {
    const env = dotEnv(
      [
        "# a comment line",
        "MCP_PORT=9000",
        "  MCP_HOST = 127.0.0.2  ",
        "export DATABASE_URL=file:/tmp/r.db",
        'AGENT_REREAD_HOOK="http://127.0.0.1:9999/reread?a=1&b=2"',
        "SINGLE='value with # inside'",
        'DOUBLE="value with # inside"',
        'QUOTED_THEN_COMMENT="kept" # dropped',
        "PLAIN_THEN_COMMENT=kept # dropped",
        "HASH_IN_WORD=a#b",
        "EMPTY=",
        "EQUALS=a=b=c",
        "not a variable line",
        "   # indented comment",
        "WINDOWS=crlf\r",
        "",
      ].join("\n"),
    );
    expect(env).toEqual({
      MCP_PORT: "9000",
      MCP_HOST: "127.0.0.2",
      DATABASE_URL: "file:/tmp/r.db",
      AGENT_REREAD_HOOK: "http://127.0.0.1:9999/reread?a=1&b=2",
      SINGLE: "value with # inside",
      DOUBLE: "value with # inside",
      QUOTED_THEN_COMMENT: "kept",
      PLAIN_THEN_COMMENT: "kept",
      HASH_IN_WORD: "a#b",
      EMPTY: "",
      EQUALS: "a=b=c",
      WINDOWS: "crlf",
    });
  });

  it("never overrides a variable that is already set", () => {
    const env = dotEnv("MCP_PORT=9000\nMCP_HOST=0.0.0.0\n", { MCP_PORT: "7000", MCP_HOST: "" });
    expect(env).toEqual({ MCP_PORT: "7000", MCP_HOST: "" });
  });

  it("does nothing when the file is missing", () => {
    const env: Record<string, string | undefined> = { KEEP: "1" };
    readDotEnv(join(tempDir(), "missing.env"), env);
    expect(env).toEqual({ KEEP: "1" });
  });

  // The example of docs/configuration.md, verbatim.
  it("feeds loadConfig (the documented example)", () => {
    const env = dotEnv(
      [
        "# .env",
        "MCP_PORT=9100",
        "DATABASE_URL=sqlite:///./dev.db   # the predecessor's form still works",
        'export AGENT_REREAD_HOOK="http://127.0.0.1:9000/reread"',
        "REGISTRY_DISCOVERY_TIMEOUT='3'",
        "",
      ].join("\n"),
    );
    expect(loadConfig(env)).toMatchObject({ port: 9100, databaseUrl: "file:./dev.db", rereadHook: "http://127.0.0.1:9000/reread", discoveryTimeoutMs: 3000 });
  });
});
