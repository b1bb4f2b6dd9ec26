import { existsSync } from "node:fs";
import { createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import { join } from "node:path";
import { ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { eq } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { call, catalogue, connectClient, startTestMcpServer, startTestRegistry, type TestRegistry, tempDir, text, waitFor } from "./helpers.ts";

type McpServer = Awaited<ReturnType<typeof startTestMcpServer>>;
type ToolEntry = { id: number; name: string; description: string; roles: string[] };

/** A small SDK server with the given tools (no description source: the fallback applies). */
function toolServer(names: string[]): Promise<McpServer> {
  return startTestMcpServer({
    instructions: `Offers ${names.join(", ")}.`,
    setup: (mcp) =>
      mcp.setRequestHandler(ListToolsRequestSchema, () => ({
        tools: names.map((name) => ({ name, description: `Does ${name}`, inputSchema: { type: "object" as const, properties: { q: { type: "string" } } } })),
      })),
  });
}

async function toolsOf(reg: TestRegistry, service: string): Promise<ToolEntry[]> {
  const r = await call(await reg.client(), "get_tools", { service_name: service });
  expect(r.isError).toBeFalsy();
  return (r.structuredContent as { tools: ToolEntry[] }).tools;
}

async function storedService(reg: TestRegistry, name: string) {
  const { services } = reg.ctx.tables;
  const [row] = await reg.ctx.db.select().from(services).where(eq(services.name, name));
  return row;
}

describe("add_service, get_tools, remove_service", () => {
  let reg: TestRegistry;
  let base: McpServer;
  let other: McpServer;
  beforeAll(async () => {
    [reg, base, other] = await Promise.all([startTestRegistry(), toolServer(["search", "fetch"]), toolServer(["translate"])]);
    const r = await call(await reg.client(), "add_service", { service_name: "base", endpoint: base.url, description: "The base service", requires_authorization: false });
    expect(text(r)).toBe('Service "base" added with 2 tools.');
  });
  afterAll(async () => {
    await reg?.stop();
    await base?.stop();
    await other?.stop();
  });

  /** Calls a tool expecting a tool error; returns its text after checking nothing was written. */
  async function fails(tool: string, args: Record<string, unknown>): Promise<string> {
    const before = await catalogue(reg);
    const r = await call(await reg.client(), tool, args);
    expect(r.isError).toBe(true);
    expect(await catalogue(reg)).toEqual(before);
    return text(r);
  }

  it("lists the service with get_tools ids, names, descriptions and no roles", async () => {
    const tools = await toolsOf(reg, "base");
    expect(tools.map(({ name, description, roles }) => ({ name, description, roles }))).toEqual([
      { name: "search", description: "Does search", roles: [] },
      { name: "fetch", description: "Does fetch", roles: [] },
    ]);
    expect(tools[1].id).toBeGreaterThan(tools[0].id);
    const r = await call(await reg.client(), "get_tools", { service_name: "base" });
    expect(text(r)).toBe(JSON.stringify(tools));
    // include_schemas: the rest of each stored definition, as the server listed it.
    const full = await call(await reg.client(), "get_tools", { service_name: "base", include_schemas: true });
    const schema = { type: "object", properties: { q: { type: "string" } } };
    expect(full.structuredContent).toEqual({
      tools: tools.map((t) => ({ ...t, title: null, input_schema: schema, output_schema: null, annotations: null })),
    });
    expect(JSON.parse(text(full))).toEqual((full.structuredContent as { tools: unknown[] }).tools);
    expect(await fails("get_tools", { service_name: "base", include_schemas: "yes" })).toBe("Cannot get tools: include_schemas: must be true or false");
  });

  it("refuses a duplicate name without contacting the new endpoint", async () => {
    const message = await fails("add_service", { service_name: "base", endpoint: other.url, description: "" });
    expect(message).toBe('Cannot add service "base": a service with that name already exists');
    expect(other.requests).toBe(0);
  });

  it("refuses a duplicate endpoint under another name", async () => {
    const message = await fails("add_service", { service_name: "base-again", endpoint: base.url, description: "" });
    expect(message).toBe(`Cannot add service "base-again": service "base" already uses endpoint "${base.url}"`);
    expect(await fails("get_tools", { service_name: "base-again" })).toBe('Cannot get tools of service "base-again": no such service');
  });

  it.each([
    [{ service_name: "", endpoint: "http://127.0.0.1:1/mcp", description: "" }, "Cannot add service: service_name: must not be empty"],
    [{ service_name: "   ", endpoint: "http://127.0.0.1:1/mcp", description: "" }, "Cannot add service: service_name: must not be empty"],
    [{ endpoint: "http://127.0.0.1:1/mcp", description: "" }, "Cannot add service: service_name: is required"],
    [
      { service_name: "x", endpoint: "http://127.0.0.1:1/mcp", description: "", requires_authorization: "yes" },
      "Cannot add service: requires_authorization: must be true or false",
    ],
    [
      { service_name: "x", endpoint: "http://127.0.0.1:1/mcp", description: "", requires_authorization: true, method_authorization: "Digest" },
      'Cannot add service: method_authorization must be "Basic" or "Bearer" when requires_authorization is true',
    ],
    [
      { service_name: "x", endpoint: "http://127.0.0.1:1/mcp", description: "", requires_authorization: true, method_authorization: "" },
      'Cannot add service: method_authorization must be "Basic" or "Bearer" when requires_authorization is true',
    ],
    [
      { service_name: "x", endpoint: "http://127.0.0.1:1/mcp", description: "", requires_authorization: true },
      'Cannot add service: method_authorization must be "Basic" or "Bearer" when requires_authorization is true',
    ],
    [{ service_name: "x", endpoint: 42, description: "" }, "Cannot add service: endpoint: must be a string"],
  ])("refuses bad input %j", async (args, expected) => {
    expect(await fails("add_service", args)).toBe(expected);
  });

  it("refuses to remove or read an unknown service", async () => {
    expect(await fails("remove_service", { service_name: "ghost" })).toBe('Cannot remove service "ghost": no such service');
    expect(await fails("get_tools", { service_name: "ghost" })).toBe('Cannot get tools of service "ghost": no such service');
    expect(await fails("remove_service", { service_name: " " })).toBe("Cannot remove service: service_name: must not be empty");
  });

  it("stores method_authorization only when authorization is required", async () => {
    const [plain, basic] = await Promise.all([toolServer(["a"]), toolServer(["b"])]);
    try {
      const c = await reg.client();
      expect(
        (await call(c, "add_service", { service_name: "plain", endpoint: plain.url, description: "d", requires_authorization: false, method_authorization: "Bearer" })).isError,
      ).toBeFalsy();
      expect(
        (await call(c, "add_service", { service_name: "basic", endpoint: basic.url, description: "d", requires_authorization: true, method_authorization: "Basic" })).isError,
      ).toBeFalsy();
      expect(await storedService(reg, "plain")).toMatchObject({ requiresAuthorization: false, methodAuthorization: "" });
      expect(await storedService(reg, "basic")).toMatchObject({ requiresAuthorization: true, methodAuthorization: "Basic" });
      expect(text(await call(c, "remove_service", { service_name: "plain" }))).toBe('Service "plain" removed.');
      expect(text(await call(c, "remove_service", { service_name: "basic" }))).toBe('Service "basic" removed.');
    } finally {
      await plain.stop();
      await basic.stop();
    }
  });

  it("removes a service with its tools, and never reuses tool ids when it is added again", async () => {
    const c = await reg.client();
    expect((await call(c, "add_service", { service_name: "again", endpoint: other.url, description: "first" })).isError).toBeFalsy();
    const old = await toolsOf(reg, "again");
    expect(old.map((t) => t.name)).toEqual(["translate"]);

    expect(text(await call(c, "remove_service", { service_name: "again" }))).toBe('Service "again" removed.');
    const gone = await call(c, "get_tools", { service_name: "again" });
    expect(gone.isError).toBe(true);
    expect(text(gone)).toBe('Cannot get tools of service "again": no such service');
    const { tools } = reg.ctx.tables;
    const left = await reg.ctx.db.select({ id: tools.id }).from(tools);
    expect(left.map((t) => t.id)).not.toContain(old[0].id);
    expect((await call(c, "list_services")).structuredContent).toEqual({ services: [{ service_name: "base", endpoint: base.url, description: "The base service" }] });

    expect((await call(c, "add_service", { service_name: "again", endpoint: other.url, description: "second" })).isError).toBeFalsy();
    const fresh = await toolsOf(reg, "again");
    expect(fresh.map((t) => t.name)).toEqual(["translate"]);
    expect(Math.min(...fresh.map((t) => t.id))).toBeGreaterThan(Math.max(...old.map((t) => t.id)));
    await call(c, "remove_service", { service_name: "again" });
  });

  it("lets exactly one of two concurrent adds of the same name win", async () => {
    const c = await reg.client();
    const [r1, r2] = await Promise.all([
      call(c, "add_service", { service_name: "race", endpoint: other.url, description: "one" }),
      call(c, "add_service", { service_name: "race", endpoint: `${other.url}?copy`, description: "two" }),
    ]);
    const results = [r1, r2];
    expect(results.filter((r) => !r.isError)).toHaveLength(1);
    const loser = results.find((r) => r.isError)!;
    expect(text(loser)).toBe('Cannot add service "race": a service with that name already exists');
    expect(await toolsOf(reg, "race")).toHaveLength(1);
    const listed = (await (await reg.http("/list_services")).json()) as { services: Record<string, unknown> };
    expect(Object.keys(listed.services).sort()).toEqual(["base", "race"]);
    await call(c, "remove_service", { service_name: "race" });
  });
});

// docs/services.md shows these exchanges verbatim (registry on port 8000, the service on 3001).
describe("documented exchanges", () => {
  const DOC_ENDPOINT = "http://127.0.0.1:3001/mcp";
  let reg: TestRegistry;
  let search: McpServer;
  beforeAll(async () => {
    [reg, search] = await Promise.all([startTestRegistry(), toolServer(["search", "fetch"])]);
  });
  afterAll(async () => {
    await reg?.stop();
    await search?.stop();
  });

  /** POSTs a JSON-RPC body (as documented) to /mcp and returns the parsed answer. */
  async function rpc(body: string): Promise<unknown> {
    const res = await reg.http("/mcp", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: body.replaceAll(DOC_ENDPOINT, search.url),
    });
    expect(res.status).toBe(200);
    return res.json();
  }
  const doc = (answer: string) => JSON.parse(answer.replaceAll(DOC_ENDPOINT, search.url));

  it("add_service, list_services, get_tools, GET /list_services, remove_service", async () => {
    expect(
      await rpc(
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_service","arguments":{"service_name":"search","endpoint":"http://127.0.0.1:3001/mcp","description":"","requires_authorization":false}}}',
      ),
    ).toEqual(doc('{"result":{"content":[{"type":"text","text":"Service \\"search\\" added with 2 tools."}]},"jsonrpc":"2.0","id":1}'));

    expect(await rpc('{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_services","arguments":{}}}')).toEqual(
      doc(
        '{"result":{"content":[{"type":"text","text":"[{\\"service_name\\":\\"search\\",\\"endpoint\\":\\"http://127.0.0.1:3001/mcp\\",\\"description\\":\\"Offers search, fetch.\\"}]"}],"structuredContent":{"services":[{"service_name":"search","endpoint":"http://127.0.0.1:3001/mcp","description":"Offers search, fetch."}]}},"jsonrpc":"2.0","id":2}',
      ),
    );

    expect(await rpc('{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_tools","arguments":{"service_name":"search"}}}')).toEqual(
      doc(
        '{"result":{"content":[{"type":"text","text":"[{\\"id\\":1,\\"name\\":\\"search\\",\\"description\\":\\"Does search\\",\\"roles\\":[]},{\\"id\\":2,\\"name\\":\\"fetch\\",\\"description\\":\\"Does fetch\\",\\"roles\\":[]}]"}],"structuredContent":{"tools":[{"id":1,"name":"search","description":"Does search","roles":[]},{"id":2,"name":"fetch","description":"Does fetch","roles":[]}]}},"jsonrpc":"2.0","id":3}',
      ),
    );

    const res = await reg.http("/list_services");
    expect(await res.json()).toEqual(doc('{"services":{"search":{"transport":"streamable_http","url":"http://127.0.0.1:3001/mcp"}}}'));

    expect(
      await rpc(
        '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"add_service","arguments":{"service_name":"search","endpoint":"http://127.0.0.1:3002/mcp","description":""}}}',
      ),
    ).toEqual(
      doc('{"result":{"content":[{"type":"text","text":"Cannot add service \\"search\\": a service with that name already exists"}],"isError":true},"jsonrpc":"2.0","id":4}'),
    );

    expect(
      await rpc(
        '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"add_service","arguments":{"service_name":"local","endpoint":"/opt/servers/server.py","description":""}}}',
      ),
    ).toEqual(doc('{"result":{"content":[{"type":"text","text":"Cannot add service: endpoint: must be an http(s) URL"}],"isError":true},"jsonrpc":"2.0","id":5}'));

    expect(await rpc('{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"remove_service","arguments":{"service_name":"search"}}}')).toEqual(
      doc('{"result":{"content":[{"type":"text","text":"Service \\"search\\" removed."}]},"jsonrpc":"2.0","id":6}'),
    );

    expect(await rpc('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_tools","arguments":{"service_name":"search"}}}')).toEqual(
      doc('{"result":{"content":[{"type":"text","text":"Cannot get tools of service \\"search\\": no such service"}],"isError":true},"jsonrpc":"2.0","id":7}'),
    );
    expect(await (await reg.http("/list_services")).json()).toEqual({ services: {} });
  });
});

/** Sends a request with node:http, which (unlike fetch) allows a body on GET as old agents send it. */
function rawRequest(
  url: string,
  method: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: IncomingMessage["headers"]; body: string }> {
  return new Promise((resolve, reject) => {
    // Without an explicit Content-Length node:http sends a GET body unframed.
    const length = String(Buffer.byteLength(body));
    const req = request(url, { method, headers: { "content-type": "application/json", "content-length": length, ...headers } }, (res) => {
      let data = "";
      res.on("data", (d: Buffer) => {
        data += d.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: data }));
    });
    // The server may answer 413 before reading everything; that is not a client failure.
    req.on("error", reject);
    req.end(body);
  });
}

describe("HTTP surface", () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startTestRegistry();
  });
  afterAll(async () => {
    await reg?.stop();
  });
  const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };
  const tooLarge = { error: { code: "payload_too_large", message: "Request body exceeds 1048576 bytes" } };
  const oversize = () => JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list", params: { pad: "x".repeat(1024 * 1024) } });

  it.each(["/mcp", "/mcp/"])("answers malformed JSON on POST %s with 400 and a JSON-RPC parse error", async (path) => {
    const res = await reg.http(path, { method: "POST", headers: MCP_HEADERS, body: "{not json" });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ jsonrpc: "2.0", error: { code: -32700 }, id: null });
  });

  it.each(["42", '"text"', "null", "[1, 2]", '{"no":"method"}'])("answers the non-request body %s on POST /mcp with 400", async (body) => {
    const res = await reg.http("/mcp", { method: "POST", headers: MCP_HEADERS, body });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ jsonrpc: "2.0", error: { code: expect.any(Number) } });
  });

  it("answers an oversize body on POST /mcp with 413 and the JSON error body, writing nothing", async () => {
    const before = await catalogue(reg);
    const res = await reg.http("/mcp", { method: "POST", headers: MCP_HEADERS, body: oversize() });
    expect(res.status).toBe(413);
    expect(await res.json()).toEqual(tooLarge);
    expect(await catalogue(reg)).toEqual(before);
  });

  it("answers an oversize body sent without Content-Length (chunked) with 413", async () => {
    const bytes = new TextEncoder().encode(oversize());
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 64 * 1024) controller.enqueue(bytes.slice(i, i + 64 * 1024));
        controller.close();
      },
    });
    const res = await reg.http("/mcp", { method: "POST", headers: MCP_HEADERS, body, duplex: "half" } as RequestInit);
    expect(res.status).toBe(413);
    expect(await res.json()).toEqual(tooLarge);
  });

  it.each(["/role_for_user", "/tools_for_role", "/no/such/route"])("answers an oversize body on POST %s with 413 and the JSON error body", async (path) => {
    const res = await reg.http(path, { method: "POST", headers: { "content-type": "application/json" }, body: oversize() });
    expect(res.status).toBe(413);
    expect(await res.json()).toEqual(tooLarge);
  });

  it.each(["{not json", "[1, 2]", '"text"', "42"])("answers the body %s on POST /role_for_user with 400 and the JSON error body", async (body) => {
    const before = await catalogue(reg);
    const res = await reg.http("/role_for_user", { method: "POST", headers: { "content-type": "application/json" }, body });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: { code: "invalid_input", message: expect.stringMatching(/^Cannot get role for user: the request body (is not valid JSON|must be a JSON object)$/) },
    });
    expect(await catalogue(reg)).toEqual(before);
  });

  it.each([
    ["a malformed", "{not json"],
    ["an oversize", "x".repeat(1024 * 1024 + 1)],
  ])("ignores %s body on GET /list_services (old agents send bodies on GET)", async (_, body) => {
    const res = await rawRequest(`${reg.url}/list_services`, "GET", body);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ services: {} });
  });

  it.each(["GET", "DELETE"])("answers %s /mcp with 405 (the endpoint is stateless)", async (method) => {
    for (const path of ["/mcp", "/mcp/"]) {
      const res = await reg.http(path, { method, headers: { accept: "application/json, text/event-stream" } });
      expect(res.status).toBe(405);
      expect(res.headers.get("allow")).toBe("POST");
      expect(await res.json()).toEqual({ error: { code: "method_not_allowed", message: "This MCP endpoint is stateless: use POST" } });
    }
  });

  it("serves MCP at /mcp/ (trailing slash) like /mcp", async () => {
    const client = await connectClient(`${reg.url}/mcp/`);
    try {
      const names = (await client.listTools()).tools.map((t) => t.name);
      expect(names).toEqual(expect.arrayContaining(["add_service", "list_services", "get_tools", "remove_service"]));
      const r = await call(client, "list_services");
      expect(text(r)).toBe("[]");
      expect(r.structuredContent).toEqual({ services: [] });
    } finally {
      await client.close();
    }
  });

  it("answers an unknown route with 404 and the JSON error body", async () => {
    const res = await reg.http("/no/such/route", { method: "POST", body: "{}" });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: { code: "not_found", message: "No route for POST /no/such/route" } });
  });

  it("answers GET /list_services with an empty catalogue", async () => {
    const res = await reg.http("/list_services");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({ services: {} });
  });
});

type Hook = {
  url: string;
  requests: { method: string; path: string }[];
  /** Requests that ended before the hook server answered them (the registry gave up on them). */
  aborted: number;
  answer: "ok" | "fail" | "hang";
  /** Answers every held request (mode "hang") with 200. */
  release(): void;
  stop(): Promise<void>;
};

/** A reread hook receiver that records each request and answers 200, 500, or not at all. */
async function startHook(answer: Hook["answer"]): Promise<Hook> {
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    hook.requests.push({ method: req.method!, path: req.url! });
    if (hook.answer === "hang") {
      held.push(res);
      res.on("close", () => {
        if (!res.writableEnded) hook.aborted++;
      });
      return;
    }
    res.writeHead(hook.answer === "ok" ? 200 : 500).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const hook: Hook = {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/reread?source=registry`,
    requests: [],
    aborted: 0,
    answer,
    release() {
      for (const res of held.splice(0)) res.writeHead(200).end();
    },
    stop: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
  return hook;
}

describe("AGENT_REREAD_HOOK", () => {
  let mcp: McpServer;
  const cleanup: (() => Promise<void>)[] = [];
  beforeAll(async () => {
    mcp = await toolServer(["one"]);
  });
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });
  afterAll(async () => {
    await mcp?.stop();
  });

  async function setup(answer: Hook["answer"]): Promise<{ hook: Hook; reg: TestRegistry }> {
    const hook = await startHook(answer);
    cleanup.push(() => hook.stop());
    const reg = await startTestRegistry({ AGENT_REREAD_HOOK: hook.url });
    cleanup.push(() => reg.stop());
    return { hook, reg };
  }

  it("is called with GET after add_service and after remove_service", async () => {
    const { hook, reg } = await setup("ok");
    const c = await reg.client();
    expect((await call(c, "add_service", { service_name: "svc", endpoint: mcp.url, description: "d" })).isError).toBeFalsy();
    await waitFor(() => hook.requests.length === 1, "the hook call after add_service");
    expect(text(await call(c, "remove_service", { service_name: "svc" }))).toBe('Service "svc" removed.');
    await waitFor(() => hook.requests.length === 2, "the hook call after remove_service");
    expect(hook.requests).toEqual([
      { method: "GET", path: "/reread?source=registry" },
      { method: "GET", path: "/reread?source=registry" },
    ]);
    await waitFor(() => reg.ctx.background.size === 0, "the hook calls to end");
    expect(reg.logs.join("\n")).not.toMatch(/Reread hook/);
  });

  it("is not called when a change fails", async () => {
    const { hook, reg } = await setup("ok");
    const c = await reg.client();
    expect((await call(c, "remove_service", { service_name: "ghost" })).isError).toBe(true);
    expect((await call(c, "add_service", { service_name: "bad", endpoint: "ftp://x", description: "" })).isError).toBe(true);
    expect(reg.ctx.background.size).toBe(0);
    expect(hook.requests).toEqual([]);
  });

  it("retries a failing hook (3 attempts), logs the failure, and the change still succeeds", async () => {
    const { hook, reg } = await setup("fail");
    const c = await reg.client();
    const r = await call(c, "add_service", { service_name: "svc", endpoint: mcp.url, description: "d" });
    expect(r.isError).toBeFalsy();
    expect(text(r)).toBe('Service "svc" added with 1 tool.');
    const line = await waitFor(() => reg.logs.find((l) => l.includes(`Reread hook ${hook.url} failed`)), "the hook failure to be logged");
    expect(line).toMatch(/ERROR/);
    expect(line).toContain("3 attempts, last: status 500");
    expect(hook.requests).toEqual(Array(3).fill({ method: "GET", path: "/reread?source=registry" }));
    expect((await call(c, "list_services")).structuredContent).toEqual({ services: [{ service_name: "svc", endpoint: mcp.url, description: "d" }] });
  });

  it("does not hold add_service back while the hook hangs", async () => {
    const { hook, reg } = await setup("hang");
    const c = await reg.client();
    const r = await call(c, "add_service", { service_name: "svc", endpoint: mcp.url, description: "d" });
    // add_service has returned while the hook call is still under way and has not timed out.
    expect(r.isError).toBeFalsy();
    expect(reg.ctx.background.size).toBe(1);
    expect(hook.aborted).toBe(0);
    await waitFor(() => hook.requests.length === 1, "the hook request to arrive");
    expect(hook.aborted).toBe(0);
    expect(reg.ctx.background.size).toBe(1);
    hook.release();
    await waitFor(() => reg.ctx.background.size === 0, "the hook call to end");
    expect(hook.requests).toHaveLength(1);
    expect(reg.logs.join("\n")).not.toMatch(/Reread hook/);
  });
});

describe("a file database", () => {
  it("keeps services and tool ids across restarts, also under the old sqlite:/// URL forms", async () => {
    const dir = tempDir();
    const file = join(dir, "r.db");
    const mcp = await toolServer(["alpha", "beta"]);
    try {
      const first = await startTestRegistry({ DATABASE_URL: `file:${file}` });
      expect((await call(await first.client(), "add_service", { service_name: "kept", endpoint: mcp.url, description: "Kept across restarts" })).isError).toBeFalsy();
      const ids = await toolsOf(first, "kept");
      const listing = await catalogue(first);
      await first.stop();
      expect(existsSync(file)).toBe(true);

      // sqlite:////abs/path is SQLAlchemy's absolute form: the same file.
      for (const url of [`file:${file}`, `sqlite:///${file}`, `sqlite+aiosqlite:///${file}`]) {
        const again = await startTestRegistry({ DATABASE_URL: url });
        try {
          expect(await catalogue(again)).toEqual(listing);
          expect(await toolsOf(again, "kept")).toEqual(ids);
        } finally {
          await again.stop();
        }
      }

      // Ids stay unused after a restart too: remove, restart, re-add.
      const removing = await startTestRegistry({ DATABASE_URL: `file:${file}` });
      await call(await removing.client(), "remove_service", { service_name: "kept" });
      await removing.stop();
      const readding = await startTestRegistry({ DATABASE_URL: `file:${file}` });
      try {
        expect((await call(await readding.client(), "add_service", { service_name: "kept", endpoint: mcp.url, description: "" })).isError).toBeFalsy();
        const fresh = await toolsOf(readding, "kept");
        expect(Math.min(...fresh.map((t) => t.id))).toBeGreaterThan(Math.max(...ids.map((t) => t.id)));
      } finally {
        await readding.stop();
      }
    } finally {
      await mcp.stop();
    }
  });
});
