/** Test helpers: real registries on ephemeral ports, real MCP servers, real clients. No mocks of our code. */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { SSEServerTransport } from "@modelcontextprotocol/sdk/server/sse.js";
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import type { CallToolResult, ClientCapabilities } from "@modelcontextprotocol/sdk/types.js";
import { expect } from "vitest";
import { type Registry, startRegistry } from "../registry.ts";
import { type Config, loadConfig } from "../shared/config.ts";
import { temporaryPostgres } from "../shared/db/temporary.ts";
import { createLog } from "../shared/log.ts";

export const ROOT = new URL("..", import.meta.url).pathname;

/** A fresh temporary directory. */
export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "mcp-registry-test-"));
}

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export type TestRegistry = Registry & {
  logs: string[];
  /** fetch relative to the registry, with an optional Bearer key. */
  http(path: string, init?: RequestInit & { key?: string }): Promise<Response>;
  /** A connected SDK client (closed by stop()). */
  client(key?: string): Promise<Client>;
  stop(): Promise<void>;
};

/**
 * The engine the suite runs on: PostgreSQL when TEST_DATABASE_URL is a postgres:// URL (each registry
 * then gets a fresh database of its own), else SQLite in memory. Engine-specific tests say so with it.
 */
export const ENGINE: "sqlite" | "postgres" = /^postgres(ql)?:/.test(process.env.TEST_DATABASE_URL ?? "") ? "postgres" : "sqlite";

/** Settings a developer's shell or .env might hold, pinned for spawned entry points: each test sees only what it sets. */
export const CLEAN_ENV: Record<string, string> = {
  MCP_HOST: "127.0.0.1",
  AGENT_REREAD_HOOK: "",
  REGISTRY_ADMIN_KEYS: "",
  REGISTRY_AGENT_KEYS: "",
  REGISTRY_AUTH: "",
  REGISTRY_DISCOVERY_TIMEOUT: "",
  REGISTRY_SECRET: "",
  LOG_FORMAT: "",
};

/** A fixed REGISTRY_SECRET for tests that need one (32 bytes, base64). */
export const TEST_SECRET = Buffer.alloc(32, 7).toString("base64");

/** A DATABASE_URL for a new, empty database of the suite's engine, and how to drop it. */
export async function freshDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  if (ENGINE === "sqlite") return { url: ":memory:", drop: async () => {} };
  return temporaryPostgres(process.env.TEST_DATABASE_URL!, "reg");
}

/** Starts a registry in this process on 127.0.0.1 and a free port, on a fresh database unless env names one. */
export async function startTestRegistry(env: Record<string, string> = {}): Promise<TestRegistry> {
  const fresh = env.DATABASE_URL ? { url: env.DATABASE_URL, drop: async () => {} } : await freshDatabase();
  // A shared database needs an explicit vault key (there is no file beside it to keep one in).
  const secret = ENGINE === "postgres" ? { REGISTRY_SECRET: TEST_SECRET } : {};
  // The audit retention's first run (1 s after start) is background work of its own, which tests counting
  // ctx.background (hook calls) would count too: off unless a test sets it (test/hostile_input.test.ts).
  const config: Config = loadConfig({ MCP_PORT: "0", REGISTRY_AUDIT_RETENTION_DAYS: "0", ...secret, ...env, DATABASE_URL: fresh.url });
  const logs: string[] = [];
  const registry = await startRegistry(
    config,
    createLog((line) => logs.push(line)),
  ).catch(async (err) => {
    await fresh.drop();
    throw err;
  });
  const clients: Client[] = [];
  return {
    ...registry,
    logs,
    http(path, init = {}) {
      const { key, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (key) headers.set("authorization", `Bearer ${key}`);
      return fetch(registry.url + path, { ...rest, headers });
    },
    async client(key) {
      const c = await connectClient(`${registry.url}/mcp`, key);
      clients.push(c);
      return c;
    },
    async stop() {
      await Promise.allSettled(clients.map((c) => c.close()));
      await registry.close();
      await fresh.drop();
    },
  };
}

/**
 * An SDK client connected over streamable HTTP, sending `Authorization: <scheme> <key>` (Bearer unless told)
 * and `headers` (e.g. X-Registry-User) with every request, declaring `capabilities`.
 */
export async function connectClient(
  url: string,
  key?: string,
  opts: { headers?: Record<string, string>; capabilities?: ClientCapabilities; scheme?: string } = {},
): Promise<Client> {
  const client = new Client({ name: "registry-test", version: "1.0.0" }, { capabilities: opts.capabilities ?? {} });
  const headers: Record<string, string> = { ...(key ? { authorization: `${opts.scheme ?? "Bearer"} ${key}` } : {}), ...opts.headers };
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return client;
}

/** Calls a tool and returns its result (tool errors are results with isError, not exceptions). */
export async function call(client: Client, name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
}

/** The text of a tool result's first content item. */
export function text(result: CallToolResult): string {
  const first = result.content[0];
  return first && first.type === "text" ? first.text : "";
}

export type Spawned = { url: string; port: number; proc: ChildProcess; output: () => string; stop(): Promise<void> };

/** Spawns a process and waits until `ready` matches its output (stdout or stderr). */
export async function spawnUntil(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; ready: RegExp; timeoutMs?: number },
): Promise<{ proc: ChildProcess; output: () => string; stop(): Promise<void> }> {
  const proc = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    try {
      process.kill(-proc.pid!, "SIGTERM");
    } catch {
      /* gone */
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-proc.pid!, "SIGKILL");
      } catch {
        /* gone */
      }
    }, 5000);
    await exited;
    clearTimeout(timer);
  };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} did not become ready:\n${out}`)), opts.timeoutMs ?? 20_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (opts.ready.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited with ${code}:\n${out}`));
    });
  }).catch(async (e) => {
    await stop();
    throw e;
  });
  return { proc, output: () => out, stop };
}

/** Starts @modelcontextprotocol/server-everything (streamableHttp at /mcp, or sse at /sse) on a free port. */
export async function startEverything(mode: "streamableHttp" | "sse" = "streamableHttp"): Promise<Spawned> {
  const port = await freePort();
  const s = await spawnUntil(process.execPath, [join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"), mode], {
    env: { PORT: String(port) },
    ready: new RegExp(`${port}|listening|running`, "i"),
  });
  return { ...s, port, url: `http://127.0.0.1:${port}${mode === "sse" ? "/sse" : "/mcp"}` };
}

export type TestServerOptions = {
  /** Called with a fresh low-level SDK Server per request (and the request): register handlers here. */
  setup(server: Server, req: Request): void;
  instructions?: string;
  /** serverInfo.version the server reports (default "1.0.0"); read on each request, so a test may change it. */
  version?: string | (() => string);
  capabilities?: ConstructorParameters<typeof Server>[1] extends infer O ? (O extends { capabilities?: infer C } ? C : never) : never;
  /** Runs before the MCP transport; return a Response to answer the request yourself. */
  intercept?(req: Request): Response | Promise<Response> | undefined;
};

/** A small MCP server built with the SDK, served statelessly over streamable HTTP at /mcp on a free port. */
export async function startTestMcpServer(opts: TestServerOptions): Promise<{ url: string; port: number; requests: number; stop(): Promise<void> }> {
  const state = { requests: 0 };
  const server = serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: async (req) => {
      state.requests++;
      const own = await opts.intercept?.(req);
      if (own) return own;
      if (req.method !== "POST") return new Response(null, { status: 405 });
      const version = typeof opts.version === "function" ? opts.version() : (opts.version ?? "1.0.0");
      const mcp = new Server({ name: "test-server", version }, { capabilities: opts.capabilities ?? { tools: {} }, instructions: opts.instructions });
      opts.setup(mcp, req);
      const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      await mcp.connect(transport);
      return transport.handleRequest(req);
    },
  });
  await new Promise((r) => server.once("listening", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    port,
    get requests() {
      return state.requests;
    },
    stop: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        (server as unknown as { closeAllConnections(): void }).closeAllConnections();
      }),
  };
}

/** Polls `check` until it returns a truthy value (bounded, so a missing event fails instead of hanging). */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A spawned process's output as it comes (stdout and stderr apart), and its exit code once it and every holder of its pipes are gone. */
export function captured(proc: ChildProcess): { stdout: () => string; stderr: () => string; closed: Promise<number | null> } {
  let stdout = "";
  let stderr = "";
  proc.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  proc.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const closed = new Promise<number | null>((resolve) => proc.once("close", (code) => resolve(code)));
  return { stdout: () => stdout, stderr: () => stderr, closed };
}

/** Runs a process to its end and returns its exit code and combined output. */
export async function runToExit(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; output: string }> {
  const proc = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  proc.stdout!.on("data", (d: Buffer) => {
    output += d.toString();
  });
  proc.stderr!.on("data", (d: Buffer) => {
    output += d.toString();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`${cmd} did not exit:\n${output}`));
    }, opts.timeoutMs ?? 20_000);
    proc.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** What the public surface shows of the catalogue: GET /list_services, MCP list_services, and the number of stored tools. */
export async function catalogue(reg: TestRegistry): Promise<{ http: unknown; mcp: unknown; tools: number }> {
  const http = await (await reg.http("/list_services")).json();
  const mcp = (await call(await reg.client(), "list_services")).structuredContent;
  const { tools: table } = reg.ctx.tables;
  const tools = (await reg.ctx.db.select({ id: table.id }).from(table)).length;
  return { http, mcp, tools };
}

/** Everything a failed call must leave as it was: the public catalogue, every service and tool row, the role links. */
export async function snapshot(reg: TestRegistry) {
  const { services, tools, toolRoles } = reg.ctx.tables;
  return {
    catalogue: await catalogue(reg),
    services: await reg.ctx.db.select().from(services).orderBy(services.id),
    tools: await reg.ctx.db.select().from(tools).orderBy(tools.id),
    links: await reg.ctx.db.select().from(toolRoles).orderBy(toolRoles.toolId),
  };
}

/** Calls a tool expecting a tool error; returns its text after checking that nothing was written. */
export async function fails(reg: TestRegistry, name: string, args: Record<string, unknown>): Promise<string> {
  const before = await snapshot(reg);
  const r = await call(await reg.client(), name, args);
  expect(r.isError, text(r)).toBe(true);
  expect(await snapshot(reg)).toEqual(before);
  return text(r);
}

/**
 * An SDK server speaking only the old HTTP+SSE transport: the event stream at `path` (GET), messages at
 * /messages (POST); anything else, such as a streamable HTTP client's first POST, gets 405.
 */
export async function startSseMcpServer(path: string, setup: (server: Server) => void, instructions?: string): Promise<{ url: string; stop(): Promise<void> }> {
  const sessions = new Map<string, SSEServerTransport>();
  const http = createHttpServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (req.method === "GET" && url.pathname === path) {
      const transport = new SSEServerTransport("/messages", res);
      sessions.set(transport.sessionId, transport);
      const mcp = new Server({ name: "sse-only", version: "1.0.0" }, { capabilities: { tools: {} }, instructions });
      setup(mcp);
      await mcp.connect(transport);
      return;
    }
    const session = sessions.get(url.searchParams.get("sessionId") ?? "");
    if (req.method === "POST" && url.pathname === "/messages" && session) return void session.handlePostMessage(req, res);
    res.writeHead(405).end();
  });
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(http.address() as { port: number }).port}${path}`,
    stop: () =>
      new Promise<void>((r) => {
        http.close(() => r());
        http.closeAllConnections();
      }),
  };
}

export type Hook = { url: string; hits: number; stop(): Promise<void> };

/** An AGENT_REREAD_HOOK receiver counting its calls. */
export async function startHook(): Promise<Hook> {
  const server = createHttpServer((_req, res) => {
    hook.hits++;
    res.writeHead(200).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const hook: Hook = {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/reread`,
    hits: 0,
    stop: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
  return hook;
}

/** A JSON-RPC message as a hand-written service reads it. */
export type RpcMessage = { id?: number; method: string; params?: unknown };
export type HandWrittenService = {
  url: string;
  port: number;
  server: HttpServer;
  /** Every request, in order: its path, method, message and Authorization header. */
  seen: { path: string; method: string; m: RpcMessage; auth?: string }[];
  stop(): Promise<void>;
};

/**
 * A hand-written MCP service on node:http, streamable HTTP with JSON answers (GET is 405: no SSE), for tests
 * that need what the SDK's server never does: `handle` answers what it wants to (returning true), the rest
 * is answered as a well-behaved server listing `tools` (by default one tool, "kept"), with `headers`.
 */
export async function startHandWrittenService(
  handle: (m: RpcMessage, req: IncomingMessage, res: ServerResponse) => boolean | undefined = () => undefined,
  opts: { tools?: unknown[]; headers?: Record<string, string> } = {},
): Promise<HandWrittenService> {
  const seen: HandWrittenService["seen"] = [];
  const init = { protocolVersion: "2025-06-18", capabilities: { tools: {} }, serverInfo: { name: "hand-written", version: "1.0.0" } };
  const tools = { tools: opts.tools ?? [{ name: "kept", inputSchema: { type: "object" } }] };
  const server = createHttpServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => {
      body += d;
    });
    req.on("end", () => {
      let m: RpcMessage = { method: "" };
      try {
        m = JSON.parse(body);
      } catch {}
      seen.push({ path: req.url ?? "", method: req.method ?? "", m, auth: req.headers.authorization });
      if (handle(m, req, res)) return;
      if (req.method !== "POST") return res.writeHead(405).end();
      if (m.id === undefined) return res.writeHead(202).end();
      const result = m.method === "initialize" ? init : tools;
      res.writeHead(200, { "content-type": "application/json", ...opts.headers }).end(JSON.stringify({ jsonrpc: "2.0", id: m.id, result }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    port,
    server,
    seen,
    stop: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
