/** The stdio entry point for desktop MCP clients, on Node (`node --import tsx stdio.ts`) and on Deno (`deno task stdio`). */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { allTools } from "../registry.ts";
import {
  CLEAN_ENV,
  call,
  captured,
  ENGINE,
  freePort,
  freshDatabase,
  ROOT,
  startEverything,
  startTestMcpServer,
  startTestRegistry,
  tempDir,
  TEST_SECRET,
  text,
  waitFor,
} from "./helpers.ts";

const NODE_STDIO = ["--import", "tsx", "stdio.ts"];
const SERVING = /MCP Registry serving the registry's tools on stdio/;

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A database of the suite's engine that two processes can share: a SQLite file, or a fresh PostgreSQL database. */
async function sharedDatabase(): Promise<{ url: string; env: Record<string, string> }> {
  if (ENGINE === "sqlite") return { url: `file:${join(tempDir(), "r.db")}`, env: {} };
  const fresh = await freshDatabase();
  cleanups.push(fresh.drop);
  return { url: fresh.url, env: { REGISTRY_SECRET: TEST_SECRET } };
}

/** Spawns a stdio server and talks raw JSON-RPC lines to it, so every byte of its stdout can be checked. */
function spawnRaw(cmd: string, args: string[], env: Record<string, string>) {
  const proc = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"], detached: true });
  const { stdout, stderr, closed: exited } = captured(proc);
  cleanups.push(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    try {
      process.kill(-proc.pid!, "SIGKILL");
    } catch {
      /* gone */
    }
    await exited;
  });
  const lines = () =>
    stdout()
      .split("\n")
      .filter((l) => l !== "");
  const parse = (line: string) => {
    try {
      return JSON.parse(line);
    } catch {
      return { unparsable: line };
    }
  };
  return {
    proc,
    exited,
    stderr,
    /** Every line written to stdout so far, parsed (a non-JSON line shows up as {unparsable}). */
    messages: () => lines().map(parse),
    send: (message: object) => proc.stdin!.write(`${JSON.stringify({ jsonrpc: "2.0", ...message })}\n`),
    response: (id: number) =>
      waitFor(
        () =>
          lines()
            .map(parse)
            .find((m) => m.id === id),
        `the response to request ${id}\n${stderr()}`,
        60_000,
      ),
  };
}

const INITIALIZE = { id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw-client", version: "1.0.0" } } };

describe("node --import tsx stdio.ts", () => {
  it("serves the tools to the SDK client as admin on the shared database, seen over HTTP too, and never listens on HTTP", async () => {
    const [everything, db, port] = await Promise.all([startEverything(), sharedDatabase(), freePort()]);
    cleanups.push(everything.stop);
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: NODE_STDIO,
      cwd: ROOT,
      env: { ...(process.env as Record<string, string>), ...CLEAN_ENV, ...db.env, MCP_PORT: String(port), DATABASE_URL: db.url },
      stderr: "pipe",
    });
    let stderr = "";
    transport.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const client = new Client({ name: "desktop-client", version: "1.0.0" });
    // A line on stdout that is not a protocol message would be reported here.
    const errors: Error[] = [];
    client.onerror = (e) => errors.push(e);
    await client.connect(transport);
    cleanups.push(() => client.close());
    expect(client.getServerVersion()?.name).toBe("mcp-registry");

    // The local process is admin: it sees every tool.
    const names = (await client.listTools()).tools.map((t) => t.name).sort();
    expect(names).toEqual(allTools.map((t) => t.name).sort());
    const added = await call(client, "add_service", { service_name: "everything", endpoint: everything.url, description: "Reference server" });
    expect(text(added)).toMatch(/^Service "everything" added with \d+ tools\.$/);
    expect((await call(client, "list_services")).structuredContent).toEqual({
      services: [{ service_name: "everything", endpoint: everything.url, description: "Reference server" }],
    });

    // An HTTP registry on the same database sees the service, and the stdio caller in the audit trail.
    const reg = await startTestRegistry({ ...db.env, DATABASE_URL: db.url });
    cleanups.push(() => reg.stop());
    const res = await reg.http("/list_services");
    expect(await res.json()).toEqual({ services: { everything: { transport: "streamable_http", url: everything.url } } });
    const audit = (await call(await reg.client(), "list_audit_events", { action: "add_service" })).structuredContent as { events: { actor: string; outcome: string }[] };
    expect(audit.events).toEqual([expect.objectContaining({ actor: "stdio", outcome: "ok" })]);
    // And what HTTP writes, stdio reads.
    await call(await reg.client(), "create_role", { role_name: "reader", default_system_prompt: "Be brief." });
    expect((await call(client, "list_roles")).structuredContent).toEqual({ roles: [{ name: "reader", default_system_prompt: "Be brief." }] });

    await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
    expect(stderr).toMatch(SERVING);

    // Closing the client ends stdin: the server closes the store and exits.
    await client.close();
    expect(stderr).toContain("MCP Registry on stdio stopped");
    expect(errors).toEqual([]);
  }, 60_000);

  it("writes nothing but protocol messages on stdout, and stops with exit code 0 on SIGTERM", async () => {
    const db = await sharedDatabase();
    const server = spawnRaw(process.execPath, NODE_STDIO, { ...CLEAN_ENV, ...db.env, DATABASE_URL: db.url });
    server.send(INITIALIZE);
    expect((await server.response(1)).result.serverInfo.name).toBe("mcp-registry");
    server.send({ method: "notifications/initialized" });
    server.send({ id: 2, method: "tools/call", params: { name: "list_services", arguments: {} } });
    expect((await server.response(2)).result.structuredContent).toEqual({ services: [] });
    for (const m of server.messages()) expect(m).toMatchObject({ jsonrpc: "2.0" });
    expect(server.stderr()).toMatch(SERVING);

    server.proc.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    expect(server.stderr()).toContain("MCP Registry on stdio stopped");
  }, 30_000);

  it("exits 1 with one line on stderr, and nothing on stdout, for a bad setting", async () => {
    const server = spawnRaw(process.execPath, NODE_STDIO, { ...CLEAN_ENV, DATABASE_URL: "mysql://root:secret@db/registry" });
    expect(await server.exited).toBe(1);
    expect(server.messages()).toEqual([]);
    const lines = server.stderr().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\S+ ERROR Invalid configuration: DATABASE_URL uses an unsupported database "mysql"/);
    expect(lines[0]).not.toContain("secret");
  });
});

describe("deno task stdio", () => {
  it("initializes and lists the tools on Deno, and stops when stdin ends", async () => {
    const db = await sharedDatabase();
    const server = spawnRaw(join(ROOT, "node_modules/.bin/deno"), ["task", "stdio"], { ...CLEAN_ENV, ...db.env, DATABASE_URL: db.url });
    server.send(INITIALIZE);
    const init = await server.response(1);
    expect(init.result).toMatchObject({ protocolVersion: "2025-06-18", serverInfo: { name: "mcp-registry" } });
    server.send({ method: "notifications/initialized" });
    server.send({ id: 2, method: "tools/list" });
    const names = (await server.response(2)).result.tools.map((t: { name: string }) => t.name).sort();
    expect(names).toEqual(allTools.map((t) => t.name).sort());
    for (const m of server.messages()) expect(m).toMatchObject({ jsonrpc: "2.0" });

    server.proc.stdin!.end();
    expect(await server.exited).toBe(0);
    expect(server.stderr()).toContain("MCP Registry on stdio stopped");
  }, 90_000);
});

/**
 * A registry over HTTP on a shared database with what the stdio gateway needs: a service that answers with
 * the bearer token it was sent, its tool attached to role "staff", user "ann" with that role and her token.
 */
async function gatewayFixture() {
  const db = await sharedDatabase();
  const notes = await startTestMcpServer({
    setup(server) {
      server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: "whoami", description: "Who is calling", inputSchema: { type: "object" as const } }] }));
      server.setRequestHandler(CallToolRequestSchema, (_req, extra) => ({ content: [{ type: "text", text: String(extra.requestInfo?.headers.authorization) }] }));
    },
  });
  cleanups.push(notes.stop);
  const reg = await startTestRegistry({ ...db.env, DATABASE_URL: db.url });
  cleanups.push(() => reg.stop());
  const admin = await reg.client();
  await call(admin, "add_service", { service_name: "notes", endpoint: notes.url, description: "Notes", requires_authorization: true, method_authorization: "Bearer" });
  await call(admin, "create_role", { role_name: "staff" });
  const [tool] = ((await call(admin, "get_tools", { service_name: "notes" })).structuredContent as { tools: { id: number }[] }).tools;
  await call(admin, "attach_role_to_tool", { tool_id: tool.id, role_name: "staff" });
  await call(admin, "assign_role_to_user", { user_id: "ann", role_name: "staff" });
  await call(admin, "authorize_user_to_service", { service_name: "notes", user_id: "ann", token: "ann-token" });
  return { env: { ...CLEAN_ENV, ...db.env, DATABASE_URL: db.url }, reg };
}

describe("npm run gateway -- --user <id>", () => {
  it("serves the user's tools over stdio and calls them with the user's own token", async () => {
    const { env } = await gatewayFixture();
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [...NODE_STDIO, "--gateway", "--user", "ann"],
      cwd: ROOT,
      env: { ...(process.env as Record<string, string>), ...env },
      stderr: "pipe",
    });
    let stderr = "";
    transport.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const client = new Client({ name: "desktop-client", version: "1.0.0" });
    await client.connect(transport);
    cleanups.push(() => client.close());
    expect(client.getServerVersion()?.name).toBe("mcp-registry-gateway");
    expect((await client.listTools()).tools.map((t) => t.name)).toEqual(["notes__whoami"]);
    expect(text(await call(client, "notes__whoami"))).toBe("Bearer ann-token");
    expect(stderr).toContain('MCP Registry serving the gateway for user "ann" on stdio');
    await client.close();
    expect(stderr).toContain("MCP Registry on stdio stopped");
  }, 60_000);

  it("exits 1 with one line on stderr when --user is missing", async () => {
    const server = spawnRaw(process.execPath, [...NODE_STDIO, "--gateway"], { ...CLEAN_ENV, DATABASE_URL: ":memory:" });
    expect(await server.exited).toBe(1);
    expect(server.messages()).toEqual([]);
    expect(server.stderr().trim().split("\n")).toEqual([expect.stringMatching(/ERROR --gateway needs --user <user_id>\. Usage: stdio\.ts \[--gateway --user <user_id>\]$/)]);
  });

  it("runs on Deno too (deno task gateway --user ann)", async () => {
    const { env } = await gatewayFixture();
    const server = spawnRaw(join(ROOT, "node_modules/.bin/deno"), ["task", "gateway", "--user", "ann"], env);
    server.send(INITIALIZE);
    expect((await server.response(1)).result.serverInfo.name).toBe("mcp-registry-gateway");
    server.send({ method: "notifications/initialized" });
    server.send({ id: 2, method: "tools/call", params: { name: "notes__whoami", arguments: {} } });
    expect((await server.response(2)).result).toEqual({ content: [{ type: "text", text: "Bearer ann-token" }] });
    server.proc.stdin!.end();
    expect(await server.exited).toBe(0);
  }, 90_000);
});
