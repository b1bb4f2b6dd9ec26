/**
 * The official MCP Registry API (v0.1) as its callers use it: an admin or agent browsing every service, a
 * user (a user key, or an agent with X-Registry-User) seeing only what the role reaches plus the gateway.
 * Every answer is checked against the spec's shapes (test/registry_shapes.ts, written from the spec, not
 * from our schemas). Downstream are real SDK servers and server-everything.
 */
import { readFileSync } from "node:fs";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serverName } from "../features/registry_api/servers.ts";
import { assertShape, checkError, checkServerList, checkServerResponse } from "./registry_shapes.ts";
import { call, connectClient, type Spawned, startEverything, startTestMcpServer, startTestRegistry, type TestRegistry, text } from "./helpers.ts";

const ADMIN = "admin-key-0123456789abcdef";
const AGENT = "agent-key-0123456789abcdef";
const META = "local.mcp-registry/registry";
const NS = "local.mcp-registry";

type Listed = {
  servers: { server: Record<string, unknown> & { name: string; version: string }; _meta: Record<string, Record<string, unknown>> }[];
  metadata: { nextCursor?: string; count: number };
};

/** A test service with tools `names` reporting `version` (both may change while the test runs). */
function service(state: { names: string[]; version: string; description?: string }) {
  return startTestMcpServer({
    version: () => state.version,
    instructions: state.description,
    setup(server) {
      server.setRequestHandler(ListToolsRequestSchema, () => ({
        tools: state.names.map((name) => ({ name, description: `The ${name} tool`, inputSchema: { type: "object" as const } })),
      }));
      server.setRequestHandler(CallToolRequestSchema, (req) => ({ content: [{ type: "text", text: `called ${req.params.name}` }] }));
    },
  });
}

describe("GET /v0.1/servers and its versions", () => {
  let reg: TestRegistry;
  let everything: Spawned;
  const weatherState = { names: ["forecast", "alerts"], version: "2.1.0" };
  const notesState = { names: ["write"], version: "^1.2" };
  const oddState = { names: ["one"], version: "1.0.0", description: "x".repeat(300) };
  let servers: Awaited<ReturnType<typeof service>>[];
  let userKey: string;
  const get = async (path: string, key: string | undefined = ADMIN, headers: Record<string, string> = {}) => {
    const res = await reg.http(path, { key, headers });
    return {
      status: res.status,
      body: (await res.json()) as Listed & { error?: string; server?: Listed["servers"][0]["server"]; _meta?: Record<string, Record<string, unknown>> },
      res,
    };
  };

  beforeAll(async () => {
    [reg, everything, ...servers] = await Promise.all([
      startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT }),
      startEverything(),
      service(weatherState),
      service(notesState),
      service(oddState),
    ]);
    const admin = await reg.client(ADMIN);
    const add = async (args: Record<string, unknown>) => expect((await call(admin, "add_service", args)).isError, JSON.stringify(args)).toBeFalsy();
    await add({ service_name: "weather", endpoint: servers[0].url, description: "Forecasts", requires_authorization: true, method_authorization: "Bearer" });
    await add({ service_name: "notes", endpoint: servers[1].url, description: "Notes" });
    await add({ service_name: "Ünïcode name/with slash", endpoint: servers[2].url });
    await add({ service_name: "everything", endpoint: everything.url, description: "The everything server" });
    await call(admin, "create_role", { role_name: "reader" });
    const tools = (await call(admin, "get_tools", { service_name: "weather" })).structuredContent!.tools as { id: number; name: string }[];
    await call(admin, "attach_role_to_tool", { tool_id: tools.find((t) => t.name === "forecast")!.id, role_name: "reader" });
    await call(admin, "assign_role_to_user", { user_id: "ann", role_name: "reader" });
    await call(admin, "register_user", { user_id: "bob" });
    await call(admin, "authorize_user_to_service", { service_name: "weather", user_id: "ann", token: "ann-secret-token-123" });
    userKey = (await call(admin, "create_user_key", { user_id: "ann" })).structuredContent!.key as string;
  }, 60_000);
  afterAll(async () => {
    await reg?.stop();
    await everything?.stop();
    await Promise.all((servers ?? []).map((s) => s.stop()));
  });

  it("refuses an anonymous caller with 401, WWW-Authenticate and the spec's {error}", async () => {
    for (const path of ["/v0.1/servers", `/v0.1/servers/${NS}%2Fweather/versions`, `/v0.1/servers/${NS}%2Fweather/versions/latest`]) {
      const { status, body, res } = await get(path, "");
      expect(status, path).toBe(401);
      expect(res.headers.get("www-authenticate")).toBe('Bearer realm="mcp-registry"');
      assertShape(checkError(body), path);
      expect(body).toEqual({ error: "Authentication required: send Authorization: Bearer <key>" });
    }
    expect((await get("/v0.1/servers", "not-a-key-0123456789")).body).toEqual({ error: "Invalid API key" });
  });

  it("lists every service for an admin and an agent, in the official shape, by name", async () => {
    for (const key of [ADMIN, AGENT]) {
      const { status, body } = await get("/v0.1/servers", key);
      expect(status).toBe(200);
      assertShape(checkServerList(body), "the list");
      expect(body.servers.map((s) => s.server.name)).toEqual([
        `${NS}/everything`,
        `${NS}/notes`,
        `${NS}/weather`,
        expect.stringMatching(new RegExp(`^${NS}/-n-code-name-with-slash-[0-9a-f]{8}$`)),
      ]);
      expect(body.metadata).toEqual({ count: 4 });
    }
  });

  it("describes each service: remote, version from serverInfo (or the fallback), description cut to 100, the credential as a secret input", async () => {
    const { body } = await get("/v0.1/servers");
    const byService = Object.fromEntries(body.servers.map((s) => [s._meta[META].service_name, s]));
    expect(byService.weather).toEqual({
      server: {
        name: `${NS}/weather`,
        description: "Forecasts",
        version: "2.1.0",
        remotes: [
          {
            type: "streamable-http",
            url: servers[0].url,
            headers: [
              {
                name: "Authorization",
                description: 'Bearer and your credential for service "weather" (agents: GET /token)',
                isRequired: true,
                isSecret: true,
                value: "Bearer {token}",
                variables: { token: { description: 'your credential for service "weather" (agents: GET /token)', isRequired: true, isSecret: true } },
              },
            ],
          },
        ],
      },
      _meta: {
        [META]: {
          service_name: "weather",
          tools: 2,
          status: "ok",
          last_discovered_at: expect.any(String),
          published_at: expect.any(String),
          updated_at: expect.any(String),
          is_latest: true,
        },
      },
    });
    // A range is not a version: the fallback stands in.
    expect(byService.notes.server).toEqual({ name: `${NS}/notes`, description: "Notes", version: "0.0.0", remotes: [{ type: "streamable-http", url: servers[1].url }] });
    const odd = byService["Ünïcode name/with slash"].server;
    expect(Array.from(odd.description as string)).toHaveLength(100);
    expect(odd.description).toBe(`${"x".repeat(99)}…`);
    expect(byService.everything.server.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(byService.everything._meta[META].tools).toBeGreaterThan(5);
    // No stored secret is ever in an answer.
    expect(JSON.stringify(body)).not.toContain("ann-secret-token-123");
  });

  it("pages with limit and opaque cursors, and refuses a bad limit or cursor with 400 {error}", async () => {
    const all = (await get("/v0.1/servers")).body.servers.map((s) => s.server.name);
    const walked: string[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const { body } = await get(`/v0.1/servers?limit=1${cursor ? `&cursor=${cursor}` : ""}`);
      assertShape(checkServerList(body), `page ${pages}`);
      expect(body.metadata.count).toBe(1);
      walked.push(...body.servers.map((s) => s.server.name));
      cursor = body.metadata.nextCursor;
      if (!cursor) break;
    }
    expect(walked).toEqual(all);
    const three = (await get("/v0.1/servers?limit=3")).body;
    expect(three.servers).toHaveLength(3);
    expect((await get(`/v0.1/servers?cursor=${three.metadata.nextCursor}`)).body.servers.map((s) => s.server.name)).toEqual(all.slice(3));
    for (const [query, message] of [
      ["limit=0", "Cannot list servers: limit: must be an integer from 1 to 100"],
      ["limit=101", "Cannot list servers: limit: must be an integer from 1 to 100"],
      ["limit=abc", "Cannot list servers: limit: must be an integer from 1 to 100"],
      ["cursor=bm9wZQ", "Cannot list servers: cursor: is not a cursor this registry gave"],
      ["updated_since=yesterday", "Cannot list servers: updated_since: must be an RFC 3339 date-time, e.g. 2025-08-07T13:15:04Z"],
      ["include_deleted=maybe", 'Cannot list servers: include_deleted: must be "true" or "false"'],
    ]) {
      const { status, body } = await get(`/v0.1/servers?${query}`);
      expect({ status, body }, query).toEqual({ status: 400, body: { error: message } });
    }
  });

  it("searches names by substring (any case), filters by version and by updated_since", async () => {
    const names = async (query: string) => (await get(`/v0.1/servers?${query}`)).body.servers.map((s) => s.server.name);
    expect(await names("search=WEATH")).toEqual([`${NS}/weather`]);
    expect(await names(`search=${NS}/n`)).toEqual([`${NS}/notes`]);
    expect(await names("search=nothing-like-this")).toEqual([]);
    expect(await names("version=2.1.0")).toEqual([`${NS}/weather`]);
    expect(await names("version=latest")).toHaveLength(4);
    expect(await names("updated_since=2000-01-01T00:00:00Z")).toHaveLength(4);
    const before = new Date().toISOString();
    expect(await names(`updated_since=${before}`)).toEqual([]);
    // A new version and a new tool downstream: the refresh updates the entry, which then counts as updated.
    weatherState.version = "2.2.0";
    weatherState.names.push("radar");
    const admin = await reg.client(ADMIN);
    expect(text(await call(admin, "refresh_service", { service_name: "weather" }))).toContain('added "radar"');
    expect(await names(`updated_since=${encodeURIComponent(before.replace("Z", "+00:00"))}`)).toEqual([`${NS}/weather`]);
    expect((await get(`/v0.1/servers/${NS}%2Fweather/versions/latest`)).body.server!.version).toBe("2.2.0");
  });

  it("answers one server's versions and one version, its name URL-encoded (or in two segments); 404 {error} otherwise", async () => {
    const versions = await get(`/v0.1/servers/${NS}%2Fnotes/versions`);
    assertShape(checkServerList(versions.body), "versions");
    expect(versions.body.servers.map((s) => [s.server.name, s.server.version])).toEqual([[`${NS}/notes`, "0.0.0"]]);
    expect(versions.body.metadata).toEqual({ count: 1 });
    for (const path of [`/v0.1/servers/${NS}%2Fnotes/versions/latest`, `/v0.1/servers/${NS}%2Fnotes/versions/0.0.0`, `/v0.1/servers/${NS}/notes/versions/latest`]) {
      const { status, body } = await get(path);
      expect(status, path).toBe(200);
      assertShape(checkServerResponse(body), path);
      expect(body.server!.name).toBe(`${NS}/notes`);
    }
    const odd = (await get("/v0.1/servers?search=code")).body.servers[0].server.name;
    expect((await get(`/v0.1/servers/${encodeURIComponent(odd)}/versions/latest`)).body._meta![META].service_name).toBe("Ünïcode name/with slash");
    for (const [path, error] of [
      [`/v0.1/servers/${NS}%2Fnope/versions`, "Server not found"],
      [`/v0.1/servers/other.ns%2Fnotes/versions/latest`, "Server not found"],
      [`/v0.1/servers/${NS}%2Fnotes/versions/9.9.9`, "Server version not found"],
      [`/v0.1/servers/${NS}%2Fgateway/versions/latest`, "Server not found"],
      [`/v0.1/servers/${NS}%2F${"a".repeat(5000)}/versions`, "Server not found"],
      [`/v0.1/servers/${NS}%2Fnotes`, `No route for GET /v0.1/servers/${NS}%2Fnotes`],
    ]) {
      const { status, body } = await get(path);
      expect({ status, body }, path).toEqual({ status: 404, body: { error: error } });
    }
  });

  it("shows a user only the services the role reaches, with the gateway as a server of its own", async () => {
    const asUser = await get("/v0.1/servers", userKey);
    const asAgent = await get("/v0.1/servers", AGENT, { "x-registry-user": "ann" });
    expect(asAgent.body).toEqual(asUser.body);
    assertShape(checkServerList(asUser.body), "ann's list");
    expect(asUser.body.servers.map((s) => s.server.name)).toEqual([`${NS}/gateway`, `${NS}/weather`]);
    const [gateway, weather] = asUser.body.servers;
    expect(gateway.server).toEqual({
      name: `${NS}/gateway`,
      title: "Gateway",
      description: "Every tool your role may use, from every service, behind one MCP endpoint with your own credentials",
      version: "0.1.0",
      remotes: [
        {
          type: "streamable-http",
          url: `${reg.url}/gateway/mcp`,
          headers: [
            {
              name: "Authorization",
              description: "Bearer and your user key (create_user_key)",
              isRequired: true,
              isSecret: true,
              value: "Bearer {token}",
              variables: { token: { description: "your user key (create_user_key)", isRequired: true, isSecret: true } },
            },
          ],
        },
      ],
    });
    expect(gateway._meta[META]).toEqual({ gateway: true, user_id: "ann", tools: 1, updated_at: expect.any(String), is_latest: true });
    // The role reaches one of weather's tools.
    expect(weather._meta[META].tools).toBe(1);
    // The same entries one by one; a service the role does not reach is not found.
    expect((await get(`/v0.1/servers/${NS}%2Fgateway/versions/latest`, userKey)).body.server).toEqual(gateway.server);
    expect((await get(`/v0.1/servers/${NS}%2Fweather/versions`, userKey)).body.servers[0]).toEqual(weather);
    expect(await get(`/v0.1/servers/${NS}%2Fnotes/versions/latest`, userKey).then((r) => [r.status, r.body])).toEqual([404, { error: "Server not found" }]);
    // Paging over the gateway too.
    const first = (await get("/v0.1/servers?limit=1", userKey)).body;
    expect(first.servers.map((s) => s.server.name)).toEqual([`${NS}/gateway`]);
    expect((await get(`/v0.1/servers?limit=1&cursor=${first.metadata.nextCursor}`, userKey)).body.servers.map((s) => s.server.name)).toEqual([`${NS}/weather`]);
  });

  it("the gateway entry's remote works with the user's key; a user without a role sees nothing", async () => {
    const { body } = await get("/v0.1/servers?search=gateway", userKey);
    const remote = body.servers[0].server.remotes as { url: string }[];
    const client = await connectClient(remote[0].url, userKey);
    try {
      expect((await client.listTools()).tools.map((t) => t.name)).toEqual(["weather__forecast"]);
    } finally {
      await client.close();
    }
    for (const user of ["bob", "nobody-at-all"]) {
      const { status, body: none } = await get("/v0.1/servers", AGENT, { "x-registry-user": user });
      expect({ status, none }, user).toEqual({ status: 200, none: { servers: [], metadata: { count: 0 } } });
    }
  });

  it("refuses a user key acting for someone else, and a user key elsewhere", async () => {
    const other = await get("/v0.1/servers", userKey, { "x-registry-user": "bob" });
    expect({ status: other.status, body: other.body }).toEqual({
      status: 403,
      body: { error: 'This user key acts only for user "ann": leave out X-Registry-User or send that user' },
    });
    const res = await reg.http("/list_services", { key: userKey });
    expect(res.status).toBe(403);
    // Not a read of the registry API: the user key is refused, and an agent may not call it either.
    expect((await reg.http("/v0.1/servers", { key: userKey, method: "POST" })).status).toBe(403);
    const post = await reg.http("/v0.1/servers", { key: AGENT, method: "POST" });
    expect({ status: post.status, body: await post.json() }).toEqual({ status: 403, body: { error: "The agent key may not call POST /v0.1/servers" } });
  });
});

/**
 * docs/registry_api.md, replayed: each `sh` block (a curl command) is sent to a real registry and its answer
 * compared with the `json` block after it. Times, ports and the user key differ; the import runs first, as
 * the page says.
 */
describe("GET /v0.1/servers over many services", () => {
  // More services than one read takes (features/registry_api/servers.ts reads 200 rows at a time for a
  // filtered list): pages must neither skip nor repeat an entry where the reads meet.
  const COUNT = 650;
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT, REGISTRY_REFRESH_INTERVAL: "0" });
    const { services, tools, roles, toolRoles, users } = reg.ctx.tables;
    const names = Array.from({ length: COUNT }, (_, i) => `svc-${String(i).padStart(4, "0")}${i % 7 === 0 ? "-maps" : ""}`);
    const ids: number[] = [];
    for (let i = 0; i < COUNT; i += 100) {
      const slice = names.slice(i, i + 100).map((name) => ({ name, endpoint: `http://127.0.0.1:9/${name}/mcp`, transport: "streamable_http" as const }));
      ids.push(...(await reg.ctx.db.insert(services).values(slice).returning({ id: services.id })).map((r) => r.id));
    }
    const toolIds = (
      await reg.ctx.db
        .insert(tools)
        .values(ids.map((serviceId) => ({ serviceId, name: "look", description: "Looks" })))
        .returning({ id: tools.id })
    ).map((r) => r.id);
    const [role] = await reg.ctx.db.insert(roles).values({ name: "third" }).returning({ id: roles.id });
    // The role reaches every third service.
    await reg.ctx.db.insert(toolRoles).values(toolIds.filter((_, i) => i % 3 === 0).map((toolId) => ({ toolId, roleId: role.id })));
    await reg.ctx.db.insert(users).values({ userId: "tess", roleId: role.id });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  // Every page of a listing, following nextCursor: the names in order, and each page's size.
  async function pages(query: string, headers: Record<string, string> = {}) {
    const names: string[] = [];
    const sizes: number[] = [];
    let cursor: string | undefined;
    do {
      const res = await reg.http(`/v0.1/servers?${query}${cursor ? `&cursor=${cursor}` : ""}`, { key: AGENT, headers });
      expect(res.status).toBe(200);
      const body = (await res.json()) as Listed;
      checkServerList(body);
      names.push(...body.servers.map((s) => s.server.name));
      sizes.push(body.metadata.count);
      cursor = body.metadata.nextCursor;
    } while (cursor);
    return { names, sizes };
  }
  const all = Array.from({ length: COUNT }, (_, i) => `${NS}/svc-${String(i).padStart(4, "0")}${i % 7 === 0 ? "-maps" : ""}`);

  it("pages through a user's view, a search and both, each entry once and in order", async () => {
    const user = await pages("limit=30", { "x-registry-user": "tess" });
    expect(user.names).toEqual([`${NS}/gateway`, ...all.filter((_, i) => i % 3 === 0)]);
    expect(user.sizes.slice(0, -1).every((n) => n === 30)).toBe(true);
    // 100 a page: each page takes more than one read, and rows where reads meet are the role's.
    expect((await pages("limit=100", { "x-registry-user": "tess" })).names).toEqual(user.names);
    const search = await pages("limit=40&search=MAPS");
    expect(search.names).toEqual(all.filter((_, i) => i % 7 === 0));
    const both = await pages("limit=7&search=-maps", { "x-registry-user": "tess" });
    expect(both.names).toEqual(all.filter((_, i) => i % 21 === 0));
    const plain = await pages("limit=100");
    expect(plain.names).toEqual(all);
  });
});

describe("docs/registry_api.md", () => {
  const DOC_KEY = "mcpr_user_bjZd-ApP8wUwXJFJPh5pLeWhSqeYYrMac8MF5mAvDg0";
  const DOC_TIME = "2026-12-01T12:00:00.000Z";
  let reg: TestRegistry;
  let weather: Awaited<ReturnType<typeof service>>;
  let notes: Awaited<ReturnType<typeof service>>;
  let key: string;
  const page = readFileSync(new URL("../docs/registry_api.md", import.meta.url), "utf8");
  const exchanges = [...page.matchAll(/```sh\n(curl[\s\S]*?)```\s*```json\n([\s\S]*?)```/g)].map(([, command, answer]) => ({ command, answer }));

  beforeAll(async () => {
    [reg, weather, notes] = await Promise.all([
      startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT, REGISTRY_PUBLIC_URL: "http://127.0.0.1:8000" }),
      service({ names: ["forecast", "alerts"], version: "2.1.0" }),
      service({ names: ["write"], version: "1.0.0" }),
    ]);
    const admin = await reg.client(ADMIN);
    await call(admin, "add_service", {
      service_name: "weather",
      endpoint: weather.url,
      description: "Weather forecasts",
      requires_authorization: true,
      method_authorization: "Bearer",
    });
    await call(admin, "create_role", { role_name: "reader" });
    const tools = (await call(admin, "get_tools", { service_name: "weather" })).structuredContent!.tools as { id: number; name: string }[];
    await call(admin, "attach_role_to_tool", { tool_id: tools.find((t) => t.name === "forecast")!.id, role_name: "reader" });
    await call(admin, "assign_role_to_user", { user_id: "ann", role_name: "reader" });
    key = (await call(admin, "create_user_key", { user_id: "ann" })).structuredContent!.key as string;
  });
  afterAll(async () => {
    await reg?.stop();
    await weather?.stop();
    await notes?.stop();
  });

  // The page's addresses and key as this run has them, and back.
  const pairs = () => [
    ["http://127.0.0.1:3001/mcp", weather.url],
    ["http://127.0.0.1:3002/mcp", notes.url],
    [DOC_KEY, key],
  ];
  const real = (s: string) => pairs().reduce((t, [doc, run]) => t.replaceAll(doc, run), s);
  const documented = (s: string) =>
    pairs()
      .reduce((t, [doc, run]) => t.replaceAll(run, doc), s)
      .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, DOC_TIME);

  async function send(command: string): Promise<unknown> {
    const url = /curl -s '([^']+)'/.exec(command)![1].replace("http://127.0.0.1:8000", reg.url);
    const headers = Object.fromEntries([...command.matchAll(/-H '([^:]+): ([^']*)'/g)].map(([, name, value]) => [name, real(value)]));
    const data = /-d '([^']*)'/.exec(command)?.[1];
    const res = await fetch(url, { method: data ? "POST" : "GET", headers, body: data ? real(data) : undefined });
    return JSON.parse(documented(await res.text()));
  }

  it("has the exchanges it documents, the import first", async () => {
    expect(exchanges.length).toBeGreaterThanOrEqual(6);
    const ordered = [...exchanges.filter((e) => e.command.includes("import_servers")), ...exchanges.filter((e) => !e.command.includes("import_servers"))];
    for (const { command, answer } of ordered) expect(await send(command), command).toEqual(JSON.parse(answer));
    // "The same call again answers …".
    const again = (await send(ordered[0].command)) as { result: { content: { text: string }[] } };
    expect(again.result.content[0].text).toBe('Imported from server.json "io.github.example/notes": 0 added; 1 unchanged: "io.github.example.notes"; 0 skipped.');
    expect(page).toContain('The same call again answers `0 added; 1 unchanged: "io.github.example.notes"; 0 skipped.`');
  });

  it("names a service outside the pattern as the page says", () => {
    expect(page).toContain(`\`Ünïcode name\` → \`${serverName("local.mcp-registry", "Ünïcode name")}\``);
  });
});
