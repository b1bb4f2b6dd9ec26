/**
 * import_servers as an admin uses it: one server.json document, or every server of an upstream registry
 * (a local fake speaking v0.1, test/fake_registry.ts), added through the usual discovery of real servers
 * (server-everything, SDK servers). What cannot be served is skipped with its reason; importing again
 * changes nothing; a refused import writes nothing.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeRegistry, startFakeRegistry } from "./fake_registry.ts";
import { call, type Spawned, startEverything, startTestRegistry, type TestRegistry, text } from "./helpers.ts";
import { assertShape, checkServerDetail, checkServerList, INVALID_EXAMPLES, VALID_EXAMPLES } from "./registry_shapes.ts";

const ADMIN = "admin-key-0123456789abcdef";
const AGENT = "agent-key-0123456789abcdef";
const SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json";

type Imported = {
  added: { name: string; service_name: string; tools: number }[];
  unchanged: { name: string; service_name: string }[];
  skipped: { name: string; reason: string }[];
  next_cursor?: string;
};

describe("import_servers", () => {
  let reg: TestRegistry;
  let everything: Spawned;
  let everythingSse: Spawned;
  let admin: Client;
  let upstream: FakeRegistry | undefined;
  const services = async () =>
    ((await call(admin, "list_services")).structuredContent!.services as { service_name: string; endpoint: string; description: string }[]).map((s) => s.service_name);
  const importing = async (args: Record<string, unknown>) => {
    const result = await call(admin, "import_servers", args);
    expect(result.isError, text(result)).toBeFalsy();
    return { text: text(result), data: result.structuredContent as Imported };
  };

  beforeAll(async () => {
    [reg, everything, everythingSse] = await Promise.all([
      startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT, REGISTRY_DISCOVERY_TIMEOUT: "3" }),
      startEverything(),
      startEverything("sse"),
    ]);
    admin = await reg.client(ADMIN);
  }, 60_000);
  afterAll(async () => {
    await upstream?.close();
    await reg?.stop();
    await everything?.stop();
    await everythingSse?.stop();
  });

  it("adds one server.json's remote through discovery, and a second import changes nothing", async () => {
    const doc = {
      $schema: SCHEMA,
      name: "io.github.example/everything",
      description: "Everything, for tests",
      version: "1.0.0",
      remotes: [{ type: "streamable-http", url: everything.url }],
    };
    const first = await importing({ server_json: doc });
    expect(first.data.added).toEqual([{ name: "io.github.example/everything", service_name: "io.github.example.everything", tools: expect.any(Number) }]);
    expect(first.data.added[0].tools).toBeGreaterThan(5);
    expect(first.text).toBe(
      `Imported from server.json "io.github.example/everything": 1 added: "io.github.example.everything" (${first.data.added[0].tools} tools); 0 unchanged; 0 skipped.`,
    );
    const shown = await call(admin, "get_service", { service_name: "io.github.example.everything" });
    expect(shown.structuredContent).toMatchObject({ endpoint: everything.url, description: "Everything, for tests", transport: "streamable_http", requires_authorization: false });
    // The service is served by the registry API under the registry's namespace, with the version its serverInfo reports.
    const listed = (await (await reg.http("/v0.1/servers?search=everything", { key: AGENT })).json()) as { servers: { server: { name: string; version: string } }[] };
    assertShape(checkServerList(listed), "the list");
    expect(listed.servers.map((s) => s.server.name)).toEqual(["local.mcp-registry/io.github.example.everything"]);

    const again = await importing({ server_json: doc });
    expect(again.data).toEqual({ added: [], unchanged: [{ name: "io.github.example/everything", service_name: "io.github.example.everything" }], skipped: [] });
    expect(await services()).toEqual(["io.github.example.everything"]);
    // One add_service event per added service, by the admin, saying where it came from.
    const events = ((await call(admin, "list_audit_events", { action: "add_service" })).structuredContent as { events: { target: string; detail: string; actor: string }[] })
      .events;
    expect(events.map((e) => [e.target, e.detail])).toEqual([["service_name=io.github.example.everything", 'imported from server.json "io.github.example/everything"']]);
    const calls = ((await call(admin, "list_audit_events", { action: "import_servers" })).structuredContent as { events: { target: string; detail: string; outcome: string }[] })
      .events;
    expect(calls.map((e) => [e.target, e.outcome, e.detail])).toEqual([
      ["server=io.github.example/everything", "ok", "added 0, unchanged 1, skipped 0"],
      ["server=io.github.example/everything", "ok", "added 1, unchanged 0, skipped 0"],
    ]);
  });

  it("refuses a document that is not a valid server.json, and a call without exactly one source, writing nothing", async () => {
    const before = await services();
    const refusals: [Record<string, unknown>, string][] = [
      ...INVALID_EXAMPLES.map((doc): [Record<string, unknown>, string] => [{ server_json: doc }, "Cannot import servers: server_json."]),
      [{}, "Cannot import servers: give either server_json (one server.json document) or registry_url (a registry speaking the MCP Registry API v0.1)"],
      [{ server_json: { name: "a.b/c", description: "d", version: "1.0.0" }, registry_url: "http://127.0.0.1:1" }, "Cannot import servers: give either server_json"],
      [{ server_json: { name: "a.b/c", description: "d", version: "1.0.0" }, search: "x" }, "Cannot import servers: search and cursor go with registry_url"],
      [{ registry_url: "ftp://example.com" }, "Cannot import servers: registry_url: must be an http(s) URL"],
      [{ registry_url: "http://127.0.0.1:1/?token=secret" }, "Cannot import servers: registry_url: must not have a query or #fragment"],
      [{ registry_url: "http://user:pw@127.0.0.1:1/" }, "Cannot import servers: registry_url: must not contain a user name or password"],
      [{ server_json: "not an object" }, "Cannot import servers: server_json: "],
    ];
    for (const [args, message] of refusals) {
      const result = await call(admin, "import_servers", args);
      expect(result.isError, JSON.stringify(args)).toBe(true);
      expect(text(result), JSON.stringify(args)).toContain(message);
    }
    // Each refusal names the field and the rule.
    const bad = await call(admin, "import_servers", { server_json: { name: "no-slash", description: "d", version: "1.0.0" } });
    expect(text(bad)).toBe("Cannot import servers: server_json.name: must be <reverse-DNS namespace>/<name>, e.g. io.github.user/weather");
    const latest = await call(admin, "import_servers", { server_json: { name: "a.b/c", description: "d", version: "latest" } });
    expect(text(latest)).toBe('Cannot import servers: server_json.version: must be a specific version, not "latest" or a range');
    expect(await services()).toEqual(before);
  });

  it("accepts every document the specification accepts (each skipped here: nothing answers at 127.0.0.1:1)", async () => {
    for (const doc of VALID_EXAMPLES) {
      assertShape(checkServerDetail(doc), String(doc.name));
      // No traffic leaves the machine: every example host becomes a port nobody listens on.
      const local = JSON.parse(JSON.stringify(doc).replace(/(\{[a-z]+\}\.|[a-z-]+\.)?example\.(com|net|org)/g, "127.0.0.1:1"));
      const result = await call(admin, "import_servers", { server_json: local });
      expect(result.isError, `${doc.name}: ${text(result)}`).toBeFalsy();
      expect((result.structuredContent as Imported).skipped.map((x) => x.name)).toEqual([doc.name]);
    }
  });

  it("imports every server of an upstream registry, following cursors; skips what cannot be served, with the reason", async () => {
    const before = await services();
    const sseUrl = new URL(everythingSse.url);
    upstream = await startFakeRegistry({
      pageSize: 2,
      servers: [
        { name: "com.example/sse-everything", description: "Over SSE", version: "2.0.0", remotes: [{ type: "sse", url: everythingSse.url }] },
        {
          name: "com.example/templated",
          description: "A URL template with defaults",
          version: "1.0.0",
          remotes: [{ type: "streamable-http", url: "http://{host}/mcp", variables: { host: { description: "host:port", default: `localhost:${everything.port}` } } }],
        },
        {
          name: "com.example/local-only",
          description: "Packages only",
          version: "1.0.0",
          packages: [{ registryType: "npm", identifier: "@example/server", version: "1.0.0", transport: { type: "stdio" } }],
        },
        {
          name: "com.example/needs-host",
          description: "A variable without a value",
          version: "1.0.0",
          remotes: [{ type: "streamable-http", url: "https://{tenant}.example.com/mcp", variables: { tenant: { description: "your tenant" } } }],
        },
        {
          name: "com.example/api-key",
          description: "A header the registry cannot send",
          version: "1.0.0",
          remotes: [{ type: "sse", url: `http://${sseUrl.host}/sse`, headers: [{ name: "X-Api-Key", isRequired: true, isSecret: true }] }],
        },
        { name: "com.example/unreachable", description: "Nobody answers", version: "1.0.0", remotes: [{ type: "streamable-http", url: "http://127.0.0.1:1/mcp" }] },
        { name: "not valid", description: "Bad name", version: "1.0.0" },
        {
          name: "com.example/with-auth",
          description: "Needs a credential",
          version: "1.0.0",
          remotes: [{ type: "streamable-http", url: everything.url, headers: [{ name: "Authorization", value: "Bearer {token}", isSecret: true, isRequired: true }] }],
        },
      ],
    });
    const first = await importing({ registry_url: upstream.url });
    expect(first.data.added.map((a) => a.service_name)).toEqual(["com.example.sse-everything", "com.example.templated"]);
    expect(first.data.skipped).toEqual([
      { name: "com.example/local-only", reason: "only packages (run locally, e.g. stdio): the registry serves remote servers only" },
      { name: "com.example/needs-host", reason: "its remote URL needs a value for {tenant}" },
      { name: "com.example/api-key", reason: 'its remote needs the header "X-Api-Key", which the registry cannot send (only Authorization)' },
      { name: "com.example/unreachable", reason: expect.stringMatching(/^no MCP service answered at "http:\/\/127\.0\.0\.1:1\/mcp"/) },
      { name: "not valid", reason: "not a valid server.json: name: must be <reverse-DNS namespace>/<name>, e.g. io.github.user/weather" },
      // The same endpoint as the server.json import of the first test: one service per endpoint.
      { name: "com.example/with-auth", reason: `service "io.github.example.everything" already uses endpoint "${everything.url}"` },
    ]);
    expect(first.data.next_cursor).toBeUndefined();
    // Every page was read, asking for the latest versions, 100 at a time, with the cursor it was given.
    expect(upstream.requests).toHaveLength(4);
    expect(upstream.requests[0]).toBe("/v0.1/servers?limit=100&version=latest");
    expect(upstream.requests[1]).toMatch(/^\/v0\.1\/servers\?limit=100&version=latest&cursor=[\w-]+$/);
    const sse = (await call(admin, "get_service", { service_name: "com.example.sse-everything" })).structuredContent!;
    expect(sse).toMatchObject({ transport: "sse", endpoint: everythingSse.url });
    expect((await call(admin, "get_service", { service_name: "com.example.templated" })).structuredContent!.endpoint).toBe(`http://localhost:${everything.port}/mcp`);

    const again = await importing({ registry_url: `${upstream.url}/v0.1` });
    expect(again.data.added).toEqual([]);
    expect(again.data.unchanged.map((u) => u.service_name)).toEqual(["com.example.sse-everything", "com.example.templated"]);
    expect(again.data.skipped.map((s) => s.name)).toEqual(first.data.skipped.map((s) => s.name));
    expect((await services()).sort()).toEqual([...before, "com.example.sse-everything", "com.example.templated"].sort());
    await upstream.close();
    upstream = undefined;
  });

  it("passes search upstream, and marks a server that needs an Authorization header as requiring one", async () => {
    upstream = await startFakeRegistry({
      servers: [
        {
          name: "org.example/authed",
          description: "Needs a credential",
          version: "1.0.0",
          remotes: [{ type: "sse", url: everythingSse.url.replace("127.0.0.1", "localhost"), headers: [{ name: "Authorization", value: "Basic {token}", isSecret: true }] }],
        },
      ],
    });
    const result = await importing({ registry_url: upstream.url, search: "auth ed" });
    expect(upstream.requests).toEqual(["/v0.1/servers?limit=100&version=latest&search=auth+ed"]);
    expect(result.data.added.map((a) => a.service_name)).toEqual(["org.example.authed"]);
    expect((await call(admin, "get_service", { service_name: "org.example.authed" })).structuredContent).toMatchObject({
      requires_authorization: true,
      method_authorization: "Basic",
    });
    await upstream.close();
    upstream = undefined;
  });

  it("stops at the bounds of an endless upstream and says where to go on, in the middle of a page too", async () => {
    upstream = await startFakeRegistry({
      endlessCursor: true,
      pageSize: 60,
      servers: Array.from({ length: 60 }, (_, i) => ({
        name: `net.example/pkg-${i}`,
        description: "Packages only",
        version: "1.0.0",
        packages: [{ registryType: "npm", identifier: `p${i}`, transport: { type: "stdio" } }],
      })),
    });
    const result = await importing({ registry_url: upstream.url });
    // 100 servers: the first page's 60 and 40 of the second.
    expect(result.data.skipped.map((s) => s.name)).toEqual([
      ...Array.from({ length: 60 }, (_, i) => `net.example/pkg-${i}`),
      ...Array.from({ length: 40 }, (_, i) => `net.example/pkg-${i}`),
    ]);
    expect(upstream.requests).toHaveLength(2);
    const cursor = result.data.next_cursor!;
    expect(result.text).toMatch(new RegExp(`; more remain: import again with cursor "${cursor}"\\.$`));
    // Going on reads the second page again and begins after its first 40.
    const next = await importing({ registry_url: upstream.url, cursor });
    expect(upstream.requests[2]).toBe(upstream.requests[1]);
    expect(next.data.skipped.slice(0, 21).map((s) => s.name)).toEqual([...Array.from({ length: 20 }, (_, i) => `net.example/pkg-${40 + i}`), "net.example/pkg-0"]);
    const forged = await call(admin, "import_servers", { registry_url: upstream.url, cursor: "bm90IG91cnM" });
    expect(text(forged)).toBe("Cannot import servers: cursor: is not a next_cursor import_servers gave");
    await upstream.close();
    upstream = undefined;
  });

  it("reports an upstream that fails, writing nothing", async () => {
    const before = await services();
    const cases: [Parameters<typeof startFakeRegistry>[0], RegExp][] = [
      [{ servers: [], status: 500 }, /answered HTTP 500 to GET \/v0\.1\/servers$/],
      [{ servers: [], body: "<html>not json</html>" }, /did not answer with JSON$/],
      [{ servers: [], body: '{"items":[]}' }, /did not answer with a server list of the MCP Registry API v0\.1/],
      [{ servers: [], redirectTo: "http://127.0.0.1:1/v0.1/servers" }, /answered with a redirect; give the address it redirects to$/],
      [{ servers: [], delayMs: 10_000 }, /did not answer within 3 s$/],
    ];
    for (const [options, message] of cases) {
      const fake = await startFakeRegistry(options);
      try {
        const result = await call(admin, "import_servers", { registry_url: fake.url });
        expect(result.isError, JSON.stringify(options)).toBe(true);
        expect(text(result)).toMatch(new RegExp(`^Cannot import servers: the registry at "${fake.url}/" `));
        expect(text(result)).toMatch(message);
      } finally {
        await fake.close();
      }
    }
    expect(await services()).toEqual(before);
  });

  it("is for admins only", async () => {
    const agent = await reg.client(AGENT);
    expect((await agent.listTools()).tools.map((t) => t.name)).not.toContain("import_servers");
    const result = await call(agent, "import_servers", { registry_url: "http://127.0.0.1:1" });
    expect(text(result)).toBe('Cannot call tool "import_servers": not allowed for this key');
  });
});

describe("import_servers within its time budget", () => {
  it("starts no new discovery after three discovery timeouts, and next_cursor goes on with the first not started", async () => {
    // Services that accept a connection and never answer: each discovery takes the whole timeout.
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as AddressInfo).port;
    const reg = await startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_DISCOVERY_TIMEOUT: "0.5" });
    const names = Array.from({ length: 24 }, (_, i) => `org.example/silent-${i}`);
    const upstream = await startFakeRegistry({
      pageSize: 100,
      servers: names.map((name, i) => ({ name, description: "Never answers", version: "1.0.0", remotes: [{ type: "streamable-http", url: `http://127.0.0.1:${port}/mcp/${i}` }] })),
    });
    try {
      const admin = await reg.client(ADMIN);
      const seen: string[] = [];
      let cursor: string | undefined;
      let calls = 0;
      do {
        const result = await call(admin, "import_servers", { registry_url: upstream.url, ...(cursor ? { cursor } : {}) });
        const data = result.structuredContent as Imported;
        expect(data.added).toEqual([]);
        for (const s of data.skipped) expect(s.reason).toMatch(/no answer within 0\.5 s/);
        seen.push(...data.skipped.map((s) => s.name));
        cursor = data.next_cursor;
        calls++;
      } while (cursor && calls < 10);
      // 24 discoveries of 0.5 s, 4 at a time, are 3 s: more than one call's 1.5 s; each server is tried exactly once.
      expect(calls).toBeGreaterThan(1);
      expect(seen).toEqual(names);
    } finally {
      await upstream.close();
      await reg.stop();
      silent.closeAllConnections();
      silent.close();
    }
  }, 60_000);
});
