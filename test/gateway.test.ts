/**
 * The gateway as its callers use it: a person with a user key, an agent acting for a user, the SDK client
 * on /gateway/mcp. Downstream is a real SDK server that checks per-user bearer tokens and records what it
 * was sent, so the tests can see whose credential reached it, and how many sessions were opened.
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CallToolRequestSchema, type CallToolResult, ListToolsRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, connectClient, startTestMcpServer, startTestRegistry, type TestRegistry, text } from "./helpers.ts";

const ADMIN = "admin-key-0123456789abcdef";
const AGENT = "agent-key-0123456789abcdef";
// Whose token is whose, as the downstream service knows them.
const TOKENS: Record<string, string> = { "ann-token-1": "ann", "bob-token-2": "bob" };

type Seen = { method: string; authorization: string | null; tool?: string; args?: unknown };

/** An intercept recording every request a test server is sent, with the credential it carried. */
function recording(seen: Seen[]) {
  return (req: Request) => {
    // The body is read again by the transport: a clone is read here.
    void req
      .clone()
      .json()
      .then((m: { method: string; params?: { name?: string; arguments?: unknown } }) =>
        seen.push({ method: m.method, authorization: req.headers.get("authorization"), tool: m.params?.name, args: m.params?.arguments }),
      )
      .catch(() => {});
    return undefined;
  };
}

/** The "notes" service: needs a bearer token of a known user for every call, answers who called. */
async function notesService(seen: Seen[]) {
  return startTestMcpServer({
    setup(server) {
      server.setRequestHandler(ListToolsRequestSchema, () => ({
        tools: [
          { name: "whoami", description: "Who is calling", inputSchema: { type: "object" as const } },
          {
            name: "echo",
            title: "Echo",
            description: "Echo the arguments back, as text, structured content and an image",
            inputSchema: { type: "object" as const, properties: { text: { type: "string" } }, required: ["text"] },
            outputSchema: { type: "object" as const, properties: { echoed: {} } },
            annotations: { readOnlyHint: true },
          },
          { name: "fail", description: "Always fails", inputSchema: { type: "object" as const } },
          { name: "slow", description: "Answers after four seconds", inputSchema: { type: "object" as const } },
          { name: "secret", description: "Never attached", inputSchema: { type: "object" as const } },
        ],
      }));
      server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
        const auth = (extra.requestInfo?.headers.authorization as string | undefined) ?? "";
        const user = TOKENS[auth.replace(/^Bearer /, "")];
        if (!user) return { isError: true, content: [{ type: "text", text: "unknown credential" }] };
        const args = req.params.arguments ?? {};
        switch (req.params.name) {
          case "whoami":
            return { content: [{ type: "text", text: user }] };
          case "echo":
            return {
              content: [
                { type: "text", text: JSON.stringify(args) },
                { type: "image", data: "iVBORw0KGgo=", mimeType: "image/png" },
                { type: "resource_link", uri: "notes://1", name: "note 1" },
              ],
              structuredContent: { echoed: args },
            };
          case "fail":
            return { isError: true, content: [{ type: "text", text: "it failed downstream" }] };
          case "slow":
            await new Promise((r) => setTimeout(r, 4000));
            return { content: [{ type: "text", text: "late" }] };
        }
        throw new McpError(-32602, `no tool ${req.params.name}`);
      });
    },
    intercept: recording(seen),
  });
}

describe("gateway", () => {
  let reg: TestRegistry;
  let admin: Client;
  let notes: Awaited<ReturnType<typeof notesService>>;
  let open: Awaited<ReturnType<typeof startTestMcpServer>>;
  const seen: Seen[] = [];
  const clients: Client[] = [];
  let annKey = "";

  async function gatewayClient(key: string, headers: Record<string, string> = {}, capabilities = {}): Promise<Client> {
    const client = await connectClient(`${reg.url}/gateway/mcp`, key, { headers, capabilities });
    clients.push(client);
    return client;
  }
  const toolId = async (service: string, name: string) => {
    const tools = (await call(admin, "get_tools", { service_name: service })).structuredContent as { tools: { id: number; name: string }[] };
    return tools.tools.find((t) => t.name === name)!.id;
  };
  const audit = async (action: string) =>
    ((await call(admin, "list_audit_events", { action })).structuredContent as { events: { actor: string; target: string; outcome: string; detail: string }[] }).events;
  const postGateway = (body: unknown, headers: Record<string, string>) =>
    fetch(`${reg.url}/gateway/mcp`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
      body: JSON.stringify(body),
    });

  beforeAll(async () => {
    [reg, notes, open] = await Promise.all([
      startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT, REGISTRY_GATEWAY_TIMEOUT: "2" }),
      notesService(seen),
      startTestMcpServer({
        setup(server) {
          server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: "ping", description: "Ping", inputSchema: { type: "object" as const } }] }));
          server.setRequestHandler(CallToolRequestSchema, () => ({ content: [{ type: "text", text: "pong" }] }));
        },
        intercept: recording(seen),
      }),
    ]);
    admin = await reg.client(ADMIN);
    await call(admin, "add_service", { service_name: "notes", endpoint: notes.url, description: "Notes", requires_authorization: true, method_authorization: "Bearer" });
    await call(admin, "add_service", { service_name: "open", endpoint: open.url, description: "Open" });
    await call(admin, "create_role", { role_name: "staff" });
    for (const tool of ["whoami", "echo", "fail", "slow"]) await call(admin, "attach_role_to_tool", { tool_id: await toolId("notes", tool), role_name: "staff" });
    await call(admin, "attach_role_to_tool", { tool_id: await toolId("open", "ping"), role_name: "staff" });
    for (const user of ["ann", "bob"]) await call(admin, "assign_role_to_user", { user_id: user, role_name: "staff" });
    await reg.http("/register_user", { method: "POST", key: ADMIN, headers: { "content-type": "application/json" }, body: '{"user_id":"carol"}' });
    annKey = (await call(admin, "create_user_key", { user_id: "ann", label: "laptop" })).structuredContent!.key as string;
  });
  afterAll(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await reg?.stop();
    await Promise.all([notes?.stop(), open?.stop()]);
  });

  it("a user key is shown once, listed without the key, and opens nothing but the gateway", async () => {
    expect(annKey).toMatch(/^mcpr_user_[A-Za-z0-9_-]{43}$/);
    const listed = await call(admin, "list_user_keys", { user_id: "ann" });
    expect(listed.structuredContent).toEqual({ keys: [{ user_id: "ann", label: "laptop", created_at: expect.any(String), last_used_at: null }] });
    expect(text(listed)).not.toContain(annKey);
    for (const [path, init] of [
      ["/mcp", { method: "POST", body: "{}" }],
      ["/token?service_name=notes&user_id=ann", {}],
      ["/list_services", {}],
      ["/tools_for_role", { method: "POST", body: '{"role":"staff"}' }],
    ] as const) {
      const res = await reg.http(path, { ...init, key: annKey, headers: { "content-type": "application/json" } });
      expect(res.status, path).toBe(403);
      expect(((await res.json()) as { error: { message: string } }).error.message).toBe(
        "A user key opens only the gateway (POST /gateway/mcp) and the registry API (GET /v0.1/servers)",
      );
    }
    // A second key with the same label is refused, and nothing is written.
    expect(text(await call(admin, "create_user_key", { user_id: "ann", label: "laptop" }))).toBe(
      'Cannot create a key labelled "laptop" for user "ann": the user already has a key with that label; revoke it first or choose another label',
    );
    expect(text(await call(admin, "create_user_key", { user_id: "nobody" }))).toMatch(/^Cannot create a key labelled "default" for user "nobody": no such user/);
    expect(((await call(admin, "list_user_keys", {})).structuredContent as { keys: unknown[] }).keys).toHaveLength(1);
  });

  it("lists exactly the role's tools, named <service>__<tool>, with their stored definitions", async () => {
    const client = await gatewayClient(annKey);
    expect(client.getServerVersion()?.name).toBe("mcp-registry-gateway");
    const { tools, nextCursor } = await client.listTools();
    expect(nextCursor).toBeUndefined();
    expect(tools.map((t) => t.name)).toEqual(["notes__echo", "notes__fail", "notes__slow", "notes__whoami", "open__ping"]);
    expect(tools[0]).toEqual({
      name: "notes__echo",
      title: "Echo",
      description: "Echo the arguments back, as text, structured content and an image",
      inputSchema: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
      outputSchema: { type: "object", properties: { echoed: {} } },
      annotations: { readOnlyHint: true },
    });
  });

  it("an agent acts for the user named in X-Registry-User, and must name one; a user key may not act for another", async () => {
    const asBob = await gatewayClient(AGENT, { "x-registry-user": "bob" });
    expect((await asBob.listTools()).tools).toHaveLength(5);
    const asCarol = await gatewayClient(AGENT, { "x-registry-user": "carol" });
    expect((await asCarol.listTools()).tools).toEqual([]);
    const init = { jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "t", version: "1" } } };
    const noUser = await postGateway(init, { authorization: `Bearer ${AGENT}` });
    expect(noUser.status).toBe(400);
    expect(((await noUser.json()) as { error: { message: string } }).error.message).toBe(
      "The gateway acts for one user: with an agent key, name the user in the X-Registry-User header",
    );
    const other = await postGateway(init, { authorization: `Bearer ${annKey}`, "x-registry-user": "bob" });
    expect(other.status).toBe(403);
    expect(((await other.json()) as { error: { message: string } }).error.message).toBe('This user key acts only for user "ann": leave out X-Registry-User or send that user');
    const badUser = await postGateway(init, { authorization: `Bearer ${AGENT}`, "x-registry-user": "u".repeat(257) });
    expect(badUser.status).toBe(400);
    const nobody = await postGateway(init, {});
    expect(nobody.status).toBe(401);
    expect((await fetch(`${reg.url}/gateway/mcp`, { headers: { authorization: `Bearer ${annKey}` } })).status).toBe(405);
  });

  it("a missing credential fails with a one-time connect link; the token pasted there is used for the user's calls only", async () => {
    const client = await gatewayClient(annKey);
    const missing = (await client.callTool({ name: "notes__whoami", arguments: {} })) as CallToolResult;
    expect(missing.isError).toBe(true);
    const link = /Open (\S+) \(one use, valid 10 minutes\)/.exec(text(missing))?.[1];
    expect(text(missing)).toMatch(/^Service "notes" needs your credential and none is stored for user "ann"\. Open http:\/\/127\.0\.0\.1:\d+\/connect\/[A-Za-z0-9_-]{43} /);
    expect(seen.filter((s) => s.method === "tools/call")).toHaveLength(0);

    const form = await fetch(link!);
    expect(form.status).toBe(200);
    expect(form.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(await form.text()).toContain('<input id="token" name="token" type="password" required autofocus>');
    const saved = await fetch(link!, { method: "POST", body: new URLSearchParams({ token: " ann-token-1 " }) });
    expect(saved.status).toBe(200);
    expect(await saved.text()).toContain("Your credential for <strong>notes</strong> is stored.");
    // Spent: neither shown nor usable again.
    expect((await fetch(link!)).status).toBe(404);
    expect((await fetch(link!, { method: "POST", body: new URLSearchParams({ token: "bob-token-2" }) })).status).toBe(404);

    expect(text((await client.callTool({ name: "notes__whoami", arguments: {} })) as CallToolResult)).toBe("ann");
    const calls = seen.filter((s) => s.method === "tools/call");
    expect(calls.map((s) => s.authorization)).toEqual(["Bearer ann-token-1"]);
  });

  it("relays results unchanged and passes arguments through untouched", async () => {
    const client = await gatewayClient(annKey);
    const args = { text: "héllo", nested: { list: [1, null, true] } };
    const echoed = (await client.callTool({ name: "notes__echo", arguments: args })) as CallToolResult;
    expect(echoed).toEqual({
      content: [
        { type: "text", text: JSON.stringify(args) },
        { type: "image", data: "iVBORw0KGgo=", mimeType: "image/png" },
        { type: "resource_link", uri: "notes://1", name: "note 1" },
      ],
      structuredContent: { echoed: args },
    });
    expect(seen.findLast((s) => s.tool === "echo")?.args).toEqual(args);
    expect(await client.callTool({ name: "notes__fail", arguments: {} })).toEqual({ isError: true, content: [{ type: "text", text: "it failed downstream" }] });
    expect(text((await client.callTool({ name: "open__ping", arguments: {} })) as CallToolResult)).toBe("pong");
    // The service needing no authorization gets no Authorization header at all: never the gateway's own key.
    expect(seen.filter((s) => s.tool === "ping").map((s) => s.authorization)).toEqual([null]);
    expect(seen.every((s) => s.authorization === null || Object.hasOwn(TOKENS, s.authorization.replace("Bearer ", "")))).toBe(true);
  });

  it("reuses one downstream session per user and credential, and never shares one between users", async () => {
    await call(admin, "authorize_user_to_service", { service_name: "notes", user_id: "bob", token: "bob-token-2" });
    const initsBefore = seen.filter((s) => s.method === "initialize").length;
    const ann = await gatewayClient(annKey);
    const bob = await gatewayClient(AGENT, { "x-registry-user": "bob" });
    const answers = await Promise.all([ann, bob, ann, bob, ann].map(async (c) => text((await c.callTool({ name: "notes__whoami", arguments: {} })) as CallToolResult)));
    expect(answers).toEqual(["ann", "bob", "ann", "bob", "ann"]);
    const inits = seen.filter((s) => s.method === "initialize").slice(initsBefore);
    // Ann's session was opened by the earlier tests; Bob's is new, and his token is in it.
    expect(inits.map((s) => s.authorization)).toEqual(["Bearer bob-token-2"]);
  });

  it("a detach takes effect at the next call; an unknown tool is refused; both are audited", async () => {
    const client = await gatewayClient(annKey);
    expect(text((await client.callTool({ name: "notes__whoami", arguments: {} })) as CallToolResult)).toBe("ann");
    await call(admin, "detach_role_from_tool", { tool_id: await toolId("notes", "whoami"), role_name: "staff" });
    const refused = (await client.callTool({ name: "notes__whoami", arguments: {} })) as CallToolResult;
    expect(refused).toEqual({
      isError: true,
      content: [{ type: "text", text: 'No tool "notes__whoami" for user "ann": the gateway offers only the tools attached to the user\'s role (tools/list)' }],
    });
    expect((await client.listTools()).tools.map((t) => t.name)).not.toContain("notes__whoami");
    const secret = (await client.callTool({ name: "notes__secret", arguments: {} })) as CallToolResult;
    expect(secret.isError).toBe(true);
    expect(seen.some((s) => s.tool === "secret")).toBe(false);
    await call(admin, "attach_role_to_tool", { tool_id: await toolId("notes", "whoami"), role_name: "staff" });
    const events = await audit("gateway_call");
    expect(events[0]).toEqual({
      id: expect.any(Number),
      at: expect.any(String),
      actor: "user-key:ann/laptop",
      action: "gateway_call",
      target: "user_id=ann tool=notes__secret",
      outcome: "not_found",
      detail: expect.stringMatching(/^duration_ms=\d+$/),
    });
    expect(events[2]).toMatchObject({ actor: "user-key:ann/laptop", target: "service_name=notes user_id=ann tool=whoami", outcome: "ok" });
    // Never an argument, a result or a token.
    const all = JSON.stringify(events);
    for (const secretText of ["héllo", "ann-token-1", "bob-token-2", annKey, "it failed downstream"]) expect(all).not.toContain(secretText);
  });

  it("a slow or unreachable service is a tool error naming it", async () => {
    const client = await gatewayClient(annKey);
    const slow = (await client.callTool({ name: "notes__slow", arguments: {} })) as CallToolResult;
    expect(slow).toEqual({ isError: true, content: [{ type: "text", text: 'Service "notes" could not be reached: no answer within 2 s (REGISTRY_GATEWAY_TIMEOUT)' }] });
    // The session survives a slow call: the next call on it works.
    expect(text((await client.callTool({ name: "notes__whoami", arguments: {} })) as CallToolResult)).toBe("ann");
    await open.stop();
    const down = (await client.callTool({ name: "open__ping", arguments: {} })) as CallToolResult;
    expect(down.isError).toBe(true);
    expect(text(down)).toMatch(/^Service "open" could not be reached: /);
    expect((await audit("gateway_call")).slice(0, 3).map((e) => e.outcome)).toEqual(["unavailable", "ok", "timeout"]);
  });

  it("a client declaring URL-mode elicitation gets the spec's URLElicitationRequired error with the link", async () => {
    await call(admin, "revoke_user_token", { service_name: "notes", user_id: "bob" });
    const client = await gatewayClient(AGENT, { "x-registry-user": "bob" }, { elicitation: { url: {} } });
    const err = await client.callTool({ name: "notes__whoami", arguments: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(-32042);
    const elicitation = ((err as McpError).data as { elicitations: { mode: string; url: string; message: string; elicitationId: string }[] }).elicitations[0];
    expect(elicitation).toMatchObject({ mode: "url", url: expect.stringMatching(/\/connect\/[A-Za-z0-9_-]{43}$/), elicitationId: expect.any(String) });
    expect(elicitation.message).toContain(elicitation.url);
    expect((await fetch(elicitation.url)).status).toBe(200);
  });

  it("a revoked user key is refused at the next request", async () => {
    const key = (await call(admin, "create_user_key", { user_id: "bob", label: "phone" })).structuredContent!.key as string;
    const client = await gatewayClient(key);
    expect((await client.listTools()).tools.length).toBeGreaterThan(0);
    expect(text(await call(admin, "revoke_user_key", { user_id: "bob", label: "phone" }))).toBe('Key "phone" of user "bob" revoked.');
    await expect(client.listTools()).rejects.toThrow(/Invalid API key/);
    expect(text(await call(admin, "revoke_user_key", { user_id: "bob", label: "phone" }))).toBe(
      'Cannot revoke the key labelled "phone" of user "bob": the user has no key with that label',
    );
  });

  it("the agent's /mcp client cannot see or call the key tools", async () => {
    const agent = await connectClient(`${reg.url}/mcp`, AGENT);
    clients.push(agent);
    const names = (await agent.listTools()).tools.map((t) => t.name);
    expect(names).not.toContain("create_user_key");
    expect((await call(agent, "create_user_key", { user_id: "ann" })).isError).toBe(true);
  });
});

// docs/gateway.md shows these exchanges verbatim (keys, links, times and ids differ).
describe("docs/gateway.md", () => {
  let reg: TestRegistry;
  let notes: Awaited<ReturnType<typeof startTestMcpServer>>;
  beforeAll(async () => {
    [reg, notes] = await Promise.all([
      startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT }),
      startTestMcpServer({
        setup(server) {
          server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: "whoami", description: "Who is calling", inputSchema: { type: "object" as const } }] }));
          server.setRequestHandler(CallToolRequestSchema, (_req, extra) => ({ content: [{ type: "text", text: String(extra.requestInfo?.headers.authorization) }] }));
        },
      }),
    ]);
  });
  afterAll(async () => {
    await reg?.stop();
    await notes?.stop();
  });

  it("the user key, tools/list, a missing credential, a call as the agent, the refusals and the audit", async () => {
    const admin = await reg.client(ADMIN);
    await call(admin, "add_service", { service_name: "notes", endpoint: notes.url, description: "Notes", requires_authorization: true, method_authorization: "Bearer" });
    await call(admin, "create_role", { role_name: "staff" });
    await call(admin, "attach_role_to_tool", { tool_id: 1, role_name: "staff" });
    await call(admin, "assign_role_to_user", { user_id: "ann", role_name: "staff" });
    const created = await call(admin, "create_user_key", { user_id: "ann", label: "laptop" });
    const key = created.structuredContent!.key as string;
    expect(text(created)).toBe(`Key "laptop" for user "ann": ${key} (shown only now: give it to the user; it opens only the gateway and the registry API)`);

    const rpc = async (body: object, headers: Record<string, string>, path = "/gateway/mcp") => {
      const res = await reg.http(path, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25", ...headers },
        body: JSON.stringify({ jsonrpc: "2.0", ...body }),
      });
      return { status: res.status, body: await res.text() };
    };
    const asAnn = { authorization: `Bearer ${key}` };
    expect(await rpc({ id: 2, method: "tools/list" }, asAnn)).toEqual({
      status: 200,
      body: '{"result":{"tools":[{"name":"notes__whoami","description":"Who is calling","inputSchema":{"type":"object"}}]},"jsonrpc":"2.0","id":2}',
    });
    // The trailing-slash spelling is the same endpoint.
    expect((await rpc({ id: 2, method: "tools/list" }, asAnn, "/gateway/mcp/")).body).toContain("notes__whoami");
    const missing = await rpc({ id: 3, method: "tools/call", params: { name: "notes__whoami", arguments: {} } }, asAnn);
    expect(missing.body).toMatch(
      /^\{"result":\{"content":\[\{"type":"text","text":"Service \\"notes\\" needs your credential and none is stored for user \\"ann\\"\. Open http:\/\/127\.0\.0\.1:\d+\/connect\/[A-Za-z0-9_-]{43} \(one use, valid 10 minutes\), paste your token, then call the tool again\."\}\],"isError":true\},"jsonrpc":"2\.0","id":3\}$/,
    );
    await call(admin, "authorize_user_to_service", { service_name: "notes", user_id: "ann", token: "ann-token-1" });
    const asAgent = { authorization: `Bearer ${AGENT}`, "x-registry-user": "ann" };
    expect(await rpc({ id: 4, method: "tools/call", params: { name: "notes__whoami", arguments: {} } }, asAgent)).toEqual({
      status: 200,
      body: '{"result":{"content":[{"type":"text","text":"Bearer ann-token-1"}]},"jsonrpc":"2.0","id":4}',
    });
    expect(await rpc({ id: 5, method: "tools/list" }, { authorization: `Bearer ${AGENT}` })).toEqual({
      status: 400,
      body: '{"error":{"code":"invalid_input","message":"The gateway acts for one user: with an agent key, name the user in the X-Registry-User header"}}',
    });
    const token = await reg.http("/token?service_name=notes&user_id=ann", { key });
    expect({ status: token.status, body: await token.text() }).toEqual({
      status: 403,
      body: '{"error":{"code":"forbidden","message":"A user key opens only the gateway (POST /gateway/mcp) and the registry API (GET /v0.1/servers)"}}',
    });
    const keys = await call(admin, "list_user_keys", { user_id: "ann" });
    expect(keys.structuredContent).toEqual({ keys: [{ user_id: "ann", label: "laptop", created_at: expect.any(String), last_used_at: expect.any(String) }] });
    const events = ((await call(admin, "list_audit_events", { action: "gateway_call" })).structuredContent as { events: object[] }).events;
    expect(events).toEqual([
      {
        id: expect.any(Number),
        at: expect.any(String),
        actor: expect.stringMatching(/^agent:[0-9a-f]{8}$/),
        action: "gateway_call",
        target: "service_name=notes user_id=ann tool=whoami",
        outcome: "ok",
        detail: expect.stringMatching(/^duration_ms=\d+$/),
      },
      {
        id: expect.any(Number),
        at: expect.any(String),
        actor: "user-key:ann/laptop",
        action: "gateway_call",
        target: "service_name=notes user_id=ann tool=whoami",
        outcome: "token_missing",
        detail: expect.stringMatching(/^duration_ms=\d+$/),
      },
    ]);
  });
});

/**
 * A stateful downstream (sessions, answers as SSE streams, as the SDK's default server does): the gateway
 * keeps using its session, and when the service forgets it (a restart: HTTP 404 for the session id) the
 * gateway initializes once more and the call still succeeds.
 */
describe("a stateful service that answers in SSE and forgets sessions", () => {
  it("calls on one session, and opens a new one when the service no longer knows it", async () => {
    const { WebStandardStreamableHTTPServerTransport } = await import("@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js");
    const { Server } = await import("@modelcontextprotocol/sdk/server/index.js");
    const { serve } = await import("@hono/node-server");
    const sessions = new Map<string, InstanceType<typeof WebStandardStreamableHTTPServerTransport>>();
    let initializations = 0;
    const http = serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: async (req) => {
        const id = req.headers.get("mcp-session-id");
        if (id) return sessions.get(id)?.handleRequest(req) ?? new Response("unknown session", { status: 404 });
        initializations++;
        const transport = new WebStandardStreamableHTTPServerTransport({
          sessionIdGenerator: () => crypto.randomUUID(),
          onsessioninitialized: (sid) => void sessions.set(sid, transport),
        });
        const server = new Server({ name: "stateful", version: "1" }, { capabilities: { tools: {} } });
        server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: "count", inputSchema: { type: "object" as const } }] }));
        server.setRequestHandler(CallToolRequestSchema, () => ({ content: [{ type: "text", text: `sessions ${sessions.size}` }] }));
        await server.connect(transport);
        return transport.handleRequest(req);
      },
    });
    await new Promise((r) => http.once("listening", r));
    const url = `http://127.0.0.1:${(http.address() as { port: number }).port}/mcp`;
    const reg = await startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT });
    try {
      const admin = await reg.client(ADMIN);
      await call(admin, "add_service", { service_name: "stateful", endpoint: url, description: "" });
      await call(admin, "create_role", { role_name: "r" });
      await call(admin, "attach_role_to_tool", { tool_id: 1, role_name: "r" });
      await call(admin, "assign_role_to_user", { user_id: "ann", role_name: "r" });
      const asAnn = await connectClient(`${reg.url}/gateway/mcp`, AGENT, { headers: { "x-registry-user": "ann" } });
      const before = initializations;
      expect(text((await asAnn.callTool({ name: "stateful__count", arguments: {} })) as CallToolResult)).toMatch(/^sessions \d+$/);
      expect(text((await asAnn.callTool({ name: "stateful__count", arguments: {} })) as CallToolResult)).toMatch(/^sessions \d+$/);
      expect(initializations).toBe(before + 1);
      sessions.clear();
      expect(text((await asAnn.callTool({ name: "stateful__count", arguments: {} })) as CallToolResult)).toBe("sessions 1");
      expect(initializations).toBe(before + 2);
      await asAnn.close();
    } finally {
      await reg.stop();
      await new Promise<void>((r) => http.close(() => r()));
    }
  });
});
