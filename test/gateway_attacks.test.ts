/**
 * Attacks on the gateway (POST /gateway/mcp, the connect page, user keys), each answered by a test that
 * asserts the safe behaviour: a refusal (HTTP status, JSON-RPC error or tool error) and nothing written,
 * read or leaked. Everything is real: one registry with keys and REGISTRY_MAX_DISCOVERY_BYTES at its minimum
 * (65536), SDK test servers as downstream services (some hostile through `intercept`, answering raw HTTP),
 * a plain HTTP server that catches whatever a redirect would send elsewhere, SDK clients and fetch.
 *
 * What it proves:
 * - a hostile service cannot make the registry read an answer past the bound (declared, streamed, as SSE, on
 *   the standalone GET stream, over the old SSE transport), and the next call opens a new session and works;
 * - a redirect never carries the user's token to another origin, a same-origin redirect works, a loop ends;
 * - a token echoed back by a service reaches neither the tool error, the audit trail nor the log;
 * - a service's answer, however deeply nested, and its own JSON-RPC error codes reach the caller promptly, as what they are;
 * - under concurrency every downstream request carries the token of the user whose call it is;
 * - gateway names are unique, valid MCP names (≤ 128), whatever the service and tool names, and each calls its tool;
 * - tools/list pages cover every tool once; a forged cursor is -32602;
 * - a revoked, altered, foreign-shaped or orphaned key is 401 and is never logged or audited;
 * - X-Registry-User cannot be bent to act for another user, and acting for an unknown user writes nothing;
 * - connect links are bound to their user and service, cannot be guessed, are never logged, escape what they show;
 * - nested or non-object arguments are -32602 before anything reaches a service;
 * - the audit trail holds no link code, and no caller can plant another user's id in an event's target;
 * - no admin key, agent key, user key or X-Registry-User header ever reaches a downstream service.
 *
 * Seven of these attacks succeeded against the gateway's first version (unbounded GET streams, SSE answers, a
 * result nested deeply enough to hang the response, a service's -32000/-32001 answers misread, an oversized
 * initialize answer misreported, a planted user id in the audit target, a link code in the audit trail); the
 * comments at those tests say what the gateway now does.
 */
import { createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders } from "node:http";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { CallToolRequestSchema, type CallToolResult, ListToolsRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, connectClient, startSseMcpServer, startTestMcpServer, startTestRegistry, type TestRegistry, text, waitFor } from "./helpers.ts";

const ADMIN = "attack-admin-key-0123456789abcdef";
const AGENT = "attack-agent-key-0123456789abcdef";
const LIMIT = 65_536;
// Whose token is whose, as the downstream services know them.
const TOKENS: Record<string, string> = {
  "ann-secret-token-AAAA": "ann",
  "ann-secret-token-A2A2": "ann",
  "bob-secret-token-BBBB": "bob",
  "nina-secret-token-NNNN": "nina",
  "paula-secret-token-PPPP": "paula",
};
const ANN = "ann-secret-token-AAAA";
const BOB = "bob-secret-token-BBBB";
const owner = (authorization: string) => TOKENS[authorization.replace(/^Bearer /, "")] ?? `unknown(${authorization ? "some" : "none"})`;

type Rpc = { jsonrpc?: string; id?: string | number; method?: string; params?: { name?: string; arguments?: Record<string, unknown> } };
/** Every request any downstream server of this file was sent. */
type Seen = { server: string; httpMethod: string; path: string; headers: Record<string, string>; rpc?: string; tool?: string; args?: unknown };
const seen: Seen[] = [];
/** Every request the catcher (the "other origin") was sent. */
const caught: IncomingHttpHeaders[] = [];
/** Every key the registry handed out or knows, to look for downstream and in the log. */
const keysIssued: string[] = [ADMIN, AGENT];

type ServiceOptions = {
  tools: () => string[];
  /** The answer of tools/call (default: "<label>:<tool>:<owner of the token>:<nonce>"). */
  call?: (name: string, args: Record<string, unknown>, authorization: string) => CallToolResult | Promise<CallToolResult>;
  /** Answers a request before the MCP transport (undefined: the SDK server answers). */
  intercept?: (req: Request, rpc: Rpc | undefined) => Response | undefined | Promise<Response | undefined>;
};

/** A downstream MCP service (SDK server, stateless streamable HTTP) recording every request in `seen`. */
function service(label: string, opts: ServiceOptions) {
  return startTestMcpServer({
    setup(server: Server) {
      server.setRequestHandler(ListToolsRequestSchema, () => ({
        tools: opts.tools().map((name) => ({ name, description: `${label} ${name}`, inputSchema: { type: "object" as const } })),
      }));
      server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
        const auth = String(extra.requestInfo?.headers.authorization ?? "");
        const args = req.params.arguments ?? {};
        if (opts.call) return opts.call(req.params.name, args, auth);
        return { content: [{ type: "text", text: `${label}:${req.params.name}:${owner(auth)}:${String(args.nonce ?? "")}` }] };
      });
    },
    // The helper's type wants a Response from a promise; undefined lets the SDK server answer.
    intercept: (async (req: Request) => {
      const url = new URL(req.url);
      const rpc =
        req.method === "POST"
          ? ((await req
              .clone()
              .json()
              .catch(() => undefined)) as Rpc | undefined)
          : undefined;
      seen.push({
        server: label,
        httpMethod: req.method,
        path: url.pathname,
        headers: Object.fromEntries(req.headers),
        rpc: rpc?.method,
        tool: rpc?.params?.name,
        args: rpc?.params?.arguments,
      });
      return opts.intercept?.(req, rpc);
    }) as (req: Request) => Promise<Response>,
  });
}

const seenBy = (server: string, rpc?: string) => seen.filter((s) => s.server === server && (rpc === undefined || s.rpc === rpc));

/** A body that counts what is pulled from it: `head`, then `fill` chunks up to `size` bytes, optionally never ending a line. */
function countedBody(head: string, size: number) {
  const state = { bytes: 0, cancelled: false, done: false };
  const headBytes = new TextEncoder().encode(head);
  const chunk = new Uint8Array(65_536).fill(0x78);
  let first = true;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const piece = first ? headBytes : chunk;
      first = false;
      state.bytes += piece.byteLength;
      controller.enqueue(piece);
      if (state.bytes >= size) {
        state.done = true;
        controller.close();
      }
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return { body, state };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("attacks on the gateway", () => {
  let reg: TestRegistry;
  let admin: Client;
  let ann: Client;
  let bob: Client;
  let annKey = "";
  const clients: Client[] = [];
  const stops: (() => Promise<void>)[] = [];
  let catcher: { url: string; port: number; stop(): Promise<void> };

  async function gatewayClient(key: string, headers: Record<string, string> = {}, scheme = "Bearer"): Promise<Client> {
    const client = await connectClient(`${reg.url}/gateway/mcp`, key, { headers, scheme });
    clients.push(client);
    return client;
  }
  const asAgentFor = (user: string) => gatewayClient(AGENT, { "x-registry-user": user });
  const callGw = async (client: Client, name: string, args: Record<string, unknown> = {}) => (await client.callTool({ name, arguments: args })) as CallToolResult;
  const rawGateway = (body: unknown, headers: HeadersInit, signal: AbortSignal = AbortSignal.timeout(15_000)) => {
    const h = new Headers(headers);
    h.set("content-type", "application/json");
    h.set("accept", "application/json, text/event-stream");
    return fetch(`${reg.url}/gateway/mcp`, { method: "POST", headers: h, body: typeof body === "string" ? body : JSON.stringify(body), signal });
  };
  const INIT = { jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "raw", version: "1" } } };

  const toolIds = async (serviceName: string) => {
    const r = await call(admin, "get_tools", { service_name: serviceName });
    expect(r.isError, text(r)).toBeFalsy();
    return (r.structuredContent as { tools: { id: number; name: string }[] }).tools;
  };
  /** Registers a service and attaches all its tools to `role`. */
  async function addService(name: string, url: string, role = "staff", auth = true) {
    const added = await call(admin, "add_service", {
      service_name: name,
      endpoint: url,
      description: name,
      ...(auth ? { requires_authorization: true, method_authorization: "Bearer" } : {}),
    });
    expect(added.isError, text(added)).toBeFalsy();
    for (const t of await toolIds(name)) {
      const attached = await call(admin, "attach_role_to_tool", { tool_id: t.id, role_name: role });
      expect(attached.isError, text(attached)).toBeFalsy();
    }
  }
  const authorize = async (serviceName: string, user: string, token: string) => {
    const r = await call(admin, "authorize_user_to_service", { service_name: serviceName, user_id: user, token });
    expect(r.isError, text(r)).toBeFalsy();
  };
  /** Every audit event, newest first, as JSON text. */
  async function auditDump(): Promise<string> {
    const events: unknown[] = [];
    let before: number | null | undefined;
    for (;;) {
      const r = await call(admin, "list_audit_events", { limit: 500, ...(before ? { before_id: before } : {}) });
      const page = r.structuredContent as { events: unknown[]; next_before_id: number | null };
      events.push(...page.events);
      if (!page.next_before_id) break;
      before = page.next_before_id;
    }
    return JSON.stringify(events);
  }
  const auditEvents = async (filter: Record<string, unknown>) =>
    (
      (await call(admin, "list_audit_events", { limit: 500, ...filter })).structuredContent as {
        events: { actor: string; action: string; target: string; outcome: string; detail: string }[];
      }
    ).events;
  const readToken = async (serviceName: string, user: string) => {
    const res = await reg.http(`/token?service_name=${encodeURIComponent(serviceName)}&user_id=${encodeURIComponent(user)}`, { key: ADMIN });
    return { status: res.status, body: (await res.json()) as { token?: string; error?: { code: string } } };
  };
  const countRows = async (table: "userTokens" | "connectLinks" | "users" | "userKeys") => (await reg.ctx.db.select().from(reg.ctx.tables[table])).length;
  const logText = () => reg.logs.join("\n");

  beforeAll(async () => {
    reg = await startTestRegistry({
      REGISTRY_ADMIN_KEYS: ADMIN,
      REGISTRY_AGENT_KEYS: AGENT,
      REGISTRY_MAX_DISCOVERY_BYTES: String(LIMIT),
      REGISTRY_GATEWAY_TIMEOUT: "5",
      REGISTRY_REFRESH_INTERVAL: "0",
    });
    // The other origin: a plain HTTP server that records whatever reaches it and answers like an MCP service would want to.
    const http = createHttpServer((req, res) => {
      caught.push(req.headers);
      req.resume();
      res.writeHead(200, { "content-type": "application/json" }).end('{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"caught"}]}}');
    });
    await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
    const port = (http.address() as { port: number }).port;
    catcher = {
      url: `http://127.0.0.1:${port}/mcp`,
      port,
      stop: () =>
        new Promise<void>((r) => {
          http.close(() => r());
          http.closeAllConnections();
        }),
    };
    stops.push(() => catcher.stop());
    admin = await reg.client(ADMIN);
    await call(admin, "create_role", { role_name: "staff" });
    for (const user of ["ann", "bob"]) await call(admin, "assign_role_to_user", { user_id: user, role_name: "staff" });
    // register_user is an HTTP route (no MCP tool): carol exists, without a role.
    const registered = await reg.http("/register_user", {
      method: "POST",
      key: ADMIN,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user_id: "carol" }),
    });
    expect(registered.status).toBe(200);
    annKey = (await call(admin, "create_user_key", { user_id: "ann", label: "laptop" })).structuredContent!.key as string;
    keysIssued.push(annKey);
    ann = await gatewayClient(annKey);
    bob = await asAgentFor("bob");
  });
  afterAll(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await reg?.stop();
    await Promise.allSettled(stops.map((s) => s()));
  });

  describe("a hostile service's oversized answers", () => {
    type Mode = "normal" | "declared" | "streamed" | "sse" | "initialize";
    let mode: Mode = "normal";
    let last: ReturnType<typeof countedBody>["state"] | undefined;
    const SIZE = 64 * 1024 * 1024;
    const tooBig = `Service "big" answered with more than ${LIMIT} bytes (REGISTRY_MAX_DISCOVERY_BYTES)`;

    beforeAll(async () => {
      const big = await service("big", {
        tools: () => ["blob"],
        intercept(req, rpc) {
          if (req.method !== "POST" || mode === "normal") return undefined;
          if (mode === "initialize" ? rpc?.method !== "initialize" : rpc?.method !== "tools/call") return undefined;
          const head = `{"jsonrpc":"2.0","id":${JSON.stringify(rpc?.id)},"result":{"content":[{"type":"text","text":"`;
          if (mode === "declared" || mode === "initialize") {
            const body = `${head}${"x".repeat(1_000_000)}"}]}}`;
            return new Response(body, { headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) } });
          }
          const sse = mode === "sse";
          const counted = countedBody(sse ? `event: message\ndata: ${head}` : head, SIZE);
          last = counted.state;
          return new Response(counted.body, { headers: { "content-type": sse ? "text/event-stream" : "application/json" } });
        },
      });
      stops.push(big.stop);
      await addService("big", big.url);
      await authorize("big", "ann", ANN);
    });

    const initializations = () => seenBy("big", "initialize").length;
    // The next call works: on the same session after a refused tools/call answer (only that call ended), on a
    // new one after a refused initialize.
    async function worksAgain(newSession = false) {
      const before = initializations();
      mode = "normal";
      expect(text(await callGw(ann, "big__blob", { nonce: "again" }))).toBe("big:blob:ann:again");
      expect(initializations()).toBe(before + (newSession ? 1 : 0));
    }

    it("a declared Content-Length past the bound: a tool error naming the service and the bound; the next call works", async () => {
      expect(text(await callGw(ann, "big__blob", { nonce: "first" }))).toBe("big:blob:ann:first");
      mode = "declared";
      expect(await callGw(ann, "big__blob")).toEqual({ isError: true, content: [{ type: "text", text: tooBig }] });
      await worksAgain();
    });

    it("a 64 MB answer without a length is cut off: never read whole, the connection cancelled", async () => {
      mode = "streamed";
      expect(await callGw(ann, "big__blob")).toEqual({ isError: true, content: [{ type: "text", text: tooBig }] });
      await waitFor(() => last?.cancelled || last?.done, "the server's answer to be cancelled or finished");
      expect(last!.cancelled).toBe(true);
      // What the registry pulled is the bound plus what sockets buffer, not the 64 MB.
      expect(last!.bytes).toBeLessThan(16 * 1024 * 1024);
      await worksAgain();
    });

    it("the same answer as an event stream (one endless SSE event) is cut off the same way", async () => {
      mode = "sse";
      expect(await callGw(ann, "big__blob")).toEqual({ isError: true, content: [{ type: "text", text: tooBig }] });
      await waitFor(() => last?.cancelled || last?.done, "the server's answer to be cancelled or finished");
      expect(last!.bytes).toBeLessThan(16 * 1024 * 1024);
      await worksAgain();
    });

    it("an oversized answer to initialize (a new session) fails naming the service and the bound; the next call works", async () => {
      // A new credential opens a new session: its initialize answer is the oversized one.
      await authorize("big", "ann", "ann-secret-token-A2A2");
      mode = "initialize";
      const r = await callGw(ann, "big__blob");
      await worksAgain(true);
      await authorize("big", "ann", ANN);
      expect(r.isError).toBe(true);
      // The bound is crossed inside client.connect(): the session's own failure (naming the bound) is reported,
      // not the SDK's "Connection closed" that closing the client causes.
      expect(text(r)).toBe(tooBig);
    });
  });

  describe("a hostile service's streams outside tools/call answers", () => {
    it("an endless event on the standalone GET stream is not read past the bound", async () => {
      const SIZE = 96 * 1024 * 1024;
      let flood: ReturnType<typeof countedBody>["state"] | undefined;
      let floodOn = false;
      const gets = await service("gets", {
        tools: () => ["ping"],
        intercept(req) {
          if (req.method !== "GET" || !floodOn || flood) return undefined;
          const counted = countedBody("data: ", SIZE);
          flood = counted.state;
          return new Response(counted.body, { headers: { "content-type": "text/event-stream" } });
        },
      });
      stops.push(gets.stop);
      await addService("gets", gets.url);
      await authorize("gets", "ann", ANN);
      floodOn = true;
      expect(text(await callGw(ann, "gets__ping", { nonce: "1" }))).toBe("gets:ping:ann:1");
      await waitFor(() => flood, "the gateway to open the GET stream", 1000).catch(() => undefined);
      // Give the registry time to read as much as it would.
      await waitFor(() => flood?.done || flood?.cancelled, "the flood to be read whole or cancelled", 1000).catch(() => undefined);
      // The standalone GET stream of streamable HTTP is never opened (the gateway needs nothing a server starts),
      // so nothing of the flood is read.
      expect(flood?.bytes ?? 0).toBeLessThan(16 * 1024 * 1024);
      floodOn = false;
      await gets.stop();
    });

    it("a service on the old SSE transport answering 1 MB is refused with the bound, like streamable HTTP", async () => {
      const sseSeen: string[] = [];
      const legacy = await startSseMcpServer("/sse", (server) => {
        server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: "blob", inputSchema: { type: "object" as const } }] }));
        server.setRequestHandler(CallToolRequestSchema, (_req, extra) => {
          sseSeen.push(String(extra.requestInfo?.headers.authorization ?? ""));
          return { content: [{ type: "text", text: "y".repeat(1_000_000) }] };
        });
      });
      stops.push(legacy.stop);
      await addService("legacy", legacy.url);
      await authorize("legacy", "ann", ANN);
      const r = await callGw(ann, "legacy__blob");
      expect(sseSeen).toEqual([`Bearer ${ANN}`]);
      // Over the legacy SSE transport every answer arrives on the GET event stream: each event is bounded.
      expect(r.isError, `relayed ${text(r).length} characters`).toBe(true);
      expect(text(r)).toBe(`Service "legacy" answered with more than ${LIMIT} bytes (REGISTRY_MAX_DISCOVERY_BYTES)`);
    });
  });

  describe("a hostile service's deeply nested answer", () => {
    it("an answer nested 30,000 levels deep (60 KB, within the bound) is a prompt error, and the gateway keeps working", async () => {
      const DEPTH = 30_000;
      const deep = await service("deep", {
        tools: () => ["deep", "ping"],
        intercept(_req, rpc) {
          if (rpc?.method !== "tools/call" || rpc.params?.name !== "deep") return undefined;
          const body = `{"jsonrpc":"2.0","id":${JSON.stringify(rpc.id)},"result":{"content":[{"type":"text","text":"deep"}],"structuredContent":{"a":${"[".repeat(DEPTH)}${"]".repeat(DEPTH)}}}}`;
          return new Response(body, { headers: { "content-type": "application/json" } });
        },
      });
      stops.push(deep.stop);
      await addService("deep", deep.url);
      await authorize("deep", "ann", ANN);
      const res = await rawGateway(
        { jsonrpc: "2.0", id: 11, method: "tools/call", params: { name: "deep__deep", arguments: {} } },
        { authorization: `Bearer ${annKey}` },
        AbortSignal.timeout(8000),
      ).then(
        async (r) => ({ status: r.status, body: await r.text() }),
        (e: unknown) => ({ status: 0, body: String(e) }),
      );
      expect(seenBy("deep", "tools/call")).toHaveLength(1);
      // The answer is refused as a whole (re-serializing it would overflow the stack in the SDK's send(), and
      // the request would never be answered): a tool error naming the service, audited as unavailable.
      expect(res.status, res.body.slice(0, 300)).toBe(200);
      expect(JSON.parse(res.body).result).toEqual({
        isError: true,
        content: [{ type: "text", text: 'Service "deep" answered the call of "deep" with a result nested more than 64 levels deep' }],
      });
      expect((await auditEvents({ action: "gateway_call", target: "tool=deep" }))[0]?.outcome).toBe("unavailable");
      expect(text(await callGw(ann, "deep__ping", { nonce: "after" }))).toBe("deep:ping:ann:after");
    }, 20_000);
  });

  describe("redirects", () => {
    let hopMode: { status: number; location: (port: number) => string; all?: boolean; get?: boolean } | undefined;
    let hop: Awaited<ReturnType<typeof service>>;
    let slashLoop = false;
    beforeAll(async () => {
      hop = await service("hop", {
        tools: () => ["ping"],
        intercept(req, rpc) {
          if (!hopMode) return undefined;
          if (hopMode.get ? req.method !== "GET" : req.method !== "POST" || (!hopMode.all && rpc?.method !== "tools/call")) return undefined;
          return new Response(null, { status: hopMode.status, headers: { location: hopMode.location(hop.port) } });
        },
      });
      const slash = await service("slash", {
        tools: () => ["ping"],
        intercept(req, rpc) {
          const path = new URL(req.url).pathname;
          if (path === "/mcp") return new Response(null, { status: 307, headers: { location: "/mcp/" } });
          if (slashLoop && rpc?.method === "tools/call") return new Response(null, { status: 307, headers: { location: "/mcp/" } });
          return undefined;
        },
      });
      stops.push(hop.stop, slash.stop);
      await addService("hop", hop.url);
      await addService("slash", slash.url);
      await authorize("hop", "ann", ANN);
      await authorize("slash", "ann", ANN);
    });

    const elsewhere: [string, (port: number) => string][] = [
      ["the catcher's origin", () => catcher.url],
      ["localhost (same port, another host name)", (port) => `http://localhost:${port}/mcp`],
      ["userinfo looking like the origin", () => `http://127.0.0.1:${hop.port}@127.0.0.1:${catcher.port}/mcp`],
      ["a scheme-relative URL", () => `//127.0.0.1:${catcher.port}/mcp`],
      ["https on the same host and port", (port) => `https://127.0.0.1:${port}/mcp`],
    ];

    for (const status of [301, 302, 303, 307, 308]) {
      it(`a ${status} of tools/call to another origin never carries the token there and fails clearly`, async () => {
        hopMode = undefined;
        expect(text(await callGw(ann, "hop__ping", { nonce: "before" }))).toBe("hop:ping:ann:before");
        for (const [what, location] of elsewhere) {
          hopMode = { status, location };
          const caughtBefore = caught.length;
          const r = await callGw(ann, "hop__ping");
          expect(r, what).toEqual({ isError: true, content: [{ type: "text", text: 'Service "hop" could not be reached: the service redirected to another origin' }] });
          expect(caught.length, what).toBe(caughtBefore);
        }
        hopMode = undefined;
        expect(text(await callGw(ann, "hop__ping", { nonce: "after" }))).toBe("hop:ping:ann:after");
      });
    }

    it("a redirect of initialize, or of the GET stream, to another origin carries nothing there", async () => {
      // A refusal drops the session: the next call initializes, and that POST is redirected too.
      hopMode = { status: 307, location: () => catcher.url, all: true };
      await callGw(ann, "hop__ping");
      const r = await callGw(ann, "hop__ping");
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/^Service "hop" could not be reached: /);
      hopMode = { status: 307, location: () => catcher.url, get: true };
      expect(text(await callGw(ann, "hop__ping", { nonce: "get" }))).toBe("hop:ping:ann:get");
      await sleep(300);
      expect(caught).toEqual([]);
      hopMode = undefined;
    });

    it("a same-origin redirect (/mcp to /mcp/) works, with the token sent to the redirect's target", async () => {
      slashLoop = false;
      expect(text(await callGw(ann, "slash__ping", { nonce: "s" }))).toBe("slash:ping:ann:s");
      const calls = seenBy("slash", "tools/call");
      // The first POST went to /mcp and was redirected; the same request, with the same token, went to /mcp/.
      expect(calls.map((s) => [s.path, s.headers.authorization])).toEqual([
        ["/mcp", `Bearer ${ANN}`],
        ["/mcp/", `Bearer ${ANN}`],
      ]);
    });

    it("a same-origin redirect loop ends after a few hops with a clear tool error", async () => {
      slashLoop = true;
      const before = seenBy("slash").length;
      const r = await callGw(ann, "slash__ping");
      slashLoop = false;
      expect(r).toEqual({ isError: true, content: [{ type: "text", text: 'Service "slash" could not be reached: the service redirected to itself too often' }] });
      expect(seenBy("slash").length - before).toBeLessThan(20);
    });
  });

  describe("a service echoing the credential it was sent", () => {
    let initEcho = false;
    beforeAll(async () => {
      const echo = await service("echo", {
        tools: () => ["rpc_error", "http_401", "http_500", "bare_token", "code_32001", "code_32000"],
        call(name, _args, auth) {
          if (name === "rpc_error") throw new McpError(-32050, `you sent "${auth}"; ${JSON.stringify({ authorization: auth })}`);
          if (name === "code_32001") throw new McpError(-32001, "quota exceeded for this account");
          if (name === "code_32000") throw new McpError(-32000, "the account is locked");
          if (name === "bare_token") throw new McpError(-32602, `bad token ${auth.replace(/^Bearer /, "")}!`);
          return { content: [{ type: "text", text: "unexpected" }] };
        },
        intercept(req, rpc) {
          const auth = req.headers.get("authorization") ?? "";
          if (initEcho && rpc?.method === "initialize") return Response.json({ jsonrpc: "2.0", id: rpc.id, error: { code: -32600, message: `who is ${auth}?`, data: { auth } } });
          if (rpc?.method !== "tools/call") return undefined;
          if (rpc.params?.name === "http_401") return new Response(`Unauthorized: ${auth}`, { status: 401, headers: { "www-authenticate": `Bearer error="${auth}"` } });
          if (rpc.params?.name === "http_500") return new Response(JSON.stringify({ error: `crashed on ${auth}` }), { status: 500 });
          return undefined;
        },
      });
      stops.push(echo.stop);
      await addService("echo", echo.url);
      await authorize("echo", "ann", ANN);
      await authorize("echo", "bob", BOB);
    });

    it("the echoed token is in no tool error, no audit event and no log line", async () => {
      const errors: string[] = [];
      for (const [client, token] of [
        [ann, ANN],
        [bob, BOB],
      ] as const) {
        for (const tool of ["rpc_error", "http_401", "http_500", "bare_token"]) {
          const r = await callGw(client, `echo__${tool}`);
          expect(r.isError, tool).toBe(true);
          expect(text(r), tool).toMatch(/^Service "echo" /);
          expect(JSON.stringify(r), tool).not.toContain(token);
          errors.push(text(r));
        }
      }
      // The messages still say what failed, with the credential blanked out.
      expect(errors[0]).toBe('Service "echo" refused the call of "rpc_error": MCP error -32050: MCP error -32050: you sent "***"; {"authorization":"***"}');
      expect(errors[1]).toBe('Service "echo" could not be reached: HTTP 401');
      expect(errors[2]).toBe('Service "echo" could not be reached: HTTP 500');
      expect(errors[3]).toBe('Service "echo" refused the call of "bare_token": MCP error -32602: MCP error -32602: bad token ***!');
      // A refused initialize (a new session) echoing the token.
      initEcho = true;
      await callGw(ann, "echo__http_500"); // drops ann's session
      const init = await callGw(ann, "echo__rpc_error");
      initEcho = false;
      expect(init.isError).toBe(true);
      expect(JSON.stringify(init)).not.toContain(ANN);
      const audit = await auditDump();
      for (const token of [ANN, BOB]) {
        expect(audit).not.toContain(token);
        expect(logText()).not.toContain(token);
      }
    });

    it("a service's own JSON-RPC errors -32001 and -32000 are reported as the service's refusal, not as a timeout or a lost connection", async () => {
      const timeoutLike = await callGw(ann, "echo__code_32001");
      const initsBefore = seenBy("echo", "initialize").length;
      const closedLike = await callGw(ann, "echo__code_32000");
      await callGw(ann, "echo__bare_token");
      // -32001 and -32000 are also the SDK's own codes for a timeout and a closed connection: a service's answer
      // with them is still the service's answer (the gateway's deadline and the connection's state tell them apart).
      expect.soft(text(timeoutLike)).toBe('Service "echo" refused the call of "code_32001": MCP error -32001: MCP error -32001: quota exceeded for this account');
      expect.soft((await auditEvents({ action: "gateway_call", target: "tool=code_32001" }))[0]?.outcome).toBe("unavailable");
      expect.soft(text(closedLike)).toBe('Service "echo" refused the call of "code_32000": MCP error -32000: MCP error -32000: the account is locked');
      expect.soft(seenBy("echo", "initialize").length).toBe(initsBefore);
    });
  });

  describe("two users on one service at once", () => {
    beforeAll(async () => {
      const who = await service("who", { tools: () => ["whoami"] });
      const fresh = await service("fresh", { tools: () => ["whoami"] });
      stops.push(who.stop, fresh.stop);
      await addService("who", who.url);
      await addService("fresh", fresh.url);
      for (const s of ["who", "fresh"]) {
        await authorize(s, "ann", ANN);
        await authorize(s, "bob", BOB);
      }
    });

    it("100 interleaved calls: every answer and every downstream request carries its own user's token", async () => {
      const jobs = Array.from({ length: 100 }, (_, i) => ({ user: i % 2 ? "bob" : "ann", nonce: `n${i}` }));
      const answers = await Promise.all(jobs.map(async (j) => text(await callGw(j.user === "ann" ? ann : bob, "who__whoami", { nonce: j.nonce, caller: j.user }))));
      expect(answers).toEqual(jobs.map((j) => `who:whoami:${j.user}:${j.nonce}`));
      const calls = seenBy("who", "tools/call");
      expect(calls).toHaveLength(100);
      for (const c of calls) expect(owner(c.headers.authorization ?? ""), JSON.stringify(c.args)).toBe((c.args as { caller: string }).caller);
    });

    it("concurrent first calls of two users open one session each, each initialized with its own token", async () => {
      const discovery = seenBy("fresh").length;
      const jobs = Array.from({ length: 40 }, (_, i) => ({ user: i % 2 ? "bob" : "ann", nonce: `f${i}` }));
      const answers = await Promise.all(jobs.map(async (j) => text(await callGw(j.user === "ann" ? ann : bob, "fresh__whoami", { nonce: j.nonce, caller: j.user }))));
      expect(answers).toEqual(jobs.map((j) => `fresh:whoami:${j.user}:${j.nonce}`));
      const gatewayRequests = seenBy("fresh").slice(discovery);
      const inits = gatewayRequests.filter((s) => s.rpc === "initialize").map((s) => s.headers.authorization);
      expect(inits.sort()).toEqual([`Bearer ${ANN}`, `Bearer ${BOB}`]);
      for (const c of seenBy("fresh", "tools/call")) expect(owner(c.headers.authorization ?? ""), JSON.stringify(c.args)).toBe((c.args as { caller: string }).caller);
      // Every other request of the sessions (initialized notification, GET stream) carries one of the two tokens.
      for (const s of gatewayRequests) expect([`Bearer ${ANN}`, `Bearer ${BOB}`]).toContain(s.headers.authorization);
    });

    it("a changed token is used from the next call on, and a revoked one is never sent again", async () => {
      await authorize("who", "ann", "ann-secret-token-A2A2");
      const before = seenBy("who", "tools/call").length;
      expect(text(await callGw(ann, "who__whoami", { nonce: "c" }))).toBe("who:whoami:ann:c");
      expect(
        seenBy("who", "tools/call")
          .slice(before)
          .map((s) => s.headers.authorization),
      ).toEqual(["Bearer ann-secret-token-A2A2"]);
      expect(text(await call(admin, "revoke_user_token", { service_name: "who", user_id: "ann" }))).not.toMatch(/^Cannot/);
      const missing = await callGw(ann, "who__whoami");
      expect(missing.isError).toBe(true);
      expect(text(missing)).toMatch(/^Service "who" needs your credential and none is stored for user "ann"\./);
      expect(seenBy("who", "tools/call")).toHaveLength(before + 1);
      await authorize("who", "ann", ANN);
    });
  });

  describe("tool names", () => {
    let nina: Client;
    const servers: Record<string, Awaited<ReturnType<typeof service>>> = {};
    let xyTool = "placeholder";
    const LONG_SERVICE = "s".repeat(128);
    const LONG_TOOLS = [`${"x".repeat(127)}1`, `${"x".repeat(127)}2`];
    beforeAll(async () => {
      await call(admin, "create_role", { role_name: "names" });
      await call(admin, "assign_role_to_user", { user_id: "nina", role_name: "names" });
      const specs: [string, () => string[]][] = [
        ["a__b", () => ["c"]],
        ["a", () => ["b__c"]],
        ["my svc/ü", () => ["t"]],
        [LONG_SERVICE, () => LONG_TOOLS],
        ["x y", () => ["z"]],
        ["x_y", () => [xyTool]],
      ];
      for (const [name, tools] of specs) {
        servers[name] = await service(name, { tools });
        stops.push(servers[name].stop);
      }
      for (const [name] of specs.slice(0, 5)) {
        await addService(name, servers[name].url, "names", false);
      }
      nina = await asAgentFor("nina");
    });

    async function allNames(client: Client): Promise<string[]> {
      const names: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await client.listTools(cursor ? { cursor } : undefined);
        names.push(...page.tools.map((t) => t.name));
        cursor = page.nextCursor;
      } while (cursor);
      return names;
    }

    it("colliding, foreign-character and 256-character pairs get unique valid names, each calling its own tool", async () => {
      // A name that is the sanitized form of ("x y", "z") is given to service "x_y" as its tool's plain name.
      const first = await allNames(nina);
      const sanitized = first.find((n) => n.startsWith("x_y__z_"));
      expect(sanitized).toMatch(/^x_y__z_[0-9a-f]{8}$/);
      xyTool = sanitized!.slice("x_y__".length);
      await addService("x_y", servers.x_y.url, "names", false);

      const names = await allNames(nina);
      expect(names).toHaveLength(7);
      expect(new Set(names).size).toBe(names.length);
      for (const n of names) expect(n).toMatch(/^[A-Za-z0-9_.-]{1,128}$/);
      const expected = ["a__b:c", "a:b__c", "my svc/ü:t", `${LONG_SERVICE}:${LONG_TOOLS[0]}`, `${LONG_SERVICE}:${LONG_TOOLS[1]}`, "x y:z", `x_y:${xyTool}`];
      const reached: string[] = [];
      for (const n of names) {
        const r = await callGw(nina, n);
        expect(r.isError, `${n}: ${text(r)}`).toBeFalsy();
        reached.push(text(r).split(":").slice(0, 2).join(":"));
      }
      expect(reached.sort()).toEqual(expected.sort());
      // The plain name of one pair is the plain name of the other: exactly one of the two keeps it.
      expect(names.filter((n) => n === "a__b__c")).toHaveLength(1);
      expect(text(await callGw(nina, "a__b__c")).startsWith("a:b__c:")).toBe(true);
      // Tools of the role only: a look-alike name (case, whitespace, the unsanitized form) is refused before any service.
      const callsBefore = seen.filter((s) => s.rpc === "tools/call").length;
      for (const n of ["A__B__C", "a__b__c ", " a__b__c", "my svc/ü__t", `${LONG_SERVICE}__${LONG_TOOLS[0]}`, "a__b__c\u0000", "a____b__c"]) {
        const r = await callGw(nina, n);
        expect(r.isError, JSON.stringify(n)).toBe(true);
        expect(text(r)).toMatch(/^No tool ".*" for user "nina"/s);
      }
      expect(seen.filter((s) => s.rpc === "tools/call").length).toBe(callsBefore);
    });
  });

  describe("pagination", () => {
    let paula: Client;
    const names = Array.from({ length: 250 }, (_, i) => `t${String(i).padStart(3, "0")}`);
    beforeAll(async () => {
      await call(admin, "create_role", { role_name: "bulk" });
      await call(admin, "assign_role_to_user", { user_id: "paula", role_name: "bulk" });
      const many = await service("many", { tools: () => names });
      stops.push(many.stop);
      await addService("many", many.url, "bulk", false);
      paula = await asAgentFor("paula");
    });

    it("250 tools are listed over pages of at most 100, each exactly once, and the last one can be called", async () => {
      const listed: string[] = [];
      const sizes: number[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 10; pages++) {
        const page = await paula.listTools(cursor ? { cursor } : undefined);
        sizes.push(page.tools.length);
        listed.push(...page.tools.map((t) => t.name));
        cursor = page.nextCursor;
        if (!cursor) break;
      }
      expect(cursor).toBeUndefined();
      expect(sizes).toEqual([100, 100, 50]);
      expect(listed).toEqual(names.map((n) => `many__${n}`));
      expect(text(await callGw(paula, "many__t249", { nonce: "p" }))).toBe("many:t249:unknown(none):p");
    });

    it("a forged cursor is JSON-RPC -32602; a cursor past the end is an empty last page", async () => {
      for (const cursor of [
        "garbage!",
        "",
        Buffer.from("o-1").toString("base64url"),
        Buffer.from("x100").toString("base64url"),
        Buffer.from("o1e3").toString("base64url"),
        "o100",
        Buffer.from("o1234567890").toString("base64url"),
      ]) {
        const err = await paula.listTools({ cursor }).catch((e: unknown) => e);
        expect(err, JSON.stringify(cursor)).toBeInstanceOf(McpError);
        expect((err as McpError).code, cursor).toBe(-32602);
      }
      const past = await paula.listTools({ cursor: Buffer.from("o999999999").toString("base64url") });
      expect(past).toEqual({ tools: [] });
    });
  });

  describe("user keys", () => {
    let kimKey = "";
    let gone = "";
    beforeAll(async () => {
      await call(admin, "assign_role_to_user", { user_id: "kim", role_name: "staff" });
      kimKey = (await call(admin, "create_user_key", { user_id: "kim", label: "k1" })).structuredContent!.key as string;
      await call(admin, "assign_role_to_user", { user_id: "kim-gone", role_name: "staff" });
      gone = (await call(admin, "create_user_key", { user_id: "kim-gone" })).structuredContent!.key as string;
      keysIssued.push(kimKey, gone);
    });

    const status = (authorization: string | string[], extra: Record<string, string> = {}) => {
      const headers = new Headers(extra);
      for (const a of Array.isArray(authorization) ? authorization : [authorization]) headers.append("authorization", a);
      return rawGateway(INIT, headers);
    };
    async function refused(authorization: string | string[], what: string) {
      const res = await status(authorization);
      expect(res.status, what).toBe(401);
      expect(res.headers.get("www-authenticate"), what).toBe('Bearer realm="mcp-registry"');
      expect(await res.json(), what).toEqual({ error: { code: "unauthorized", message: "Invalid API key" } });
    }

    it("the documented spellings work: Bearer in any case, trailing whitespace, a tab", async () => {
      for (const a of [`Bearer ${kimKey}`, `bearer ${kimKey}`, `BEARER ${kimKey}`, `Bearer ${kimKey}   `, `Bearer\t${kimKey}`, `Bearer   ${kimKey}`]) {
        const res = await status(a);
        expect(res.status, JSON.stringify(a)).toBe(200);
        expect(((await res.json()) as { result?: { serverInfo: { name: string } } }).result?.serverInfo.name).toBe("mcp-registry-gateway");
      }
    });

    it("an altered, cut, extended, re-cased, re-schemed or doubled key is 401, and writes nothing", async () => {
      const keysBefore = await call(admin, "list_user_keys", {});
      const last = kimKey.at(-1)!;
      const variants: [string | string[], string][] = [
        [`Bearer ${kimKey.slice(0, -1)}${last === "A" ? "B" : "A"}`, "last character changed"],
        [`Bearer ${kimKey.slice(0, -1)}`, "cut by one"],
        [`Bearer ${kimKey}x`, "one character more"],
        [`Bearer ${kimKey.toUpperCase()}`, "upper case"],
        [`Bearer ${kimKey.replace("mcpr_user_", "MCPR_USER_")}`, "prefix upper case"],
        [`Bearer ${kimKey} extra`, "a second word"],
        [`Bearer mcpr_user_ ${kimKey.slice(10)}`, "split after the prefix"],
        [`Basic ${kimKey}`, "Basic scheme"],
        [`Basic ${Buffer.from(`kim:${kimKey}`).toString("base64")}`, "Basic credentials"],
        [kimKey, "no scheme"],
        [[`Bearer ${kimKey}`, `Bearer ${kimKey}`], "sent twice"],
        [[`Bearer ${kimKey}`, `Bearer ${annKey}`], "two users' keys"],
        ["Bearer mcpr_user_", "the prefix alone"],
      ];
      for (const [a, what] of variants) await refused(a, what);
      expect(await call(admin, "list_user_keys", {})).toEqual(keysBefore);
    });

    it("a revoked key and the key of a user deleted from the database are 401", async () => {
      const okStatus = async (key: string) => {
        const res = await status(`Bearer ${key}`);
        await res.text();
        return res.status;
      };
      expect(await okStatus(kimKey)).toBe(200);
      expect(text(await call(admin, "revoke_user_key", { user_id: "kim", label: "k1" }))).toBe('Key "k1" of user "kim" revoked.');
      await refused(`Bearer ${kimKey}`, "revoked");
      // No admin tool deletes a user; a user row removed from the database takes its keys with it.
      expect(await okStatus(gone)).toBe(200);
      const { users } = reg.ctx.tables;
      await (reg.ctx.db as unknown as { delete(t: unknown): { where(c: unknown): Promise<unknown> } }).delete(users).where(eq(users.userId, "kim-gone"));
      await refused(`Bearer ${gone}`, "deleted user");
      // Recreating a user with the same id does not revive the old key.
      await call(admin, "assign_role_to_user", { user_id: "kim-gone", role_name: "staff" });
      await refused(`Bearer ${gone}`, "recreated user");
    });

    it("no key ever appears in the log or the audit trail", async () => {
      const audit = await auditDump();
      for (const key of keysIssued) {
        expect(logText()).not.toContain(key);
        expect(audit).not.toContain(key);
        expect(audit).not.toContain(key.slice(10));
      }
    });
  });

  describe("X-Registry-User", () => {
    const userRows = () => countRows("users");

    it("surrounding whitespace names the same user; a user key may repeat its own user that way", async () => {
      const spaced = await asAgentFor("  bob  ");
      expect(text(await callGw(spaced, "who__whoami", { nonce: "x" }))).toBe("who:whoami:bob:x");
      const self = await gatewayClient(annKey, { "x-registry-user": " ann " });
      expect(text(await callGw(self, "who__whoami", { nonce: "y" }))).toBe("who:whoami:ann:y");
    });

    it("a user key naming another user, even by case or a list, is 403", async () => {
      for (const header of ["Ann", "bob", "ann, bob", "ann,ann", "", "annn"]) {
        const res = await rawGateway(INIT, { authorization: `Bearer ${annKey}`, "x-registry-user": header });
        expect(res.status, JSON.stringify(header)).toBe(403);
      }
      const twice = new Headers({ authorization: `Bearer ${annKey}` });
      twice.append("x-registry-user", "ann");
      twice.append("x-registry-user", "bob");
      expect((await rawGateway(INIT, twice)).status).toBe(403);
    });

    it("an agent sending two X-Registry-User headers acts for neither user, and writes nothing", async () => {
      const before = await userRows();
      const headers = new Headers({ authorization: `Bearer ${AGENT}` });
      headers.append("x-registry-user", "ann");
      headers.append("x-registry-user", "bob");
      const list = await rawGateway({ jsonrpc: "2.0", id: 2, method: "tools/list", params: {} }, headers);
      expect(list.status).toBe(200);
      expect(((await list.json()) as { result: { tools: unknown[] } }).result.tools).toEqual([]);
      const callsBefore = seen.filter((s) => s.rpc === "tools/call").length;
      const res = await rawGateway({ jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "who__whoami", arguments: {} } }, headers);
      const body = (await res.json()) as { result: CallToolResult };
      expect(body.result.isError).toBe(true);
      expect(seen.filter((s) => s.rpc === "tools/call").length).toBe(callsBefore);
      expect(await userRows()).toBe(before);
    });

    it("a very long, control-free but odd, or unknown user: refused or no tools, and no user is created", async () => {
      const before = await userRows();
      for (const header of ["u".repeat(257), "x".repeat(8000)]) {
        const res = await rawGateway(INIT, { authorization: `Bearer ${AGENT}`, "x-registry-user": header });
        expect(res.status).toBe(400);
      }
      for (const user of ["ghost", "b\u00f6b", "ann bob"]) {
        const ghost = await asAgentFor(user);
        expect((await ghost.listTools()).tools, user).toEqual([]);
        const r = await callGw(ghost, "who__whoami");
        expect(r.isError).toBe(true);
        expect(text(r)).toMatch(/^No tool "who__whoami" for user /);
      }
      expect(await userRows()).toBe(before);
    });

    it("an admin key acts for the named user too, with that user's token", async () => {
      const asBob = await gatewayClient(ADMIN, { "x-registry-user": "bob" });
      expect(text(await callGw(asBob, "who__whoami", { nonce: "adm" }))).toBe("who:whoami:bob:adm");
      expect(seenBy("who", "tools/call").at(-1)?.headers.authorization).toBe(`Bearer ${BOB}`);
    });

    it("an agent acting for a user without a role sees no tools and can call none", async () => {
      const list = (await (await reg.http("/list_users", { key: ADMIN })).json()) as { users: { user: { user_id: string; role: string } }[] };
      expect(list.users.map((u) => u.user)).toContainEqual({ user_id: "carol", role: "" });
      const carol = await asAgentFor("carol");
      expect((await carol.listTools()).tools).toEqual([]);
      const callsBefore = seen.filter((s) => s.rpc === "tools/call").length;
      for (const name of ["who__whoami", "echo__rpc_error", "many__t000"]) {
        const r = await callGw(carol, name);
        expect(r).toEqual({
          isError: true,
          content: [{ type: "text", text: `No tool "${name}" for user "carol": the gateway offers only the tools attached to the user's role (tools/list)` }],
        });
      }
      expect(seen.filter((s) => s.rpc === "tools/call").length).toBe(callsBefore);
    });

    it("a tool name cannot plant another user's id in the audit trail", async () => {
      const r = await callGw(ann, "nothing user_id=bob service_name=who tool=whoami");
      expect(r.isError).toBe(true);
      const aboutBob = await auditEvents({ action: "gateway_call", target: "user_id=bob" });
      // The caller's tool name is percent-encoded in the target when outside the tool-name characters, so ann's
      // refused call cannot be found by a search for everything about bob.
      expect(aboutBob.filter((e) => e.actor === "user-key:ann/laptop")).toEqual([]);
    });
  });

  describe("connect links", () => {
    const linkOf = (r: CallToolResult) => /Open (http:\/\/\S+\/connect\/[A-Za-z0-9_-]{43}) \(one use, valid 10 minutes\)/.exec(text(r))?.[1];
    const post = (link: string, form: Record<string, string>, headers: Record<string, string> = {}) => fetch(link, { method: "POST", body: new URLSearchParams(form), headers });
    let vault: Awaited<ReturnType<typeof service>>;
    beforeAll(async () => {
      vault = await service("vault", { tools: () => ["whoami"] });
      stops.push(vault.stop);
      await addService("vault", vault.url);
    });

    it("a link stores the token for its own user and service only, whatever else the form names", async () => {
      const linkAnn = linkOf(await callGw(ann, "vault__whoami"))!;
      const linkBob = linkOf(await callGw(bob, "vault__whoami"))!;
      expect(linkAnn).toBeDefined();
      expect(linkBob).toBeDefined();
      expect(linkAnn).not.toBe(linkBob);
      const whoBefore = await readToken("who", "ann");
      const saved = await post(linkAnn, { token: "ann-vault-token", user_id: "bob", service_name: "who", user: "bob", service: "who" });
      expect(saved.status).toBe(200);
      expect((await readToken("vault", "ann")).body.token).toBe("ann-vault-token");
      expect((await readToken("vault", "bob")).status).toBe(401);
      expect(await readToken("who", "ann")).toEqual(whoBefore);
      // Bob's link, used by anyone, stores for bob: and the downstream sees each user's own token.
      expect((await post(linkBob, { token: "bob-vault-token" })).status).toBe(200);
      expect((await readToken("vault", "bob")).body.token).toBe("bob-vault-token");
      expect(text(await callGw(ann, "vault__whoami"))).toMatch(/^vault:whoami:/);
      expect(text(await callGw(bob, "vault__whoami"))).toMatch(/^vault:whoami:/);
      expect(seenBy("vault", "tools/call").map((s) => s.headers.authorization)).toEqual(["Bearer ann-vault-token", "Bearer bob-vault-token"]);
      await call(admin, "revoke_user_token", { service_name: "vault", user_id: "ann" });
      await call(admin, "revoke_user_token", { service_name: "vault", user_id: "bob" });
    });

    it("1000 guessed codes and near misses of a live one are 404 and store nothing; the live link still works", async () => {
      const link = linkOf(await callGw(ann, "vault__whoami"))!;
      const code = link.split("/connect/")[1];
      const [tokensBefore, linksBefore] = [await countRows("userTokens"), await countRows("connectLinks")];
      const { randomBytes, createHash } = await import("node:crypto");
      const guesses = Array.from({ length: 1000 }, () => randomBytes(32).toString("base64url"));
      const flip = (c: string) => (c === "A" ? "B" : "A");
      const near = [
        `${code.slice(0, -1)}${flip(code.at(-1)!)}`,
        `${flip(code[0])}${code.slice(1)}`,
        code.toUpperCase() === code ? code.toLowerCase() : code.toUpperCase(),
        code.slice(0, -1),
        `${code}A`,
        createHash("sha256").update(code).digest("hex"),
        encodeURIComponent(`${code}\u0000`),
        `${code}%20`,
      ];
      const base = `${reg.url}/connect/`;
      for (let i = 0; i < guesses.length; i += 100) {
        const statuses = await Promise.all(
          guesses.slice(i, i + 100).map(async (g, j) => (j % 2 ? (await fetch(base + g)).status : (await post(base + g, { token: "guessed" })).status)),
        );
        expect(new Set(statuses)).toEqual(new Set([404]));
      }
      for (const n of near) {
        expect((await fetch(base + n)).status, n).toBe(404);
        expect((await post(base + n, { token: "near-miss" })).status, n).toBe(404);
      }
      expect(await countRows("userTokens")).toBe(tokensBefore);
      expect(await countRows("connectLinks")).toBe(linksBefore);
      expect((await fetch(link)).status).toBe(200);
    });

    it("a cross-site POST of a live link is 403 and stores nothing; the link stays usable", async () => {
      const link = linkOf(await callGw(ann, "vault__whoami"))!;
      const tokensBefore = await countRows("userTokens");
      for (const origin of ["https://evil.example", "null", `http://127.0.0.1.evil.example:${new URL(reg.url).port}`]) {
        const cross = await post(link, { token: "csrf-token" }, { origin });
        expect(cross.status, origin).toBe(403);
      }
      const sameSite = await post(link, { token: "csrf-token" }, { "sec-fetch-site": "cross-site" });
      expect(sameSite.status).toBe(403);
      expect(await countRows("userTokens")).toBe(tokensBefore);
      expect((await readToken("vault", "ann")).status).toBe(401);
      expect((await fetch(link)).status).toBe(200);
    });

    it("a refused request to a live link does not store the link's code in the audit trail", async () => {
      const link = linkOf(await callGw(ann, "vault__whoami"))!;
      const code = link.split("/connect/")[1];
      expect((await post(link, { token: "csrf-token" }, { origin: "https://evil.example" })).status).toBe(403);
      // fetch does not let a Host be set: node:http sends what a page on a rebound host name would.
      const rebound = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(link, { headers: { host: `rebind.example:${new URL(reg.url).port}` } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.once("error", reject);
        req.end();
      });
      expect(rebound).toBe(403);
      expect((await fetch(link)).status).toBe(200);
      // A refusal of /connect/<code> is audited with the route, never the code (a live link is a credential).
      const refusals = await auditEvents({ action: "refused_request" });
      expect.soft(refusals.filter((e) => e.target.includes(code))).toEqual([]);
      expect(await auditDump()).not.toContain(code);
    });

    it("an expired link and a link of a removed service are 404 and store nothing", async () => {
      const link = linkOf(await callGw(ann, "vault__whoami"))!;
      const tokensBefore = await countRows("userTokens");
      // Expired: every link's expiry moved into the past.
      const { connectLinks } = reg.ctx.tables;
      await (reg.ctx.db as unknown as { update(t: unknown): { set(v: unknown): Promise<unknown> } })
        .update(connectLinks)
        .set({ expiresAt: new Date(Date.now() - 1000).toISOString() });
      expect((await fetch(link)).status).toBe(404);
      expect((await post(link, { token: "late-token" })).status).toBe(404);
      expect(await countRows("userTokens")).toBe(tokensBefore);
      // A removed service: its links go with it, even when a service of the same name comes back.
      const fresh = linkOf(await callGw(ann, "vault__whoami"))!;
      expect((await fetch(fresh)).status).toBe(200);
      expect(text(await call(admin, "remove_service", { service_name: "vault" }))).not.toMatch(/^Cannot/);
      await addService("vault", vault.url);
      expect((await fetch(fresh)).status).toBe(404);
      expect((await post(fresh, { token: "after-removal" })).status).toBe(404);
      expect((await readToken("vault", "ann")).status).toBe(401);
    });

    it("two concurrent submissions of one link store one token, the winner's", async () => {
      const link = linkOf(await callGw(ann, "vault__whoami"))!;
      const [first, second] = await Promise.all([post(link, { token: "race-token-1" }), post(link, { token: "race-token-2" })]);
      const statuses = [first.status, second.status].sort();
      expect(statuses).toEqual([200, 404]);
      const winner = first.status === 200 ? "race-token-1" : "race-token-2";
      expect((await readToken("vault", "ann")).body.token).toBe(winner);
      await call(admin, "revoke_user_token", { service_name: "vault", user_id: "ann" });
    });

    it("asking again and again keeps at most five unspent links per user and service, the newest", async () => {
      const links: string[] = [];
      for (let i = 0; i < 12; i++) links.push(linkOf(await callGw(bob, "vault__whoami"))!);
      const { connectLinks, users, services } = reg.ctx.tables;
      const rows = await reg.ctx.db
        .select({ digest: connectLinks.digest })
        .from(connectLinks)
        .innerJoin(users, eq(users.id, connectLinks.userId))
        .innerJoin(services, eq(services.id, connectLinks.serviceId))
        .where(eq(users.userId, "bob"));
      expect(rows.length).toBeLessThanOrEqual(5);
      const usable = await Promise.all(links.map(async (l) => (await fetch(l)).status));
      expect(usable.slice(-5)).toEqual([200, 200, 200, 200, 200]);
      expect(usable.slice(0, 7)).toEqual(Array(7).fill(404));
    });

    it("the page escapes the service and user it names", async () => {
      const xssService = '<img src=x onerror="alert(1)">';
      const xssUser = "<script>alert(2)</script>";
      const server = await service("xss", { tools: () => ["whoami"] });
      stops.push(server.stop);
      await call(admin, "create_role", { role_name: "xss" });
      await call(admin, "assign_role_to_user", { user_id: xssUser, role_name: "xss" });
      await addService(xssService, server.url, "xss");
      const agent = await asAgentFor(xssUser);
      const [tool] = (await agent.listTools()).tools;
      const r = await callGw(agent, tool.name);
      const link = linkOf(r)!;
      expect(link).toBeDefined();
      const page = await (await fetch(link)).text();
      expect(page).not.toContain(xssService);
      expect(page).not.toContain(xssUser);
      expect(page).toContain("&lt;script&gt;alert(2)&lt;/script&gt;");
      expect(page).toContain("&lt;img src=x onerror=");
      const bad = await (await post(link, { token: "\u0001" })).text();
      expect(bad).not.toContain(xssService);
      expect(bad).not.toContain(xssUser);
    });

    it("no link code is ever written to the log or the audit trail", async () => {
      const links = [linkOf(await callGw(ann, "vault__whoami"))!, linkOf(await callGw(bob, "vault__whoami"))!];
      const audit = await auditDump();
      for (const link of links) {
        const code = link.split("/connect/")[1];
        expect(logText()).not.toContain(code);
        expect(audit).not.toContain(code);
      }
      expect(logText()).not.toContain("/connect/");
    });
  });

  describe("arguments", () => {
    const nested = (depth: number): unknown => {
      let v: unknown = "bottom";
      for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { v };
      return v;
    };
    const rawCall = async (args: unknown, extra: Record<string, unknown> = {}) => {
      const res = await rawGateway(
        { jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "who__whoami", arguments: args, ...extra } },
        { authorization: `Bearer ${annKey}` },
      );
      return { status: res.status, body: (await res.json()) as { result?: CallToolResult; error?: { code: number; message: string } } };
    };
    const whoCalls = () => seenBy("who", "tools/call").length;

    it("arguments nested deeper than 64 are -32602 before the service is called; 50 deep pass through", async () => {
      const before = whoCalls();
      const deep = await rawCall({ a: nested(70) });
      expect(deep.body.error).toEqual({ code: -32602, message: "Invalid params: the message is nested more than 64 levels deep" });
      const veryDeep = await rawGateway(
        `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"who__whoami","arguments":{"a":${"[".repeat(100_000)}${"]".repeat(100_000)}}}}`,
        {
          authorization: `Bearer ${annKey}`,
        },
      );
      expect(((await veryDeep.json()) as { error: { code: number } }).error.code).toBe(-32602);
      expect(whoCalls()).toBe(before);
      const ok = await rawCall({ nonce: "deep", a: nested(50) });
      expect(text(ok.body.result!)).toBe("who:whoami:ann:deep");
      expect(seenBy("who", "tools/call").at(-1)?.args).toEqual({ nonce: "deep", a: nested(50) });
      const refused = await auditEvents({ action: "gateway_call", target: "user_id=ann tool=who__whoami" });
      expect(refused.some((e) => e.outcome === "invalid_input")).toBe(true);
    });

    it("a JSON-RPC batch cannot smuggle a nested or non-object call past the guard", async () => {
      const before = whoCalls();
      const batch = [
        { jsonrpc: "2.0", id: 21, method: "tools/call", params: { name: "who__whoami", arguments: { a: nested(70) } } },
        { jsonrpc: "2.0", id: 22, method: "tools/call", params: { name: "who__whoami", arguments: [1] } },
      ];
      const res = await rawGateway(batch, { authorization: `Bearer ${annKey}` });
      await res.text();
      expect(whoCalls()).toBe(before);
    });

    it("non-object arguments and a non-string name are -32602 before the service is called", async () => {
      const before = whoCalls();
      for (const [args, got] of [
        [null, "null"],
        [[1, 2], "an array"],
        ["text", "a string"],
        [5, "a number"],
        [true, "a boolean"],
      ] as const) {
        const r = await rawCall(args);
        expect(r.body.error, got).toEqual({ code: -32602, message: `Invalid params: the arguments of tool "who__whoami" must be an object, not ${got}` });
      }
      const noName = await rawGateway({ jsonrpc: "2.0", id: 9, method: "tools/call", params: { name: ["who__whoami"], arguments: {} } }, { authorization: `Bearer ${annKey}` });
      expect(((await noName.json()) as { error: { code: number } }).error.code).toBe(-32602);
      const over = await rawGateway(
        { jsonrpc: "2.0", id: 10, method: "tools/call", params: { name: "who__whoami", arguments: { big: "z".repeat(1_100_000) } } },
        { authorization: `Bearer ${annKey}` },
      );
      expect(over.status).toBe(413);
      expect(whoCalls()).toBe(before);
    });
  });

  it("no admin, agent or user key, and no X-Registry-User, ever reached a downstream service", () => {
    expect(seen.length).toBeGreaterThan(300);
    const known = new Set(Object.keys(TOKENS).map((t) => `Bearer ${t}`));
    for (const s of seen) {
      const all = JSON.stringify(s.headers);
      for (const key of keysIssued) expect(all, `${s.server} ${s.httpMethod} ${s.path}`).not.toContain(key);
      expect(all).not.toContain("mcpr_user_");
      expect(s.headers["x-registry-user"]).toBeUndefined();
      const authorization = s.headers.authorization;
      if (authorization !== undefined && !/^Bearer (ann|bob)-vault-token$/.test(authorization)) expect(known.has(authorization), authorization).toBe(true);
    }
    expect(caught).toEqual([]);
  });
});
