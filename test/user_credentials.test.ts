/** User credentials — authorize_user_to_service, revoke_user_token, /token, encryption at rest, key rotation. */
import { chmodSync, existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sealUserToken } from "../features/credentials/credentials.ts";
import {
  call,
  connectClient,
  ENGINE,
  freePort,
  freshDatabase,
  spawnUntil,
  startTestMcpServer,
  startTestRegistry,
  type TestRegistry,
  tempDir,
  TEST_SECRET,
  text,
} from "./helpers.ts";

const ADMIN = "admin-key-0123456789abcdef";
const AGENT = "agent-key-0123456789abcdef";
const KEYS = { REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT };
const SECRET_A = Buffer.alloc(32, 1).toString("base64");
const SECRET_B = Buffer.alloc(32, 2).toString("base64");
const SECRET_C = Buffer.alloc(32, 3).toString("base64");

type ToolServer = Awaited<ReturnType<typeof startTestMcpServer>> & { authorizations: (string | null)[] };
type Answer = { status: number; body: Record<string, unknown> };

// A small SDK server with one tool; it records the Authorization header of every request it gets.
async function toolServer(): Promise<ToolServer> {
  const authorizations: (string | null)[] = [];
  const server = await startTestMcpServer({
    intercept(req) {
      authorizations.push(req.headers.get("authorization"));
      return undefined;
    },
    setup(s) {
      s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: "whoami", description: "Says hello", inputSchema: { type: "object" as const } }] }));
      s.setRequestHandler(CallToolRequestSchema, () => ({ content: [{ type: "text" as const, text: "hello" }] }));
    },
  });
  return Object.assign(server, { authorizations });
}

// A raw node:http request: fetch cannot send a GET body, old agents do.
function rawRequest(base: string, method: string, path: string, body: string | null, key?: string): Promise<Answer> {
  const url = new URL(base);
  const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  if (body !== null) Object.assign(headers, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) });
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers }, (res) => {
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        data += d;
      });
      res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(data) }));
    });
    req.on("error", reject);
    req.end(body ?? undefined);
  });
}

async function answer(res: Response): Promise<Answer> {
  return { status: res.status, body: await res.json() };
}

// The three ways an agent asks for a token; all must behave the same.
const VARIANTS: Record<string, (reg: TestRegistry, input: Record<string, string>, key?: string) => Promise<Answer>> = {
  "GET with query parameters": async (reg, input, key = AGENT) => answer(await reg.http(`/token?${new URLSearchParams(input)}`, { key })),
  "GET with a JSON body": (reg, input, key = AGENT) => rawRequest(reg.url, "GET", "/token", JSON.stringify(input), key),
  "POST with a JSON body": async (reg, input, key = AGENT) =>
    answer(await reg.http("/token", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(input), key })),
};

async function addService(c: Client, name: string, endpoint: string, method: "" | "Bearer" | "Basic") {
  const r = await call(c, "add_service", { service_name: name, endpoint, description: name, requires_authorization: method !== "", method_authorization: method });
  expect(text(r)).toBe(`Service "${name}" added with 1 tool.`);
}

// Everything a token operation may write: token rows, user rows, audit rows.
async function snapshot(reg: TestRegistry) {
  const { userTokens, users, auditEvents } = reg.ctx.tables;
  return {
    tokens: await reg.ctx.db.select().from(userTokens),
    users: await reg.ctx.db.select().from(users),
    audit: (await reg.ctx.db.select().from(auditEvents)).length,
  };
}

describe("user credentials", () => {
  let reg: TestRegistry;
  let admin: Client;
  let agent: Client;
  let secure: ToolServer;
  let basic: ToolServer;
  let open: ToolServer;

  beforeAll(async () => {
    [reg, secure, basic, open] = await Promise.all([startTestRegistry(KEYS), toolServer(), toolServer(), toolServer()]);
    admin = await reg.client(ADMIN);
    agent = await reg.client(AGENT);
    await addService(admin, "secure", secure.url, "Bearer");
    await addService(admin, "basic", basic.url, "Basic");
    await addService(admin, "open", open.url, "");
  });
  afterAll(async () => {
    await reg?.stop();
    await Promise.all([secure?.stop(), basic?.stop(), open?.stop()]);
  });

  async function authorize(user: string, service: string, token: string) {
    const r = await call(agent, "authorize_user_to_service", { service_name: service, user_id: user, token });
    expect(text(r)).toBe(`Token stored for user "${user}" on service "${service}". Please repeat your original request.`);
  }

  describe.each(Object.keys(VARIANTS))("/token, %s", (variant) => {
    const ask = (input: Record<string, string>, key?: string) => VARIANTS[variant](reg, input, key);

    it("answers 400 for a missing field and writes nothing", async () => {
      const before = await snapshot(reg);
      const r = await ask({ service_name: "secure" });
      expect(r.status).toBe(400);
      expect(r.body).toEqual({ error: { code: "invalid_input", message: "Cannot read token: user_id: is required" } });
      expect(await snapshot(reg)).toEqual(before);
    });

    it("answers 404 for an unknown service", async () => {
      const r = await ask({ service_name: "nope", user_id: "ann" });
      expect(r).toEqual({ status: 404, body: { error: { code: "not_found", message: 'Cannot read the token of user "ann" for service "nope": no such service' } } });
    });

    it('answers {"status":"Ok"} when the service needs no authorization', async () => {
      expect(await ask({ service_name: "open", user_id: "nobody" })).toEqual({ status: 200, body: { status: "Ok" } });
    });

    it("answers 401 token_missing when the user has no token, unlike a bad agent key", async () => {
      const missing = await ask({ service_name: "secure", user_id: `nobody-${variant}` });
      expect(missing.status).toBe(401);
      expect(missing.body).toEqual({ error: { code: "token_missing", message: expect.stringContaining("call authorize_user_to_service") } });
      const badKey = await ask({ service_name: "secure", user_id: "ann" }, "not-a-valid-key-at-all");
      expect(badKey.status).toBe(401);
      expect((badKey.body.error as { code: string }).code).toBe("unauthorized");
    });

    it("answers the token and its method", async () => {
      await authorize("carol", "secure", "carol-bearer-token");
      await authorize("carol", "basic", "Y2Fyb2w6cHc=");
      expect(await ask({ service_name: "secure", user_id: "carol" })).toEqual({ status: 200, body: { token: "carol-bearer-token", method_authorization: "Bearer" } });
      expect(await ask({ service_name: "basic", user_id: "carol" })).toEqual({ status: 200, body: { token: "Y2Fyb2w6cHc=", method_authorization: "Basic" } });
    });
  });

  it("answers 400 for bad JSON, a non-object body and wrong types, on GET and POST, and writes nothing", async () => {
    const before = await snapshot(reg);
    for (const method of ["GET", "POST"]) {
      for (const [body, message] of [
        ["{not json", "Cannot read token: the request body is not valid JSON"],
        ["[1, 2]", "Cannot read token: the request body must be a JSON object"],
        [JSON.stringify({ service_name: "secure", user_id: 5 }), "Cannot read token: user_id: must be a string"],
      ]) {
        const r = await rawRequest(reg.url, method, "/token", body, AGENT);
        expect(r, `${method} ${body}`).toEqual({ status: 400, body: { error: { code: "invalid_input", message } } });
      }
    }
    expect(await snapshot(reg)).toEqual(before);
  });

  it("answers 413 for an oversize GET body", async () => {
    const r = await rawRequest(reg.url, "GET", "/token", JSON.stringify({ service_name: "secure", user_id: "ann", pad: "x".repeat(1024 * 1024) }), AGENT);
    expect(r.status).toBe(413);
    expect((r.body.error as { code: string }).code).toBe("payload_too_large");
  });

  it("refuses an anonymous caller: no token read, no MCP session to store one", async () => {
    const r = await reg.http("/token?service_name=secure&user_id=carol");
    expect(r.status).toBe(401);
    expect((await r.json()).error.code).toBe("unauthorized");
    await expect(connectClient(`${reg.url}/mcp`)).rejects.toThrow();
  });

  describe("authorize_user_to_service", () => {
    it("creates an unknown user, then replaces the token on a second call", async () => {
      await authorize("dave", "secure", "first-token");
      await authorize("dave", "secure", "  second-token\n");
      const { users, userTokens } = reg.ctx.tables;
      const [user] = await reg.ctx.db.select().from(users).where(eq(users.userId, "dave"));
      expect(user).toBeDefined();
      expect(await reg.ctx.db.select().from(userTokens).where(eq(userTokens.userId, user.id))).toHaveLength(1);
      expect((await VARIANTS["POST with a JSON body"](reg, { service_name: "secure", user_id: "dave" })).body.token).toBe("second-token");
    });

    it("accepts a token of exactly 8 KiB", async () => {
      const token = "é".repeat(4096);
      await authorize("erin", "secure", token);
      expect((await VARIANTS["GET with query parameters"](reg, { service_name: "secure", user_id: "erin" })).body.token).toBe(token);
    });

    it.each([
      ["an unknown service", { service_name: "nope", user_id: "fred", token: "t" }, 'Cannot store the token of user "fred" for service "nope": no such service'],
      [
        "a service without authorization",
        { service_name: "open", user_id: "fred", token: "t" },
        'Cannot store the token of user "fred" for service "open": the service does not require authorization',
      ],
      ["an empty token", { service_name: "secure", user_id: "fred", token: "   " }, "Cannot authorize user to service: token: must not be empty"],
      ["a token over 8 KiB", { service_name: "secure", user_id: "fred", token: "é".repeat(4097) }, "Cannot authorize user to service: token: must be at most 8192 bytes"],
      [
        "a token with control characters",
        { service_name: "secure", user_id: "fred", token: "a\nb" },
        "Cannot authorize user to service: token: must not contain control characters",
      ],
      ["a missing token", { service_name: "secure", user_id: "fred" }, "Cannot authorize user to service: token: is required"],
      ["an empty user", { service_name: "secure", user_id: "", token: "t" }, "Cannot authorize user to service: user_id: must not be empty"],
    ])("refuses %s and writes nothing", async (_, args, message) => {
      const before = await snapshot(reg);
      const r = await call(agent, "authorize_user_to_service", args);
      expect(r.isError).toBe(true);
      expect(text(r)).toBe(message);
      const after = await snapshot(reg);
      // Only the audit entry of the refused call is new.
      expect({ ...after, audit: after.audit - 1 }).toEqual(before);
    });
  });

  it("sealUserToken (for importers) keeps an existing token unless told to replace it", async () => {
    const { services } = reg.ctx.tables;
    const [{ id }] = await reg.ctx.db.select({ id: services.id }).from(services).where(eq(services.name, "secure"));
    expect(await sealUserToken(reg.ctx, id, "mona", "imported-1", { replace: false })).toBe(true);
    expect(await sealUserToken(reg.ctx, id, "mona", "imported-2", { replace: false })).toBe(false);
    expect((await VARIANTS["POST with a JSON body"](reg, { service_name: "secure", user_id: "mona" })).body.token).toBe("imported-1");
    expect(await sealUserToken(reg.ctx, id, "mona", "imported-3", { replace: true })).toBe(true);
    expect((await VARIANTS["POST with a JSON body"](reg, { service_name: "secure", user_id: "mona" })).body.token).toBe("imported-3");
  });

  describe("revoke_user_token", () => {
    it("removes the token; /token then answers token_missing", async () => {
      await authorize("gina", "secure", "gina-token");
      await authorize("gina", "basic", "gina-basic");
      const r = await call(agent, "revoke_user_token", { service_name: "secure", user_id: "gina" });
      expect(text(r)).toBe('Token of user "gina" for service "secure" revoked.');
      expect((await VARIANTS["GET with a JSON body"](reg, { service_name: "secure", user_id: "gina" })).status).toBe(401);
      // Her token for another service stays.
      expect((await VARIANTS["GET with a JSON body"](reg, { service_name: "basic", user_id: "gina" })).body.token).toBe("gina-basic");
    });

    it.each([
      ["no token is stored", { service_name: "secure", user_id: "nobody" }, 'Cannot revoke the token of user "nobody" for service "secure": no token is stored'],
      ["the service is unknown", { service_name: "nope", user_id: "carol" }, 'Cannot revoke the token of user "carol" for service "nope": no such service'],
    ])("is not_found when %s, and deletes nothing", async (_, args, message) => {
      const before = await snapshot(reg);
      const r = await call(agent, "revoke_user_token", args);
      expect(r.isError).toBe(true);
      expect(text(r)).toBe(message);
      const after = await snapshot(reg);
      expect({ ...after, audit: after.audit - 1 }).toEqual(before);
    });
  });

  // The exchange docs/user_credentials.md shows, request for request.
  it("drives the agent flow: /token 401 -> ask the user -> authorize_user_to_service -> retry -> call the service", async () => {
    const ask = { service_name: "secure", user_id: "hank" };
    const first = await reg.http("/token", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(ask), key: AGENT });
    expect(first.status).toBe(401);
    expect(await first.json()).toEqual({
      error: {
        code: "token_missing",
        message: 'Cannot read the token of user "hank" for service "secure": no token is stored; ask the user for it and call authorize_user_to_service',
      },
    });
    // The agent asks the user, who gives a token; the agent stores it.
    const stored = await call(agent, "authorize_user_to_service", { ...ask, token: "hank-secret-42" });
    expect(text(stored)).toBe('Token stored for user "hank" on service "secure". Please repeat your original request.');
    const retry = await reg.http(`/token?${new URLSearchParams(ask)}`, { key: AGENT });
    expect(retry.status).toBe(200);
    const { token, method_authorization, ...rest } = await retry.json();
    expect({ token, method_authorization, rest }).toEqual({ token: "hank-secret-42", method_authorization: "Bearer", rest: {} });
    expect(await rawRequest(reg.url, "GET", "/token", JSON.stringify(ask), AGENT)).toEqual({ status: 200, body: { token, method_authorization } });
    // The agent now calls the service with the credential.
    const downstream = await connectClient(secure.url, token);
    try {
      expect(text(await call(downstream, "whoami"))).toBe("hello");
    } finally {
      await downstream.close();
    }
    expect(secure.authorizations).toContain("Bearer hank-secret-42");
  });

  it("never stores the token in the clear, in audit_events or in the logs, and audits every write, read and revoke", async () => {
    const token = `canary-${crypto.randomUUID()}`;
    await authorize("ivy", "secure", token);
    expect((await VARIANTS["GET with a JSON body"](reg, { service_name: "secure", user_id: "ivy" })).body.token).toBe(token);
    await VARIANTS["POST with a JSON body"](reg, { service_name: "nope", user_id: "ivy" });
    await call(agent, "authorize_user_to_service", { service_name: "nope", user_id: "ivy", token });
    await call(agent, "revoke_user_token", { service_name: "secure", user_id: "ivy" });
    await VARIANTS["GET with query parameters"](reg, { service_name: "secure", user_id: "ivy" });

    const { auditEvents, userTokens } = reg.ctx.tables;
    const rows = await reg.ctx.db.select().from(auditEvents);
    expect(JSON.stringify(rows)).not.toContain(token);
    expect(reg.logs.join("\n")).not.toContain(token);
    expect(JSON.stringify(await reg.ctx.db.select().from(userTokens))).not.toContain(token);
    const ivy = rows.filter((r) => r.target.includes("user_id=ivy")).map((r) => [r.action, r.target, r.outcome]);
    expect(ivy).toEqual([
      ["authorize_user_to_service", "service_name=secure user_id=ivy", "ok"],
      ["read_token", "service_name=secure user_id=ivy", "ok"],
      ["read_token", "service_name=nope user_id=ivy", "not_found"],
      ["authorize_user_to_service", "service_name=nope user_id=ivy", "not_found"],
      ["revoke_user_token", "service_name=secure user_id=ivy", "ok"],
      ["read_token", "service_name=secure user_id=ivy", "token_missing"],
    ]);
    const agentLabel = rows.find((r) => r.target === "service_name=secure user_id=ivy")!.actor;
    expect(agentLabel).toMatch(/^agent:/);
  });

  it("records each read of a burst exactly once, with its own target and outcome, whatever the batch sizes", async () => {
    // Inserts are prepared once per number of rows (up to 64): bursts of many sizes, some over 64, must
    // neither lose an event, nor write one twice, nor give one another's values.
    const users = Array.from({ length: 40 }, (_, i) => `burst-${i}`);
    for (const user of users.slice(0, 20)) await authorize(user, "secure", `t-${user}`);
    const expected: string[] = [];
    for (const size of [1, 3, 64, 65, 150, 7]) {
      const asks = Array.from({ length: size }, (_, i) => ({ service_name: i % 5 === 4 ? "ghost" : "secure", user_id: users[(i * 7 + size) % users.length] }));
      const answers = await Promise.all(asks.map((ask) => VARIANTS["GET with query parameters"](reg, ask)));
      asks.forEach((ask, i) => {
        const outcome = ask.service_name === "ghost" ? "not_found" : Number(ask.user_id.slice(6)) < 20 ? "ok" : "token_missing";
        expect(answers[i].status).toBe(outcome === "ok" ? 200 : outcome === "not_found" ? 404 : 401);
        expected.push(`service_name=${ask.service_name} user_id=${ask.user_id} ${outcome}`);
      });
    }
    const { auditEvents } = reg.ctx.tables;
    const rows = await reg.ctx.db.select().from(auditEvents);
    const reads = rows.filter((r) => r.action === "read_token" && r.target.includes("user_id=burst-")).map((r) => `${r.target} ${r.outcome}`);
    expect(reads.sort()).toEqual(expected.sort());
  });

  it("a ciphertext copied to another row does not decrypt: token_missing, never a 500", async () => {
    await authorize("jack", "secure", "jack-token");
    await authorize("kate", "secure", "kate-token");
    await authorize("kate", "basic", "kate-basic");
    const { users, services, userTokens } = reg.ctx.tables;
    const rowOf = async (user: string, service: string) => {
      const [row] = await reg.ctx.db
        .select({ userId: userTokens.userId, serviceId: userTokens.serviceId, ciphertext: userTokens.ciphertext })
        .from(userTokens)
        .innerJoin(users, eq(users.id, userTokens.userId))
        .innerJoin(services, eq(services.id, userTokens.serviceId))
        .where(and(eq(users.userId, user), eq(services.name, service)));
      return row;
    };
    const jack = await rowOf("jack", "secure");
    // Jack's ciphertext into Kate's row of the same service, and into Kate's row of another service.
    for (const target of [await rowOf("kate", "secure"), await rowOf("kate", "basic")]) {
      await reg.ctx.db
        .update(userTokens)
        .set({ ciphertext: jack.ciphertext })
        .where(and(eq(userTokens.userId, target.userId), eq(userTokens.serviceId, target.serviceId)));
    }
    for (const service of ["secure", "basic"]) {
      const r = await VARIANTS["GET with a JSON body"](reg, { service_name: service, user_id: "kate" });
      expect(r).toEqual({
        status: 401,
        body: {
          error: {
            code: "token_missing",
            message: `Cannot read the token of user "kate" for service "${service}": the stored token cannot be decrypted; ask the user for it again and call authorize_user_to_service`,
          },
        },
      });
    }
    expect(reg.logs.join("\n")).not.toContain("Internal error");
    expect((await VARIANTS["GET with a JSON body"](reg, { service_name: "secure", user_id: "jack" })).body.token).toBe("jack-token");
    // Storing the token again repairs the row.
    await authorize("kate", "secure", "kate-token-2");
    expect((await VARIANTS["GET with a JSON body"](reg, { service_name: "secure", user_id: "kate" })).body.token).toBe("kate-token-2");
  });

  it("removing a service deletes its tokens; re-adding the name does not revive them", async () => {
    const temp = await toolServer();
    try {
      await addService(admin, "temp", temp.url, "Bearer");
      await authorize("liam", "temp", "liam-token");
      const { services, userTokens } = reg.ctx.tables;
      const [{ id }] = await reg.ctx.db.select({ id: services.id }).from(services).where(eq(services.name, "temp"));
      expect(await reg.ctx.db.select().from(userTokens).where(eq(userTokens.serviceId, id))).toHaveLength(1);
      expect(text(await call(admin, "remove_service", { service_name: "temp" }))).toBe('Service "temp" removed.');
      expect(await reg.ctx.db.select().from(userTokens).where(eq(userTokens.serviceId, id))).toHaveLength(0);
      await addService(admin, "temp", temp.url, "Bearer");
      const r = await VARIANTS["POST with a JSON body"](reg, { service_name: "temp", user_id: "liam" });
      expect(r.status).toBe(401);
      expect((r.body.error as { code: string }).code).toBe("token_missing");
    } finally {
      await temp.stop();
    }
  });
});

// A database that outlives one registry: a SQLite file (with its key file beside it), or a PostgreSQL database.
async function persistentDatabase(): Promise<{ url: string; dir: string; drop(): Promise<void> }> {
  const dir = tempDir();
  const removeDir = async () => rmSync(dir, { recursive: true, force: true });
  if (ENGINE === "postgres") {
    const db = await freshDatabase();
    return {
      url: db.url,
      dir,
      drop: async () => {
        await db.drop();
        await removeDir();
      },
    };
  }
  return { url: `file:${join(dir, "r.db")}`, dir, drop: removeDir };
}

describe("the key across restarts", () => {
  let server: ToolServer;
  let db: Awaited<ReturnType<typeof persistentDatabase>>;
  beforeAll(async () => {
    server = await toolServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  // Starts a registry on db with env, stores a token for ann (when given), and returns the registry.
  async function start(env: Record<string, string>, token?: string): Promise<TestRegistry> {
    const reg = await startTestRegistry({ DATABASE_URL: db.url, REGISTRY_SECRET: "", ...env });
    if (token !== undefined) {
      const c = await reg.client();
      await addService(c, "svc", server.url, "Bearer");
      expect(text(await call(c, "authorize_user_to_service", { service_name: "svc", user_id: "ann", token }))).toMatch(/^Token stored/);
    }
    return reg;
  }
  const read = async (reg: TestRegistry) => (await VARIANTS["GET with query parameters"](reg, { service_name: "svc", user_id: "ann" })).body;

  it("a wrong REGISTRY_SECRET stops start-up with a message naming it", async () => {
    db = await persistentDatabase();
    try {
      await (await start({ REGISTRY_SECRET: SECRET_A }, "ann-token")).stop();
      await expect(start({ REGISTRY_SECRET: SECRET_C })).rejects.toThrow(
        "1 stored user token was encrypted with another key than REGISTRY_SECRET: set REGISTRY_SECRET to the key they were stored with, " +
          "or, to rotate keys, set REGISTRY_SECRET to the new key and REGISTRY_SECRET_PREVIOUS to the old one",
      );
      // The wrong key changed nothing: the right one still reads the token.
      const reg = await start({ REGISTRY_SECRET: SECRET_A });
      expect(await read(reg)).toEqual({ token: "ann-token", method_authorization: "Bearer" });
      await reg.stop();
    } finally {
      await db.drop();
    }
  });

  it("rotates: B with REGISTRY_SECRET_PREVIOUS=A reads and re-encrypts, then B alone still reads", async () => {
    db = await persistentDatabase();
    try {
      await (await start({ REGISTRY_SECRET: SECRET_A }, "rotating-token")).stop();
      const both = await start({ REGISTRY_SECRET: SECRET_B, REGISTRY_SECRET_PREVIOUS: SECRET_A });
      expect(await read(both)).toEqual({ token: "rotating-token", method_authorization: "Bearer" });
      expect(both.logs.join("\n")).toContain("Re-encrypted 1 stored user token with the current key");
      const [row] = await both.ctx.db.select({ ciphertext: both.ctx.tables.userTokens.ciphertext }).from(both.ctx.tables.userTokens);
      expect(row.ciphertext.startsWith(both.ctx.vault.currentPrefix)).toBe(true);
      await both.stop();
      const onlyB = await start({ REGISTRY_SECRET: SECRET_B });
      expect(await read(onlyB)).toEqual({ token: "rotating-token", method_authorization: "Bearer" });
      await onlyB.stop();
      // A alone can no longer read them: start-up says so.
      await expect(start({ REGISTRY_SECRET: SECRET_A })).rejects.toThrow(/REGISTRY_SECRET/);
    } finally {
      await db.drop();
    }
  });

  describe.runIf(ENGINE === "sqlite")("SQLite file", () => {
    it("generates a key file beside the database with mode 0600, logs its path, and reuses it", async () => {
      db = await persistentDatabase();
      try {
        const keyFile = join(db.dir, "r.db.key");
        const first = await start({}, "file-key-token");
        expect(statSync(keyFile).mode & 0o777).toBe(0o600);
        expect(first.logs.join("\n")).toContain(`Token encryption key generated into ${keyFile} (mode 0600)`);
        await first.stop();
        const again = await start({});
        expect(again.logs.join("\n")).toContain(`Token encryption key read from ${keyFile}`);
        expect(await read(again)).toEqual({ token: "file-key-token", method_authorization: "Bearer" });
        await again.stop();
        // A lost key file: a new key is generated, which cannot read the tokens, and start-up says what to do.
        rmSync(keyFile);
        await expect(start({})).rejects.toThrow(/another key than the key file .*r\.db\.key: restore the original key file, or set REGISTRY_SECRET/);
        // A loosened mode is reported.
        chmodSync(keyFile, 0o644);
        for (const suffix of ["", "-wal", "-shm"]) rmSync(`${db.url.slice("file:".length)}${suffix}`, { force: true });
        const loose = await start({});
        expect(loose.logs.join("\n")).toContain("is readable by other users: chmod 600 it");
        await loose.stop();
      } finally {
        await db.drop();
      }
    });

    it("the database file and its WAL never hold the token in the clear", async () => {
      db = await persistentDatabase();
      try {
        const token = `plaintext-canary-${crypto.randomUUID()}`;
        const path = db.url.slice("file:".length);
        const holdsToken = () => [path, `${path}-wal`].filter(existsSync).some((f) => readFileSync(f).includes(Buffer.from(token)));
        const reg = await start({}, token);
        expect(await read(reg)).toEqual({ token, method_authorization: "Bearer" });
        expect(existsSync(`${path}-wal`)).toBe(true);
        expect(holdsToken()).toBe(false);
        // The scan does find what is stored in the clear, such as the service endpoint.
        expect([path, `${path}-wal`].some((f) => readFileSync(f).includes(Buffer.from(server.url)))).toBe(true);
        await reg.stop();
        expect(holdsToken()).toBe(false);
      } finally {
        await db.drop();
      }
    });
  });
});

describe("on Deno", () => {
  it("serves GET /token with a JSON body, a query string and POST alike", async () => {
    const dir = tempDir();
    const [port, server] = await Promise.all([freePort(), toolServer()]);
    const deno = await spawnUntil(join("node_modules", ".bin", "deno"), ["task", "start"], {
      env: { MCP_PORT: String(port), DATABASE_URL: `file:${join(dir, "r.db")}`, REGISTRY_SECRET: TEST_SECRET },
      ready: /MCP Registry listening/,
      timeoutMs: 60_000,
    }).catch(async (err) => {
      await server.stop();
      throw err;
    });
    try {
      const url = `http://127.0.0.1:${port}`;
      const c = await connectClient(`${url}/mcp`);
      try {
        await addService(c, "svc", server.url, "Bearer");
        expect(text(await call(c, "authorize_user_to_service", { service_name: "svc", user_id: "ann", token: "deno-token" }))).toMatch(/^Token stored/);
      } finally {
        await c.close();
      }
      const expected = { status: 200, body: { token: "deno-token", method_authorization: "Bearer" } };
      const input = { service_name: "svc", user_id: "ann" };
      expect(await rawRequest(url, "GET", "/token", JSON.stringify(input))).toEqual(expected);
      expect(await rawRequest(url, "GET", `/token?${new URLSearchParams(input)}`, null)).toEqual(expected);
      expect(await rawRequest(url, "POST", "/token", JSON.stringify(input))).toEqual(expected);
      expect((await rawRequest(url, "GET", "/token", JSON.stringify({ service_name: "svc", user_id: "bob" }))).status).toBe(401);
      expect(deno.output()).not.toContain("deno-token");
    } finally {
      await deno.stop();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
