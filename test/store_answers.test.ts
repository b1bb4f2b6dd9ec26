/**
 * Every query gets its own rows: each read shape (a list, a single row, a row that is not there, a failed
 * write) run right after every other, then all at once, answers exactly what the data says (both engines).
 * Wave one's statement cache answered a `get` with the row of the `all` before it.
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { eq, isNull } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, ENGINE, startTestMcpServer, startTestRegistry, type TestRegistry, text } from "./helpers.ts";

const post = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

describe("every query answers with its own rows", () => {
  let reg: TestRegistry;
  let c: Client;
  let server: Awaited<ReturnType<typeof startTestMcpServer>>;
  let search = 0;

  beforeAll(async () => {
    [reg, server] = await Promise.all([
      startTestRegistry(),
      startTestMcpServer({
        setup: (s) =>
          s.setRequestHandler(ListToolsRequestSchema, () => ({
            tools: ["search", "fetch"].map((name) => ({ name, description: `The ${name} tool`, inputSchema: { type: "object" as const } })),
          })),
      }),
    ]);
    c = await reg.client();
    const setup: [string, Record<string, unknown>][] = [
      ["add_service", { service_name: "wiki", endpoint: server.url, description: "Wiki", requires_authorization: true, method_authorization: "Bearer" }],
      ["create_role", { role_name: "reader", default_system_prompt: "You read." }],
      ["create_role", { role_name: "writer", default_system_prompt: "You write." }],
      ["assign_role_to_user", { user_id: "ann", role_name: "reader" }],
      ["assign_role_to_user", { user_id: "bob", role_name: "writer" }],
      ["authorize_user_to_service", { service_name: "wiki", user_id: "ann", token: "ann-secret" }],
    ];
    for (const [tool, args] of setup) expect((await call(c, tool, args)).isError, tool).toBeFalsy();
    // carol exists, without a role.
    expect(await (await reg.http("/register_user", post({ user_id: "carol" }))).json()).toEqual({ status: "user registered" });
    search = ((await call(c, "get_tools", { service_name: "wiki" })).structuredContent as { tools: { id: number; name: string }[] }).tools.find((t) => t.name === "search")!.id;
    expect((await call(c, "attach_role_to_tool", { tool_id: search, role_name: "reader" })).isError).toBeFalsy();
  });
  afterAll(async () => {
    await reg?.stop();
    await server?.stop();
  });

  const httpJson = async (path: string, init?: RequestInit) => {
    const res = await reg.http(path, init);
    return { status: res.status, body: await res.json() };
  };
  const tool = async (name: string, args: Record<string, unknown> = {}) => {
    const r = await call(c, name, args);
    return { isError: Boolean(r.isError), text: text(r) };
  };

  // Each probe: one request and the one answer the data allows.
  const probes: Record<string, () => Promise<void>> = {
    "role of a user with a role (single row)": async () => expect(await httpJson("/role_for_user", post({ user_id: "ann" }))).toEqual({ status: 200, body: { role: "reader" } }),
    "role of another user": async () => expect(await httpJson("/role_for_user", post({ user_id: "bob" }))).toEqual({ status: 200, body: { role: "writer" } }),
    "role of a user without one": async () => expect(await httpJson("/role_for_user", post({ user_id: "carol" }))).toEqual({ status: 200, body: { role: "" } }),
    "failed remove_role_from_user (the user has another role)": async () =>
      expect(await tool("remove_role_from_user", { user_id: "ann", role_name: "writer" })).toEqual({
        isError: true,
        text: 'Cannot remove role "writer" from user "ann": the user has role "reader"',
      }),
    "failed remove_role_from_user (no such user)": async () =>
      expect(await tool("remove_role_from_user", { user_id: "nobody", role_name: "reader" })).toEqual({
        isError: true,
        text: 'Cannot remove role "reader" from user "nobody": no such user',
      }),
    "failed create_role (taken)": async () =>
      expect(await tool("create_role", { role_name: "reader" })).toEqual({ isError: true, text: 'Cannot create role "reader": a role with that name already exists' }),
    "failed revoke_user_token (none stored)": async () =>
      expect(await tool("revoke_user_token", { service_name: "wiki", user_id: "carol" })).toEqual({
        isError: true,
        text: 'Cannot revoke the token of user "carol" for service "wiki": no token is stored',
      }),
    "failed attach (no such tool)": async () =>
      expect(await tool("attach_role_to_tool", { tool_id: 999999, role_name: "reader" })).toEqual({
        isError: true,
        text: 'Cannot attach role "reader" to tool 999999: no such tool',
      }),
    "list_users (a list)": async () =>
      expect(JSON.parse((await tool("list_users")).text)).toEqual([
        ["ann", "reader"],
        ["bob", "writer"],
        ["carol", ""],
      ]),
    "GET /list_users": async () => expect((await httpJson("/list_users")).body.users.map((u: { user: { user_id: string } }) => u.user.user_id)).toEqual(["ann", "bob", "carol"]),
    list_roles: async () =>
      expect(JSON.parse((await tool("list_roles")).text)).toEqual([
        { name: "reader", default_system_prompt: "You read." },
        { name: "writer", default_system_prompt: "You write." },
      ]),
    "prompt of a role": async () =>
      expect(await httpJson("/system_prompt_for_role", post({ role: "writer" }))).toEqual({ status: 200, body: { default_system_prompt: "You write." } }),
    "prompt of an unknown role": async () =>
      expect(await httpJson("/system_prompt_for_role", post({ role: "ghost" }))).toEqual({ status: 200, body: { default_system_prompt: "" } }),
    "tools of a role": async () => expect((await httpJson("/tools_for_role", post({ role: "reader" }))).body.tools.map((t: { id: number }) => t.id)).toEqual([search]),
    "tools of a role without any": async () => expect(await httpJson("/tools_for_role", post({ role: "writer" }))).toEqual({ status: 200, body: { tools: [] } }),
    "token of a user who stored one": async () =>
      expect(await httpJson("/token", post({ service_name: "wiki", user_id: "ann" }))).toEqual({ status: 200, body: { token: "ann-secret", method_authorization: "Bearer" } }),
    "token of a user who stored none": async () => expect((await httpJson("/token", post({ service_name: "wiki", user_id: "bob" }))).status).toBe(401),
    "token for an unknown service": async () => expect((await httpJson("/token", post({ service_name: "nope", user_id: "ann" }))).status).toBe(404),
    get_tools: async () =>
      expect(JSON.parse((await tool("get_tools", { service_name: "wiki" })).text).map((t: { name: string; roles: string[] }) => [t.name, t.roles])).toEqual([
        ["search", ["reader"]],
        ["fetch", []],
      ]),
    "get_tools of an unknown service": async () => expect((await tool("get_tools", { service_name: "nope" })).isError).toBe(true),
    get_service: async () => expect(JSON.parse((await tool("get_service", { service_name: "wiki" })).text)).toMatchObject({ service_name: "wiki", tools: 2 }),
    list_services: async () => expect(await httpJson("/list_services")).toEqual({ status: 200, body: { services: { wiki: { transport: "streamable_http", url: server.url } } } }),
  };
  const names = Object.keys(probes);

  it("each read shape right after every other one", async () => {
    for (const first of names) {
      for (const second of names) {
        await probes[first]().catch((e) => {
          throw new Error(`${first} (before ${second}): ${e.message}`);
        });
        await probes[second]().catch((e) => {
          throw new Error(`${second} (after ${first}): ${e.message}`);
        });
      }
    }
  }, 120_000);

  it("all of them at once, in shuffled orders", async () => {
    for (let round = 0; round < 10; round++) {
      const order = [...names, ...names].sort(() => Math.random() - 0.5);
      const failures = (await Promise.allSettled(order.map((n) => probes[n]()))).flatMap((r, i) => (r.status === "rejected" ? [`${order[i]}: ${r.reason.message}`] : []));
      expect(failures).toEqual([]);
    }
  });

  // SQLite's builders run a query as all() or get(); PostgreSQL's have no such methods.
  it.runIf(ENGINE === "sqlite")("one SQL text run as a list and then as a single row gets each call's own rows", async () => {
    const { users } = reg.ctx.tables;
    // The same query text, run with all() and with get(): the shapes drizzle sends as different methods.
    const byId = (id: string) => reg.ctx.db.select({ userId: users.userId }).from(users).where(eq(users.userId, id));
    for (let i = 0; i < 20; i++) {
      expect(await byId("ann").all()).toEqual([{ userId: "ann" }]);
      expect(await byId("nobody").get()).toBeUndefined();
      expect(await byId("bob").get()).toEqual({ userId: "bob" });
      expect(await byId("nobody").all()).toEqual([]);
    }
  });

  it("a statement whose only parameter is null runs, as a write and as a read", async () => {
    const { tools } = reg.ctx.tables;
    const before = await reg.ctx.db.select({ id: tools.id, digest: tools.digest }).from(tools).orderBy(tools.id);
    expect(before.every((t) => t.digest !== null)).toBe(true);
    // The local engine once spread the parameters, and a lone null was taken for an object of named ones.
    await reg.ctx.db.update(tools).set({ digest: null });
    const none = await reg.ctx.db.select({ id: tools.id }).from(tools).where(isNull(tools.digest));
    expect(none.map((t) => t.id)).toEqual(before.map((t) => t.id));
    for (const t of before) await reg.ctx.db.update(tools).set({ digest: t.digest }).where(eq(tools.id, t.id));
  });
});
