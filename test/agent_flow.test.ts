/**
 * The calls existing clients make, in their order: an agent for each user message (role, then system
 * prompt, then tools), and a user-management service (register, then list). Two services both offer a
 * tool named "search", so tools must be told apart by id and service everywhere.
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, startTestMcpServer, startTestRegistry, type TestRegistry, text } from "./helpers.ts";

const ADMIN = "admin-key-0123456789abcdef";
const AGENT = "agent-key-0123456789abcdef";
const PROMPT = "You are an analyst. Cite your sources.";

type ToolServer = Awaited<ReturnType<typeof startTestMcpServer>>;

function toolServer(tools: { name: string; description: string }[]): Promise<ToolServer> {
  return startTestMcpServer({
    setup(server) {
      server.setRequestHandler(ListToolsRequestSchema, () => ({
        tools: tools.map((t) => ({ ...t, inputSchema: { type: "object" as const, properties: { query: { type: "string" } } } })),
      }));
    },
  });
}

describe("agent flow", () => {
  let reg: TestRegistry;
  let wiki: ToolServer;
  let tickets: ToolServer;
  let admin: Client;

  // What an existing agent sends, with the Bearer key it is given.
  const post = (path: string, body: unknown, key = AGENT) => reg.http(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), key });

  // The old agent's per-message sequence, reading the fields it reads; a failed tools_for_role means no tools.
  async function agentTurn(userId: string) {
    const role = ((await (await post("/role_for_user", { user_id: userId })).json()) as { role: string }).role;
    const prompt = ((await (await post("/system_prompt_for_role", { role })).json()) as { default_system_prompt: string }).default_system_prompt;
    const res = await post("/tools_for_role", { role });
    const tools = res.ok ? ((await res.json()) as { tools: { id: number; name: string; service_name: string }[] }).tools : [];
    return { role, prompt, toolsStatus: res.status, tools };
  }

  beforeAll(async () => {
    [reg, wiki, tickets] = await Promise.all([
      startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT }),
      toolServer([
        { name: "search", description: "Search the wiki" },
        { name: "read_page", description: "Read a wiki page" },
      ]),
      toolServer([{ name: "search", description: "Search tickets" }]),
    ]);
    admin = await reg.client(ADMIN);
    // The operator's set-up, through the admin MCP tools.
    expect(text(await call(admin, "add_service", { service_name: "wiki", endpoint: wiki.url, description: "Company wiki" }))).toBe('Service "wiki" added with 2 tools.');
    expect(text(await call(admin, "add_service", { service_name: "tickets", endpoint: tickets.url, description: "Ticket tracker" }))).toBe('Service "tickets" added with 1 tool.');
  });
  afterAll(async () => {
    await reg?.stop();
    await Promise.all([wiki?.stop(), tickets?.stop()]);
  });

  it("the operator attaches a role to two tools of the same name by id, and get_tools shows it", async () => {
    const before = await call(admin, "get_tools", { service_name: "wiki" });
    expect(text(before)).toBe('[{"id":1,"name":"search","description":"Search the wiki","roles":[]},{"id":2,"name":"read_page","description":"Read a wiki page","roles":[]}]');
    const ticketTools = await call(admin, "get_tools", { service_name: "tickets" });
    expect(text(ticketTools)).toBe('[{"id":3,"name":"search","description":"Search tickets","roles":[]}]');
    expect(ticketTools.structuredContent).toEqual({ tools: [{ id: 3, name: "search", description: "Search tickets", roles: [] }] });

    expect(text(await call(admin, "create_role", { role_name: "analyst", default_system_prompt: PROMPT }))).toBe('Role "analyst" created.');
    expect(text(await call(admin, "attach_role_to_tool", { tool_id: 1, role_name: "analyst" }))).toBe('Role "analyst" attached to tool 1 ("search" of service "wiki").');
    expect(text(await call(admin, "attach_role_to_tool", { tool_id: 3, role_name: "analyst" }))).toBe('Role "analyst" attached to tool 3 ("search" of service "tickets").');
    // Attaching again succeeds and says so; unknown roles and tools and bad ids attach nothing.
    expect(text(await call(admin, "attach_role_to_tool", { tool_id: 1, role_name: "analyst" }))).toBe('Role "analyst" already attached to tool 1 ("search" of service "wiki").');
    for (const [args, message] of [
      [{ tool_id: 1, role_name: "ghost" }, 'Cannot attach role "ghost" to tool 1: no such role'],
      [{ tool_id: 999999, role_name: "analyst" }, 'Cannot attach role "analyst" to tool 999999: no such tool'],
      [{ tool_id: "abc", role_name: "analyst" }, "Cannot attach role to tool: tool_id: must be a positive integer"],
      [{ tool_id: 2.5, role_name: "analyst" }, "Cannot attach role to tool: tool_id: must be a positive integer"],
    ] as const) {
      const r = await call(admin, "attach_role_to_tool", args);
      expect(r.isError).toBe(true);
      expect(text(r)).toBe(message);
    }

    expect((await call(admin, "get_tools", { service_name: "wiki" })).structuredContent).toEqual({
      tools: [
        { id: 1, name: "search", description: "Search the wiki", roles: ["analyst"] },
        { id: 2, name: "read_page", description: "Read a wiki page", roles: [] },
      ],
    });
    expect((await call(admin, "get_tools", { service_name: "tickets" })).structuredContent).toEqual({
      tools: [{ id: 3, name: "search", description: "Search tickets", roles: ["analyst"] }],
    });
  });

  it("the user-management service registers a user with a role, then reads the user list", async () => {
    const registered = await post("/register_user", { user_id: "alice@example.com", role_name: "analyst" }, ADMIN);
    expect(registered.status).toBe(200);
    expect(await registered.json()).toEqual({ status: "user registered" });

    const listed = await reg.http("/list_users", { key: ADMIN });
    expect(listed.status).toBe(200);
    const body = (await listed.json()) as { users: { user: { user_id: string; role: string } }[] };
    expect(body).toEqual({ users: [{ user: { user_id: "alice@example.com", role: "analyst" } }] });
    // The fields that service reads.
    expect(Object.fromEntries(body.users.map((u) => [u.user.user_id, u.user.role]))).toEqual({ "alice@example.com": "analyst" });
  });

  it("for each message of a user with a role, the agent gets the role, its prompt and its tools of both services", async () => {
    const role = await post("/role_for_user", { user_id: "alice@example.com" });
    expect(role.status).toBe(200);
    expect(await role.json()).toEqual({ role: "analyst" });

    const prompt = await post("/system_prompt_for_role", { role: "analyst" });
    expect(prompt.status).toBe(200);
    expect(await prompt.json()).toEqual({ default_system_prompt: PROMPT });

    const tools = await post("/tools_for_role", { role: "analyst" });
    expect(tools.status).toBe(200);
    expect(await tools.json()).toEqual({
      tools: [
        { id: 3, name: "search", description: "Search tickets", service_name: "tickets" },
        { id: 1, name: "search", description: "Search the wiki", service_name: "wiki" },
      ],
    });

    expect(await agentTurn("alice@example.com")).toEqual({
      role: "analyst",
      prompt: PROMPT,
      toolsStatus: 200,
      tools: [
        { id: 3, name: "search", description: "Search tickets", service_name: "tickets" },
        { id: 1, name: "search", description: "Search the wiki", service_name: "wiki" },
      ],
    });
  });

  it('for a user without a role: role "", prompt "", and tools_for_role answers 400, which the old agent reads as no tools', async () => {
    const role = await post("/role_for_user", { user_id: "bob@example.com" });
    expect(role.status).toBe(200);
    expect(await role.json()).toEqual({ role: "" });

    const prompt = await post("/system_prompt_for_role", { role: "" });
    expect(prompt.status).toBe(200);
    expect(await prompt.json()).toEqual({ default_system_prompt: "" });

    const tools = await post("/tools_for_role", { role: "" });
    expect(tools.status).toBe(400);
    expect(await tools.json()).toEqual({ error: { code: "invalid_input", message: "Cannot get tools for role: role: must not be empty" } });

    expect(await agentTurn("bob@example.com")).toEqual({ role: "", prompt: "", toolsStatus: 400, tools: [] });

    // The agent's first question recorded the user, without a role.
    const listed = await reg.http("/list_users", { key: ADMIN });
    expect(await listed.json()).toEqual({
      users: [{ user: { user_id: "alice@example.com", role: "analyst" } }, { user: { user_id: "bob@example.com", role: "" } }],
    });
    const pairs = await call(admin, "list_users");
    expect(text(pairs)).toBe('[["alice@example.com","analyst"],["bob@example.com",""]]');
    expect(pairs.structuredContent).toEqual({
      users: [
        ["alice@example.com", "analyst"],
        ["bob@example.com", ""],
      ],
    });
  });

  it("after the operator gives that user a role, the agent's next turn sees it", async () => {
    expect(text(await call(admin, "assign_role_to_user", { user_id: "bob@example.com", role_name: "analyst" }))).toBe('Role "analyst" assigned to user "bob@example.com".');
    const turn = await agentTurn("bob@example.com");
    expect(turn.role).toBe("analyst");
    expect(turn.tools.map((t) => [t.service_name, t.name])).toEqual([
      ["tickets", "search"],
      ["wiki", "search"],
    ]);

    // Detaching the tickets search leaves only the wiki one.
    expect(text(await call(admin, "detach_role_from_tool", { tool_id: 3, role_name: "analyst" }))).toBe('Role "analyst" detached from tool 3 ("search" of service "tickets").');
    expect(text(await call(admin, "detach_role_from_tool", { tool_id: 3, role_name: "analyst" }))).toBe(
      'Role "analyst" was not attached to tool 3 ("search" of service "tickets").',
    );
    expect((await agentTurn("bob@example.com")).tools).toEqual([{ id: 1, name: "search", description: "Search the wiki", service_name: "wiki" }]);

    // Removing the role leaves both users without one: the agent falls back to no prompt and no tools.
    expect(text(await call(admin, "remove_role", { role_name: "analyst" }))).toBe('Role "analyst" removed.');
    expect(await agentTurn("alice@example.com")).toEqual({ role: "", prompt: "", toolsStatus: 400, tools: [] });
  });
});
