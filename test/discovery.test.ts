import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { ListResourcesRequestSchema, ListToolsRequestSchema, ReadResourceRequestSchema, type Tool } from "@modelcontextprotocol/sdk/types.js";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { discoverService, FALLBACK_DESCRIPTION } from "../features/services/discovery.ts";
import {
  call,
  catalogue,
  connectClient,
  freePort,
  runToExit,
  type Spawned,
  startEverything,
  startHandWrittenService,
  startSseMcpServer,
  startTestMcpServer,
  startTestRegistry,
  type TestRegistry,
  tempDir,
  text,
  waitFor,
} from "./helpers.ts";

const EVERYTHING_TOOLS = [
  "echo",
  "get-annotated-message",
  "get-env",
  "get-resource-links",
  "get-resource-reference",
  "get-structured-content",
  "get-sum",
  "get-tiny-image",
  "gzip-file-as-resource",
  "toggle-simulated-logging",
  "toggle-subscriber-updates",
  "trigger-long-running-operation",
  "simulate-research-query",
];

/** The tools a bare SDK client sees on a server. */
async function bareListTools(url: string, transport: "streamable_http" | "sse"): Promise<Tool[]> {
  if (transport === "streamable_http") {
    const client = await connectClient(url);
    try {
      return (await client.listTools()).tools;
    } finally {
      await client.close();
    }
  }
  const client = new Client({ name: "bare", version: "1.0.0" });
  await client.connect(new SSEClientTransport(new URL(url)));
  try {
    return (await client.listTools()).tools;
  } finally {
    await client.close();
  }
}

/** The stored tool rows of a service, straight from the database. */
async function storedTools(reg: TestRegistry, service: string) {
  const { tools, services } = reg.ctx.tables;
  return reg.ctx.db
    .select({ name: tools.name, inputSchema: tools.inputSchema, description: tools.description })
    .from(tools)
    .innerJoin(services, eq(services.id, tools.serviceId))
    .where(eq(services.name, service));
}

/** A tools/list result with one trivial tool. */
function oneTool(name = "ping") {
  return { tools: [{ name, description: `The ${name} tool`, inputSchema: { type: "object" as const, properties: {} } }] };
}

describe.each([
  { mode: "streamableHttp" as const, transport: "streamable_http" as const },
  { mode: "sse" as const, transport: "sse" as const },
])("server-everything over $transport", ({ mode, transport }) => {
  let reg: TestRegistry;
  let everything: Spawned;
  beforeAll(async () => {
    [reg, everything] = await Promise.all([startTestRegistry(), startEverything(mode)]);
  });
  afterAll(async () => {
    await reg?.stop();
    await everything?.stop();
  });

  it("stores all 13 tools with their input schemas and lists the service on MCP and HTTP", async () => {
    const c = await reg.client();
    if (mode === "sse") expect(everything.url).toMatch(/\/sse$/);
    const added = await call(c, "add_service", { service_name: "everything", endpoint: everything.url, description: "The reference server", requires_authorization: false });
    expect(added.isError).toBeFalsy();
    expect(text(added)).toBe('Service "everything" added with 13 tools.');

    const got = await call(c, "get_tools", { service_name: "everything" });
    const listed = (got.structuredContent as { tools: { id: number; name: string; description: string; roles: string[] }[] }).tools;
    expect(JSON.parse(text(got))).toEqual(listed);
    expect(listed.map((t) => t.name).sort()).toEqual([...EVERYTHING_TOOLS].sort());
    const bare = await bareListTools(everything.url, transport);
    for (const t of listed) {
      expect(Number.isInteger(t.id)).toBe(true);
      expect(t.roles).toEqual([]);
      expect(t.description).toBe(bare.find((b) => b.name === t.name)!.description);
    }
    expect(new Set(listed.map((t) => t.id)).size).toBe(13);

    const entry = { service_name: "everything", endpoint: everything.url, description: "The reference server" };
    const list = await call(c, "list_services");
    expect(text(list)).toBe(JSON.stringify([entry]));
    expect(list.structuredContent).toEqual({ services: [entry] });
    const res = await reg.http("/list_services");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ services: { everything: { transport, url: everything.url } } });

    // The stored input schemas are exactly what a bare SDK client gets from the same server.
    const rows = await storedTools(reg, "everything");
    expect(rows).toHaveLength(13);
    for (const row of rows) {
      expect(row.inputSchema).not.toBeNull();
      expect(row.inputSchema).toEqual(bare.find((b) => b.name === row.name)!.inputSchema);
    }
  });

  it("reads the server's instructions as the description when none is given", async () => {
    const c = await reg.client();
    await call(c, "remove_service", { service_name: "everything" });
    const added = await call(c, "add_service", { service_name: "everything", endpoint: everything.url, description: "" });
    expect(added.isError).toBeFalsy();
    const bare = await connectClientFor(everything.url, transport);
    const instructions = bare.getInstructions()!;
    await bare.close();
    expect(instructions.length).toBeGreaterThan(0);
    const list = await call(c, "list_services");
    expect(list.structuredContent).toEqual({ services: [{ service_name: "everything", endpoint: everything.url, description: instructions.trim() }] });
  });
});

async function connectClientFor(url: string, transport: "streamable_http" | "sse"): Promise<Client> {
  if (transport === "streamable_http") return connectClient(url);
  const client = new Client({ name: "bare", version: "1.0.0" });
  await client.connect(new SSEClientTransport(new URL(url)));
  return client;
}

/** An SDK server speaking only the old SSE transport, at a path that does not end in /sse. */
function startSseOnlyServer(): Promise<{ url: string; stop(): Promise<void> }> {
  return startSseMcpServer("/events", (mcp) => mcp.setRequestHandler(ListToolsRequestSchema, () => oneTool("legacy")), "An SSE-only server.");
}

describe("cancellation", () => {
  // The background refresher cancels discoveries when the registry stops; one may start just after.
  it("gives up at once when cancelled before it starts, leaving no work behind to fail unobserved", async () => {
    const s = await startTestMcpServer({ setup: (mcp) => mcp.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [] })) });
    try {
      const stopping = new AbortController();
      stopping.abort();
      await expect(discoverService(s.url, { timeoutMs: 5000, wantDescription: false, signal: stopping.signal })).rejects.toThrow(/cancelled/);
      // Work started anyway would reject later, unobserved: vitest fails the run on an unhandled rejection.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(s.requests).toBe(0);
    } finally {
      await s.stop();
    }
  });
});

describe("a service that accepts and never answers", () => {
  // Node 20 holds the sources of AbortSignal.any() weakly: a timeout signal among them was collected and
  // never fired, and such a discovery never ended (the benchmark's refresher stalled on them). A process
  // collecting garbage all along must still see every discovery end with the timeout.
  it("ends every discovery at the timeout, even while garbage is collected", async () => {
    const probe = `
      import { createServer } from "node:net";
      import { discoverService } from "./features/services/discovery.ts";
      const held = [];
      const server = createServer((s) => held.push(s)).listen(0, "127.0.0.1", async () => {
        const endpoint = "http://127.0.0.1:" + server.address().port + "/mcp";
        const collecting = setInterval(() => globalThis.gc(), 20);
        const ends = await Promise.all(Array.from({ length: 10 }, () => discoverService(endpoint, { timeoutMs: 500 }).then(() => "answered", (e) => e.message)));
        clearInterval(collecting);
        console.log(JSON.stringify(ends));
        for (const s of held) s.destroy();
        server.close();
      });`;
    const { code, output } = await runToExit(process.execPath, ["--expose-gc", "--import", "tsx", "--input-type=module", "-e", probe], { timeoutMs: 60_000 });
    expect(code).toBe(0);
    const ends = JSON.parse(output.trim().split("\n").at(-1)!) as string[];
    expect(ends).toHaveLength(10);
    for (const end of ends) expect(end).toMatch(/^no MCP service answered at "http:\/\/127\.0\.0\.1:\d+\/mcp" \(streamable HTTP: no answer within 0\.5 s\)$/);
  }, 90_000);
});

describe("transport fallback", () => {
  it("falls back to SSE when streamable HTTP is refused, and records the transport", async () => {
    const [reg, sse] = await Promise.all([startTestRegistry(), startSseOnlyServer()]);
    try {
      const c = await reg.client();
      const r = await call(c, "add_service", { service_name: "legacy", endpoint: sse.url, description: "" });
      expect(text(r)).toBe('Service "legacy" added with 1 tool.');
      expect(await (await reg.http("/list_services")).json()).toEqual({ services: { legacy: { transport: "sse", url: sse.url } } });
      expect((await call(c, "list_services")).structuredContent).toEqual({ services: [{ service_name: "legacy", endpoint: sse.url, description: "An SSE-only server." }] });
      const tools = (await call(c, "get_tools", { service_name: "legacy" })).structuredContent as { tools: { name: string }[] };
      expect(tools.tools.map((t) => t.name)).toEqual(["legacy"]);
    } finally {
      await reg.stop();
      await sse.stop();
    }
  });
});

describe("streamable HTTP connections: kept alive, redirects", () => {
  /**
   * A hand-written streamable HTTP service that answers one request per connection and closes the
   * connection when a second one arrives on it: what a service that stopped, or whose idle timeout ran out,
   * does to a connection the registry kept open. Every request after the first comes on a reused connection.
   */
  async function oneRequestPerConnection() {
    const served = new WeakSet<object>();
    let closedOnReuse = 0;
    const s = await startHandWrittenService(
      (_m, req) => {
        if (!served.has(req.socket)) return void served.add(req.socket);
        closedOnReuse++;
        req.socket.destroy();
        return true;
      },
      { headers: { "keep-alive": "timeout=60" } },
    );
    return { url: s.url, closedOnReuse: () => closedOnReuse, stop: s.stop };
  }

  // A server of another origin that a redirect may point to: it answers 404 and keeps what reached it.
  const catcher = () =>
    startHandWrittenService((_m, _req, res) => {
      res.writeHead(404).end();
      return true;
    });

  it("a redirect to another origin is followed by neither transport: no credential header ever gets there", async () => {
    const other = await catcher();
    const elsewhere = `http://localhost:${other.port}/mcp`;
    // Every request (the streamable HTTP POST, the SSE fallback's GET) is sent elsewhere.
    const hop = await startHandWrittenService((_m, _req, res) => {
      res.writeHead(307, { location: elsewhere }).end();
      return true;
    });
    try {
      // fetch drops Authorization across origins by itself, but not a header such as X-Api-Key.
      for (const headers of [{ authorization: "Bearer s3cret-token" }, { "x-api-key": "s3cret-key" }] as Record<string, string>[]) {
        const failed = await discoverService(hop.url, { timeoutMs: 5000, wantDescription: false, headers }).catch((e: Error) => e.message);
        expect(failed).toBe(`no MCP service answered at "${hop.url}" (streamable HTTP: the service redirected to another origin; SSE: the service redirected to another origin)`);
      }
      expect(other.seen).toEqual([]);
    } finally {
      await Promise.all([hop.stop(), other.stop()]);
    }
  });

  it("an SSE service whose message endpoint redirects to another origin: its POSTs never carry a header there", async () => {
    const other = await catcher();
    const elsewhere = `http://localhost:${other.port}/messages`;
    // A legacy SSE service: its stream names /messages, where every POST is sent to another origin.
    const sse = await startHandWrittenService((_m, req, res) => {
      if (req.method === "GET" && req.url === "/sse") {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write("event: endpoint\ndata: /messages\n\n");
      } else if (req.url === "/messages") res.writeHead(307, { location: elsewhere }).end();
      else res.writeHead(405).end();
      return true;
    });
    const url = sse.url.replace(/\/mcp$/, "/sse");
    try {
      const failed = await discoverService(url, { timeoutMs: 5000, wantDescription: false, headers: { "x-api-key": "s3cret-key" } }).catch((e: Error) => e.message);
      expect(other.seen).toEqual([]);
      expect(failed).toBe(`no MCP service answered at "${url}" (SSE: the service redirected to another origin)`);
    } finally {
      await Promise.all([sse.stop(), other.stop()]);
    }
  });

  it("a connection left idle is closed by the registry before 5 s, even when the service would keep it open for good", async () => {
    // When each connection last finished an answer, and how long after that the registry closed it.
    const answeredAt = new Map<object, number>();
    const idleFor: number[] = [];
    const { url, server, stop } = await startHandWrittenService((_m, req, res) => void res.once("finish", () => answeredAt.set(req.socket, performance.now())), { tools: [] });
    // No idle timeout of its own (and none announced): only the registry can end the connections.
    server.keepAliveTimeout = 0;
    server.on("connection", (socket) => socket.once("close", () => idleFor.push(performance.now() - (answeredAt.get(socket) ?? Number.NaN))));
    try {
      expect((await discoverService(url, { timeoutMs: 5000, wantDescription: false })).tools).toEqual([]);
      const connections = answeredAt.size;
      expect(connections).toBeGreaterThan(0);
      await waitFor(() => idleFor.length === connections, "the idle connections to be closed", 20_000);
      // Before the 5 s after which uvicorn and Node servers close an idle connection (uvicorn without saying
      // so): a request is then never sent on a connection the service is closing.
      for (const ms of idleFor) expect(ms).toBeLessThan(5000);
    } finally {
      await stop();
    }
  }, 30_000);

  it("a connection the service closed as it was reused is opened anew: the discovery succeeds", async () => {
    const s = await oneRequestPerConnection();
    try {
      // Three times: the later discoveries start on the connections the earlier ones left open (two of them).
      for (let i = 0; i < 3; i++) {
        const found = await discoverService(s.url, { timeoutMs: 5000, wantDescription: false });
        expect(found.tools.map((t) => t.name)).toEqual(["kept"]);
        expect(found).toMatchObject({ transport: "streamable_http", version: "1.0.0" });
      }
      // Each discovery met at least one connection closed as it was reused.
      expect(s.closedOnReuse()).toBeGreaterThanOrEqual(3);
    } finally {
      await s.stop();
    }
  });
});

describe("description sources", () => {
  let reg: TestRegistry;
  const servers: { stop(): Promise<void> }[] = [];
  beforeAll(async () => {
    reg = await startTestRegistry();
  });
  afterAll(async () => {
    await reg?.stop();
    await Promise.all(servers.map((s) => s.stop()));
  });

  async function server(opts: Parameters<typeof startTestMcpServer>[0]) {
    const s = await startTestMcpServer(opts);
    servers.push(s);
    return s;
  }
  const withResource = () =>
    server({
      capabilities: { tools: {}, resources: {} },
      instructions: "These instructions lose to the resource.",
      setup(mcp) {
        mcp.setRequestHandler(ListToolsRequestSchema, () => oneTool());
        mcp.setRequestHandler(ListResourcesRequestSchema, () => ({
          resources: [
            { uri: "docs://readme", name: "readme" },
            { uri: "docs://service_description", name: "service_description", mimeType: "text/plain" },
          ],
        }));
        mcp.setRequestHandler(ReadResourceRequestSchema, (req) => ({
          contents: [
            { uri: req.params.uri, mimeType: "text/plain", text: req.params.uri === "docs://service_description" ? "Weather forecasts for any city.\n" : "wrong resource" },
          ],
        }));
      },
    });
  async function descriptionOf(name: string): Promise<string> {
    const list = (await call(await reg.client(), "list_services")).structuredContent as { services: { service_name: string; description: string }[] };
    return list.services.find((s) => s.service_name === name)!.description;
  }

  it("reads the service_description resource when the description is empty", async () => {
    const s = await withResource();
    const r = await call(await reg.client(), "add_service", { service_name: "weather", endpoint: s.url, description: "" });
    expect(text(r)).toBe('Service "weather" added with 1 tool.');
    expect(await descriptionOf("weather")).toBe("Weather forecasts for any city.");
  });

  it("keeps a description given by the caller", async () => {
    const s = await withResource();
    const r = await call(await reg.client(), "add_service", { service_name: "weather-given", endpoint: s.url, description: "  Given by the operator  " });
    expect(r.isError).toBeFalsy();
    expect(await descriptionOf("weather-given")).toBe("Given by the operator");
  });

  it("uses the server's instructions when there is no service_description resource", async () => {
    const s = await server({ instructions: "Answers questions about trains.", setup: (mcp) => mcp.setRequestHandler(ListToolsRequestSchema, () => oneTool()) });
    const r = await call(await reg.client(), "add_service", { service_name: "trains", endpoint: s.url, description: "" });
    expect(r.isError).toBeFalsy();
    expect(await descriptionOf("trains")).toBe("Answers questions about trains.");
  });

  it("falls back to a fixed sentence when the server offers neither, and still succeeds", async () => {
    const s = await server({ setup: (mcp) => mcp.setRequestHandler(ListToolsRequestSchema, () => oneTool()) });
    const r = await call(await reg.client(), "add_service", { service_name: "silent", endpoint: s.url, description: "" });
    expect(text(r)).toBe('Service "silent" added with 1 tool.');
    expect(await descriptionOf("silent")).toBe(FALLBACK_DESCRIPTION);
  });

  it("falls back to the instructions when reading the resource fails", async () => {
    const s = await server({
      capabilities: { tools: {}, resources: {} },
      instructions: "Instructions of a server with a broken resource.",
      setup(mcp) {
        mcp.setRequestHandler(ListToolsRequestSchema, () => oneTool());
        mcp.setRequestHandler(ListResourcesRequestSchema, () => ({ resources: [{ uri: "docs://service_description", name: "service_description" }] }));
        mcp.setRequestHandler(ReadResourceRequestSchema, () => {
          throw new Error("disk on fire");
        });
      },
    });
    const r = await call(await reg.client(), "add_service", { service_name: "broken-resource", endpoint: s.url, description: "" });
    expect(r.isError).toBeFalsy();
    expect(await descriptionOf("broken-resource")).toBe("Instructions of a server with a broken resource.");
  });
});

describe("pagination", () => {
  let reg: TestRegistry;
  let server: Awaited<ReturnType<typeof startTestMcpServer>>;
  const cursors: (string | undefined)[] = [];
  beforeAll(async () => {
    reg = await startTestRegistry();
    server = await startTestMcpServer({
      setup(mcp) {
        mcp.setRequestHandler(ListToolsRequestSchema, (req) => {
          cursors.push(req.params?.cursor);
          const page = Number(req.params?.cursor ?? "0");
          const tools = Array.from({ length: 50 }, (_, i) => {
            const n = String(page * 50 + i).padStart(3, "0");
            return { name: `tool-${n}`, description: `Tool number ${n}`, inputSchema: { type: "object" as const, properties: { [`arg${n}`]: { type: "string" } } } };
          });
          return { tools, ...(page < 10 ? { nextCursor: String(page + 1) } : {}) };
        });
      },
    });
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
  });

  // 550 tools: also more than one multi-row insert (500 rows each) when they are stored.
  it("reads every page of tools/list (11 pages of 50: all 550 stored, in order)", async () => {
    const c = await reg.client();
    const r = await call(c, "add_service", { service_name: "big", endpoint: server.url, description: "Many tools" });
    expect(text(r)).toBe('Service "big" added with 550 tools.');
    expect(cursors).toEqual([undefined, ...Array.from({ length: 10 }, (_, i) => String(i + 1))]);
    const tools = (await call(c, "get_tools", { service_name: "big" })).structuredContent as { tools: { name: string }[] };
    expect(tools.tools.map((t) => t.name)).toEqual(Array.from({ length: 550 }, (_, i) => `tool-${String(i).padStart(3, "0")}`));
    const rows = await storedTools(reg, "big");
    expect(rows).toHaveLength(550);
    const last = rows.find((row) => row.name === "tool-549")!;
    expect(last.inputSchema).toEqual({ type: "object", properties: { arg549: { type: "string" } } });
  });
});

describe("misbehaving tool lists", () => {
  let reg: TestRegistry;
  const servers: { stop(): Promise<void> }[] = [];
  beforeAll(async () => {
    reg = await startTestRegistry();
  });
  afterAll(async () => {
    await reg?.stop();
    await Promise.all(servers.map((s) => s.stop()));
  });

  it("refuses a server that lists a tool name twice, writing nothing", async () => {
    const s = await startTestMcpServer({
      setup: (mcp) =>
        mcp.setRequestHandler(ListToolsRequestSchema, (req) => ({
          tools: [{ name: "twice", inputSchema: { type: "object" as const } }],
          ...(req.params?.cursor ? {} : { nextCursor: "page-2" }),
        })),
    });
    servers.push(s);
    const before = await catalogue(reg);
    const r = await call(await reg.client(), "add_service", { service_name: "dup", endpoint: s.url, description: "" });
    expect(r.isError).toBe(true);
    expect(text(r)).toBe(`Cannot add service "dup": the MCP service at "${s.url}" lists tool "twice" more than once`);
    expect(await catalogue(reg)).toEqual(before);
  });

  it("stops reading when the server repeats a cursor", async () => {
    const pages: (string | undefined)[] = [];
    const s = await startTestMcpServer({
      setup: (mcp) =>
        mcp.setRequestHandler(ListToolsRequestSchema, (req) => {
          pages.push(req.params?.cursor);
          // Every page after the first answers with the same cursor again.
          return { tools: [{ name: req.params?.cursor ? "second" : "first", inputSchema: { type: "object" as const } }], nextCursor: "again" };
        }),
    });
    servers.push(s);
    const r = await call(await reg.client(), "add_service", { service_name: "loop", endpoint: s.url, description: "" });
    expect(text(r)).toBe('Service "loop" added with 2 tools.');
    expect(pages).toEqual([undefined, "again"]);
  });
});

describe("services that cannot be discovered", () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    // One second, so the hanging server below costs one second.
    reg = await startTestRegistry({ REGISTRY_DISCOVERY_TIMEOUT: "1" });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  /** Calls add_service expecting a tool error, and checks that nothing was written. */
  async function rejected(args: Record<string, unknown>): Promise<string> {
    const before = await catalogue(reg);
    const c = await reg.client();
    const r = await call(c, "add_service", args);
    expect(r.isError).toBe(true);
    expect(await catalogue(reg)).toEqual(before);
    if (typeof args.service_name === "string" && args.service_name.trim()) {
      const tools = await call(c, "get_tools", { service_name: args.service_name });
      expect(tools.isError).toBe(true);
      expect(text(tools)).toBe(`Cannot get tools of service "${args.service_name.trim()}": no such service`);
    }
    return text(r);
  }

  it("gives up on a server that never answers, within the discovery timeout", async () => {
    const s = await startTestMcpServer({
      setup: (mcp) => mcp.setRequestHandler(ListToolsRequestSchema, () => oneTool()),
      intercept: (req) => (req.method === "POST" ? new Promise<Response>(() => {}) : undefined),
    });
    try {
      const message = await rejected({ service_name: "sleepy", endpoint: s.url, description: "" });
      expect(message).toBe(`Cannot add service "sleepy": no MCP service answered at "${s.url}" (streamable HTTP: no answer within 1 s)`);
    } finally {
      await s.stop();
    }
  });

  it("reports a port where nothing listens", async () => {
    const url = `http://127.0.0.1:${await freePort()}/mcp`;
    const message = await rejected({ service_name: "nobody", endpoint: url, description: "" });
    expect(message).toBe(`Cannot add service "nobody": no MCP service answered at "${url}" (streamable HTTP: connection refused; SSE: connection refused)`);
  });

  it("reports an HTTP server that is not an MCP server", async () => {
    const s = await startTestMcpServer({ setup: () => {}, intercept: () => new Response("not here", { status: 404 }) });
    try {
      const message = await rejected({ service_name: "web-page", endpoint: s.url, description: "" });
      expect(message).toBe(`Cannot add service "web-page": no MCP service answered at "${s.url}" (streamable HTTP: HTTP 404; SSE: HTTP 404)`);
    } finally {
      await s.stop();
    }
  });

  it("reports a server that wants credentials to list its tools", async () => {
    const s = await startTestMcpServer({ setup: () => {}, intercept: () => new Response("sign in first", { status: 401 }) });
    try {
      const message = await rejected({ service_name: "locked", endpoint: s.url, description: "" });
      expect(message).toBe(`Cannot add service "locked": no MCP service answered at "${s.url}" (streamable HTTP: HTTP 401; SSE: HTTP 401)`);
    } finally {
      await s.stop();
    }
  });

  it.each(["ftp://x", "not a url", "", "   "])("rejects the non-http endpoint %j", async (endpoint) => {
    const message = await rejected({ service_name: "bad-endpoint", endpoint, description: "" });
    expect(message).toBe(endpoint.trim() === "" ? "Cannot add service: endpoint: must not be empty" : "Cannot add service: endpoint: must be an http(s) URL");
  });

  it("never executes a local file path given as endpoint", async () => {
    const dir = tempDir();
    const marker = join(dir, "executed");
    const script = join(dir, "server.py");
    writeFileSync(script, `#!/bin/sh\ntouch '${marker}'\n`, { mode: 0o755 });
    for (const endpoint of ["/bin/ls", "./server.py", "file:///bin/ls", script, `file://${script}`, `python ${script}`]) {
      const message = await rejected({ service_name: "local", endpoint, description: "" });
      expect(message).toBe("Cannot add service: endpoint: must be an http(s) URL");
    }
    expect(existsSync(marker)).toBe(false);
  });
});
