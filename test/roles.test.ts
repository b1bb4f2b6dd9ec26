import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { call, startTestMcpServer, startTestRegistry, type TestRegistry, text } from "./helpers.ts";

type ToolServer = Awaited<ReturnType<typeof startTestMcpServer>>;

// A small SDK server listing the given tools.
function toolServer(tools: { name: string; description: string }[]): Promise<ToolServer> {
  return startTestMcpServer({
    setup(server) {
      server.setRequestHandler(ListToolsRequestSchema, () => ({
        tools: tools.map((t) => ({ ...t, inputSchema: { type: "object" as const, properties: { query: { type: "string" } } } })),
      }));
    },
  });
}

const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

describe("roles", () => {
  let reg: TestRegistry;
  let c: Client;
  let alpha: ToolServer;
  let beta: ToolServer;
  // Tool ids as get_tools reports them.
  const ids = { alphaSearch: 0, alphaFetch: 0, betaSearch: 0 };

  beforeAll(async () => {
    [reg, alpha, beta] = await Promise.all([
      startTestRegistry(),
      toolServer([
        { name: "search", description: "Search the wiki" },
        { name: "fetch", description: "Fetch a wiki page" },
      ]),
      toolServer([{ name: "search", description: "Search the tickets" }]),
    ]);
    c = await reg.client();
    expect(text(await call(c, "add_service", { service_name: "alpha", endpoint: alpha.url, description: "Wiki" }))).toBe('Service "alpha" added with 2 tools.');
    expect(text(await call(c, "add_service", { service_name: "beta", endpoint: beta.url, description: "Tickets" }))).toBe('Service "beta" added with 1 tool.');
    const a = (await call(c, "get_tools", { service_name: "alpha" })).structuredContent as { tools: { id: number; name: string }[] };
    const b = (await call(c, "get_tools", { service_name: "beta" })).structuredContent as { tools: { id: number; name: string }[] };
    ids.alphaSearch = a.tools.find((t) => t.name === "search")!.id;
    ids.alphaFetch = a.tools.find((t) => t.name === "fetch")!.id;
    ids.betaSearch = b.tools[0].id;
  });
  afterAll(async () => {
    await reg?.stop();
    await Promise.all([alpha?.stop(), beta?.stop()]);
  });
  // Every test starts without roles (removing them also drops their attachments).
  beforeEach(async () => {
    for (const r of await roleList()) await call(c, "remove_role", { role_name: r.name });
  });

  async function roleList(): Promise<{ name: string; default_system_prompt: string }[]> {
    const r = await call(c, "list_roles");
    expect(r.isError).toBeFalsy();
    const list = (r.structuredContent as { roles: { name: string; default_system_prompt: string }[] }).roles;
    expect(JSON.parse(text(r))).toEqual(list);
    return list;
  }
  async function rolesOf(service: string): Promise<Record<string, string[]>> {
    const r = await call(c, "get_tools", { service_name: service });
    const list = (r.structuredContent as { tools: { name: string; roles: string[] }[] }).tools;
    return Object.fromEntries(list.map((t) => [t.name, t.roles]));
  }
  async function toolsFor(role: string) {
    const res = await reg.http("/tools_for_role", json({ role }));
    expect(res.status).toBe(200);
    return ((await res.json()) as { tools: { id: number; name: string; description: string; service_name: string }[] }).tools;
  }
  async function expectToolError(name: string, args: Record<string, unknown>, message: string | RegExp) {
    const r = await call(c, name, args);
    expect(r.isError).toBe(true);
    if (typeof message === "string") expect(text(r)).toBe(message);
    else expect(text(r)).toMatch(message);
  }

  describe("create_role, list_roles, set_role_system_prompt", () => {
    it("creates roles with and without a prompt and lists them by name", async () => {
      expect(text(await call(c, "create_role", { role_name: "support", default_system_prompt: "You help customers." }))).toBe('Role "support" created.');
      expect(text(await call(c, "create_role", { role_name: "analyst" }))).toBe('Role "analyst" created.');
      const r = await call(c, "list_roles");
      expect(text(r)).toBe('[{"name":"analyst","default_system_prompt":""},{"name":"support","default_system_prompt":"You help customers."}]');
      expect(r.structuredContent).toEqual({
        roles: [
          { name: "analyst", default_system_prompt: "" },
          { name: "support", default_system_prompt: "You help customers." },
        ],
      });
    });

    it("trims role names and accepts 64 characters and an 8192-character prompt", async () => {
      expect(text(await call(c, "create_role", { role_name: "  ops  " }))).toBe('Role "ops" created.');
      const long = "r".repeat(64);
      const prompt = "p".repeat(8192);
      expect((await call(c, "create_role", { role_name: long, default_system_prompt: prompt })).isError).toBeFalsy();
      expect(await roleList()).toEqual([
        { name: "ops", default_system_prompt: "" },
        { name: long, default_system_prompt: prompt },
      ]);
    });

    it("refuses a duplicate name (also after trimming) as a conflict and keeps the first role", async () => {
      await call(c, "create_role", { role_name: "support", default_system_prompt: "first" });
      await expectToolError("create_role", { role_name: " support ", default_system_prompt: "second" }, 'Cannot create role "support": a role with that name already exists');
      expect(await roleList()).toEqual([{ name: "support", default_system_prompt: "first" }]);
    });

    it("rejects bad names, prompts and types without writing anything", async () => {
      await expectToolError("create_role", { role_name: "" }, "Cannot create role: role_name: must not be empty");
      await expectToolError("create_role", { role_name: "   " }, "Cannot create role: role_name: must not be empty");
      await expectToolError("create_role", { role_name: "r".repeat(65) }, "Cannot create role: role_name: must be at most 64 characters");
      await expectToolError("create_role", { role_name: "bad\nname" }, "Cannot create role: role_name: must not contain control characters");
      await expectToolError("create_role", { role_name: 5 }, "Cannot create role: role_name: must be a string");
      await expectToolError("create_role", {}, /^Cannot create role: role_name: /);
      await expectToolError(
        "create_role",
        { role_name: "big", default_system_prompt: "p".repeat(8193) },
        "Cannot create role: default_system_prompt: must be at most 8192 characters",
      );
      await expectToolError("create_role", { role_name: "typed", default_system_prompt: 7 }, "Cannot create role: default_system_prompt: must be a string");
      expect(await roleList()).toEqual([]);
    });

    it("sets and clears a system prompt", async () => {
      await call(c, "create_role", { role_name: "support" });
      expect(text(await call(c, "set_role_system_prompt", { role_name: "support", default_system_prompt: "Be brief." }))).toBe('System prompt of role "support" set.');
      expect(await roleList()).toEqual([{ name: "support", default_system_prompt: "Be brief." }]);
      await call(c, "set_role_system_prompt", { role_name: "support", default_system_prompt: "" });
      expect(await roleList()).toEqual([{ name: "support", default_system_prompt: "" }]);
    });

    it("refuses to set the prompt of an unknown role, an oversize prompt or a missing prompt, changing nothing", async () => {
      await call(c, "create_role", { role_name: "support", default_system_prompt: "Be brief." });
      await expectToolError("set_role_system_prompt", { role_name: "ghost", default_system_prompt: "x" }, 'Cannot set the system prompt of role "ghost": no such role');
      await expectToolError(
        "set_role_system_prompt",
        { role_name: "support", default_system_prompt: "p".repeat(8193) },
        "Cannot set role system prompt: default_system_prompt: must be at most 8192 characters",
      );
      await expectToolError("set_role_system_prompt", { role_name: "support" }, /^Cannot set role system prompt: default_system_prompt: /);
      await expectToolError("set_role_system_prompt", { role_name: "", default_system_prompt: "x" }, "Cannot set role system prompt: role_name: must not be empty");
      expect(await roleList()).toEqual([{ name: "support", default_system_prompt: "Be brief." }]);
    });
  });

  describe("remove_role", () => {
    it("removes a role, detaching it from its tools and clearing it from its users (foreign keys)", async () => {
      await call(c, "create_role", { role_name: "support", default_system_prompt: "Be brief." });
      await call(c, "create_role", { role_name: "analyst" });
      await call(c, "attach_role_to_tool", { tool_id: ids.alphaSearch, role_name: "support" });
      await call(c, "attach_role_to_tool", { tool_id: ids.alphaSearch, role_name: "analyst" });
      await call(c, "assign_role_to_user", { user_id: "ann", role_name: "support" });
      expect((await rolesOf("alpha")).search).toEqual(["analyst", "support"]);

      expect(text(await call(c, "remove_role", { role_name: "support" }))).toBe('Role "support" removed.');
      expect(await roleList()).toEqual([{ name: "analyst", default_system_prompt: "" }]);
      expect((await rolesOf("alpha")).search).toEqual(["analyst"]);
      const users = (await (await reg.http("/list_users")).json()) as { users: { user: { user_id: string; role: string } }[] };
      expect(users.users.find((u) => u.user.user_id === "ann")).toEqual({ user: { user_id: "ann", role: "" } });
      expect(await toolsFor("support")).toEqual([]);
      // A new role of the same name starts with no tools.
      await call(c, "create_role", { role_name: "support" });
      expect(await toolsFor("support")).toEqual([]);
    });

    it("fails for an unknown role or a bad name and removes nothing", async () => {
      await call(c, "create_role", { role_name: "support" });
      await expectToolError("remove_role", { role_name: "ghost" }, 'Cannot remove role "ghost": no such role');
      await expectToolError("remove_role", { role_name: "" }, "Cannot remove role: role_name: must not be empty");
      await expectToolError("remove_role", { role_name: ["support"] }, "Cannot remove role: role_name: must be a string");
      expect(await roleList()).toEqual([{ name: "support", default_system_prompt: "" }]);
    });
  });

  describe("attach_role_to_tool, detach_role_from_tool", () => {
    it("attaches once, says so when already attached, and get_tools shows the roles", async () => {
      await call(c, "create_role", { role_name: "support" });
      expect(text(await call(c, "attach_role_to_tool", { tool_id: ids.alphaSearch, role_name: "support" }))).toBe(
        `Role "support" attached to tool ${ids.alphaSearch} ("search" of service "alpha").`,
      );
      expect(text(await call(c, "attach_role_to_tool", { tool_id: ids.alphaSearch, role_name: "support" }))).toBe(
        `Role "support" already attached to tool ${ids.alphaSearch} ("search" of service "alpha").`,
      );
      expect(await rolesOf("alpha")).toEqual({ search: ["support"], fetch: [] });
      expect(await rolesOf("beta")).toEqual({ search: [] });
    });

    it("detaches, and says so when it was not attached", async () => {
      await call(c, "create_role", { role_name: "support" });
      await call(c, "attach_role_to_tool", { tool_id: ids.betaSearch, role_name: "support" });
      expect(text(await call(c, "detach_role_from_tool", { tool_id: ids.betaSearch, role_name: "support" }))).toBe(
        `Role "support" detached from tool ${ids.betaSearch} ("search" of service "beta").`,
      );
      expect(text(await call(c, "detach_role_from_tool", { tool_id: ids.betaSearch, role_name: "support" }))).toBe(
        `Role "support" was not attached to tool ${ids.betaSearch} ("search" of service "beta").`,
      );
      expect(await rolesOf("beta")).toEqual({ search: [] });
    });

    it("accepts a tool id sent as a string of digits (old clients)", async () => {
      await call(c, "create_role", { role_name: "support" });
      expect(text(await call(c, "attach_role_to_tool", { tool_id: String(ids.alphaFetch), role_name: "support" }))).toBe(
        `Role "support" attached to tool ${ids.alphaFetch} ("fetch" of service "alpha").`,
      );
      expect((await rolesOf("alpha")).fetch).toEqual(["support"]);
      expect(text(await call(c, "detach_role_from_tool", { tool_id: String(ids.alphaFetch), role_name: "support" }))).toBe(
        `Role "support" detached from tool ${ids.alphaFetch} ("fetch" of service "alpha").`,
      );
    });

    it("fails for an unknown role or tool and for bad ids, attaching nothing", async () => {
      await call(c, "create_role", { role_name: "support" });
      await expectToolError("attach_role_to_tool", { tool_id: ids.alphaSearch, role_name: "ghost" }, `Cannot attach role "ghost" to tool ${ids.alphaSearch}: no such role`);
      await expectToolError("attach_role_to_tool", { tool_id: 999999, role_name: "support" }, 'Cannot attach role "support" to tool 999999: no such tool');
      for (const bad of ["abc", 1.5, -1, 0, "", "1.5", "-1", true, null]) {
        await expectToolError("attach_role_to_tool", { tool_id: bad, role_name: "support" }, "Cannot attach role to tool: tool_id: must be a positive integer");
      }
      await expectToolError("attach_role_to_tool", { role_name: "support" }, /^Cannot attach role to tool: tool_id: /);
      // Ids are 32-bit on PostgreSQL: a larger number names no tool on any engine.
      await expectToolError("attach_role_to_tool", { tool_id: 2147483648, role_name: "support" }, "Cannot attach role to tool: tool_id: must be at most 2147483647");
      await expectToolError("attach_role_to_tool", { tool_id: "99999999999", role_name: "support" }, "Cannot attach role to tool: tool_id: must be a positive integer");
      await expectToolError("attach_role_to_tool", { tool_id: ids.alphaSearch, role_name: "" }, "Cannot attach role to tool: role_name: must not be empty");
      expect(await rolesOf("alpha")).toEqual({ search: [], fetch: [] });
      expect(await rolesOf("beta")).toEqual({ search: [] });
    });

    it("fails to detach for an unknown role or tool and for bad ids, detaching nothing", async () => {
      await call(c, "create_role", { role_name: "support" });
      await call(c, "attach_role_to_tool", { tool_id: ids.alphaSearch, role_name: "support" });
      await expectToolError("detach_role_from_tool", { tool_id: ids.alphaSearch, role_name: "ghost" }, `Cannot detach role "ghost" from tool ${ids.alphaSearch}: no such role`);
      await expectToolError("detach_role_from_tool", { tool_id: 999999, role_name: "support" }, 'Cannot detach role "support" from tool 999999: no such tool');
      await expectToolError("detach_role_from_tool", { tool_id: "abc", role_name: "support" }, "Cannot detach role from tool: tool_id: must be a positive integer");
      await expectToolError("detach_role_from_tool", { tool_id: -1, role_name: "support" }, "Cannot detach role from tool: tool_id: must be a positive integer");
      expect(await rolesOf("alpha")).toEqual({ search: ["support"], fetch: [] });
    });
  });

  describe("POST /tools_for_role", () => {
    it("tells two tools of the same name apart: get_tools ids, attach by id, service_name", async () => {
      expect(ids.alphaSearch).not.toBe(ids.betaSearch);
      await call(c, "create_role", { role_name: "support" });
      await call(c, "attach_role_to_tool", { tool_id: ids.betaSearch, role_name: "support" });
      expect(await rolesOf("alpha")).toEqual({ search: [], fetch: [] });
      expect(await rolesOf("beta")).toEqual({ search: ["support"] });
      expect(await toolsFor("support")).toEqual([{ id: ids.betaSearch, name: "search", description: "Search the tickets", service_name: "beta" }]);

      // Ordered by service name, then tool id (alpha listed search before fetch).
      expect(ids.alphaSearch).toBeLessThan(ids.alphaFetch);
      await call(c, "attach_role_to_tool", { tool_id: ids.alphaFetch, role_name: "support" });
      await call(c, "attach_role_to_tool", { tool_id: ids.alphaSearch, role_name: "support" });
      expect(await toolsFor("support")).toEqual([
        { id: ids.alphaSearch, name: "search", description: "Search the wiki", service_name: "alpha" },
        { id: ids.alphaFetch, name: "fetch", description: "Fetch a wiki page", service_name: "alpha" },
        { id: ids.betaSearch, name: "search", description: "Search the tickets", service_name: "beta" },
      ]);
    });

    it("shows only tools explicitly attached to the role: a tool with no role is visible to no role", async () => {
      await call(c, "create_role", { role_name: "support" });
      await call(c, "create_role", { role_name: "analyst" });
      await call(c, "attach_role_to_tool", { tool_id: ids.alphaFetch, role_name: "analyst" });
      expect(await toolsFor("support")).toEqual([]);
      expect(await toolsFor("analyst")).toEqual([{ id: ids.alphaFetch, name: "fetch", description: "Fetch a wiki page", service_name: "alpha" }]);
      expect(await toolsFor("ghost")).toEqual([]);
      // Trimmed like every role name.
      expect(await toolsFor(" analyst ")).toHaveLength(1);
    });

    it("answers JSON that keeps every description exactly in tools_for_role and get_tools (the database builds it): quotes, backslashes, control characters, non-ASCII", async () => {
      const tricky = ['He said "hi" \\ back\nthen\ttabbed', "Ünïcødé ✓ 日本語 😀", "</script><b>&amp;", "", "ctrl \u0001\u001f end"];
      const delta = await toolServer(tricky.map((description, i) => ({ name: `t${i}`, description })));
      try {
        await call(c, "add_service", { service_name: "delta", endpoint: delta.url, description: "Tricky" });
        const listed = (
          (await call(c, "get_tools", { service_name: "delta" })).structuredContent as { tools: { id: number; name: string; description: string; roles: string[] }[] }
        ).tools;
        expect(listed.map(({ name, description, roles }) => ({ name, description, roles }))).toEqual(tricky.map((description, i) => ({ name: `t${i}`, description, roles: [] })));
        await call(c, "create_role", { role_name: "support" });
        await call(c, "create_role", { role_name: "ops" });
        for (const t of listed) await call(c, "attach_role_to_tool", { tool_id: t.id, role_name: "support" });
        await call(c, "attach_role_to_tool", { tool_id: listed[0].id, role_name: "ops" });
        // get_tools (also built by the database) gives each tool its roles by name, as text and structured alike.
        const after = await call(c, "get_tools", { service_name: "delta" });
        expect((after.structuredContent as { tools: { roles: string[] }[] }).tools.map((t) => t.roles)).toEqual([["ops", "support"], ...tricky.slice(1).map(() => ["support"])]);
        expect(JSON.parse(text(after))).toEqual(after.structuredContent!.tools);
        const res = await reg.http("/tools_for_role", json({ role: "support" }));
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toMatch(/^application\/json/);
        expect(await res.json()).toEqual({
          tools: listed.map((t, i) => ({ id: t.id, name: `t${i}`, description: tricky[i], service_name: "delta" })),
        });
      } finally {
        await call(c, "remove_service", { service_name: "delta" });
        await delta.stop();
      }
    });

    it("drops the tools of a removed service", async () => {
      const gamma = await toolServer([{ name: "search", description: "Search the logs" }]);
      try {
        await call(c, "add_service", { service_name: "gamma", endpoint: gamma.url, description: "Logs" });
        const id = ((await call(c, "get_tools", { service_name: "gamma" })).structuredContent as { tools: { id: number }[] }).tools[0].id;
        await call(c, "create_role", { role_name: "support" });
        await call(c, "attach_role_to_tool", { tool_id: id, role_name: "support" });
        await call(c, "attach_role_to_tool", { tool_id: ids.betaSearch, role_name: "support" });
        expect((await toolsFor("support")).map((t) => t.service_name)).toEqual(["beta", "gamma"]);
        expect(text(await call(c, "remove_service", { service_name: "gamma" }))).toBe('Service "gamma" removed.');
        expect(await toolsFor("support")).toEqual([{ id: ids.betaSearch, name: "search", description: "Search the tickets", service_name: "beta" }]);
        await expectToolError("attach_role_to_tool", { tool_id: id, role_name: "support" }, `Cannot attach role "support" to tool ${id}: no such tool`);
      } finally {
        await gamma.stop();
      }
    });

    it("answers 400 with the JSON error body for an empty, missing or mistyped role and bad bodies", async () => {
      const cases: [RequestInit, string][] = [
        [json({ role: "" }), "Cannot get tools for role: role: must not be empty"],
        [json({ role: "  " }), "Cannot get tools for role: role: must not be empty"],
        [json({}), "Cannot get tools for role: role: "],
        [json({ role: 5 }), "Cannot get tools for role: role: must be a string"],
        [json({ role: "r".repeat(65) }), "Cannot get tools for role: role: must be at most 64 characters"],
        [{ method: "POST", body: "{not json" }, "Cannot get tools for role: the request body is not valid JSON"],
        [json(["support"]), "Cannot get tools for role: the request body must be a JSON object"],
      ];
      for (const [init, message] of cases) {
        const res = await reg.http("/tools_for_role", init);
        expect(res.status).toBe(400);
        const body = (await res.json()) as { error: { code: string; message: string } };
        expect(body.error.code).toBe("invalid_input");
        expect(body.error.message.startsWith(message)).toBe(true);
      }
    });
  });

  describe("POST /system_prompt_for_role", () => {
    it('answers the prompt of a role, and "" for an unknown role or no role', async () => {
      await call(c, "create_role", { role_name: "support", default_system_prompt: "You help customers." });
      const ask = async (role: string) => {
        const res = await reg.http("/system_prompt_for_role", json({ role }));
        expect(res.status).toBe(200);
        return res.json();
      };
      expect(await ask("support")).toEqual({ default_system_prompt: "You help customers." });
      expect(await ask("ghost")).toEqual({ default_system_prompt: "" });
      expect(await ask("")).toEqual({ default_system_prompt: "" });
    });

    it("answers 400 for a missing or mistyped role and bad bodies", async () => {
      const cases: [RequestInit, string][] = [
        [json({}), "Cannot get system prompt for role: role: "],
        [json({ role: null }), "Cannot get system prompt for role: role: must be a string"],
        [json({ role: "r".repeat(65) }), "Cannot get system prompt for role: role: must be at most 64 characters"],
        [{ method: "POST", body: "nope" }, "Cannot get system prompt for role: the request body is not valid JSON"],
        [json("support"), "Cannot get system prompt for role: the request body must be a JSON object"],
      ];
      for (const [init, message] of cases) {
        const res = await reg.http("/system_prompt_for_role", init);
        expect(res.status).toBe(400);
        const body = (await res.json()) as { error: { code: string; message: string } };
        expect(body.error.code).toBe("invalid_input");
        expect(body.error.message.startsWith(message)).toBe(true);
      }
    });
  });
});

describe("roles: access", () => {
  const ADMIN = "admin-key-0123456789abcdef";
  const AGENT = "agent-key-0123456789abcdef";
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it("lets an agent read tools and prompts of roles but not manage roles", async () => {
    const admin = await reg.client(ADMIN);
    const agent = await reg.client(AGENT);
    const roleTools = ["create_role", "remove_role", "list_roles", "set_role_system_prompt", "attach_role_to_tool", "detach_role_from_tool"];
    const adminSees = (await admin.listTools()).tools.map((t) => t.name);
    const agentSees = (await agent.listTools()).tools.map((t) => t.name);
    for (const name of roleTools) {
      expect(adminSees).toContain(name);
      expect(agentSees).not.toContain(name);
    }
    const denied = await call(agent, "create_role", { role_name: "intruder" });
    expect(denied.isError).toBe(true);
    expect(text(denied)).toBe('Cannot call tool "create_role": not allowed for this key');
    expect(text(await call(admin, "create_role", { role_name: "support", default_system_prompt: "Hi." }))).toBe('Role "support" created.');
    expect((await call(admin, "list_roles")).structuredContent).toEqual({ roles: [{ name: "support", default_system_prompt: "Hi." }] });

    const prompt = await reg.http("/system_prompt_for_role", { ...json({ role: "support" }), key: AGENT });
    expect(await prompt.json()).toEqual({ default_system_prompt: "Hi." });
    const tools = await reg.http("/tools_for_role", { ...json({ role: "support" }), key: AGENT });
    expect(await tools.json()).toEqual({ tools: [] });
    const anonymous = await reg.http("/tools_for_role", json({ role: "support" }));
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe("unauthorized");
  });

  it("lists every role tool with a title, annotations and, for list_roles, an output schema", async () => {
    const admin = await reg.client(ADMIN);
    const listed = (await admin.listTools()).tools;
    for (const name of ["create_role", "remove_role", "list_roles", "set_role_system_prompt", "attach_role_to_tool", "detach_role_from_tool"]) {
      const tool = listed.find((t) => t.name === name)!;
      expect(tool.title).toBeTruthy();
      expect(typeof tool.annotations?.readOnlyHint).toBe("boolean");
      expect(typeof tool.annotations?.destructiveHint).toBe("boolean");
      expect(typeof tool.annotations?.idempotentHint).toBe("boolean");
      expect(tool.annotations?.openWorldHint).toBe(false);
    }
    expect(listed.find((t) => t.name === "list_roles")!.outputSchema).toBeTruthy();
    expect(listed.find((t) => t.name === "attach_role_to_tool")!.inputSchema.required).toEqual(["tool_id", "role_name"]);
  });
});
